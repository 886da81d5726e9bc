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
"""


# Tables


def comparison_markdown(summary: pd.DataFrame, level: str | None = None) -> str:
    """The model comparison as Markdown tables, one per level, best AUC in bold.

    Each metric reads ``mean (CI low–high)``, or ``mean ± sd`` where the summary has no
    confidence interval, with 3 decimals; missing values read ``—``.

    Parameters
    ----------
    summary : pandas.DataFrame
        One row per model and level. Needs ``model``, ``level`` and ``<metric>_mean``
        for accuracy, sensitivity, specificity, precision, f1 and auc. Uses, where
        present, ``<metric>_ci_low``, ``<metric>_ci_high``, ``<metric>_std``, ``ece``,
        ``ms_per_slice`` and ``delong_p``.
    level : str, default=None
        Only this level, as a bare table. ``None`` gives every level, each under a
        ``### <Level> level`` heading, slice level first.

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
    blocks = [
        f"### {name.capitalize()} level\n\n{_markdown_table(_comparison_rows(summary, name))}"
        for name in levels
    ]
    return "\n\n".join(blocks)


def comparison_latex(summary: pd.DataFrame) -> str:
    """The model comparison as a LaTeX ``table`` with booktabs rules, one block per level.

    The document needs ``\\usepackage{booktabs}``. Model names and every other cell are
    escaped, so ``my_model`` prints as written.

    Parameters
    ----------
    summary : pandas.DataFrame
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
        r"\caption{" + _latex_caption() + "}",
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
            r"\midrule",
        ]
        for cells, best in _comparison_rows(summary, name):
            cells = [_latex_escape(cell) for cell in cells]
            if best:
                cells[_AUC_COLUMN] = rf"\textbf{{{cells[_AUC_COLUMN]}}}"
            lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines)


def _latex_caption() -> str:
    return (
        r"Comparison of models at each level: mean over folds and 95\% confidence interval "
        r"(bootstrap over patients of the pooled test predictions), or mean $\pm$ standard "
        r"deviation where no interval was computed. "
        r"Best AUC per level in bold. ECE: expected calibration error. "
        r"p AUC: DeLong test of the AUC against the level's best model; p accuracy: "
        r"McNemar's exact test of the accuracy against it."
    )


def _comparison_rows(summary: pd.DataFrame, level: str) -> list[tuple[list[str], bool]]:
    """Plain-text cells per model at one level, and whether the model has the best AUC."""
    part = summary[summary["level"] == level]
    auc = pd.to_numeric(part["auc_mean"], errors="coerce")
    best = auc.notna() & (auc == auc.max())
    rows = []
    for (_, row), is_best in zip(part.iterrows(), best, strict=True):
        cells = [str(row["model"])]
        cells += [_metric_cell(row, metric) for metric in _METRICS]
        cells += [_number_cell(row, "ece", 3), _number_cell(row, "ms_per_slice", 2)]
        cells += [_p_cell(_value(row, "delong_p")), _p_cell(_value(row, "mcnemar_p"))]
        rows.append((cells, bool(is_best)))
    return rows


def _value(row: pd.Series, column: str) -> float:
    value = row.get(column, np.nan)
    return float("nan") if pd.isna(value) else float(value)


def _metric_cell(row: pd.Series, metric: str) -> str:
    mean = _value(row, f"{metric}_mean")
    low, high = _value(row, f"{metric}_ci_low"), _value(row, f"{metric}_ci_high")
    std = _value(row, f"{metric}_std")
    if np.isnan(mean):
        return _MISSING
    if not (np.isnan(low) or np.isnan(high)):
        return f"{mean:.3f} ({low:.3f}–{high:.3f})"
    if not np.isnan(std):
        return f"{mean:.3f} ± {std:.3f}"
    return f"{mean:.3f}"


def _number_cell(row: pd.Series, column: str, decimals: int) -> str:
    value = _value(row, column)
    return _MISSING if np.isnan(value) else f"{value:.{decimals}f}"


def _p_cell(p_value: float) -> str:
    if np.isnan(p_value):
        return _MISSING
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
) -> dict[str, Path]:
    """Write the comparison tables, plots and ``report.html`` into a run folder.

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
    tables = {
        "markdown": comparison_markdown(summary),
        "latex": comparison_latex(summary),
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
        metrics=metrics,
        curves=[path.relative_to(out).as_posix() for path in curves],
        confusions=[path.relative_to(out).as_posix() for path in confusions],
        config=config,
        notes=[notes] if isinstance(notes, str) else list(notes),
    )
    path = _io.write_text(run.report_path("html"), page)
    written[path.relative_to(out).as_posix()] = path
    return written


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
    metrics: pd.DataFrame,
    curves: list[str],
    confusions: list[str],
    config: Mapping | str | None,
    notes: list[str],
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
        "<h2>Comparison</h2>",
        f"<p>{html.escape(_html_caption())}</p>",
    ]
    for level in _summary_levels(summary, None, "write_report"):
        parts.append(f"<h3>{html.escape(level.capitalize())} level</h3>")
        parts.append(_html_comparison_table(_comparison_rows(summary, level)))
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


def _html_caption() -> str:
    return (
        "Mean over folds and 95% confidence interval (bootstrap over patients of the pooled "
        "test predictions), or mean ± standard deviation where no interval was computed. "
        "Best AUC per level in bold. ECE: expected "
        "calibration error. p AUC: DeLong test of the AUC against the level's best model; "
        "p accuracy: McNemar's exact test of the accuracy against it."
    )


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
