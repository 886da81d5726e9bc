"""Statistics for the model comparison table: CIs, paired tests, calibration, RSNA loss.

Pure functions on numpy arrays, one row per slice:

- :func:`bootstrap_ci`: percentile confidence interval of any metric, resampling
  patients (a cluster bootstrap), built on :func:`scipy.stats.bootstrap`.
- :func:`delong_test`: paired DeLong test for two correlated ROC AUCs (DeLong, DeLong
  and Clarke-Pearson, 1988, Biometrics 44:837-845), computed with the fast midrank
  algorithm of Sun and Xu (2014, "Fast implementation of DeLong's algorithm for
  comparing the areas under correlated receiver operating characteristic curves",
  IEEE Signal Processing Letters 21:1389-1393). No maintained library in this
  environment provides it (neither scikit-learn nor scipy does), so it is written
  here by hand; the tests check it against the original O(m n) formula.
- :func:`mcnemar_test`: McNemar's exact test on paired 0/1 predictions.
- :func:`expected_calibration_error` and :func:`reliability_table`: equal-width bins.
- :func:`weighted_log_loss`: the RSNA 2019 intracranial hemorrhage challenge metric.
"""

from __future__ import annotations

import inspect
import numbers
import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import scipy.stats
from numpy.typing import ArrayLike

from ichkit.scans.validation import as_generator, check_int

__all__ = [
    "bootstrap_ci",
    "delong_test",
    "expected_calibration_error",
    "mcnemar_test",
    "reliability_table",
    "weighted_log_loss",
]

# scipy >= 1.15 takes ``rng``; older releases (setup.cfg allows 1.11) only ``random_state``.
_SCIPY_RNG_KEYWORD = (
    "rng" if "rng" in inspect.signature(scipy.stats.bootstrap).parameters else "random_state"
)
_LOG_LOSS_EPSILON = 1e-15


def bootstrap_ci(
    y: ArrayLike,
    probability: ArrayLike,
    groups: ArrayLike,
    statistic: Callable[[np.ndarray, np.ndarray], float],
    *,
    n_resamples: int = 1000,
    confidence_level: float = 0.95,
    random_state: int | np.random.Generator | None = None,
) -> tuple[float, float]:
    """Percentile confidence interval of a metric, resampling patients with replacement.

    A cluster bootstrap: each resample draws as many patients as there are, with
    replacement, and a drawn patient brings all its slices, so slices of one patient
    are never treated as independent. The resampling is done by
    :func:`scipy.stats.bootstrap` (``method="percentile"``) over patient positions.

    Parameters
    ----------
    y : array-like of shape (n_slices,) or (n_slices, n_labels)
        Labels, 0 or 1.
    probability : array-like of shape (n_slices,) or (n_slices, n_labels)
        Predicted probabilities in [0, 1].
    groups : array-like of shape (n_slices,)
        Patient id of each slice.
    statistic : callable
        ``statistic(y, probability) -> float`` on the rows of one resample. It must
        return NaN where it is undefined (for example an AUC on a resample with one
        class, as :func:`ichkit.experiments.metrics.binary_metrics` does); such resamples
        are skipped.
    n_resamples : int, default=1000
        Number of bootstrap resamples.
    confidence_level : float, default=0.95
        Confidence level of the two-sided interval, in (0, 1).
    random_state : int, numpy.random.Generator or None, default=None
        Source of randomness; an int gives the same interval on every call.

    Returns
    -------
    low, high : tuple of float
        The interval; ``(nan, nan)`` with fewer than 2 patients or when more than
        half of the resamples are undefined.

    Raises
    ------
    ValueError
        If the inputs differ in length, labels are not 0/1, probabilities are not
        finite values in [0, 1], a patient id is missing, a setting is out of range, or
        ``random_state`` is not None, an int or a Generator.
    TypeError
        If ``statistic`` is not callable or ``probability`` does not hold numbers.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([0, 1, 0, 1, 1, 0, 1, 0])
    >>> probability = np.array([0.2, 0.9, 0.6, 0.6, 0.8, 0.1, 0.7, 0.3])
    >>> groups = np.array(["p1", "p1", "p2", "p2", "p3", "p3", "p4", "p4"])
    >>> def accuracy(y, probability):
    ...     return float(np.mean((probability >= 0.5) == y))
    >>> low, high = bootstrap_ci(y, probability, groups, accuracy, random_state=0)
    >>> bool(low <= accuracy(y, probability) <= high)
    True
    """
    function = "bootstrap_ci"
    y = _as_labels(y, function, "y", ndims=(1, 2))
    probability = _as_probabilities(probability, function, "probability", ndims=(1, 2))
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise ValueError(
            f"The 'groups' parameter of {function} must be 1-D: one patient id per slice. "
            f"Got shape {groups.shape}."
        )
    _check_same_rows(function, y=y, probability=probability, groups=groups)
    if not callable(statistic):
        raise TypeError(
            f"The 'statistic' parameter of {function} must be a callable "
            f"statistic(y, probability) -> float. Got {statistic!r}."
        )
    check_int(n_resamples, "n_resamples", function, minimum=1)
    _check_open_unit_interval(confidence_level, function, "confidence_level")
    generator = as_generator(random_state, function)

    codes, _ = pd.factorize(groups)
    if np.any(codes < 0):
        raise ValueError(
            f"The 'groups' parameter of {function} must hold a patient id for every slice. "
            f"Got {np.count_nonzero(codes < 0)} missing ids."
        )
    n_patients = int(codes.max()) + 1
    if n_patients < 2:
        return float("nan"), float("nan")

    # Rows sorted by patient: patient k owns rows order[starts[k]:starts[k] + sizes[k]].
    order = np.argsort(codes, kind="stable")
    sizes = np.bincount(codes, minlength=n_patients)
    starts = np.cumsum(sizes) - sizes

    def patient_statistic(positions: np.ndarray) -> float:
        positions = np.asarray(positions, dtype=np.intp)
        drawn_sizes = sizes[positions]
        first_rows = np.repeat(starts[positions], drawn_sizes)
        offsets = np.arange(drawn_sizes.sum()) - np.repeat(
            np.cumsum(drawn_sizes) - drawn_sizes, drawn_sizes
        )
        rows = order[first_rows + offsets]
        return float(statistic(y[rows], probability[rows]))

    with warnings.catch_warnings():
        # scipy warns when its own interval is NaN (with a message about BCa, even for
        # the percentile method); undefined resamples are handled below instead.
        warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
        result = scipy.stats.bootstrap(
            (np.arange(n_patients),),
            patient_statistic,
            n_resamples=n_resamples,
            vectorized=False,
            method="percentile",
            confidence_level=confidence_level,
            **{_SCIPY_RNG_KEYWORD: generator},
        )
    # scipy's percentile interval turns NaN as soon as one resample is undefined, so the
    # interval is taken from its bootstrap distribution with the NaN resamples left out.
    # With no NaN this is the same (linear) percentile interval scipy computes.
    distribution = np.asarray(result.bootstrap_distribution, dtype=float)
    if 2 * np.count_nonzero(np.isnan(distribution)) > distribution.size:
        return float("nan"), float("nan")
    tail = 100 * (1 - confidence_level) / 2
    low, high = np.nanpercentile(distribution, [tail, 100 - tail])
    return float(low), float(high)


def delong_test(
    y: ArrayLike, probability_a: ArrayLike, probability_b: ArrayLike
) -> dict[str, float]:
    """Paired DeLong test for the difference of two ROC AUCs on the same cases.

    The covariance of the two AUCs comes from their structural components
    (placement values) as in DeLong et al. (1988), computed in O(n log n) from
    midranks (Sun and Xu, 2014). The two-sided p-value is from the normal
    distribution. Ties count one half, as in :func:`sklearn.metrics.roc_auc_score`.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Labels, 0 or 1; both classes must be present.
    probability_a, probability_b : array-like of shape (n_samples,)
        Predicted probabilities of the two models, in [0, 1], for the same cases.

    Returns
    -------
    dict
        ``auc_a``, ``auc_b``, ``difference`` (``auc_a - auc_b``), ``z`` and
        ``p_value``. Equal AUCs (for example identical rankings) give ``z`` 0 and
        ``p_value`` 1.0. Different AUCs with zero variance (both perfectly ordered
        one way or the other) give an infinite ``z`` and ``p_value`` 0.0; with
        fewer than 2 cases of a class the variance is undefined and ``z`` and
        ``p_value`` are NaN.

    Raises
    ------
    ValueError
        If ``y`` holds one class, labels are not 0/1, probabilities are not finite
        values in [0, 1], or the inputs differ in length.
    TypeError
        If a probability array does not hold numbers.

    Examples
    --------
    >>> y = [0, 0, 0, 1, 1, 1]
    >>> result = delong_test(y, [0.1, 0.2, 0.6, 0.5, 0.8, 0.9], [0.1, 0.2, 0.6, 0.5, 0.8, 0.9])
    >>> round(result["auc_a"], 4), result["difference"], result["p_value"]
    (0.8889, 0.0, 1.0)
    """
    function = "delong_test"
    y = _as_labels(y, function, "y")
    probability_a = _as_probabilities(probability_a, function, "probability_a")
    probability_b = _as_probabilities(probability_b, function, "probability_b")
    _check_same_rows(function, y=y, probability_a=probability_a, probability_b=probability_b)
    n_positive = int(np.count_nonzero(y == 1))
    n_negative = y.size - n_positive
    if n_positive == 0 or n_negative == 0:
        raise ValueError(
            f"delong_test needs both classes (0 and 1) in 'y' to compute ROC AUCs. "
            f"Got only class {int(y[0])} ({y.size} rows)."
        )

    # Positives first: rows 0..m-1 of each score vector are the positive cases.
    scores = np.stack([probability_a, probability_b])
    scores = np.concatenate([scores[:, y == 1], scores[:, y == 0]], axis=1)
    positive_scores, negative_scores = scores[:, :n_positive], scores[:, n_positive:]
    ranks_positive = scipy.stats.rankdata(positive_scores, axis=1)
    ranks_negative = scipy.stats.rankdata(negative_scores, axis=1)
    ranks_all = scipy.stats.rankdata(scores, axis=1)

    aucs = ranks_all[:, :n_positive].sum(axis=1) / (n_positive * n_negative) - (n_positive + 1) / (
        2 * n_negative
    )
    # Structural components: per positive, the fraction of negatives it outranks; per
    # negative, the fraction of positives that outrank it (ties count one half).
    components_positive = (ranks_all[:, :n_positive] - ranks_positive) / n_negative
    components_negative = 1 - (ranks_all[:, n_positive:] - ranks_negative) / n_positive
    if min(n_positive, n_negative) < 2:
        variance = float("nan")  # a class with one case has no sample covariance
    else:
        covariance = (
            np.cov(components_positive) / n_positive + np.cov(components_negative) / n_negative
        )
        variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]

    difference = float(aucs[0] - aucs[1])
    if difference == 0:
        z, p_value = 0.0, 1.0
    elif variance > 0:
        z = difference / np.sqrt(variance)
        p_value = float(2 * scipy.stats.norm.sf(abs(z)))
    elif variance == 0:
        z, p_value = float(np.copysign(np.inf, difference)), 0.0
    else:
        z, p_value = float("nan"), float("nan")
    return {
        "auc_a": float(aucs[0]),
        "auc_b": float(aucs[1]),
        "difference": difference,
        "z": float(z),
        "p_value": p_value,
    }


def mcnemar_test(y: ArrayLike, predicted_a: ArrayLike, predicted_b: ArrayLike) -> dict[str, float]:
    """McNemar's exact test on the paired 0/1 predictions of two models.

    Only the discordant cases count: ``n_a_only`` (model a right, b wrong) and
    ``n_b_only`` (the reverse). Under the null hypothesis each discordant case is
    equally likely to go either way, so the p-value is the two-sided exact binomial
    test ``scipy.stats.binomtest(n_a_only, n_a_only + n_b_only, 0.5)``.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Labels, 0 or 1.
    predicted_a, predicted_b : array-like of shape (n_samples,)
        Predicted classes of the two models, 0 or 1 (or booleans).

    Returns
    -------
    dict
        ``n_a_only``, ``n_b_only``, ``statistic`` (``min(n_a_only, n_b_only)``, as
        in statsmodels' exact McNemar test) and ``p_value`` (1.0 with no discordant
        cases).

    Raises
    ------
    ValueError
        If a value is not 0/1 or the inputs differ in length.

    Examples
    --------
    >>> result = mcnemar_test([1, 1, 1, 0, 0], [1, 1, 1, 0, 1], [0, 0, 1, 1, 1])
    >>> result["n_a_only"], result["n_b_only"], result["p_value"]
    (3, 0, 0.25)
    """
    function = "mcnemar_test"
    y = _as_labels(y, function, "y")
    predicted_a = _as_labels(predicted_a, function, "predicted_a")
    predicted_b = _as_labels(predicted_b, function, "predicted_b")
    _check_same_rows(function, y=y, predicted_a=predicted_a, predicted_b=predicted_b)
    correct_a, correct_b = predicted_a == y, predicted_b == y
    n_a_only = int(np.count_nonzero(correct_a & ~correct_b))
    n_b_only = int(np.count_nonzero(correct_b & ~correct_a))
    n_discordant = n_a_only + n_b_only
    p_value = (
        1.0 if n_discordant == 0 else float(scipy.stats.binomtest(n_a_only, n_discordant).pvalue)
    )
    return {
        "n_a_only": n_a_only,
        "n_b_only": n_b_only,
        "statistic": min(n_a_only, n_b_only),
        "p_value": p_value,
    }


def reliability_table(y: ArrayLike, probability: ArrayLike, *, n_bins: int = 10) -> pd.DataFrame:
    """Observed fraction of positives against mean predicted probability, per bin.

    Equal-width bins on [0, 1]: bin k is ``[k / n_bins, (k + 1) / n_bins)`` and the
    last bin also includes 1.0. :func:`sklearn.calibration.calibration_curve` gives
    the same means and fractions (it closes its bins on the right instead, which
    only matters for probabilities exactly on an edge) but not the bin counts,
    which the expected calibration error and a reliability diagram both need.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Labels, 0 or 1.
    probability : array-like of shape (n_samples,)
        Predicted probabilities in [0, 1].
    n_bins : int, default=10
        Number of equal-width bins.

    Returns
    -------
    pandas.DataFrame
        One row per non-empty bin, in order: ``bin_lower``, ``bin_upper``,
        ``mean_probability``, ``fraction_positive`` and ``count``.

    Raises
    ------
    ValueError
        If labels are not 0/1, probabilities are not finite values in [0, 1], the
        inputs differ in length or are empty, or ``n_bins`` < 1.

    Examples
    --------
    >>> reliability_table([0, 1, 1, 1], [0.2, 0.8, 0.8, 0.8], n_bins=2)
       bin_lower  bin_upper  mean_probability  fraction_positive  count
    0        0.0        0.5               0.2                0.0      1
    1        0.5        1.0               0.8                1.0      3
    """
    return _reliability_table(y, probability, n_bins, "reliability_table")


def expected_calibration_error(y: ArrayLike, probability: ArrayLike, *, n_bins: int = 10) -> float:
    """Expected calibration error (ECE) with equal-width bins on [0, 1].

    The sum over bins of the bin's share of the samples times
    ``|mean predicted probability - observed fraction of positives|``, on the bins
    of :func:`reliability_table`.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Labels, 0 or 1.
    probability : array-like of shape (n_samples,)
        Predicted probabilities in [0, 1].
    n_bins : int, default=10
        Number of equal-width bins; the last includes 1.0.

    Returns
    -------
    float
        The ECE, in [0, 1].

    Raises
    ------
    ValueError
        As for :func:`reliability_table`.

    Examples
    --------
    >>> round(expected_calibration_error([0, 1, 1, 1], [0.2, 0.8, 0.8, 0.8]), 6)
    0.2
    """
    table = _reliability_table(y, probability, n_bins, "expected_calibration_error")
    gaps = np.abs(table["mean_probability"] - table["fraction_positive"])
    return float(np.sum(table["count"] * gaps) / table["count"].sum())


def weighted_log_loss(
    labels: ArrayLike,
    probabilities: ArrayLike,
    *,
    weights: Sequence[float] = (2, 1, 1, 1, 1, 1),
) -> float:
    """Weighted multi-label log loss, the RSNA 2019 intracranial hemorrhage metric.

    Per row, the weighted mean of the binary log losses of its columns; then the
    mean over rows. The challenge's columns are ``any`` (weight 2) followed by the
    five subtypes (epidural, intraparenchymal, intraventricular, subarachnoid,
    subdural; weight 1 each). Probabilities are clipped to [1e-15, 1 - 1e-15].

    Parameters
    ----------
    labels : array-like of shape (n_samples, n_labels)
        Labels, 0 or 1, one column per label.
    probabilities : array-like of shape (n_samples, n_labels)
        Predicted probabilities in [0, 1], columns in the order of ``labels``.
    weights : sequence of float, default=(2, 1, 1, 1, 1, 1)
        Weight of each column, non-negative with a positive sum; ``n_labels`` must
        equal ``len(weights)``.

    Returns
    -------
    float
        The weighted log loss.

    Raises
    ------
    ValueError
        If the shapes differ or do not match ``weights``, labels are not 0/1,
        probabilities are not finite values in [0, 1], or a weight is negative.

    Examples
    --------
    >>> labels = [[1, 0], [0, 0]]
    >>> probabilities = [[0.5, 0.5], [0.5, 0.5]]
    >>> round(weighted_log_loss(labels, probabilities, weights=(2, 1)), 6)
    0.693147
    """
    function = "weighted_log_loss"
    weights = np.asarray(weights, dtype=float)
    if weights.ndim != 1 or weights.size == 0:
        raise ValueError(
            f"The 'weights' parameter of {function} must be a non-empty sequence of "
            f"numbers, one per column. Got shape {weights.shape}."
        )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(
            f"The 'weights' parameter of {function} must hold finite, non-negative "
            f"numbers with a positive sum. Got {weights.tolist()}."
        )
    labels = _as_labels(labels, function, "labels", ndims=(2,))
    probabilities = _as_probabilities(probabilities, function, "probabilities", ndims=(2,))
    if labels.shape != probabilities.shape:
        raise ValueError(
            f"The 'labels' and 'probabilities' parameters of {function} must have the "
            f"same shape. Got {labels.shape} and {probabilities.shape}."
        )
    if labels.shape[1] != weights.size:
        raise ValueError(
            f"The 'labels' and 'probabilities' parameters of {function} must have one "
            f"column per weight ({weights.size}: 'any' and the five subtypes by default). "
            f"Got {labels.shape[1]} columns."
        )
    clipped = np.clip(probabilities, _LOG_LOSS_EPSILON, 1 - _LOG_LOSS_EPSILON)
    losses = -(labels * np.log(clipped) + (1 - labels) * np.log1p(-clipped))
    return float(np.mean(losses @ weights / weights.sum()))


def _reliability_table(y, probability, n_bins, function: str) -> pd.DataFrame:
    y = _as_labels(y, function, "y")
    probability = _as_probabilities(probability, function, "probability")
    _check_same_rows(function, y=y, probability=probability)
    check_int(n_bins, "n_bins", function, minimum=1)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # side="right" makes bins closed on the left; the clip puts 1.0 in the last bin.
    bins = np.clip(np.searchsorted(edges, probability, side="right") - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    probability_sums = np.bincount(bins, weights=probability, minlength=n_bins)
    positive_sums = np.bincount(bins, weights=y, minlength=n_bins)
    filled = counts > 0
    return pd.DataFrame(
        {
            "bin_lower": edges[:-1][filled],
            "bin_upper": edges[1:][filled],
            "mean_probability": probability_sums[filled] / counts[filled],
            "fraction_positive": positive_sums[filled] / counts[filled],
            "count": counts[filled],
        }
    )


def _as_labels(values, function: str, parameter: str, *, ndims=(1,)) -> np.ndarray:
    array = _as_array(values, function, parameter, ndims)
    if array.dtype == bool:
        return array.astype(int)
    valid = np.isin(array, [0, 1]) if np.issubdtype(array.dtype, np.number) else None
    if valid is None or not np.all(valid):
        invalid = pd.unique(array.ravel() if valid is None else array[~valid])
        shown = ", ".join(repr(value) for value in invalid[:5].tolist())
        raise ValueError(
            f"The '{parameter}' parameter of {function} must hold labels 0 or 1. "
            f"Got {invalid.size} other value(s): {shown}{', ...' if invalid.size > 5 else ''}."
        )
    return array.astype(int)


def _as_probabilities(values, function: str, parameter: str, *, ndims=(1,)) -> np.ndarray:
    array = _as_array(values, function, parameter, ndims)
    try:
        array = array.astype(float)
    except (TypeError, ValueError):
        raise TypeError(
            f"The '{parameter}' parameter of {function} must hold numbers (probabilities "
            f"in [0, 1]). Got values of type {array.dtype}."
        ) from None
    invalid = ~(np.isfinite(array) & (array >= 0) & (array <= 1))
    if np.any(invalid):
        raise ValueError(
            f"The '{parameter}' parameter of {function} must hold finite probabilities "
            f"in [0, 1]. Got {np.count_nonzero(invalid)} value(s) outside, "
            f"e.g. {float(array[invalid][0])!r}."
        )
    return array


def _as_array(values, function: str, parameter: str, ndims) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim not in ndims:
        allowed = " or ".join(f"{ndim}-D" for ndim in ndims)
        raise ValueError(
            f"The '{parameter}' parameter of {function} must be {allowed}. Got shape {array.shape}."
        )
    if array.shape[0] == 0:
        raise ValueError(f"The '{parameter}' parameter of {function} must not be empty.")
    return array


def _check_same_rows(function: str, **arrays: np.ndarray) -> None:
    (first_name, first), *others = arrays.items()
    for name, array in others:
        if len(array) != len(first):
            raise ValueError(
                f"The '{name}' parameter of {function} must have one row per row of "
                f"'{first_name}' ({len(first)}). Got {len(array)}."
            )


def _check_open_unit_interval(value, function: str, parameter: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"The '{parameter}' parameter of {function} must be a float in (0, 1). "
            f"Got {value!r} of type {type(value).__name__}."
        )
    if not 0 < value < 1:
        raise ValueError(
            f"The '{parameter}' parameter of {function} must be a float in (0, 1). Got {value!r}."
        )
