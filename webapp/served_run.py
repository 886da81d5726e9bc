"""The models of a finished ``ichkit run``, loaded from its folder to predict on uploads.

A run trains one model per fold. The served model is their average: each fold's
model gives a probability, the mean is compared with the mean of the fold thresholds
(each chosen on held-out patients of its fold, read from the run's predictions). A run
with one split has one fold. Each fold is loaded by its model's family
(``ichkit.experiments.families``), the same object that trained it, from the files
``RunFolder`` names. Only the run's own files are loaded (they are pickles and
programs: trusted because this server's user made them); nothing uploaded ever is.

CNN heads run through ONNX Runtime: each fold's weights are exported once, into the
run's ``serving/`` folder (a temporary folder when the run is read-only), named by the
weights' digest, so retrained weights are exported again. Grad-CAM needs gradients
and uses the Keras model.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ichkit.experiments.families import ServingContext
from ichkit.experiments.registry import family_of, list_models
from ichkit.experiments.run_folder import RunFolder
from ichkit.webapp.uploads import Upload, UploadError

__all__ = ["ServedModel", "ServedRun"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """What ``GET /api/models`` tells about one model of the run.

    ``threshold`` and ``scan_threshold`` are the means over folds of the thresholds the
    run chose on held-out patients; ``auc`` is the run's mean slice AUC over its test
    folds (``summary.csv``), None where it has none; ``members`` are an ensemble's, as
    its saved combiner lists them.
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
        return {
            "name": self.name,
            "family": self.family,
            "folds": len(self.folds),
            "threshold": self.threshold,
            "scan_threshold": self.scan_threshold,
            "slice_auc": self.auc,
            "input": "scan" if self.needs_scan else "slice or scan",
        }


class ServedRun:
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

    Raises
    ------
    FileNotFoundError
        ``run_dir`` is not a finished run folder.
    ValueError
        The run has no model that can be served.
    """

    def __init__(self, run_dir: str | Path, *, onnx: bool = True, n_threads: int = 1):
        self.run = RunFolder(run_dir)
        self.run_dir = self.run.root
        if not self.run.is_run():
            raise FileNotFoundError(
                f"'{self.run_dir}' is not a finished run folder (no config.yaml or no finished "
                "predictions). Make one with: ichkit run quick --data DATA --out RUN_DIR"
            )
        self.config = self.run.read_config()
        self.onnx, self.n_threads = onnx, n_threads
        self.models = self._find_models()
        if not self.models:
            raise ValueError(f"Run folder '{self.run_dir}' holds no finished model to serve.")
        self.defaults = {kind: self._default_model(kind) for kind in ("slice", "scan")}
        self._folds: dict[str, list] = {}
        self._loading = threading.RLock()  # loading a model loads its members
        self._keras = threading.Lock()  # Keras calls (Grad-CAM, sequences) one at a time
        self._onnx_dir: Path | None = None

    # --- what the run holds ----------------------------------------------------------

    def _find_models(self) -> dict[str, ServedModel]:
        auc = {}
        summary = self.run.read_summary()
        if summary is not None:
            auc = summary[summary["level"] == "slice"].set_index("model")["auc_mean"].to_dict()
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
            if not all(self.run.model_path(name, fold).is_file() for fold in folds):
                continue
            family, value = family_of(name), auc.get(name)
            members = ()
            if family.reads == "predictions":
                members = tuple(family.members(self.run, name, folds[0]))
            models[name] = ServedModel(
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

    def _default_model(self, kind: str) -> str | None:
        """The run's best model by mean slice AUC that reads ``kind`` ("slice" or "scan")
        and has a heatmap; else the best that reads it."""
        ranked = sorted(
            (m for m in self.models.values() if kind == "scan" or not m.needs_scan),
            key=lambda m: -np.inf if m.auc is None else m.auc,
            reverse=True,
        )
        with_heatmap = [m.name for m in ranked if self.heatmap_model(m.name)]
        return (with_heatmap or [m.name for m in ranked] or [None])[0]

    def heatmap_model(self, name: str) -> str | None:
        """The CNN whose Grad-CAM explains ``name`` (see ``heatmap_note``)."""
        return self._heatmap_source(name)[0]

    def heatmap_note(self, name: str) -> str:
        """Why that CNN's map is the one shown for ``name``."""
        return self._heatmap_source(name)[1]

    def _heatmap_source(self, name: str) -> tuple[str | None, str]:
        model = self.models[name]
        members = [m for m in model.members if m in self.models]
        cnn = family_of(name).heatmap_cnn(name, self.config, members)
        if cnn == name:
            return name, f"Grad-CAM of {name} itself"
        if cnn is not None and model.members:
            return cnn, f"Grad-CAM of {cnn}, the CNN of a member {name} combines"
        if cnn is not None:
            return cnn, f"Grad-CAM of {cnn}, the CNN whose slice outputs {name} reads"
        cnns = [  # the models that are their own heatmap's CNN
            m
            for m in self.models.values()
            if family_of(m.name).heatmap_cnn(m.name, self.config) == m.name
        ]
        if not cnns:
            return None, f"no heatmap: {name} has no CNN to explain it and the run has none"
        best = max(cnns, key=lambda m: -np.inf if m.auc is None else m.auc).name
        return best, (
            f"Grad-CAM of {best}, the run's best CNN: {name} reads handcrafted "
            "features and has no heatmap of its own"
        )

    # --- predicting ----------------------------------------------------------------

    def predict(self, name: str, upload: Upload, *, heatmaps: int = 3) -> dict:
        """The verdict on an upload by model ``name``, as ``POST /api/predict`` returns it.

        ``heatmaps`` is how many of the slices to look at first get a Grad-CAM map.
        """
        from ichkit.webapp import figures

        model = self.models[name]
        if model.needs_scan and upload.kind != "scan":
            raise UploadError(
                422,
                f"'{name}' reads the ordered slices of a scan: upload a zip of a DICOM "
                "series or a NIfTI volume, or choose a model that reads single slices.",
            )
        memo: dict = {}
        start = time.perf_counter()
        probability = self._fold_probabilities(name, upload.slices, memo).mean(axis=0)
        inference_ms = (time.perf_counter() - start) * 1000
        slice_hits = probability >= model.threshold
        scan_probability = float(probability.max())
        threshold = model.scan_threshold if upload.kind == "scan" else model.threshold
        positive = scan_probability >= threshold
        order = np.argsort(-probability, kind="stable")
        look_first = [int(i) for i in order[: max(heatmaps, 1)]]

        answer = {
            "model": name,
            "family": model.family,
            "folds": len(model.folds),
            "kind": upload.kind,
            "filename": upload.filename,
            "verdict": "Hemorrhagic" if positive else "Normal",
            "hemorrhage": bool(positive),
            "probability": scan_probability,
            "threshold": threshold,
            "slices": [
                {
                    "index": i,
                    "name": upload.names[i],
                    "probability": float(p),
                    "hemorrhage": bool(hit),
                }
                for i, (p, hit) in enumerate(zip(probability, slice_hits, strict=True))
            ],
            "look_first": look_first,
            "heatmap_model": None,
            "heatmap_note": self.heatmap_note(name),
            "heatmaps": [],
            "skipped": upload.skipped,
            "notes": upload.notes,
            "timing_ms": {"inference": inference_ms, "gradcam": 0.0},
            "engine": self._load(name)[0].engine,
        }
        cnn = self.heatmap_model(name)
        if heatmaps and cnn is not None:
            start = time.perf_counter()
            chosen = look_first[:heatmaps]
            images, maps = self._grad_cam(cnn, upload, chosen, memo)
            answer["timing_ms"]["gradcam"] = (time.perf_counter() - start) * 1000
            answer["heatmap_model"] = cnn
            answer["heatmaps"] = [
                {
                    "index": i,
                    "name": upload.names[i],
                    "slice_png": figures.slice_png(image),
                    "overlay_png": figures.overlay_png(image, heatmap),
                }
                for i, image, heatmap in zip(chosen, images, maps, strict=True)
            ]
        if not 0 < threshold < 1:
            answer["notes"] = [
                *upload.notes,
                (
                    f"The run chose a {upload.kind} threshold of {threshold:.2f} for {name}: its "
                    f"held-out {upload.kind}s did not separate (too few of them), so this "
                    f"{upload.kind} verdict says little. The slices above the slice threshold "
                    f"({model.threshold:.2f}): {int(slice_hits.sum())} of {len(slice_hits)}."
                ),
            ]
        if upload.kind == "scan":
            answer["plot_png"] = figures.slice_plot_png(
                probability, model.threshold, look_first, title=f"{name}: per-slice probability"
            )
        return answer

    def _fold_probabilities(self, name: str, slices, memo: dict) -> np.ndarray:
        """(n_folds, n_slices): each fold's model on every slice, computed once a request."""
        key = ("probability", name)
        if key not in memo:
            memo[key] = np.stack([fold.probability(slices, memo) for fold in self._load(name)])
        return memo[key]

    def _grad_cam(self, cnn: str, upload: Upload, chosen: list[int], memo: dict):
        """The model inputs of slices ``chosen`` and their Grad-CAM, averaged over folds."""
        from ichkit.deep.gradcam import grad_cam

        folds = self._load(cnn)
        images = folds[0].images(upload.slices, memo)[chosen]
        with self._keras:
            maps = np.mean([grad_cam(fold.keras, images) for fold in folds], axis=0)
        peaks = maps.max(axis=(1, 2), keepdims=True)
        maps = np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0)
        return images, maps

    # --- loading ----------------------------------------------------------------------

    def warm_up(self) -> None:
        """Load every model now (the first request would otherwise wait for it)."""
        for name in self.models:
            try:
                self._load(name)
            except Exception:  # noqa: BLE001  reported when the model is asked for
                log.exception("Could not load model '%s' of '%s'", name, self.run_dir)

    def _load(self, name: str) -> list:
        with self._loading:
            if name not in self._folds:
                self._folds[name] = [self._load_fold(name, f) for f in self.models[name].folds]
            return self._folds[name]

    def _load_fold(self, name: str, fold: int):
        """Fold ``fold`` of ``name``, loaded by the family that trained it."""
        context = ServingContext(
            run=self.run,
            config=self.config,
            fold_model=self._fold,
            onnx_folder=self._onnx_folder,
            n_threads=self.n_threads,
            keras_lock=self._keras,
        )
        return family_of(name).load_fold(name, fold, context)

    def _fold(self, name: str, fold: int):
        """Fold ``fold`` of model ``name`` (a member or the CNN another model reads)."""
        if name not in self.models or fold not in self.models[name].folds:
            raise ValueError(f"Run '{self.run_dir}' has no fold {fold} of '{name}' to read.")
        return self._load(name)[self.models[name].folds.index(fold)]

    def _onnx_folder(self) -> Path | None:
        if not self.onnx:
            return None
        if self._onnx_dir is None:
            folder = self.run.serving_dir
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

    def describe(self) -> dict:
        """``GET /api/models``: the run, its default model and every model it serves."""
        return {
            "run": self.run_dir.name,
            "default": self.defaults["slice"],
            "default_for_scans": self.defaults["scan"],
            "models": [model.as_dict() for model in self.models.values()],
            "threshold_rule": "mean over folds of each fold's threshold, chosen on held-out "
            "patients (Youden's J)",
        }
