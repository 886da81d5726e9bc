"""``model_card.md``: what a run's models are for, what they were trained and tested on,
where they operate, and what this run itself found wrong with its data or its sizes.

Written by every ``ichkit run`` and ``ichkit evaluate``, from the run's own tables, so
the card cannot disagree with the report. The layout follows the model cards of
Mitchell et al. (2019, "Model Cards for Model Reporting", FAT* '19): intended use,
data, evaluation, operating points, safeguards, limitations.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from ichkit.experiments.registry import family_of
from ichkit.experiments.tables import MIN_FOR_CONCLUSION

__all__ = ["model_card_markdown"]

_DISCLAIMER = (
    "Research software, not a medical device: not validated for clinical use. These "
    "models must not be used to diagnose, triage or treat anyone."
)


def model_card_markdown(
    *,
    title: str,
    config: Mapping,
    inspection: Mapping | None,
    summary: pd.DataFrame,
    predictions: pd.DataFrame,
    sizes: pd.DataFrame,
    warnings: Iterable[str] = (),
    notes: Iterable[str] = (),
) -> str:
    """The model card of a run, as Markdown.

    Parameters
    ----------
    title : str
        The run's title (the report's).
    config : mapping
        The run's resolved config (with ``data``; ``external_from`` for an external
        evaluation).
    inspection : mapping or None
        ``ichkit.scans.inspect`` of the data set (None: not known).
    summary, predictions : pandas.DataFrame
        The run's ``summary.csv`` and its test predictions.
    sizes : pandas.DataFrame
        ``ichkit.experiments.tables.evaluation_sizes`` of the predictions.
    warnings, notes : iterable of str
        The data's warnings and the run's notes (models left out, threshold fallbacks).
    """
    from ichkit.experiments.report import sizes_sentence

    external = config.get("external_from")
    lines = [f"# Model card: {title}", "", f"> **{_DISCLAIMER}**", ""]
    lines += ["## Intended use", ""]
    lines += [
        "Research: comparing methods that detect intracranial hemorrhage (any subtype) on "
        "head CT slices and scans, on the data described below. Out of scope: any "
        "clinical use, and data unlike this run's (other scanners, reconstructions, "
        "exported windows or populations) without an external validation "
        "(`ichkit evaluate`).",
        "",
        "## Data",
        "",
    ]
    lines += _data_lines(config, inspection)
    lines += ["", "## Evaluation", ""]
    lines.append(f"- Design: {_design(config)}.")
    for level in pd.unique(sizes["level"]):
        lines.append(f"- {level.capitalize()} level. {sizes_sentence(sizes, level)}")
    lines += ["", "## Models and their operating points", ""]
    lines += _operating_points(summary, predictions)
    lines += ["", "## Leakage safeguards", ""]
    lines += _safeguards(config, inspection)
    lines += ["", "## Limitations found in this run", ""]
    lines += _limitations(sizes, list(warnings), list(notes))
    if external:
        lines += ["", f"External evaluation: the models of `{external}`, not refitted."]
    return "\n".join(lines) + "\n"


def _data_lines(config: Mapping, inspection: Mapping | None) -> list[str]:
    lines = [f"- Source: `{config.get('data', 'unknown')}`"]
    if inspection is None:
        return lines
    n_positive, n_negative = inspection["n_positive"], inspection["n_negative"]
    share = n_positive / max(n_positive + n_negative, 1)
    lines += [
        f"- Layout: {inspection['layout']}; {inspection['n_slices']} slices in "
        f"{inspection['n_scans']} scans of {inspection['n_patients']} patients",
        f"- Class balance: {n_positive} hemorrhage and {n_negative} normal slices "
        f"({share:.0%} hemorrhage), {inspection['n_positive_patients']} patients with "
        f"hemorrhage; {inspection['n_unlabelled']} unlabelled slices",
    ]
    if inspection.get("subtypes"):
        counts = ", ".join(f"{name} {count}" for name, count in inspection["subtypes"].items())
        lines.append(f"- Subtypes (positive slices): {counts}")
    lines.append(f"- Files that could not be read: {inspection['n_skipped']}")
    return lines


def _design(config: Mapping) -> str:
    if config.get("external_from"):
        return (
            "external validation: every patient of this data set is a test patient; the "
            "models and thresholds are those of the source run"
        )
    if config.get("cv"):
        return (
            f"{config['cv']} patient-grouped folds (every patient is tested once, by models "
            "that never saw them); figures pool the folds' test predictions"
        )
    split = config.get("split", {})
    return (
        f"one patient-grouped split ({1 - split.get('val_size', 0) - split.get('test_size', 0):.0%}"
        f" train, {split.get('val_size', 0):.0%} validation, {split.get('test_size', 0):.0%} test)"
    )


def _operating_points(summary: pd.DataFrame, predictions: pd.DataFrame) -> list[str]:
    """One table row per model and level: the threshold (mean over folds, and how it was
    chosen) with sensitivity, specificity and AUC of the pooled test predictions."""
    lines = [
        "Thresholds were chosen on held-out training-part data (never the test patients); "
        "a model's served threshold is the mean of its folds'. Sensitivity, specificity "
        "and AUC: pooled test predictions, 95% bootstrap interval over patients.",
        "",
        "| Model | Family | Level | Threshold | Chosen by | Sensitivity | Specificity | AUC |",
        "| --- | --- | --- | ---: | --- | ---: | ---: | ---: |",
    ]
    columns = {"slice": "threshold", "scan": "scan_threshold"}
    for _, row in summary.iterrows():
        column = columns.get(row["level"], "threshold")
        if column not in predictions:
            column = "threshold"
        per_fold = predictions[predictions["model"] == row["model"]].groupby("fold")
        values = per_fold[column].first()
        rule_column = f"{column}_rule"
        rules = per_fold[rule_column].first().value_counts() if rule_column in predictions else {}
        rule_text = ", ".join(f"{rule} ({count})" for rule, count in dict(rules).items()) or "—"
        spread = f" ({values.min():.3f}–{values.max():.3f})" if len(values) > 1 else ""
        lines.append(
            f"| {row['model']} | {_family(row['model'])} | {row['level']} | "
            f"{values.mean():.3f}{spread} | {rule_text} | {_with_interval(row, 'sensitivity')} | "
            f"{_with_interval(row, 'specificity')} | {_with_interval(row, 'auc')} |"
        )
    lines += [
        "",
        "Chosen by: youden = Youden's J on held-out data; prevalence = the held-out "
        "quantile that calls the training prevalence positive; slice = the slice "
        "threshold (a scan is positive when any slice is); default = 0.5; source run = "
        "an external evaluation's, chosen by the run that trained the model. The count "
        "of folds is in brackets; the notes below give each fallback's reason.",
    ]
    return lines


def _family(name: str) -> str:
    try:
        return family_of(name).name
    except ValueError:
        return "unknown"


def _with_interval(row: pd.Series, metric: str) -> str:
    point = row.get(f"{metric}_pooled", row.get(f"{metric}_mean", np.nan))
    low, high = row.get(f"{metric}_ci_low", np.nan), row.get(f"{metric}_ci_high", np.nan)
    if pd.isna(point):
        return "—"
    if pd.isna(low) or pd.isna(high):
        return f"{point:.3f}"
    return f"{point:.3f} ({low:.3f}–{high:.3f})"


def _safeguards(config: Mapping, inspection: Mapping | None) -> list[str]:
    dataset = config.get("dataset") or {}
    if dataset.get("patient_pattern"):
        patients = f"from the file paths, by the pattern `{dataset['patient_pattern']}`"
    elif dataset.get("one_slice_per_patient"):
        patients = "none given: the user stated that every image is a different person"
    else:
        layout = inspection["layout"] if inspection else "its"
        patients = f"from the data set's {layout} layout"
    return [
        f"- Patient ids {patients}; every split is grouped by patient, so no patient's "
        "slices are in two parts.",
        "- Hyperparameters: patient-grouped inner cross-validation on the training part "
        "only; a CNN's training budget is chosen on training-part patients it holds out, "
        "before it is refitted on the training part.",
        "- Thresholds: chosen on held-out training-part predictions (out-of-fold over the "
        "training patients, or validation patients), never on test patients.",
        "- Preprocessing (scaling, feature choice) is fitted inside each fold's pipeline; "
        "no weights pretrained on outside data unless the config names them "
        f"(deep.weights: {(config.get('deep') or {}).get('weights')}); self-supervised "
        "pretraining (deep.pretrain: "
        f"{(config.get('deep') or {}).get('pretrain')}) sees training-part slices only.",
    ]


def _limitations(sizes: pd.DataFrame, warnings: list[str], notes: list[str]) -> list[str]:
    lines = []
    totals = sizes[sizes["fold"].astype(str) == "all"]
    for _, row in totals.iterrows():
        unit = "slices" if row["level"] == "slice" else "scans"
        if min(row["n_positive"], row["n_negative"]) < MIN_FOR_CONCLUSION:
            lines.append(
                f"- Small sample at {row['level']} level: {row['n_positive']} positive and "
                f"{row['n_negative']} negative test {unit}; its figures cannot carry a "
                "conclusion."
            )
    lines.append(
        f"- {int(totals['n_patients'].max())} test patients in all: intervals are wide, and "
        "slices of one patient are not independent (intervals resample patients)."
    )
    lines += [f"- Data: {line}" for line in warnings]
    lines += [f"- {line}" for line in notes]
    return lines
