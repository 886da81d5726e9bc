"""The comparison's tables: metrics per model, level and fold; a summary with 95%
bootstrap confidence intervals over patients, calibration, and paired tests
against the best model; and the test part's sizes.

One estimator per reported value: the summary's ``<metric>_pooled`` is the metric of
the pooled out-of-fold test predictions (each row at its own fold's threshold), and
``<metric>_ci_low``/``_ci_high`` is the bootstrap-over-patients interval of that same
statistic, so the interval always holds its point. The fold mean and standard
deviation (``<metric>_mean``, ``<metric>_std``) are kept beside them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ichkit.experiments.metrics import binary_metrics, has_multislice_scans, scan_predictions
from ichkit.experiments.statistics import (
    bootstrap_ci,
    delong_test,
    expected_calibration_error,
    mcnemar_test,
)

__all__ = [
    "METRIC_COLUMNS",
    "MIN_FOR_CONCLUSION",
    "compute_metrics",
    "level_predictions",
    "summarise",
    "evaluation_sizes",
    "with_target",
]

METRIC_COLUMNS = [
    "model", "target", "level", "fold", "auc", "accuracy", "sensitivity", "specificity",
    "precision", "f1", "tp", "tn", "fp", "fn", "ms_per_slice", "pr_auc", "log_loss", "ece",
    "threshold", "n", "n_positive",
]  # fmt: skip
_SUMMARY_METRICS = ("auc", "accuracy", "sensitivity", "specificity", "precision", "f1")
#: Positives and negatives (slices or scans) below which a value cannot carry a
#: conclusion: its cell is marked and paired tests are not computed.
MIN_FOR_CONCLUSION = 10


def level_predictions(predictions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Slice rows, and scan rows (``scan_predictions``) where some scan has several
    slices; each with a ``threshold`` column for its level."""
    levels = {"slice": predictions}
    if has_multislice_scans(predictions):
        levels["scan"] = scan_predictions(predictions)
    return levels


def with_target(predictions: pd.DataFrame) -> pd.DataFrame:
    """``predictions`` with a ``target`` column (``any`` where they have none: a run of
    one target, or an external evaluation)."""
    return predictions if "target" in predictions else predictions.assign(target="any")


def compute_metrics(predictions: pd.DataFrame) -> pd.DataFrame:
    """Metrics per model, target, level and fold, each level at its own threshold (chosen
    on held-out training-part data, never on the test rows)."""
    records = []
    predictions = with_target(predictions)
    fold_ms = predictions.groupby(["model", "fold"])["ms_per_slice"].first()
    for target, of_target in predictions.groupby("target", sort=False):
        for level, rows in level_predictions(of_target).items():
            for (name, fold), part in rows.groupby(["model", "fold"], sort=False):
                threshold = float(part["threshold"].iloc[0])
                values = binary_metrics(part["label"], part["probability"], threshold)
                ece = expected_calibration_error(part["label"].astype(int), part["probability"])
                records.append({"model": name, "target": target, "level": level, "fold": fold,
                                **values, "ece": ece, "threshold": threshold,
                                "ms_per_slice": float(fold_ms[name, fold])})  # fmt: skip
    return pd.DataFrame(records)[METRIC_COLUMNS]


def summarise(
    metrics: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    n_resamples: int = 1000,
    random_state: int | None = 0,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Per model and level: the pooled out-of-fold predictions' metrics
    (``<metric>_pooled``, each row at its fold's threshold) with 95% confidence
    intervals of the same statistic (bootstrap over patients); mean and standard
    deviation over folds; the pooled rows' sizes; and p-values of DeLong's test (AUC)
    and McNemar's test (accuracy) against the model with the best pooled AUC, on the
    same rows, or in ``paired_note`` the reason they were not computed. Each model's
    row is one joblib task (``n_jobs`` workers).

    With several targets, each target's rows are summarised on their own (a ``target``
    column says which; paired tests stay within a target), and where all six RSNA 2019
    targets are predicted, ``weighted_log_loss`` is each model's RSNA weighted log loss
    over its pooled slice predictions of the six (the same value on each of its rows)."""
    from joblib import Parallel, delayed

    from ichkit.experiments.targets import weighted_log_loss_of

    tasks = []
    predictions, metrics = with_target(predictions), with_target(metrics)
    for target, of_target in predictions.groupby("target", sort=False):
        for level, pooled in level_predictions(of_target).items():
            level_metrics = metrics[(metrics["level"] == level) & (metrics["target"] == target)]
            best = _best_pooled_auc(pooled)
            key = ["fold", "row"] if level == "slice" else ["fold", "scan_id"]
            reference = pooled[pooled["model"] == best]
            for name, part in level_metrics.groupby("model", sort=False):
                own = pooled[pooled["model"] == name]
                tasks.append(delayed(_summary_row)(
                    name, target, level, part, own, reference, key, name == best,
                    n_resamples, random_state,
                ))  # fmt: skip
    summary = pd.DataFrame(Parallel(n_jobs=n_jobs)(tasks))
    if predictions["target"].nunique() > 1:
        loss = {name: weighted_log_loss_of(rows) for name, rows in predictions.groupby("model")}
        if any(np.isfinite(value) for value in loss.values()):
            summary["weighted_log_loss"] = summary["model"].map(loss)
    return summary


def _summary_row(name, target, level, part, own, reference, key, is_best, n_resamples,
                 random_state):  # fmt: skip
    labels = own["label"].astype(int)
    row = {"model": name, "target": target, "level": level, "n_folds": len(part),
           "n_patients": own["patient_id"].nunique(), "n": len(own),
           "n_positive": int(labels.sum()), "n_negative": int((labels == 0).sum())}  # fmt: skip
    row.update(_fold_spread(part))
    row.update(_pooled(own, n_resamples, random_state))
    row.update(_paired_tests(own, reference, key, is_best=is_best))
    row["ms_per_slice"] = part["ms_per_slice"].mean()
    return row


def _best_pooled_auc(pooled: pd.DataFrame) -> str | None:
    """The model with the best AUC of its pooled rows (None when none is defined)."""
    auc = {}
    for name, rows in pooled.groupby("model", sort=False):
        y = rows["label"].astype(int).to_numpy()
        if np.unique(y).size == 2:
            auc[name] = _metric("auc", y, rows["probability"].to_numpy(), y)
    return max(auc, key=auc.get) if auc else None


def _fold_spread(part: pd.DataFrame) -> dict[str, float]:
    values = {}
    for column in _SUMMARY_METRICS:
        values[f"{column}_mean"] = part[column].mean()
        values[f"{column}_std"] = part[column].std(ddof=1) if len(part) > 1 else float("nan")
    return values


def _pooled(rows: pd.DataFrame, n_resamples: int, random_state) -> dict[str, float]:
    """Each metric of the pooled rows (at each row's own threshold), its bootstrap CI
    over the rows' patients, and the pooled ECE.

    A percentile interval can, on a skewed bootstrap distribution of a few patients,
    fall just beside the value it is about; it is then widened to reach the value, so
    that a table cell never shows a point outside its own interval.
    """
    y = rows["label"].astype(int).to_numpy()
    scores = rows[["probability", "threshold"]].to_numpy(dtype=float)  # a row's own threshold
    values = {"ece": expected_calibration_error(y, scores[:, 0])}
    for column in _SUMMARY_METRICS:

        def statistic(labels, columns, column=column):
            predicted = (columns[:, 0] >= columns[:, 1]).astype(int)
            return _metric(column, labels, columns[:, 0], predicted)

        point = statistic(y, scores)
        low, high = bootstrap_ci(y, scores, rows["patient_id"].to_numpy(), statistic,
                                 n_resamples=n_resamples, random_state=random_state)  # fmt: skip
        if not np.isnan(point) and not (np.isnan(low) or np.isnan(high)):
            low, high = min(low, point), max(high, point)
        values[f"{column}_pooled"] = point
        values[f"{column}_ci_low"], values[f"{column}_ci_high"] = low, high
    return values


def _metric(name: str, y: np.ndarray, probability: np.ndarray, predicted: np.ndarray) -> float:
    """One metric, fast enough for thousands of resamples; NaN where undefined."""
    if name == "auc":
        from sklearn.metrics import roc_auc_score

        return float(roc_auc_score(y, probability)) if np.unique(y).size == 2 else float("nan")
    tp = np.sum((predicted == 1) & (y == 1))
    tn = np.sum((predicted == 0) & (y == 0))
    fp, fn = np.sum((predicted == 1) & (y == 0)), np.sum((predicted == 0) & (y == 1))
    numerator, denominator = {
        "accuracy": (tp + tn, len(y)),
        "sensitivity": (tp, tp + fn),
        "specificity": (tn, tn + fp),
        "precision": (tp, tp + fp),
        "f1": (2 * tp, 2 * tp + fp + fn),
    }[name]
    return float(numerator / denominator) if denominator else float("nan")


def _paired_tests(own: pd.DataFrame, reference: pd.DataFrame, key: list[str], *,
                  is_best: bool) -> dict:  # fmt: skip
    """DeLong and McNemar p-values against the best model, on the rows both predicted;
    where they are not computed, ``paired_note`` says why."""
    missing = {"delong_p": float("nan"), "mcnemar_p": float("nan")}
    if is_best:
        return {**missing, "paired_note": "reference"}
    if reference.empty:
        return {**missing, "paired_note": "no reference"}
    columns = [*key, "probability", "threshold"]
    both = own[[*columns, "label"]].merge(reference[columns], on=key, suffixes=("", "_best"))
    y = both["label"].astype(int).to_numpy()
    n_positive, n_negative = int((y == 1).sum()), int((y == 0).sum())
    if min(n_positive, n_negative) < MIN_FOR_CONCLUSION:
        return {**missing, "paired_note": f"too few ({n_positive}+/{n_negative}-)"}
    delong = delong_test(y, both["probability"], both["probability_best"])
    predicted = (both["probability"] >= both["threshold"]).astype(int)
    predicted_best = (both["probability_best"] >= both["threshold_best"]).astype(int)
    mcnemar = mcnemar_test(y, predicted, predicted_best)
    return {"delong_p": delong["p_value"], "mcnemar_p": mcnemar["p_value"], "paired_note": ""}


def evaluation_sizes(predictions: pd.DataFrame) -> pd.DataFrame:
    """The test part's sizes per level and fold, and over all folds (``fold`` "all").

    Columns ``level, fold, n_patients, n_scans, n_slices, n_positive, n_negative``;
    positives and negatives are slices at slice level and scans at scan level. Every
    model predicts the same test rows, so the first model's rows are counted.
    """
    first = predictions[predictions["model"] == predictions["model"].iloc[0]]
    records = []
    for level, rows in level_predictions(first).items():
        groups = [*rows.groupby("fold", sort=True), ("all", rows)]
        for fold, part in groups:
            part_slices = first if fold == "all" else first[first["fold"] == fold]
            labels = part["label"].astype(int)
            records.append({
                "level": level, "fold": fold,
                "n_patients": part_slices["patient_id"].nunique(),
                "n_scans": part_slices["scan_id"].nunique(), "n_slices": len(part_slices),
                "n_positive": int(labels.sum()), "n_negative": int((labels == 0).sum()),
            })  # fmt: skip
    return pd.DataFrame(records)
