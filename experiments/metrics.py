"""Classification metrics at slice and scan level, from scikit-learn's implementations."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, confusion_matrix, log_loss, roc_auc_score

__all__ = ["binary_metrics", "has_multislice_scans", "scan_predictions"]


def binary_metrics(y, probability, threshold: float) -> dict[str, float]:
    """Accuracy, sensitivity, specificity, precision, F1, ROC-AUC, PR-AUC, log loss, counts.

    AUCs are NaN when ``y`` holds one class (a fold without hemorrhage).
    """
    y = np.asarray(y).astype(int)
    probability = np.clip(np.asarray(probability, dtype=float), 0.0, 1.0)
    predicted = (probability >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(y, predicted, labels=[0, 1]).ravel()
    both = np.unique(y).size == 2

    def ratio(numerator, denominator):
        return float(numerator / denominator) if denominator else float("nan")

    sensitivity, precision = ratio(tp, tp + fn), ratio(tp, tp + fp)
    return {
        "auc": float(roc_auc_score(y, probability)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, probability)) if both else float("nan"),
        "log_loss": float(log_loss(y, probability, labels=[0, 1])),
        "accuracy": ratio(tp + tn, len(y)),
        "sensitivity": sensitivity,
        "specificity": ratio(tn, tn + fp),
        "precision": precision,
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "tp": int(tp),
        "tn": int(tn),
        "fp": int(fp),
        "fn": int(fn),
        "n": len(y),
        "n_positive": int(y.sum()),
    }


def has_multislice_scans(predictions: pd.DataFrame) -> bool:
    """Whether some scan (of one model and fold) has several slices: a scan level exists."""
    keys = [column for column in ("target", "model", "fold") if column in predictions]
    return bool(predictions.groupby([*keys, "scan_id"]).size().max() > 1)


def scan_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row per scan (per model and fold, where given): positive if any slice is,
    with the probability of its most likely slice, and the scan threshold
    (``scan_threshold`` where the predictions carry one, else ``threshold``)."""
    keys = [column for column in ("target", "model", "fold") if column in predictions]
    keys.append("scan_id")
    aggregations = {"label": ("label", "max"), "probability": ("probability", "max")}
    if "patient_id" in predictions:
        aggregations["patient_id"] = ("patient_id", "first")
    for column in ("scan_threshold", "threshold"):
        if column in predictions:
            aggregations["threshold"] = (column, "first")
            break
    return predictions.groupby(keys, sort=False).agg(**aggregations).reset_index()
