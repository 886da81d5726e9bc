"""The written outputs of a model comparison: tables, plots and an HTML report.

``write_report`` fills a run folder with the comparison as Markdown and LaTeX, ROC
curves, reliability diagrams, confusion matrices and a self-contained ``report.html``
that links the plots by relative paths. Every file is written atomically (a temporary
name in the same folder, then ``os.replace``), so a killed run leaves whole files or
none. Plots draw on matplotlib's ``Figure`` with the Agg canvas, which needs no pyplot
and leaves the global backend alone.
"""

from __future__ import annotations

import difflib
import html
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from cycler import cycler
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from ichkit.experiments import _io
from ichkit.experiments.metrics import has_multislice_scans, scan_predictions
from ichkit.experiments.run_folder import RunFolder
from ichkit.experiments.statistics import expected_calibration_error, reliability_table
from ichkit.experiments.tables import MIN_FOR_CONCLUSION, evaluation_sizes

__all__ = [
    "comparison_latex",
    "comparison_markdown",
    "plot_confusion",
    "plot_reliability",
    "plot_roc",
    "write_report",
]

_DISCLAIMER = "Research software, not a medical device: not validated for clinical use."
_LEVELS = ("slice", "scan")
_METRICS = {
    "accuracy": "Accuracy",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "precision": "Precision",
    "f1": "F1",
    "auc": "AUC",
}
_HEADER = ["Model", *_METRICS.values(), "ECE", "ms/slice", "p AUC", "p accuracy"]
_AUC_COLUMN = _HEADER.index("AUC")
_MISSING = "—"
_SMALL = "†"  # marks a value resting on fewer than MIN_FOR_CONCLUSION positives or negatives
_UNIT = {"slice": "slices", "scan": "scans"}
_CLASS_NAMES = ("Normal", "Hemorrhage")
_DPI = 120
_PREDICTION_COLUMNS = ("model", "fold", "scan_id", "label", "probability", "threshold")
_SUMMARY_COLUMNS = ("model", "level", *(f"{metric}_mean" for metric in _METRICS))
_METRIC_COLUMNS = ("model", "level", "fold")
_FOLD_TABLE_ORDER = (
    "model", "level", "fold", "auc", "accuracy", "sensitivity", "specificity", "precision",
    "f1", "pr_auc", "log_loss", "ece", "threshold", "tp", "tn", "fp", "fn", "n",
    "n_positive", "ms_per_slice",
)  # fmt: skip
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "–": "--",
    "—": "---",
    "±": r"$\pm$",
    "<": r"$<$",
    ">": r"$>$",
}
_COLOURS = colormaps["tab10"].colors
_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1200px; }
.disclaimer { border: 2px solid #b00; background: #fee; padding: 0.8em; font-weight: bold; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; margin: 0.5em; vertical-align: top; }
.confusion img { width: 300px; }
.warning { border: 1px solid #c80; background: #fff6e0; padding: 0.5em 0.8em; }
"""


# Tables


def comparison_markdown(
    summary: pd.DataFrame, level: str | None = None, *, sizes: pd.DataFrame | None = None
) -> str:
    """The model comparison as Markdown tables, one per level, with their caption.

    Each metric reads ``value (CI low–high)``: the pooled out-of-fold value
    (``<metric>_pooled``) and the bootstrap interval of that same statistic. A summary
    without pooled values shows ``mean ± sd`` over folds instead; the caption says
    which. A value resting on fewer than 10 positives or 10 negatives carries ``†``.
    The best AUC of a level is bold where the level has at least 10 positive and 10
    negative test units; with fewer, the table says it cannot rank the models. Missing
    values read ``—``.

    Parameters
    ----------
    summary : pandas.DataFrame
        One row per model and level (``ichkit.experiments.tables.summarise``). Needs
        ``model``, ``level`` and ``<metric>_mean`` for accuracy, sensitivity,
        specificity, precision, f1 and auc. Uses, where present, ``<metric>_pooled``,
        ``<metric>_ci_low``, ``<metric>_ci_high``, ``<metric>_std``, ``n``,
        ``n_positive``, ``n_negative``, ``ece``, ``ms_per_slice``, ``delong_p``,
        ``mcnemar_p`` and ``paired_note``.
    level : str, default=None
        Only this level, as a bare table. ``None`` gives every level, each under a
        ``### <Level> level`` heading, slice level first, then the caption.
    sizes : pandas.DataFrame, default=None
        The test part's sizes (``ichkit.experiments.tables.evaluation_sizes``), stated
        above each level's table.

    Returns
    -------
    str
        The Markdown text, without a trailing newline.

    Raises
    ------
    ValueError
        If a needed column is missing, or ``level`` is not in the summary.

    Examples
    --------
    >>> summary = pd.DataFrame({"model": ["svm"], "level": ["slice"], "auc_mean": [0.9],
    ...     "accuracy_mean": [0.8], "sensitivity_mean": [0.7], "specificity_mean": [0.85],
    ...     "precision_mean": [0.75], "f1_mean": [0.72], "auc_std": [0.01]})
    >>> print(comparison_markdown(summary, level="slice").splitlines()[2])
    | svm | 0.800 | 0.700 | 0.850 | 0.750 | 0.720 | **0.900 ± 0.010** | — | — | — | — |
    """
    _check_columns(summary, _SUMMARY_COLUMNS, "summary", "comparison_markdown")
    levels = _summary_levels(summary, level, "comparison_markdown")
    if level is not None:
        return _markdown_table(_comparison_rows(summary, level))
    blocks = []
    for name in levels:
        sentences = " ".join(_level_sentences(summary, name, sizes))
        block = f"### {name.capitalize()} level\n\n"
        block += f"{sentences}\n\n" if sentences else ""
        blocks.append(block + _markdown_table(_comparison_rows(summary, name)))
    return "\n\n".join([*blocks, _caption(summary)])


def comparison_latex(summary: pd.DataFrame, *, sizes: pd.DataFrame | None = None) -> str:
    """The model comparison as a LaTeX ``table`` with booktabs rules, one block per level.

    The document needs ``\\usepackage{booktabs}``. Model names and every other cell are
    escaped, so ``my_model`` prints as written. Cells, bold and ``†`` as for
    :func:`comparison_markdown`; each level's sizes open its block.

    Parameters
    ----------
    summary : pandas.DataFrame
        As for :func:`comparison_markdown`.
    sizes : pandas.DataFrame, default=None
        As for :func:`comparison_markdown`.

    Returns
    -------
    str
        The LaTeX source, without a trailing newline.

    Raises
    ------
    ValueError
        If a needed column is missing.
    """
    _check_columns(summary, _SUMMARY_COLUMNS, "summary", "comparison_latex")
    n_columns = len(_HEADER)
    lines = [
        r"\begin{table}[htbp]",
        r"\centering",
        r"\small",
        r"\caption{" + _latex_escape(_caption(summary)) + "}",
        r"\label{tab:comparison}",
        r"\begin{tabular}{l" + "c" * (n_columns - 1) + "}",
        r"\toprule",
        " & ".join(_latex_escape(name) for name in _HEADER) + r" \\",
    ]
    for name in _summary_levels(summary, None, "comparison_latex"):
        lines += [
            r"\midrule",
            rf"\multicolumn{{{n_columns}}}{{l}}{{\textit{{{_latex_escape(name.capitalize())} "
            r"level}} \\",
        ]
        for sentence in _level_sentences(summary, name, sizes):
            lines.append(
                rf"\multicolumn{{{n_columns}}}{{l}}{{\footnotesize {_latex_escape(sentence)}}} \\"
            )
        lines.append(r"\midrule")
        for cells, best in _comparison_rows(summary, name):
            cells = [_latex_escape(cell) for cell in cells]
            if best:
                cells[_AUC_COLUMN] = rf"\textbf{{{cells[_AUC_COLUMN]}}}"
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def _estimator(summary: pd.DataFrame) -> str:
    """``"pooled"`` where the summary has pooled values, else ``"mean"`` (over folds)."""
    return "pooled" if "auc_pooled" in summary.columns else "mean"


def _caption(summary: pd.DataFrame) -> str:
    """What the table's cells are, in words: one caption for Markdown, LaTeX and HTML."""
    if _estimator(summary) == "pooled":
        cells = (
            "Each cell: the metric of the pooled out-of-fold test predictions (every test "
            "patient once, each at its own fold's threshold, chosen on held-out "
            "training-part data) and in brackets its 95% confidence interval (bootstrap "
            "over patients of the same predictions). Fold means and standard deviations "
            "are in summary.csv."
        )
    else:
        cells = "Each cell: the mean over folds ± its standard deviation over folds."
    return (
        f"{cells} {_SMALL} rests on fewer than {MIN_FOR_CONCLUSION} positive or "
        f"{MIN_FOR_CONCLUSION} negative test units (slices, or scans at scan level): too "
        "few to carry a conclusion. Best AUC per level in bold, where the level has at "
        f"least {MIN_FOR_CONCLUSION} positive and {MIN_FOR_CONCLUSION} negative test units. "
        "ECE: expected calibration error. p AUC: "
        "DeLong test of the AUC against the level's best model; p accuracy: McNemar's "
        "exact test of the accuracy against it; neither is computed on fewer than "
        f"{MIN_FOR_CONCLUSION} positives or negatives (the cell says so)."
    )


def _level_sentences(summary: pd.DataFrame, level: str, sizes: pd.DataFrame | None) -> list[str]:
    """The test part's sizes at ``level``, and a warning where it cannot rank models."""
    sentences = []
    if sizes is not None:
        sentences.append(sizes_sentence(sizes, level))
    if not _rankable(summary, level):
        counts = summary.loc[summary["level"] == level, ["n_positive", "n_negative"]].max()
        sentences.append(
            f"Only {counts['n_positive']} positive and {counts['n_negative']} negative test "
            f"{_UNIT.get(level, level)}: too few to rank the models (none is bolded); read "
            "this table as a description, not a comparison."
        )
    return sentences


def _rankable(summary: pd.DataFrame, level: str) -> bool:
    """Whether a level has enough test positives and negatives to name a best model
    (True where the summary does not count them)."""
    if not {"n_positive", "n_negative"} <= set(summary.columns):
        return True
    counts = summary.loc[summary["level"] == level, ["n_positive", "n_negative"]]
    counts = counts.apply(pd.to_numeric, errors="coerce").max()
    return bool(counts.isna().any() or counts.min() >= MIN_FOR_CONCLUSION)


def sizes_sentence(sizes: pd.DataFrame, level: str) -> str:
    """One sentence of the test part's sizes at ``level``, with each fold's."""
    part = sizes[sizes["level"] == level]
    folds = part[part["fold"].astype(str) != "all"]
    total = part[part["fold"].astype(str) == "all"].iloc[0]
    unit = _UNIT.get(level, level)
    text = (
        f"Test part: {total['n_patients']} patients, {total['n_scans']} scans, "
        f"{total['n_slices']} slices; {total['n_positive']} positive and "
        f"{total['n_negative']} negative {unit}."
    )
    if len(folds) > 1:
        each = ", ".join(
            f"fold {row['fold']} {row['n_patients']} patients "
            f"({row['n_positive']}+/{row['n_negative']}- {unit})"
            for _, row in folds.iterrows()
        )
        text += f" Per fold: {each}."
    return text


def _comparison_rows(summary: pd.DataFrame, level: str) -> list[tuple[list[str], bool]]:
    """Plain-text cells per model at one level, and whether the model has the best AUC
    (never, where the level has too few test units to rank)."""
    part = summary[summary["level"] == level]
    estimator = _estimator(summary)
    auc = pd.to_numeric(part[f"auc_{estimator}"], errors="coerce")
    best = auc.notna() & (auc == auc.max()) & _rankable(summary, level)
    rows = []
    for (_, row), is_best in zip(part.iterrows(), best, strict=True):
        cells = [str(row["model"])]
        cells += [_metric_cell(row, metric, estimator) for metric in _METRICS]
        cells += [_number_cell(row, "ece", 3), _number_cell(row, "ms_per_slice", 2)]
        note = row.get("paired_note", "")
        note = "" if pd.isna(note) else str(note)
        cells += [_p_cell(_value(row, "delong_p"), note), _p_cell(_value(row, "mcnemar_p"), note)]
        rows.append((cells, bool(is_best)))
    return rows


def _value(row: pd.Series, column: str) -> float:
    value = row.get(column, np.nan)
    return float("nan") if pd.isna(value) else float(value)


def _metric_cell(row: pd.Series, metric: str, estimator: str = "pooled") -> str:
    """``value (low–high)`` for the pooled estimator, ``mean ± sd`` for the fold mean;
    ``†`` where the value rests on too few positives or negatives."""
    point = _value(row, f"{metric}_{estimator}")
    if np.isnan(point):
        return _MISSING
    low, high = _value(row, f"{metric}_ci_low"), _value(row, f"{metric}_ci_high")
    std = _value(row, f"{metric}_std")
    if estimator == "pooled" and not (np.isnan(low) or np.isnan(high)):
        text = f"{point:.3f} ({low:.3f}–{high:.3f})"
    elif estimator == "mean" and not np.isnan(std):
        text = f"{point:.3f} ± {std:.3f}"
    else:
        text = f"{point:.3f}"
    positives, negatives = _value(row, "n_positive"), _value(row, "n_negative")
    resting_on = {"sensitivity": positives, "specificity": negatives}.get(
        metric, min(positives, negatives)
    )
    return text + _SMALL if resting_on < MIN_FOR_CONCLUSION else text


def _number_cell(row: pd.Series, column: str, decimals: int) -> str:
    value = _value(row, column)
    return _MISSING if np.isnan(value) else f"{value:.{decimals}f}"


def _p_cell(p_value: float, note: str = "") -> str:
    if np.isnan(p_value):
        return note or _MISSING
    return "<0.001" if p_value < 0.001 else f"{p_value:.3f}"


def _markdown_table(rows: list[tuple[list[str], bool]]) -> str:
    lines = [_markdown_line(_HEADER), _markdown_line(["---"] + ["---:"] * (len(_HEADER) - 1))]
    for cells, best in rows:
        cells = [cell.replace("|", r"\|") for cell in cells]
        if best:
            cells[_AUC_COLUMN] = f"**{cells[_AUC_COLUMN]}**"
        lines.append(_markdown_line(cells))
    return "\n".join(lines)


def _markdown_line(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(character, character) for character in text)


def _summary_levels(summary: pd.DataFrame, level: str | None, function: str) -> list[str]:
    """The summary's levels, slice and scan first; only ``level`` when one is given."""
    present = list(pd.unique(summary["level"]))
    ordered = [name for name in _LEVELS if name in present]
    ordered += [name for name in present if name not in _LEVELS]
    if level is None:
        return ordered
    if level not in present:
        raise ValueError(
            f"The 'level' parameter of {function} must be one of the summary's levels "
            f"{ordered}. Got {level!r}."
        )
    return [level]


# Plots


def plot_roc(
    predictions: pd.DataFrame,
    path: str | Path,
    *,
    level: str = "slice",
    title: str | None = None,
) -> Path:
    """ROC curves of every model on one axes, pooled over folds, with a chance line.

    Parameters
    ----------
    predictions : pandas.DataFrame
        One row per model, fold and test slice, with ``model``, ``fold``, ``scan_id``,
        ``label``, ``probability`` and ``threshold``.
    path : str or pathlib.Path
        The PNG to write (dpi 120); its folder is created.
    level : {"slice", "scan"}, default="slice"
        ``"scan"`` pools one row per scan: positive if any slice is, with the largest
        slice probability.
    title : str, default=None
        The axes title; ``None`` names the level.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If a needed column is missing, the table is empty or ``level`` is unknown.
    """
    rows = _level_rows(predictions, level, "plot_roc")
    figure, axes = _new_figure((5.5, 5))
    for model, part in rows.groupby("model", sort=False):
        label = part["label"].astype(int).to_numpy()
        if np.unique(label).size < 2:
            axes.plot([], [], label=f"{model} (AUC undefined: one class)")
            continue
        false_positive_rate, true_positive_rate, _ = roc_curve(label, part["probability"])
        auc = roc_auc_score(label, part["probability"])
        axes.plot(false_positive_rate, true_positive_rate, label=f"{model} (AUC {auc:.3f})")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="Chance")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_xlabel("False positive rate (1 − specificity)")
    axes.set_ylabel("True positive rate (sensitivity)")
    axes.set_title(title or f"ROC curves, {level} level, pooled over folds")
    axes.legend(loc="lower right", fontsize="small")
    return _save_figure(figure, path)


def plot_confusion(
    predictions: pd.DataFrame, path: str | Path, *, model: str, level: str = "slice"
) -> Path:
    """One model's confusion matrix, pooled over folds, as an annotated 2x2 image.

    Each fold's rows are thresholded at that fold's own threshold (chosen on its
    validation data) before the counts are summed.

    Parameters
    ----------
    predictions : pandas.DataFrame
        As for :func:`plot_roc`.
    path : str or pathlib.Path
        The PNG to write (dpi 120); its folder is created.
    model : str
        The model, as named in ``predictions["model"]``.
    level : {"slice", "scan"}, default="slice"
        As for :func:`plot_roc`.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If ``model`` is not in the predictions, or as for :func:`plot_roc`.
    """
    counts = _confusion_counts(predictions, model=model, level=level)
    figure, axes = _new_figure((4.5, 4))
    axes.imshow(counts, cmap="Blues", vmin=0)
    for (row, column), count in np.ndenumerate(counts):
        colour = "white" if count > counts.max() / 2 else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=colour, fontsize=14)
    axes.set_xticks([0, 1], labels=_CLASS_NAMES)
    axes.set_yticks([0, 1], labels=_CLASS_NAMES)
    axes.set_xlabel("Predicted")
    axes.set_ylabel("True")
    axes.set_title(f"{model}, {level} level\npooled over folds at each fold's threshold")
    return _save_figure(figure, path)


def _confusion_counts(predictions: pd.DataFrame, *, model: str, level: str = "slice") -> np.ndarray:
    """``[[tn, fp], [fn, tp]]`` of one model, pooled over folds at each fold's threshold."""
    rows = _level_rows(predictions, level, "plot_confusion")
    models = [str(name) for name in pd.unique(rows["model"])]
    if model not in models:
        close = difflib.get_close_matches(str(model), models, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"Unknown model {model!r} for plot_confusion.{hint} "
            f"The predictions hold models {models}."
        )
    part = rows[rows["model"] == model]
    predicted = (part["probability"] >= part["threshold"]).astype(int)
    return confusion_matrix(part["label"].astype(int), predicted, labels=[0, 1])


def plot_reliability(
    predictions: pd.DataFrame, path: str | Path, *, level: str = "slice", n_bins: int = 10
) -> Path:
    """A reliability diagram: observed fraction of hemorrhage against mean probability.

    Probabilities of each model, pooled over folds, fall into ``n_bins`` equal-width
    bins on [0, 1]; empty bins are left out. The legend gives each model's pooled
    expected calibration error (ECE), the count-weighted mean gap to the diagonal.

    Parameters
    ----------
    predictions : pandas.DataFrame
        As for :func:`plot_roc`.
    path : str or pathlib.Path
        The PNG to write (dpi 120); its folder is created.
    level : {"slice", "scan"}, default="slice"
        As for :func:`plot_roc`.
    n_bins : int, default=10
        The number of equal-width probability bins.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If ``n_bins`` is not a positive integer, or as for :func:`plot_roc`.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or n_bins < 1:
        raise ValueError(
            f"The 'n_bins' parameter of plot_reliability must be an int >= 1. Got {n_bins!r}."
        )
    rows = _level_rows(predictions, level, "plot_reliability")
    figure, axes = _new_figure((5.5, 5))
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="Perfect")
    for model, part in rows.groupby("model", sort=False):
        label, probability = part["label"].astype(int), part["probability"]
        bins = reliability_table(label, probability, n_bins=n_bins)
        ece = expected_calibration_error(label, probability, n_bins=n_bins)
        axes.plot(
            bins["mean_probability"],
            bins["fraction_positive"],
            marker="o",
            label=f"{model} (pooled ECE {ece:.3f})",
        )
    axes.set_xlim(-0.02, 1.02)
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("Mean predicted probability")
    axes.set_ylabel("Observed fraction with hemorrhage")
    axes.set_title(f"Reliability, {level} level, pooled over folds")
    axes.legend(loc="upper left", fontsize="small")
    return _save_figure(figure, path)


def _level_rows(predictions: pd.DataFrame, level: str, function: str) -> pd.DataFrame:
    """The slice rows, or one row per model, fold and scan."""
    _check_columns(predictions, _PREDICTION_COLUMNS, "predictions", function)
    if predictions.empty:
        raise ValueError(f"The 'predictions' table passed to {function} has no rows.")
    if level == "slice":
        return predictions
    if level == "scan":
        return scan_predictions(predictions)
    raise ValueError(
        f"The 'level' parameter of {function} must be 'slice' or 'scan'. Got {level!r}."
    )


def _new_figure(size: tuple[float, float]):
    figure = Figure(figsize=size)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    # Ten colours, solid then dashed: a comparison often has more than ten models.
    axes.set_prop_cycle(cycler(linestyle=["-", "--", ":"]) * cycler(color=_COLOURS))
    return figure, axes


def _save_figure(figure: Figure, path: str | Path) -> Path:
    """Save as PNG under a temporary name in the same folder, then move into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        figure.savefig(temporary, format="png", dpi=_DPI, bbox_inches="tight")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


# Report


def write_report(
    out: str | Path | RunFolder,
    predictions: pd.DataFrame,
    metrics: pd.DataFrame,
    summary: pd.DataFrame,
    *,
    title: str,
    config: Mapping | str | None = None,
    notes: Iterable[str] = (),
    warnings: Iterable[str] = (),
    subtypes: tuple[pd.DataFrame, pd.DataFrame] | None = None,
    weighted_log_loss: pd.Series | None = None,
) -> dict[str, Path]:
    """Write the comparison tables, plots and ``report.html`` into a run folder.

    The report opens with the test part's sizes per level (and per fold), the
    ``warnings`` about the data, and a link to ``model_card.md`` where the run has one.

    Writes ``comparison.md``, ``comparison.tex``, ``plots/roc_<level>.png``,
    ``plots/reliability_<level>.png``, ``plots/confusion_<model>_<level>.png`` and
    ``report.html``. Levels are ``slice``, plus ``scan`` when some scan has more than one
    slice. Characters other than letters, digits, ``_``, ``.`` and ``-`` in model names
    become ``-`` in file names.

    Parameters
    ----------
    out : str, pathlib.Path or RunFolder
        The run folder; created if absent. ``RunFolder`` names every file.
    predictions : pandas.DataFrame
        As for :func:`plot_roc`.
    metrics : pandas.DataFrame
        One row per model, level and fold, with at least ``model``, ``level`` and
        ``fold``; shown as the per-fold table.
    summary : pandas.DataFrame
        As for :func:`comparison_markdown`.
    title : str
        The report's title.
    config : mapping or str, default=None
        The resolved run configuration, shown as YAML; a string is shown as given.
    notes : iterable of str, default=()
        Lines for the report's notes, such as models skipped and why.
    warnings : iterable of str, default=()
        What a reader must know about the data (the inspection's notes, skipped
        files), shown at the top of the report.
    subtypes : (predictions, summary), default=None
        The subtype targets' predictions and summary (each with a ``target`` column):
        one comparison block per subtype after the main (any hemorrhage) tables.
    weighted_log_loss : pandas.Series, default=None
        Each model's RSNA 2019 weighted log loss over the six targets, by model name.

    Returns
    -------
    dict of str to pathlib.Path
        Each written file, keyed by its path relative to ``out`` (``"plots/roc_slice.png"``).

    Raises
    ------
    ValueError
        If a table lacks a needed column, or two model names give the same file name.
    """
    run = out if isinstance(out, RunFolder) else RunFolder(out)
    out = run.root
    _check_columns(predictions, _PREDICTION_COLUMNS, "predictions", "write_report")
    _check_columns(metrics, _METRIC_COLUMNS, "metrics", "write_report")
    _check_columns(summary, _SUMMARY_COLUMNS, "summary", "write_report")
    file_names = _model_file_names(predictions)
    levels = list(_LEVELS) if has_multislice_scans(predictions) else ["slice"]
    sizes = evaluation_sizes(predictions)
    blocks = _subtype_blocks(subtypes)
    tables = {
        "markdown": "\n\n".join(
            [
                comparison_markdown(summary, sizes=sizes),
                *[
                    f"## Target: {target}\n\n" + comparison_markdown(part, sizes=part_sizes)
                    for target, part, part_sizes in blocks
                ],
                *(
                    [_weighted_log_loss_markdown(weighted_log_loss)]
                    if weighted_log_loss is not None
                    else []
                ),
            ]
        ),  # fmt: skip
        "latex": comparison_latex(summary, sizes=sizes),
    }
    written = {}
    for kind, table in tables.items():
        path = _io.write_text(run.report_path(kind), table + "\n")
        written[path.relative_to(out).as_posix()] = path
    curves, confusions = [], []
    for level in levels:
        curves.append(plot_roc(predictions, run.plot_path(f"roc_{level}"), level=level))
        curves.append(
            plot_reliability(predictions, run.plot_path(f"reliability_{level}"), level=level)
        )
    for level in levels:
        for model, file_name in file_names.items():
            path = run.plot_path(f"confusion_{file_name}_{level}")
            confusions.append(plot_confusion(predictions, path, model=model, level=level))
    for path in curves + confusions:
        written[path.relative_to(out).as_posix()] = path
    page = _report_html(
        title=title,
        summary=summary,
        sizes=sizes,
        metrics=metrics,
        curves=[path.relative_to(out).as_posix() for path in curves],
        confusions=[path.relative_to(out).as_posix() for path in confusions],
        config=config,
        notes=[notes] if isinstance(notes, str) else list(notes),
        warnings=[warnings] if isinstance(warnings, str) else list(warnings),
        model_card=run.report_path("model_card").is_file(),
        subtypes=blocks,
        weighted_log_loss=weighted_log_loss,
    )
    path = _io.write_text(run.report_path("html"), page)
    written[path.relative_to(out).as_posix()] = path
    return written


def _subtype_blocks(subtypes) -> list[tuple[str, pd.DataFrame, pd.DataFrame]]:
    """(target, its summary, its test part's sizes) for each subtype target."""
    if subtypes is None:
        return []
    predictions, summary = subtypes
    return [
        (target, part.drop(columns="target"),
         evaluation_sizes(predictions[predictions["target"] == target]))
        for target, part in summary.groupby("target", sort=False)
    ]  # fmt: skip


_WEIGHTED_LOG_LOSS_NOTE = (
    "RSNA 2019 weighted log loss: per slice, the log losses of any hemorrhage (weight 2) "
    "and the five subtypes (weight 1 each), averaged over the pooled test slices; lower "
    "is better."
)


def _weighted_log_loss_markdown(losses: pd.Series) -> str:
    rows = "\n".join(f"| {name} | {_format_loss(value)} |" for name, value in losses.items())
    return (f"## Weighted log loss\n\n{_WEIGHTED_LOG_LOSS_NOTE}\n\n"
            f"| model | weighted log loss |\n| --- | --- |\n{rows}")  # fmt: skip


def _format_loss(value) -> str:
    return _MISSING if pd.isna(value) else f"{float(value):.4f}"


def _model_file_names(predictions: pd.DataFrame) -> dict[str, str]:
    models = [str(name) for name in pd.unique(predictions["model"])]
    names = {model: re.sub(r"[^A-Za-z0-9_.-]+", "-", model) for model in models}
    if len(set(names.values())) < len(names):
        raise ValueError(
            f"Model names {models} give clashing plot file names {sorted(names.values())} "
            "in write_report; rename the models so they differ in letters, digits, '_', "
            "'.' or '-'."
        )
    return names


def _report_html(
    *,
    title: str,
    summary: pd.DataFrame,
    sizes: pd.DataFrame,
    metrics: pd.DataFrame,
    curves: list[str],
    confusions: list[str],
    config: Mapping | str | None,
    notes: list[str],
    warnings: list[str],
    model_card: bool,
    subtypes: list[tuple[str, pd.DataFrame, pd.DataFrame]] = (),
    weighted_log_loss: pd.Series | None = None,
) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="disclaimer">{html.escape(_DISCLAIMER)}</p>',
        "<h2>Data</h2>",
    ]
    levels = _summary_levels(summary, None, "write_report")
    parts += [f"<p>{html.escape(level.capitalize())} level. "
              f"{html.escape(sizes_sentence(sizes, level))}</p>" for level in levels]  # fmt: skip
    parts += [f'<p class="warning">Warning: {html.escape(line)}</p>' for line in warnings]
    if model_card:
        parts.append('<p>The run\'s <a href="model_card.md">model card</a> gives each '
                     "model's operating point, the safeguards used and the limits of this "
                     "run.</p>")  # fmt: skip
    parts += ["<h2>Comparison</h2>", f"<p>{html.escape(_caption(summary))}</p>"]
    parts += _html_comparison_blocks(summary, None)  # the sizes are under Data
    for target, part, part_sizes in subtypes:
        parts.append(f"<h2>Target: {html.escape(target)}</h2>")
        parts += _html_comparison_blocks(part, part_sizes)
    if weighted_log_loss is not None:
        rows = "".join(f"<tr><td>{html.escape(str(name))}</td><td>{_format_loss(value)}</td></tr>"
                       for name, value in weighted_log_loss.items())  # fmt: skip
        parts += ["<h2>Weighted log loss</h2>", f"<p>{html.escape(_WEIGHTED_LOG_LOSS_NOTE)}</p>",
                  "<table><thead><tr><th>model</th><th>weighted log loss</th></tr></thead>"
                  f"<tbody>{rows}</tbody></table>"]  # fmt: skip
    parts.append("<h2>ROC curves and reliability</h2>")
    parts.append("<div>" + "".join(_html_image(source) for source in curves) + "</div>")
    parts.append("<h2>Confusion matrices</h2>")
    parts.append(
        '<div class="confusion">' + "".join(_html_image(source) for source in confusions) + "</div>"
    )
    parts.append("<h2>Metrics per fold</h2>")
    parts.append(_html_fold_table(metrics))
    if notes:
        items = "".join(f"<li>{html.escape(str(note))}</li>" for note in notes)
        parts.append(f"<h2>Notes</h2>\n<ul>{items}</ul>")
    if config is not None:
        text = config if isinstance(config, str) else _config_yaml(config)
        parts.append(f"<h2>Configuration</h2>\n<pre>{html.escape(text)}</pre>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def _html_comparison_blocks(summary: pd.DataFrame, sizes: pd.DataFrame | None) -> list[str]:
    """Per level of ``summary``: a heading, its sentences (sizes where given) and table."""
    parts = []
    for level in _summary_levels(summary, None, "write_report"):
        parts.append(f"<h3>{html.escape(level.capitalize())} level</h3>")
        parts += [f"<p>{html.escape(sentence)}</p>"
                  for sentence in _level_sentences(summary, level, sizes)]  # fmt: skip
        parts.append(_html_comparison_table(_comparison_rows(summary, level)))
    return parts


def _html_comparison_table(rows: list[tuple[list[str], bool]]) -> str:
    header = "".join(f"<th>{html.escape(name)}</th>" for name in _HEADER)
    lines = ["<table>", f"<thead><tr>{header}</tr></thead>", "<tbody>"]
    for cells, best in rows:
        cells = [html.escape(cell) for cell in cells]
        if best:
            cells[_AUC_COLUMN] = f"<strong>{cells[_AUC_COLUMN]}</strong>"
        lines.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines)


def _html_fold_table(metrics: pd.DataFrame) -> str:
    columns = [column for column in _FOLD_TABLE_ORDER if column in metrics.columns]
    columns += [column for column in metrics.columns if column not in columns]
    level_order = {name: index for index, name in enumerate(_LEVELS)}
    table = metrics[columns].sort_values(
        "level", key=lambda level: level.map(level_order).fillna(len(_LEVELS)), kind="stable"
    )
    return table.to_html(
        index=False, float_format=lambda value: f"{value:.3f}", na_rep=_MISSING, border=0
    )


def _html_image(source: str) -> str:
    escaped = html.escape(source, quote=True)
    return f'<img src="{escaped}" alt="{escaped}">'


def _config_yaml(config: Mapping) -> str:
    # A JSON round trip turns paths, numpy scalars and tuples into plain YAML types.
    plain = json.loads(json.dumps(config, default=str))
    return yaml.safe_dump(plain, sort_keys=False)


def _check_columns(
    table: pd.DataFrame, required: tuple[str, ...], name: str, function: str
) -> None:
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise ValueError(
            f"The {name!r} table passed to {function} lacks columns {missing}; it needs "
            f"{list(required)}. Got columns {list(table.columns)}."
        )
