"""What a run predicts: any hemorrhage, and the five subtypes where the data label them.

A config's ``targets`` lists them: ``[any]`` by default, ``any`` always first. Any
hemorrhage is the run's primary target: its predictions live at the top of the run
folder, and the verdicts, the main tables and the model card are about it; each
subtype has the same files under ``targets/<subtype>/`` (``RunFolder.for_target``).
Folds are made once, on the any-hemorrhage label, and shared by every target, so the
targets' tables compare the same test patients.

This module is the one place that decides which column holds a target's labels,
whether a data set can serve a target, and the RSNA 2019 weights of its log loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ichkit.scans.dataset import SUBTYPES
from ichkit.scans.validation import unknown_name_message

__all__ = [
    "RSNA_WEIGHTS",
    "TARGETS",
    "check_targets",
    "label_column",
    "run_targets",
    "target_notes",
    "target_rows",
    "weighted_log_loss_of",
]

#: Every target a run can predict: any hemorrhage, then the subtypes.
TARGETS = ("any", *SUBTYPES)
#: The RSNA 2019 challenge's log-loss weights: any hemorrhage 2, each subtype 1.
RSNA_WEIGHTS = {"any": 2.0, **dict.fromkeys(SUBTYPES, 1.0)}


def label_column(target: str) -> str:
    """The data set table's column of ``target``'s labels (``label`` for any)."""
    return "label" if target == "any" else target


def run_targets(config: dict) -> list[str]:
    """A run's targets, in the order of its CNN outputs; ``[any]`` for a run made
    before targets existed."""
    return list(config.get("targets", ["any"]))


def check_targets(targets) -> list[str]:
    """A config's ``targets``, checked: a non-empty list of known names, each once."""
    if isinstance(targets, str) or not isinstance(targets, Sequence) or not targets:
        raise ValueError(
            f"'targets' must be a non-empty list, e.g. [any] or [any, subdural]. Got {targets!r}."
        )
    for target in targets:
        if target not in TARGETS:
            raise ValueError(unknown_name_message("target", target, TARGETS))
    if len(set(targets)) != len(targets):
        raise ValueError(f"'targets' names a target twice: {list(targets)}.")
    if targets[0] != "any":
        raise ValueError(
            f"'targets' must start with 'any' (the run's verdict, folds and main tables are "
            f"about any hemorrhage), then the subtypes. Got {list(targets)}."
        )
    return list(targets)


def target_notes(table: pd.DataFrame, targets: Sequence[str], n_folds: int) -> dict[str, str]:
    """Refuse (``ValueError``) a target the labelled slices of ``table`` cannot serve;
    return a note for each target with too few positive patients for ``n_folds`` folds.

    Refused, before any training: a subtype the data set has no column for, or whose
    column is missing on some labelled slice (the data set does not label it), and a
    target without a positive or without a negative slice. Kept and noted: a target
    with fewer positive patients than folds, whose AUC is undefined in the folds whose
    test patients have none.
    """
    labelled = table[table["label"].notna()]
    notes = {}
    for target in targets:
        column = label_column(target)
        if column not in labelled or labelled[column].isna().any():
            raise ValueError(
                f"The data set does not label target '{target}' on every labelled slice "
                f"(it labels: {', '.join(['any', *_labelled_subtypes(labelled)])}); "
                "remove it from 'targets'."
            )
        labels = labelled[column].astype(int)
        if labels.nunique() < 2:
            raise ValueError(
                f"Target '{target}' has one class only in this data set ({len(labels)} "
                f"slices, {int(labels.sum())} positive); remove it from 'targets'."
            )
        positive_patients = labelled.loc[labels == 1, "patient_id"].nunique()
        if positive_patients < n_folds:
            notes[f"target {target}"] = (
                f"{positive_patients} positive patient(s) for {n_folds} fold(s): its AUC is "
                "undefined in the folds whose test patients have none, and its figures "
                "cannot carry a conclusion"
            )
    return notes


def target_rows(rows: pd.DataFrame, target: str) -> pd.DataFrame:
    """``rows`` with ``target``'s labels in the ``label`` column (what every family and
    every metric reads), as integers."""
    if target == "any":
        return rows
    return rows.assign(label=rows[label_column(target)].astype(int))


def _labelled_subtypes(table: pd.DataFrame) -> list[str]:
    return [name for name in SUBTYPES if name in table and table[name].notna().all()]


def weighted_log_loss_of(predictions: pd.DataFrame) -> float:
    """The RSNA 2019 weighted log loss of one model's pooled slice predictions, over the
    slices every one of the six targets predicted; NaN unless all six are present."""
    from ichkit.experiments.statistics import weighted_log_loss

    if set(predictions["target"]) < set(TARGETS):
        return float("nan")
    wide = predictions.pivot_table(
        index="row", columns="target", values=["label", "probability"], aggfunc="first"
    ).dropna()
    if wide.empty:
        return float("nan")
    labels = wide["label"][list(TARGETS)].to_numpy(dtype=float)
    probabilities = wide["probability"][list(TARGETS)].to_numpy(dtype=float)
    weights = [RSNA_WEIGHTS[target] for target in TARGETS]
    return weighted_log_loss(labels.astype(int), np.clip(probabilities, 0, 1), weights=weights)
