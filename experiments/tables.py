"""The comparison's tables: metrics per model, level and fold; a summary with 95%
bootstrap confidence intervals over patients, calibration, and paired tests
against the best model."""

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

__all__ = ["METRIC_COLUMNS", "compute_metrics", "level_predictions", "summarise"]

METRIC_COLUMNS = [
    "model", "level", "fold", "auc", "accuracy", "sensitivity", "specificity", "precision",
    "f1", "tp", "tn", "fp", "fn", "ms_per_slice", "pr_auc", "log_loss", "ece", "threshold",
    "n", "n_positive",
]  # fmt: skip
_SUMMARY_METRICS = ("auc", "accuracy", "sensitivity", "specificity", "precision", "f1")


def level_predictions(predictions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Slice rows, and scan rows (``scan_predictions``) where some scan has several
    slices; each with a ``threshold`` column for its level."""
    levels = {"slice": predictions}
    if has_multislice_scans(predictions):
        levels["scan"] = scan_predictions(predictions)
    return levels


def compute_metrics(predictions: pd.DataFrame) -> pd.DataFrame:
    """Metrics per model, level and fold, each level at its own threshold (chosen on
    held-out training-part data, never on the test rows)."""
    records = []
    fold_ms = predictions.groupby(["model", "fold"])["ms_per_slice"].first()
    for level, rows in level_predictions(predictions).items():
        for (name, fold), part in rows.groupby(["model", "fold"], sort=False):
            threshold = float(part["threshold"].iloc[0])
            values = binary_metrics(part["label"], part["probability"], threshold)
            ece = expected_calibration_error(part["label"].astype(int), part["probability"])
            records.append({"model": name, "level": level, "fold": fold, **values, "ece": ece,
                            "threshold": threshold,
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
    """Per model and level: mean and standard deviation over folds; the pooled
    out-of-fold predictions' AUC, ECE and 95% confidence intervals (bootstrap over
    patients, each row at its fold's threshold); and p-values of DeLong's test (AUC)
    and McNemar's test (accuracy) against the model with the best mean AUC, on the
    same rows. Each model's row is one joblib task (``n_jobs`` workers)."""
    from joblib import Parallel, delayed

    tasks = []
    for level, pooled in level_predictions(predictions).items():
        level_metrics = metrics[metrics["level"] == level]
        mean_auc = level_metrics.groupby("model", sort=False)["auc"].mean()
        best = mean_auc.idxmax() if mean_auc.notna().any() else None
        key = ["fold", "row"] if level == "slice" else ["fold", "scan_id"]
        reference = pooled[pooled["model"] == best]
        for name, part in level_metrics.groupby("model", sort=False):
            own = pooled[pooled["model"] == name]
            tasks.append(delayed(_summary_row)(
                name, level, part, own, reference, key, name == best, n_resamples, random_state
            ))  # fmt: skip
    return pd.DataFrame(Parallel(n_jobs=n_jobs)(tasks))


def _summary_row(name, level, part, own, reference, key, is_best, n_resamples, random_state):
    row = {"model": name, "level": level, "n_folds": len(part)}
    row.update(_fold_spread(part))
    row.update(_pooled(own, n_resamples, random_state))
    row.update(_paired_tests(own, reference, key, is_best=is_best))
    row["ms_per_slice"] = part["ms_per_slice"].mean()
    return row


def _fold_spread(part: pd.DataFrame) -> dict[str, float]:
    values = {}
    for column in _SUMMARY_METRICS:
        values[f"{column}_mean"] = part[column].mean()
        values[f"{column}_std"] = part[column].std(ddof=1) if len(part) > 1 else float("nan")
    return values


def _pooled(rows: pd.DataFrame, n_resamples: int, random_state) -> dict[str, float]:
    """Pooled AUC and ECE, and a bootstrap CI per metric over the rows' patients."""
    y = rows["label"].astype(int).to_numpy()
    scores = rows[["probability", "threshold"]].to_numpy(dtype=float)  # a row's own threshold
    values = {
        "auc_pooled": binary_metrics(y, scores[:, 0], 0.5)["auc"],
        "ece": expected_calibration_error(y, scores[:, 0]),
    }
    for column in _SUMMARY_METRICS:

        def statistic(labels, columns, column=column):
            predicted = (columns[:, 0] >= columns[:, 1]).astype(int)
            return _metric(column, labels, columns[:, 0], predicted)

        low, high = bootstrap_ci(y, scores, rows["patient_id"].to_numpy(), statistic,
                                 n_resamples=n_resamples, random_state=random_state)  # fmt: skip
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
    """DeLong and McNemar p-values against the best model, on the rows both predicted."""
    if is_best or reference.empty:
        return {"delong_p": float("nan"), "mcnemar_p": float("nan")}
    columns = [*key, "probability", "threshold"]
    both = own[[*columns, "label"]].merge(reference[columns], on=key, suffixes=("", "_best"))
    y = both["label"].astype(int).to_numpy()
    if both.empty or np.unique(y).size < 2:
        return {"delong_p": float("nan"), "mcnemar_p": float("nan")}
    delong = delong_test(y, both["probability"], both["probability_best"])
    predicted = (both["probability"] >= both["threshold"]).astype(int)
    predicted_best = (both["probability_best"] >= both["threshold_best"]).astype(int)
    mcnemar = mcnemar_test(y, predicted, predicted_best)
    return {"delong_p": delong["p_value"], "mcnemar_p": mcnemar["p_value"]}
