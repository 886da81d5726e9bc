"""The models of a finished ``ichkit run``, loaded from its folder to predict on new slices.

A run trains one model per fold. Applied to new data, a model is their average: each
fold's model gives a probability, and the mean is compared with the mean of the fold
thresholds (each chosen on held-out training-part patients of its fold, read from the
run's predictions). A run with one split has one fold. Nothing is refitted.

Each fold is loaded by its model's family (``ichkit.experiments.families``), the same
object that trained it, from the files ``RunFolder`` names. Only the run's own files
are loaded (they are pickles and programs: trusted because this machine's user made
them); never a file of the data being predicted.

CNN heads can run through ONNX Runtime: each fold's weights are exported once, into
the run's ``serving/`` folder (a temporary folder when the run is read-only), named by
the weights' digest, so retrained weights are exported again.

``ichkit serve`` (``ichkit.webapp``), ``ichkit evaluate`` and ``ichkit predict``
(``ichkit.experiments.external``) all predict through ``TrainedRun``.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ichkit.experiments.families import FoldModel, ServingContext
from ichkit.experiments.registry import family_of, list_models
from ichkit.experiments.run_folder import RunFolder
from ichkit.experiments.targets import run_targets

__all__ = ["THRESHOLD_RULE", "TrainedModel", "TrainedRun", "is_informative_threshold"]

#: How a trained run's thresholds are set when its models are applied to new data.
THRESHOLD_RULE = (
    "mean over folds of each fold's threshold, chosen on held-out training-part patients "
    "(Youden's J, or a stated fallback where they were too few: the run's notes.json)"
)


def is_informative_threshold(threshold: float) -> bool:
    """Whether a run's threshold separates anything: a Youden threshold of 0 or 1 means
    the held-out patients that chose it did not separate (too few of them), so verdicts
    at that threshold say little."""
    return 0 < threshold < 1


@dataclass(frozen=True)
class TrainedModel:
    """One model of a finished run, as it is applied to new data.

    ``threshold`` and ``scan_threshold`` are the means over folds of the thresholds the
    run chose on held-out patients; ``auc`` is the run's slice AUC on its pooled test
    predictions (``summary.csv``), None where it has none; ``needs_scan`` says it reads the
    ordered slices of a scan (a sequence model, or an ensemble with one); ``members``
    are an ensemble's, as its saved combiner lists them.
    """

    name: str
    family: str
    folds: tuple[int, ...]
    threshold: float
    scan_threshold: float
    auc: float | None
    needs_scan: bool
    members: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """The model as ``GET /api/models`` describes it."""
        return {
            "name": self.name,
            "family": self.family,
            "folds": len(self.folds),
            "threshold": self.threshold,
            "scan_threshold": self.scan_threshold,
            "slice_auc": self.auc,
            "input": "scan" if self.needs_scan else "slice or scan",
        }


class TrainedRun:
    """A run folder's models, loaded on first use (``warm_up`` loads them all).

    Parameters
    ----------
    run_dir : str or Path
        A folder written by ``ichkit run`` (``config.yaml``, ``predictions/``, ``models/``).
    onnx : bool, default=True
        Run CNN heads through ONNX Runtime (exported from the run's weights); False, or
        an export that fails, uses Keras.
    n_threads : int, default=1
        ONNX Runtime threads per call; 1 suits a server answering several requests.
    target : str, default="any"
        The target whose models are served: any hemorrhage, or a subtype the run
        predicted (its ``targets``).

    Attributes
    ----------
    run : RunFolder
        The run's files.
    config : dict
        The run's resolved config (``config.yaml``).
    models : dict of str to TrainedModel
        Every finished model this process knows, in the config's order.

    Raises
    ------
    FileNotFoundError
        ``run_dir`` is not a finished run folder.
    ValueError
        The run has no finished model to apply.
    """

    def __init__(
        self, run_dir: str | Path, *, onnx: bool = True, n_threads: int = 1, target: str = "any"
    ):
        main = RunFolder(run_dir)
        self.run_dir = main.root
        if not main.is_run():
            raise FileNotFoundError(
                f"'{self.run_dir}' is not a finished run folder (no config.yaml or no finished "
                "predictions). Make one with: ichkit run quick --data DATA --out RUN_DIR"
            )
        self.config = main.read_config()
        self.targets = run_targets(self.config)
        if target not in self.targets:
            raise ValueError(
                f"Run '{self.run_dir}' predicts {', '.join(self.targets)}; not '{target}'."
            )
        self.run, self.target = main.for_target(target), target
        self.onnx, self.n_threads = onnx, n_threads
        self.models = self._find_models()
        if not self.models:
            raise ValueError(f"Run folder '{self.run_dir}' holds no finished model to serve.")
        self._folds: dict[str, list[FoldModel]] = {}
        self._loading = threading.RLock()  # loading a model loads its members
        self._keras = threading.Lock()  # Keras calls (Grad-CAM, sequences) one at a time
        self._onnx_dir: Path | None = None
        self._other_targets: dict[str, TrainedRun] = {}

    # --- what the run holds ----------------------------------------------------------

    def _find_models(self) -> dict[str, TrainedModel]:
        auc = {}
        summary = self.run.main.read_summary()
        if summary is not None:
            column = "auc_pooled" if "auc_pooled" in summary else "auc_mean"  # older runs
            rows = summary["level"] == "slice"
            if "target" in summary:
                rows &= summary["target"] == self.target
            auc = summary[rows].set_index("model")[column].to_dict()
        finished, known = self.run.finished_folds(), set(list_models())
        models = {}
        for name in self.config.get("models", []):
            if name not in known or name not in finished:
                continue  # a model this process does not know (unregistered), or unfinished
            folds, thresholds, scan_thresholds = finished[name], [], []
            for fold in folds:
                first = pd.read_csv(self.run.predictions_path(name, fold), nrows=1)
                thresholds.append(float(first["threshold"].iloc[0]))
                scan = first.get("scan_threshold", first["threshold"]).iloc[0]
                scan_thresholds.append(float(scan) if pd.notna(scan) else thresholds[-1])
            family, value = family_of(name), auc.get(name)
            if not all(family.model_file(self.run, name, fold).is_file() for fold in folds):
                continue
            members = ()
            if family.reads == "predictions":
                members = tuple(family.members(self.run, name, folds[0]))
            models[name] = TrainedModel(
                name,
                family.name,
                tuple(folds),
                float(np.mean(thresholds)),
                float(np.mean(scan_thresholds)),
                None if value is None or pd.isna(value) else float(value),
                needs_scan=family.reads_scans(name, members),
                members=members,
            )
        return models

    def ranked_models(self, kind: str) -> list[TrainedModel]:
        """The models that read ``kind`` input, best first by the run's pooled slice AUC
        (models without one last).

        ``kind`` is ``"scan"`` (the ordered slices of a scan: every model reads it) or
        ``"slice"`` (single or loose slices: models that need a scan's order are left out).
        """
        if kind not in ("slice", "scan"):
            raise ValueError(f"The 'kind' of input must be 'slice' or 'scan'. Got {kind!r}.")
        return sorted(
            (model for model in self.models.values() if kind == "scan" or not model.needs_scan),
            key=lambda model: -np.inf if model.auc is None else model.auc,
            reverse=True,
        )

    def default_model(self, kind: str) -> str | None:
        """The run's best model (``ranked_models``) for ``kind`` input; None if none reads it."""
        ranked = self.ranked_models(kind)
        return ranked[0].name if ranked else None

    # --- predicting ----------------------------------------------------------------

    def fold_probabilities(self, name: str, slices: Sequence, memo: dict) -> np.ndarray:
        """(n_folds, n_slices): each fold's model of ``name`` on every slice.

        ``slices`` are ``SliceImage`` of one scan in slice order (or loose slices, for
        models that do not need a scan); ``memo`` is one dict per such list, so that what
        models share (features, a CNN's outputs) is computed once.
        """
        key = ("probability", self.target, name)
        if key not in memo:
            memo[key] = np.stack([fold.probability(slices, memo) for fold in self.load(name)])
        return memo[key]

    def probability(self, name: str, slices: Sequence, memo: dict) -> np.ndarray:
        """(n_slices,): the model ``name``, its folds averaged, on every slice."""
        return self.fold_probabilities(name, slices, memo).mean(axis=0)

    def target_probabilities(self, name: str, slices: Sequence, memo: dict) -> dict:
        """Target -> (n_slices,) probabilities of model ``name`` (its folds averaged), for
        each other target of the run that ``name`` predicts (the subtypes). A CNN's
        outputs and the features are computed once for all of them (``memo``)."""
        found = {}
        for target in self.targets:
            other = self.for_target(target)
            if target != self.target and name in other.models:
                found[target] = other.probability(name, slices, memo)
        return found

    def for_target(self, target: str) -> TrainedRun:
        """This run's models of ``target``, loaded on first use; they share this one's
        Keras lock and ONNX folder."""
        if target == self.target:
            return self
        with self._loading:
            if target not in self._other_targets:
                other = TrainedRun(self.run_dir, onnx=self.onnx, n_threads=self.n_threads,
                                   target=target)  # fmt: skip
                other._keras, other._onnx_dir = self._keras, self._onnx_folder()
                self._other_targets[target] = other
            return self._other_targets[target]

    # --- loading ----------------------------------------------------------------------

    def warm_up(self, names: Sequence[str] | None = None) -> None:
        """Load every model (or ``names``) now, instead of at its first prediction."""
        for name in self.models if names is None else names:
            self.load(name)

    def load(self, name: str) -> list[FoldModel]:
        """The folds of model ``name``, loaded once and kept."""
        with self._loading:
            if name not in self._folds:
                self._folds[name] = [self._load_fold(name, f) for f in self.models[name].folds]
            return self._folds[name]

    def _load_fold(self, name: str, fold: int) -> FoldModel:
        """Fold ``fold`` of ``name``, loaded by the family that trained it."""
        context = ServingContext(
            run=self.run,
            config=self.config,
            fold_model=self._fold,
            onnx_folder=self._onnx_folder,
            n_threads=self.n_threads,
            keras_lock=self._keras,
            target=self.target,
        )
        return family_of(name).load_fold(name, fold, context)

    def _fold(self, name: str, fold: int) -> FoldModel:
        """Fold ``fold`` of model ``name`` (a member or the CNN another model reads)."""
        if name not in self.models or fold not in self.models[name].folds:
            raise ValueError(f"Run '{self.run_dir}' has no fold {fold} of '{name}' to read.")
        return self.load(name)[self.models[name].folds.index(fold)]

    def _onnx_folder(self) -> Path | None:
        if not self.onnx:
            return None
        if self._onnx_dir is None:
            folder = self.run.main.serving_dir
            try:
                folder.mkdir(exist_ok=True)
                probe = folder / ".writable"
                probe.touch()
                probe.unlink()
            except OSError:
                folder = Path(tempfile.mkdtemp(prefix="ichkit-onnx-"))
                atexit.register(shutil.rmtree, folder, ignore_errors=True)
            self._onnx_dir = folder
        return self._onnx_dir
