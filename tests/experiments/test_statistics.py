"""Comparison statistics agree with hand computations, scikit-learn and the bootstrap."""

import warnings

import numpy as np
import pytest
import scipy.special
import scipy.stats
from sklearn.calibration import calibration_curve
from sklearn.metrics import log_loss, roc_auc_score

from ichkit.experiments.statistics import (
    bootstrap_ci,
    delong_test,
    expected_calibration_error,
    mcnemar_test,
    reliability_table,
    weighted_log_loss,
)


def _auc_or_nan(y, probability):
    """ROC AUC from ranks (Mann-Whitney), NaN with one class; faster than scikit-learn."""
    n_positive = np.count_nonzero(y)
    n_negative = y.size - n_positive
    if n_positive == 0 or n_negative == 0:
        return float("nan")
    rank_sum = scipy.stats.rankdata(probability)[y == 1].sum()
    return float((rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


def _mean_probability(y, probability):
    return float(np.mean(probability))


def _patients(n_patients, seed):
    """Slices of ``n_patients`` patients (3 to 12 each) with informative probabilities."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(3, 13, n_patients)
    groups = np.repeat(np.arange(n_patients), sizes)
    y = rng.integers(0, 2, groups.size)
    probability = np.clip(0.35 * y + rng.uniform(0, 0.65, groups.size), 0, 1)
    return y, probability, groups


# bootstrap_ci ---------------------------------------------------------------------------


def test_bootstrap_ci_contains_the_estimate_and_is_deterministic():
    y, probability, groups = _patients(40, seed=0)
    assert _auc_or_nan(y, probability) == pytest.approx(roc_auc_score(y, probability))
    interval = bootstrap_ci(y, probability, groups, _auc_or_nan, n_resamples=300, random_state=0)
    low, high = interval
    assert low < roc_auc_score(y, probability) < high
    assert high - low < 0.3
    again = bootstrap_ci(y, probability, groups, _auc_or_nan, n_resamples=300, random_state=0)
    assert again == interval
    other = bootstrap_ci(y, probability, groups, _auc_or_nan, n_resamples=300, random_state=1)
    assert other != interval
    from_generator = bootstrap_ci(
        y, probability, groups, _auc_or_nan, n_resamples=300, random_state=np.random.default_rng(0)
    )
    assert from_generator == interval


def test_bootstrap_ci_resamples_patients_not_slices():
    # 20 patients with 50 identical slices each: a patient bootstrap of the mean must give
    # exactly the interval of one slice per patient (same seed, same patient order); a
    # slice bootstrap would be about sqrt(50) ~ 7 times narrower.
    rng = np.random.default_rng(1)
    n_patients, n_slices = 20, 50
    patient_probability = rng.uniform(0, 1, n_patients)
    patient_y = rng.integers(0, 2, n_patients)
    patient_ids = np.array([f"patient_{index:02d}" for index in range(n_patients)])
    settings = {"n_resamples": 400, "random_state": 3}

    one_slice = bootstrap_ci(
        patient_y, patient_probability, patient_ids, _mean_probability, **settings
    )
    many_slices = bootstrap_ci(
        np.repeat(patient_y, n_slices),
        np.repeat(patient_probability, n_slices),
        np.repeat(patient_ids, n_slices),
        _mean_probability,
        **settings,
    )
    np.testing.assert_allclose(many_slices, one_slice, rtol=1e-12)

    by_slice = bootstrap_ci(
        np.repeat(patient_y, n_slices),
        np.repeat(patient_probability, n_slices),
        np.arange(n_patients * n_slices),
        _mean_probability,
        **settings,
    )
    ratio = (many_slices[1] - many_slices[0]) / (by_slice[1] - by_slice[0])
    assert 5 < ratio < 10

    # The patient-level width is that of a mean of 20 draws: 2 * 1.96 * sd / sqrt(20).
    expected_width = 2 * 1.96 * patient_probability.std() / np.sqrt(n_patients)
    assert many_slices[1] - many_slices[0] == pytest.approx(expected_width, rel=0.2)


def test_bootstrap_ci_matches_scipy_without_undefined_resamples():
    y, probability, groups = _patients(15, seed=2)
    ours = bootstrap_ci(y, probability, groups, _mean_probability, random_state=5, n_resamples=200)
    _, codes = np.unique(groups, return_inverse=True)
    patient_probabilities = [probability[codes == code] for code in range(15)]

    def pooled_mean(positions):
        return float(np.mean(np.concatenate([patient_probabilities[int(k)] for k in positions])))

    reference = scipy.stats.bootstrap(
        (np.arange(15),),
        pooled_mean,
        n_resamples=200,
        vectorized=False,
        method="percentile",
        rng=np.random.default_rng(5),
    ).confidence_interval
    np.testing.assert_allclose(ours, (reference.low, reference.high), rtol=1e-12)


def test_bootstrap_ci_skips_undefined_resamples():
    # One positive patient of 12: about a third of the resamples have no positive
    # slice, so their AUC is NaN; the interval comes from the others, without warnings.
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(12), 5)
    y = (groups == 0).astype(int)
    probability = np.clip(0.3 * y + rng.uniform(0, 0.7, y.size), 0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        low, high = bootstrap_ci(y, probability, groups, _auc_or_nan, random_state=0)
    assert np.isfinite(low) and np.isfinite(high) and low <= high


def test_bootstrap_ci_returns_nan_when_undefined():
    y, probability, groups = _patients(10, seed=3)

    def mostly_undefined(y, probability):
        return float(np.mean(probability)) if len(y) > 10_000 else float("nan")

    assert np.isnan(bootstrap_ci(y, probability, groups, mostly_undefined, n_resamples=50)).all()
    one_patient = np.zeros(y.size, dtype=int)
    assert np.isnan(bootstrap_ci(y, probability, one_patient, _mean_probability)).all()


def test_bootstrap_ci_accepts_multilabel_rows():
    rng = np.random.default_rng(6)
    groups = np.repeat(np.arange(10), 4)
    labels = rng.integers(0, 2, (40, 6))
    probabilities = rng.uniform(0.05, 0.95, (40, 6))
    low, high = bootstrap_ci(
        labels, probabilities, groups, weighted_log_loss, n_resamples=100, random_state=0
    )
    assert low < weighted_log_loss(labels, probabilities) < high


@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        ({"groups": np.arange(5)}, ValueError, r"'groups' parameter of bootstrap_ci .* Got 5"),
        ({"y": [0, 1, 2, 1, 0, 1]}, ValueError, r"'y' parameter of bootstrap_ci .*labels 0 or 1"),
        ({"probability": [0.1, 0.2, 1.5, 0.3, 0.4, 0.5]}, ValueError, r"in \[0, 1\]. Got 1"),
        ({"probability": [0.1, np.nan, 0.5, 0.3, 0.4, 0.5]}, ValueError, r"e\.g\. nan"),
        ({"statistic": "auc"}, TypeError, r"'statistic' parameter of bootstrap_ci must be"),
        ({"n_resamples": 0}, ValueError, r"'n_resamples' parameter .* >= 1. Got 0"),
        ({"confidence_level": 95}, ValueError, r"'confidence_level' .* \(0, 1\). Got 95"),
        ({"random_state": "seed"}, ValueError, r"'random_state' parameter of bootstrap_ci"),
        ({"groups": [0, 0, None, 1, 1, 1]}, ValueError, r"patient id for every slice"),
    ],
)
def test_bootstrap_ci_rejects_bad_input(arguments, error, match):
    defaults = {
        "y": [0, 1, 0, 1, 0, 1],
        "probability": [0.1, 0.8, 0.3, 0.6, 0.2, 0.9],
        "groups": [0, 0, 1, 1, 2, 2],
        "statistic": _mean_probability,
    }
    with pytest.raises(error, match=match):
        bootstrap_ci(**{**defaults, **arguments})


# delong_test ----------------------------------------------------------------------------


def _two_models(n_samples, seed):
    """Labels and two correlated scores, model a better than model b."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n_samples)
    shared = rng.normal(0, 1, n_samples)
    score_a = scipy.special.expit(1.2 * y + shared + 0.6 * rng.normal(0, 1, n_samples))
    score_b = scipy.special.expit(0.8 * y + shared + 0.9 * rng.normal(0, 1, n_samples))
    return y, score_a, score_b


def _delong_by_definition(y, score_a, score_b):
    """The original O(m n) DeLong et al. (1988) statistic, from pairwise comparisons."""
    components = {}
    for name, score in (("a", score_a), ("b", score_b)):
        positive, negative = score[y == 1], score[y == 0]
        kernel = (positive[:, None] > negative[None, :]) + 0.5 * (
            positive[:, None] == negative[None, :]
        )
        components[name] = (kernel.mean(axis=1), kernel.mean(axis=0), kernel.mean())
    positive_components = np.stack([components["a"][0], components["b"][0]])
    negative_components = np.stack([components["a"][1], components["b"][1]])
    covariance = (
        np.cov(positive_components) / positive_components.shape[1]
        + np.cov(negative_components) / negative_components.shape[1]
    )
    variance = covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1]
    difference = components["a"][2] - components["b"][2]
    return components["a"][2], components["b"][2], difference / np.sqrt(variance)


def test_delong_aucs_match_scikit_learn_with_ties():
    y, score_a, score_b = _two_models(300, seed=0)
    score_a, score_b = np.round(score_a, 1), np.round(score_b, 1)  # many ties
    result = delong_test(y, score_a, score_b)
    assert result["auc_a"] == pytest.approx(roc_auc_score(y, score_a), abs=1e-12)
    assert result["auc_b"] == pytest.approx(roc_auc_score(y, score_b), abs=1e-12)
    assert result["difference"] == pytest.approx(result["auc_a"] - result["auc_b"])


@pytest.mark.parametrize("rounding", [None, 1])
def test_delong_matches_the_original_formula(rounding):
    y, score_a, score_b = _two_models(250, seed=1)
    if rounding is not None:
        score_a, score_b = np.round(score_a, rounding), np.round(score_b, rounding)
    result = delong_test(y, score_a, score_b)
    auc_a, auc_b, z = _delong_by_definition(y, score_a, score_b)
    assert result["auc_a"] == pytest.approx(auc_a, abs=1e-12)
    assert result["auc_b"] == pytest.approx(auc_b, abs=1e-12)
    assert result["z"] == pytest.approx(z, rel=1e-9)
    assert result["p_value"] == pytest.approx(2 * scipy.stats.norm.sf(abs(z)), rel=1e-9)


def test_delong_standard_error_agrees_with_a_paired_bootstrap():
    y, score_a, score_b = _two_models(400, seed=2)
    result = delong_test(y, score_a, score_b)
    delong_standard_error = result["difference"] / result["z"]

    # Paired bootstrap, stratified by class as DeLong's variance is (m and n fixed).
    rng = np.random.default_rng(0)
    positive, negative = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    n_resamples = 1000
    rows = np.concatenate(
        [
            rng.choice(positive, (n_resamples, positive.size)),
            rng.choice(negative, (n_resamples, negative.size)),
        ],
        axis=1,
    )

    def auc(score):
        ranks = scipy.stats.rankdata(score[rows], axis=1)[:, : positive.size]
        return (ranks.sum(axis=1) - positive.size * (positive.size + 1) / 2) / (
            positive.size * negative.size
        )

    bootstrap_standard_error = np.std(auc(score_a) - auc(score_b), ddof=1)
    assert delong_standard_error == pytest.approx(bootstrap_standard_error, rel=0.15)


def test_delong_identical_and_monotone_scores_give_p_one():
    y, score_a, _ = _two_models(100, seed=3)
    for score_b in (score_a, score_a**2):
        result = delong_test(y, score_a, score_b)
        assert result["difference"] == 0 and result["z"] == 0 and result["p_value"] == 1.0


def test_delong_clearly_different_models_and_symmetry():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 300)
    good = np.clip(0.5 * y + rng.uniform(0, 0.5, 300), 0, 1)
    chance = rng.uniform(0, 1, 300)
    forward, backward = delong_test(y, good, chance), delong_test(y, chance, good)
    assert forward["p_value"] < 1e-10 and forward["z"] > 0
    assert backward["z"] == pytest.approx(-forward["z"])
    assert backward["p_value"] == pytest.approx(forward["p_value"])


def test_delong_zero_variance_and_single_case_class():
    y = np.array([0, 0, 0, 1, 1, 1])
    perfect = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    result = delong_test(y, perfect, 1 - perfect)
    assert result["difference"] == 1.0 and result["z"] == np.inf and result["p_value"] == 0.0
    one_positive = delong_test([0, 0, 0, 1], [0.1, 0.2, 0.3, 0.9], [0.1, 0.5, 0.3, 0.4])
    assert one_positive["auc_a"] == 1.0 and np.isnan(one_positive["p_value"])


def test_delong_rejects_bad_input():
    with pytest.raises(ValueError, match=r"delong_test needs both classes .* only class 1"):
        delong_test([1, 1, 1], [0.2, 0.5, 0.9], [0.1, 0.4, 0.8])
    with pytest.raises(ValueError, match=r"'probability_b' parameter of delong_test .* Got 2"):
        delong_test([0, 1, 1], [0.2, 0.5, 0.9], [0.1, 0.4])
    with pytest.raises(ValueError, match=r"'probability_a' parameter of delong_test must be 1-D"):
        delong_test([0, 1], [[0.2, 0.5]], [0.1, 0.4])
    with pytest.raises(TypeError, match=r"'probability_a' parameter of delong_test must hold"):
        delong_test([0, 1], ["low", "high"], [0.1, 0.4])


# mcnemar_test ---------------------------------------------------------------------------


def test_mcnemar_counts_and_exact_p_value():
    # 8 cases only a is right, 2 only b, 5 both, 3 neither.
    y = np.ones(18, dtype=int)
    predicted_a = np.array([1] * 8 + [0] * 2 + [1] * 5 + [0] * 3)
    predicted_b = np.array([0] * 8 + [1] * 2 + [1] * 5 + [0] * 3)
    result = mcnemar_test(y, predicted_a, predicted_b)
    assert (result["n_a_only"], result["n_b_only"], result["statistic"]) == (8, 2, 2)
    # Two-sided exact binomial with n = 10: 2 * P(X <= 2) = 2 * (1 + 10 + 45) / 1024.
    assert result["p_value"] == pytest.approx(112 / 1024)
    # Labels 0 count the same way: flipping every value keeps which model is right.
    flipped = mcnemar_test(1 - y, 1 - predicted_a, (1 - predicted_b).astype(bool))
    assert flipped == result


def test_mcnemar_without_discordant_cases():
    result = mcnemar_test([0, 1, 1], [0, 1, 0], [0, 1, 0])
    assert result == {"n_a_only": 0, "n_b_only": 0, "statistic": 0, "p_value": 1.0}


def test_mcnemar_rejects_bad_input():
    with pytest.raises(ValueError, match=r"'predicted_a' parameter of mcnemar_test .* 0.7"):
        mcnemar_test([0, 1], [0.7, 1], [0, 1])
    with pytest.raises(ValueError, match=r"'predicted_b' parameter of mcnemar_test .* \(2\)"):
        mcnemar_test([0, 1], [0, 1], [0, 1, 1])


# calibration ----------------------------------------------------------------------------


def test_perfect_calibration_gives_zero():
    # 20 slices at each bin centre c, of which exactly 20 * c are positive.
    centres = np.arange(0.05, 1.0, 0.1)
    probability = np.repeat(centres, 20)
    y = np.concatenate([np.arange(20) < round(20 * centre) for centre in centres]).astype(int)
    assert expected_calibration_error(y, probability) == pytest.approx(0, abs=1e-12)
    assert len(reliability_table(y, probability)) == 10


def test_known_miscalibration():
    # 4 slices at 0.2 with 2 positive (gap 0.3), 6 slices at 0.8 all positive (gap 0.2):
    # ECE = 0.4 * 0.3 + 0.6 * 0.2 = 0.24.
    y = [1, 1, 0, 0] + [1] * 6
    probability = [0.2] * 4 + [0.8] * 6
    assert expected_calibration_error(y, probability) == pytest.approx(0.24)
    assert expected_calibration_error([1, 0, 1, 0], [0.9] * 4, n_bins=5) == pytest.approx(0.4)
    table = reliability_table(y, probability, n_bins=5)
    np.testing.assert_allclose(table["bin_lower"], [0.2, 0.8])
    np.testing.assert_allclose(table["bin_upper"], [0.4, 1.0])
    np.testing.assert_allclose(table["mean_probability"], [0.2, 0.8])
    np.testing.assert_allclose(table["fraction_positive"], [0.5, 1.0])
    assert table["count"].tolist() == [4, 6]


def test_bin_edges_close_on_the_left_and_one_is_in_the_last_bin():
    table = reliability_table([0, 1, 1, 0], [0.0, 0.5, 1.0, 0.49], n_bins=2)
    assert table["count"].tolist() == [2, 2]
    assert table["fraction_positive"].tolist() == [0.0, 1.0]


def test_reliability_table_matches_scikit_learn():
    rng = np.random.default_rng(5)
    probability = rng.uniform(0, 1, 500)
    y = (rng.uniform(0, 1, 500) < probability**1.5).astype(int)
    table = reliability_table(y, probability, n_bins=8)
    fraction_positive, mean_probability = calibration_curve(y, probability, n_bins=8)
    np.testing.assert_allclose(table["fraction_positive"], fraction_positive)
    np.testing.assert_allclose(table["mean_probability"], mean_probability)
    assert table["count"].sum() == 500


def test_calibration_rejects_bad_input():
    with pytest.raises(ValueError, match=r"'n_bins' parameter of reliability_table .* Got 0"):
        reliability_table([0, 1], [0.1, 0.9], n_bins=0)
    with pytest.raises(TypeError, match=r"'n_bins' parameter of expected_calibration_error"):
        expected_calibration_error([0, 1], [0.1, 0.9], n_bins=2.5)
    with pytest.raises(ValueError, match=r"'probability' parameter of expected_calibration"):
        expected_calibration_error([0, 1], [-0.1, 0.9])
    with pytest.raises(ValueError, match=r"'y' parameter of reliability_table must not be empty"):
        reliability_table([], [])


# weighted_log_loss ----------------------------------------------------------------------


def test_weighted_log_loss_matches_scikit_learn_per_column():
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 2, (200, 6))
    probabilities = rng.uniform(0.01, 0.99, (200, 6))
    weights = np.array([2, 1, 1, 1, 1, 1])
    by_column = [log_loss(labels[:, column], probabilities[:, column]) for column in range(6)]
    expected = np.dot(weights, by_column) / weights.sum()
    assert weighted_log_loss(labels, probabilities) == pytest.approx(expected, rel=1e-12)
    custom = weighted_log_loss(labels[:, :2], probabilities[:, :2], weights=(1, 3))
    assert custom == pytest.approx((by_column[0] + 3 * by_column[1]) / 4, rel=1e-12)


def test_weighted_log_loss_clips_certain_mistakes():
    labels = np.array([[1, 0, 0, 0, 0, 0]])
    probabilities = np.array([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    assert weighted_log_loss(labels, probabilities) == pytest.approx(-2 * np.log(1e-15) / 7)


def test_weighted_log_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"one column per weight \(6.* Got 5 columns"):
        weighted_log_loss(np.zeros((3, 5)), np.full((3, 5), 0.5))
    with pytest.raises(ValueError, match=r"same shape. Got \(3, 6\) and \(2, 6\)"):
        weighted_log_loss(np.zeros((3, 6)), np.full((2, 6), 0.5))
    with pytest.raises(ValueError, match=r"'labels' parameter of weighted_log_loss must be 2-D"):
        weighted_log_loss(np.zeros(6), np.full(6, 0.5))
    with pytest.raises(ValueError, match=r"'weights' parameter .* non-negative"):
        weighted_log_loss(np.zeros((3, 2)), np.full((3, 2), 0.5), weights=(1, -1))
