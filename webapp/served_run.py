"""The models of a finished ``ichkit run``, served to predict on uploads.

``ServedRun`` is a ``TrainedRun`` (``ichkit.experiments.trained_run``: finding the
run's models, their fold-averaged probabilities and thresholds, loading each fold by
the family that trained it, ONNX exports) plus what the web app adds: the verdict on
an upload, the default model per kind of upload, and Grad-CAM heatmaps (which need
gradients and use the Keras model). Only the run's own files are loaded; nothing
uploaded ever is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ichkit.experiments.families.cnn import output_column
from ichkit.experiments.registry import family_of
from ichkit.experiments.trained_run import (
    THRESHOLD_RULE,
    TrainedModel,
    TrainedRun,
    is_informative_threshold,
)
from ichkit.scans.plausibility import check_scan, check_slices
from ichkit.webapp.uploads import Upload, UploadError

__all__ = ["ServedModel", "ServedRun"]

log = logging.getLogger(__name__)

#: What ``GET /api/models`` tells about one model of the run (the name the web app
#: has always used for ``TrainedModel``).
ServedModel = TrainedModel


class ServedRun(TrainedRun):
    """A run folder's models (``TrainedRun``, same parameters) as the web app serves
    them: verdicts on uploads, Grad-CAM, and ``GET /api/models``."""

    def __init__(self, run_dir: str | Path, *, onnx: bool = True, n_threads: int = 1):
        super().__init__(run_dir, onnx=onnx, n_threads=n_threads)
        self.defaults = {kind: self._default_model(kind) for kind in ("slice", "scan")}

    # --- what the run holds ----------------------------------------------------------

    def _default_model(self, kind: str) -> str | None:
        """The run's best model for ``kind`` uploads (``ranked_models``: by mean slice
        AUC) that has a heatmap to show; else the best."""
        ranked = [model.name for model in self.ranked_models(kind)]
        with_heatmap = [name for name in ranked if self.heatmap_model(name)]
        return (with_heatmap or ranked or [None])[0]

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

    def predict(
        self, name: str, upload: Upload, *, heatmaps: int = 3, heatmap_target: str = "any"
    ) -> dict:
        """The verdict on an upload by model ``name``, as ``POST /api/predict`` returns it.

        ``heatmaps`` is how many of the slices to look at first get a Grad-CAM map, of the
        CNN output of ``heatmap_target`` (any hemorrhage, or a subtype the run predicts).
        Where the run predicted subtypes, ``subtypes`` gives each one's probability (the
        most likely slice's), its threshold and whether it is above it, and each slice's
        probability; the verdict stays the any-hemorrhage model's.
        Before any model runs, the upload passes the plausibility gate
        (``ichkit.scans.plausibility``): a slice that does not look like head CT, or a
        scan too few of whose slices do, is refused with a 422.
        """
        from ichkit.webapp import figures

        notes = [*upload.notes, *_plausibility_notes(upload)]
        model = self.models[name]
        if model.needs_scan and upload.kind != "scan":
            raise UploadError(
                422,
                f"'{name}' reads the ordered slices of a scan: upload a zip of a DICOM "
                "series or a NIfTI volume, or choose a model that reads single slices.",
            )
        if heatmap_target not in self.targets:
            raise UploadError(
                400,
                f"Unknown target '{heatmap_target}'. This run predicts: {', '.join(self.targets)}.",
            )
        memo: dict = {}
        start = time.perf_counter()
        probability = self.probability(name, upload.slices, memo)
        subtypes = self._subtypes(name, upload, memo)
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
            "subtypes": subtypes,
            "look_first": look_first,
            "heatmap_model": None,
            "heatmap_target": heatmap_target,
            "heatmap_note": self.heatmap_note(name),
            "heatmaps": [],
            "skipped": upload.skipped,
            "notes": notes,
            "timing_ms": {"inference": inference_ms, "gradcam": 0.0},
            "engine": self.load(name)[0].engine,
        }
        cnn = self.heatmap_model(name)
        if heatmaps and cnn is not None:
            start = time.perf_counter()
            chosen = look_first[:heatmaps]
            images, maps = self._grad_cam(cnn, upload, chosen, memo, heatmap_target)
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
        if not is_informative_threshold(threshold):
            answer["notes"] = [
                *notes,
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

    def _subtypes(self, name: str, upload: Upload, memo: dict) -> dict:
        """Each subtype's probability by model ``name`` (the run's model of that target)."""
        found = {}
        for target, probability in self.target_probabilities(name, upload.slices, memo).items():
            model = self.for_target(target).models[name]
            threshold = model.scan_threshold if upload.kind == "scan" else model.threshold
            found[target] = {
                "probability": float(probability.max()),
                "threshold": threshold,
                "present": bool(probability.max() >= threshold),
                "slices": [float(p) for p in probability],
            }
        return found

    def _grad_cam(self, cnn: str, upload: Upload, chosen: list[int], memo: dict,
                  target: str = "any"):  # fmt: skip
        """The model inputs of slices ``chosen`` and their Grad-CAM of ``target``'s
        output, averaged over folds."""
        from ichkit.deep.gradcam import grad_cam

        folds = self.load(cnn)
        images = folds[0].images(upload.slices, memo)[chosen]
        output = output_column(self.config, target)
        with self._keras:
            maps = np.mean(
                [grad_cam(fold.keras, images, output_index=output) for fold in folds], axis=0
            )
        peaks = maps.max(axis=(1, 2), keepdims=True)
        maps = np.divide(maps, peaks, out=np.zeros_like(maps), where=peaks > 0)
        return images, maps

    # --- loading ----------------------------------------------------------------------

    def warm_up(self, names: Sequence[str] | None = None) -> None:
        """Load every model now (the first request would otherwise wait for it); a model
        that fails is logged here and reported when it is asked for."""
        for name in self.models if names is None else names:
            try:
                self.load(name)
            except Exception:  # noqa: BLE001  reported when the model is asked for
                log.exception("Could not load model '%s' of '%s'", name, self.run_dir)

    def describe(self) -> dict:
        """``GET /api/models``: the run, its default model and every model it serves."""
        return {
            "run": self.run_dir.name,
            "default": self.defaults["slice"],
            "default_for_scans": self.defaults["scan"],
            "models": [model.as_dict() for model in self.models.values()],
            "targets": self.targets,
            "threshold_rule": THRESHOLD_RULE,
        }


#: How many implausible slices of a scan a note names (the count covers them all).
_N_SLICES_NAMED = 5


def _plausibility_notes(upload: Upload) -> list[str]:
    """Refuse an upload that does not look like head CT (``UploadError`` 422, naming the
    file as the user called it); for a scan that passes, a note naming its slices that
    do not look like head CT on their own (slices above the vertex, a headrest)."""
    reasons = check_slices(upload.slices)
    if upload.kind != "scan":
        for name, reason in zip(upload.names, reasons, strict=True):
            if reason is not None:
                raise UploadError(422, f"'{name}' does not look like a head CT slice: {reason}")
        return []
    refusal = check_scan(upload.slices, reasons=reasons)
    if refusal is not None:
        raise UploadError(422, f"'{upload.filename}' does not look like a head CT scan: {refusal}")
    implausible = [
        f"{name} ({reason})"
        for name, reason in zip(upload.names, reasons, strict=True)
        if reason is not None
    ]
    if not implausible:
        return []
    more = len(implausible) - _N_SLICES_NAMED
    return [
        f"{len(implausible)} of the {len(reasons)} slices do not look like head CT on "
        "their own (usual above the vertex or below the skull base) and were read as "
        f"part of the scan: {'; '.join(implausible[:_N_SLICES_NAMED])}"
        + (f"; and {more} more" if more > 0 else "")
        + "."
    ]
