"""``RunFolder``: the one owner of a run folder's layout.

``ichkit run`` writes, the report reads, and ``ichkit serve`` serves the same files;
every path is spelled here and nowhere else::

    RUN/
      config.yaml          the resolved config (and the data path)
      versions.json        every package the run imported, with its version
      inspection.json      what the data set held
      notes.json           models left out, threshold fallbacks, data warnings
      skipped.json         slices that could not be read
      predictions/<model>__fold<k>.csv   test predictions (the mark of a finished fold)
      held_out/<model>__fold<k>.csv      held-out training-part predictions
      models/<model>__fold<k><suffix>    the trained model (suffix: its family's)
      models/<cnn>__fold<k>__inner.weights.h5, <cnn>__fold<k>.training.json
                                         a CNN's inner model and its training record
      metrics.csv, summary.csv           per fold; over folds with intervals
      comparison.md, comparison.tex, report.html, model_card.md, plots/
      serving/                           ONNX exports (``ichkit serve``, ``evaluate``, ``predict``)
      targets/<subtype>/                 a subtype's predictions/, held_out/ and models/
                                         (``for_target``; a CNN's weights, one model for
                                         every target, stay in the top models/)
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import yaml

from ichkit.experiments import _io

__all__ = ["PREDICTION_COLUMNS", "RunFolder"]

#: The columns of ``predictions/<model>__fold<k>.csv``: the test slice, its label, the
#: model's probability, and the slice and scan thresholds with how each was chosen
#: (``ichkit.experiments.thresholds``).
PREDICTION_COLUMNS = [
    "path", "patient_id", "scan_id", "slice_index", "label", "row", "model", "fold",
    "probability", "ms_per_slice", "threshold", "threshold_rule", "threshold_reason",
    "scan_threshold", "scan_threshold_rule", "scan_threshold_reason",
]  # fmt: skip

_FOLD_FILE = re.compile(r"^(?P<model>.+)__fold(?P<fold>\d+)\.csv$")


class RunFolder:
    """The files of one ``ichkit run`` output folder.

    Parameters
    ----------
    root : str or Path
        The folder (``--out``); it need not exist yet.
    """

    def __init__(self, root: str | Path, *, main: RunFolder | None = None):
        self.root = Path(root)
        self.main = self if main is None else main

    def for_target(self, target: str) -> RunFolder:
        """The folder of ``target``'s predictions, held-out predictions and models: this
        one for any hemorrhage, ``targets/<target>/`` for a subtype. Its ``main`` is
        this run's top folder (where models shared by every target are kept)."""
        if target == "any":
            return self.main
        return RunFolder(self.main.root / "targets" / target, main=self.main)

    def __repr__(self) -> str:
        return f"RunFolder('{self.root}')"

    # --- files of the whole run -------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.root / "config.yaml"

    @property
    def versions_path(self) -> Path:
        return self.root / "versions.json"

    @property
    def inspection_path(self) -> Path:
        return self.root / "inspection.json"

    @property
    def notes_path(self) -> Path:
        return self.root / "notes.json"

    @property
    def skipped_path(self) -> Path:
        return self.root / "skipped.json"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def summary_path(self) -> Path:
        return self.root / "summary.csv"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    @property
    def serving_dir(self) -> Path:
        return self.root / "serving"

    def report_path(self, kind: str) -> Path:
        """``comparison.md`` (``"markdown"``), ``comparison.tex`` (``"latex"``),
        ``report.html`` (``"html"``) or ``model_card.md`` (``"model_card"``)."""
        names = {
            "markdown": "comparison.md",
            "latex": "comparison.tex",
            "html": "report.html",
            "model_card": "model_card.md",
        }
        return self.root / names[kind]

    def plot_path(self, name: str) -> Path:
        return self.plots_dir / f"{name}.png"

    # --- files of one model x fold ----------------------------------------------------

    def predictions_path(self, model: str, fold: int) -> Path:
        """Test predictions of ``model`` on fold ``fold``; written last, so its presence
        marks the fold finished (a resumed run skips it)."""
        return self.root / "predictions" / f"{model}__fold{fold}.csv"

    def held_out_path(self, model: str, fold: int) -> Path:
        return self.root / "held_out" / f"{model}__fold{fold}.csv"

    def model_path(self, model: str, fold: int, part: str = "") -> Path:
        """The trained model, with its family's suffix (``.joblib``, ``.weights.h5``,
        ``.keras``). ``part="inner"``: a CNN's inner model (trained without its validation
        patients); ``part="training"``: the JSON record of how it was trained;
        ``part="inference"``: the JSON record of the engine and precision that run it
        (``onnx_path`` gives its ONNX files)."""
        from ichkit.experiments.registry import family_of

        if part in ("training", "inference"):
            return self.root / "models" / f"{model}__fold{fold}.{part}.json"
        suffix = family_of(model).suffix
        return self.root / "models" / f"{model}__fold{fold}{f'__{part}' if part else ''}{suffix}"

    def onnx_path(self, model: str, fold: int, precision: str = "float32") -> Path:
        """A CNN's ONNX export (``precision="float32"``) or its int8 version (``"int8"``),
        made by ``ichkit run`` beside its weights."""
        tag = "" if precision == "float32" else f".{precision}"
        return self.root / "models" / f"{model}__fold{fold}{tag}.onnx"

    # --- reading and writing ----------------------------------------------------------

    def is_run(self) -> bool:
        """Whether this folder holds a run's config and at least one finished fold."""
        return self.config_path.is_file() and bool(self.finished_folds())

    def read_config(self) -> dict:
        return yaml.safe_load(self.config_path.read_text())

    def write_config(self, config: dict) -> None:
        _io.write_yaml(self.config_path, config)

    def write_json(self, path: Path, value) -> None:
        _io.write_json(path, value)

    def finished_folds(self, model: str | None = None) -> dict[str, list[int]]:
        """Model -> the folds with test predictions (of ``model`` only, if given)."""
        found: dict[str, list[int]] = {}
        folder = self.root / "predictions"
        for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
            match = _FOLD_FILE.match(path.name)
            if match and model in (None, match["model"]):
                found.setdefault(match["model"], []).append(int(match["fold"]))
        return {name: sorted(folds) for name, folds in found.items()}

    def write_predictions(self, model: str, fold: int, held_out: pd.DataFrame,
                          predictions: pd.DataFrame) -> None:  # fmt: skip
        """A finished fold: held-out predictions first, then the test predictions (each
        atomically), so a test file always has its held-out file."""
        _io.write_csv(self.held_out_path(model, fold), held_out.reset_index())
        _io.write_csv(self.predictions_path(model, fold), predictions)

    def read_fold_predictions(self, model: str, fold: int) -> pd.DataFrame:
        return pd.read_csv(self.predictions_path(model, fold))

    def read_held_out(self, model: str, fold: int) -> pd.DataFrame:
        """Held-out predictions indexed by data set row (``FoldFit.held_out``)."""
        return pd.read_csv(self.held_out_path(model, fold), index_col="row")

    def read_predictions(self, models: list[str]) -> pd.DataFrame:
        """Every finished fold's test predictions of ``models``, in model order."""
        paths = [
            self.predictions_path(name, fold)
            for name in models
            for fold in self.finished_folds(name).get(name, [])
        ]
        return pd.concat(
            [pd.read_csv(path, dtype={"patient_id": str, "scan_id": str}) for path in paths]
        )

    def read_summary(self) -> pd.DataFrame | None:
        return pd.read_csv(self.summary_path) if self.summary_path.is_file() else None
