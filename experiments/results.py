"""From test predictions to a run's written results: metrics, summary, model card, report.

``ichkit run`` and ``ichkit evaluate`` (external validation) end the same way: one
function turns a table of test predictions into every output file, so the two cannot
drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import pandas as pd

from ichkit.experiments import _io
from ichkit.experiments.model_card import model_card_markdown
from ichkit.experiments.report import write_report
from ichkit.experiments.run_folder import RunFolder
from ichkit.experiments.tables import compute_metrics, evaluation_sizes, summarise, with_target

__all__ = ["write_results"]


def write_results(
    run: RunFolder,
    predictions: pd.DataFrame,
    *,
    config: dict,
    title: str,
    notes: Iterable[str] = (),
    warnings: Iterable[str] = (),
    inspection: Mapping | None = None,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Write ``metrics.csv``, ``summary.csv``, ``model_card.md`` and the report.

    ``predictions`` has one row per model, fold and test slice (the columns of
    ``predictions/<model>__fold<k>.csv``); ``warnings`` are what a reader must know
    about the data (shown at the top of the report and in the card); ``inspection``
    is ``ichkit.scans.inspect`` of the data (read from the run folder when None).
    Returns the metrics table.
    """
    notes, warnings = list(notes), list(warnings)
    if inspection is None and run.inspection_path.is_file():
        inspection = json.loads(run.inspection_path.read_text())
    predictions = with_target(predictions)
    metrics = compute_metrics(predictions)
    _io.write_csv(run.metrics_path, metrics)
    summary = summarise(metrics, predictions, n_resamples=config["bootstrap"],
                        random_state=config["seed"], n_jobs=n_jobs)  # fmt: skip
    _io.write_csv(run.summary_path, summary)
    # The card and the report's main tables are about any hemorrhage; each subtype
    # gets its own block of the comparison.
    any_predictions, any_summary = _of_any(predictions), _of_any(summary)
    card = model_card_markdown(
        title=title, config=config, inspection=inspection, summary=any_summary,
        predictions=any_predictions, sizes=evaluation_sizes(any_predictions),
        warnings=warnings, notes=notes,
    )  # fmt: skip
    _io.write_text(run.report_path("model_card"), card)
    subtypes = None
    if (summary["target"] != "any").any():
        subtypes = (predictions[predictions["target"] != "any"],
                    summary[summary["target"] != "any"])  # fmt: skip
    write_report(
        run, any_predictions, _of_any(metrics), any_summary, title=title, config=config,
        notes=notes, warnings=warnings, subtypes=subtypes,
        weighted_log_loss=_weighted_log_loss(summary),
    )  # fmt: skip
    return metrics


def _of_any(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of any hemorrhage, without the ``target`` column."""
    return table[table["target"] == "any"].drop(columns="target")


def _weighted_log_loss(summary: pd.DataFrame) -> pd.Series | None:
    """Each model's RSNA weighted log loss (``summarise``), where the run has one."""
    if "weighted_log_loss" not in summary:
        return None
    return summary.groupby("model", sort=False)["weighted_log_loss"].first()
