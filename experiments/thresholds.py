"""The one place a run's decision thresholds are chosen, at slice and at scan level.

Every family hands the runner its held-out training-part predictions (out-of-fold
predictions over the training patients where the family can afford them, its
validation patients otherwise); the thresholds come from those rows only, never from
the test patients.

On the tens of patients ichkit's users have, the held-out part can be too small to
carry a threshold: two validation patients give two scans, and Youden's J on two scans
is 0 or 1 by chance. So a threshold is chosen by Youden's J only when the held-out part
has at least ``MIN_PER_CLASS`` positives and negatives and ranks them better than
chance. Otherwise a stated fallback is used and recorded with the reason:

- slice level: the held-out probabilities' quantile that calls the training part's
  prevalence positive (a model that ranks well then still calls some slices positive);
- scan level: the slice threshold, i.e. a scan is called positive when any of its
  slices is (``scan_predictions`` takes a scan's largest slice probability).

A threshold of exactly 0 or 1 (which calls everything or nothing positive) is never
kept: it is replaced by the fallback, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ichkit.classical.tuning import choose_threshold
from ichkit.experiments.metrics import has_multislice_scans

__all__ = [
    "FALLBACK_RULES",
    "MIN_PER_CLASS",
    "Threshold",
    "fallback_notes",
    "scan_threshold",
    "slice_threshold",
]

#: Held-out positives and negatives (slices, or scans) a Youden threshold needs.
MIN_PER_CLASS = 5
#: The rules that stand in for Youden's J where the held-out part cannot carry it.
FALLBACK_RULES = ("prevalence", "slice", "default")


@dataclass(frozen=True)
class Threshold:
    """A chosen threshold and how it was chosen.

    ``rule`` is ``"youden"`` (Youden's J on held-out data), ``"prevalence"`` (the
    held-out quantile that calls the training prevalence positive), ``"slice"`` (a
    scan threshold equal to the slice threshold) or ``"default"`` (0.5: nothing
    better was possible). ``reason`` says why a fallback was used ("" for Youden).
    """

    value: float
    rule: str
    n_positive: int
    n_negative: int
    reason: str = ""

    @property
    def is_fallback(self) -> bool:
        return self.rule in FALLBACK_RULES


def slice_threshold(y, probability, *, prevalence: float) -> Threshold:
    """The slice threshold from held-out labels ``y`` and probabilities.

    ``prevalence`` is the fraction of positive slices in the training part, used by
    the fallback.
    """
    y, probability = np.asarray(y, dtype=int), np.asarray(probability, dtype=float)
    youden = _youden(y, probability, "slices")
    if not youden.is_fallback:
        return youden
    n_positive, n_negative = youden.n_positive, youden.n_negative
    if probability.size and 0 < prevalence < 1:
        value = float(np.quantile(probability, 1 - prevalence))
        if 0 < value < 1:
            reason = (
                f"{youden.reason}; the threshold calls the training prevalence "
                f"({prevalence:.0%}) of the held-out slices positive"
            )
            return Threshold(value, "prevalence", n_positive, n_negative, reason)
    reason = f"{youden.reason}; no prevalence quantile strictly between 0 and 1: 0.5 used"
    return Threshold(0.5, "default", n_positive, n_negative, reason)


def scan_threshold(y, probability, *, slice_value: float) -> Threshold:
    """The scan threshold from held-out scans' labels and largest slice probabilities;
    the fallback is the slice threshold ``slice_value``."""
    y, probability = np.asarray(y, dtype=int), np.asarray(probability, dtype=float)
    youden = _youden(y, probability, "scans")
    if not youden.is_fallback:
        return youden
    reason = f"{youden.reason}; a scan is called positive when any slice is"
    return Threshold(slice_value, "slice", youden.n_positive, youden.n_negative, reason)


def _youden(y: np.ndarray, probability: np.ndarray, unit: str) -> Threshold:
    """Youden's J where the rows can carry it; else a ``"default"`` Threshold whose
    ``reason`` says why not."""
    n_positive, n_negative = int((y == 1).sum()), int((y == 0).sum())
    if min(n_positive, n_negative) < MIN_PER_CLASS:
        reason = (
            f"the held-out part has {n_positive} positive and {n_negative} negative {unit}, "
            f"and a threshold needs {MIN_PER_CLASS} of each"
        )
        return Threshold(0.5, "default", n_positive, n_negative, reason)
    auc = roc_auc_score(y, probability)
    if auc <= 0.5:
        reason = f"the held-out {unit} are not separated (AUC {auc:.2f})"
        return Threshold(0.5, "default", n_positive, n_negative, reason)
    value = choose_threshold(y, probability)
    if not 0 < value < 1:
        reason = f"Youden's J on the held-out {unit} gives {value:g}, which decides nothing"
        return Threshold(0.5, "default", n_positive, n_negative, reason)
    return Threshold(value, "youden", n_positive, n_negative)


def fallback_notes(predictions: pd.DataFrame) -> list[str]:
    """One line per model and level whose threshold came from a fallback in some fold:
    the folds, and each distinct reason once (from the predictions' ``*_rule`` and
    ``*_reason`` columns, which the runner writes)."""
    levels = [("slice", "threshold")]
    if has_multislice_scans(predictions):
        levels.append(("scan", "scan_threshold"))
    lines = []
    for level, column in levels:
        if f"{column}_rule" not in predictions:
            continue
        per_fold = predictions.groupby(["model", "fold"], sort=False)[
            [f"{column}_rule", f"{column}_reason"]
        ].first()
        for model, folds in per_fold.groupby(level=0, sort=False):
            fallback = folds[folds[f"{column}_rule"].isin(FALLBACK_RULES)]
            if fallback.empty:
                continue
            by_reason = fallback.groupby(f"{column}_reason", sort=False)
            reasons = "; ".join(
                f"fold{'s' if len(rows) > 1 else ''} "
                f"{', '.join(str(fold) for _, fold in rows.index)}: {reason}"
                for reason, rows in by_reason
            )
            lines.append(
                f"{model}, {level} threshold: a fallback, not Youden's J, in "
                f"{len(fallback)} of {len(folds)} folds ({reasons})"
            )
    return lines
