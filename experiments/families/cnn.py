"""CNN heads on single slices (the small CNN, MobileNet, ResNet50, VGG16, or a user's)."""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from ichkit.experiments.families._base import (
    FoldData,
    FoldFit,
    ModelFamily,
    ServingContext,
    held_out_frame,
    memoised,
)

__all__ = ["CnnFamily", "CnnFold"]

log = logging.getLogger(__name__)

#: Slices per stored chunk of CNN logits or embeddings.
_INPUT_CHUNK = 256


class CnnFamily(ModelFamily):
    """A Keras head (``ichkit.deep.backbones.build_classifier`` around the registered
    backbone), trained on the fold's training patients and early-stopped on some of them;
    its weights are the saved model."""

    name = "cnn"
    suffix = ".weights.h5"
    reads = "slices"

    def build(self, name: str, input_shape=(224, 224, 3), **params):
        """The classifier ``name`` with the shared top (``build_classifier``)."""
        from ichkit.deep.backbones import build_classifier
        from ichkit.experiments.registry import accepted_params, resolve

        backbone = resolve(name).load_builder()
        params = accepted_params(build_classifier, params)
        return build_classifier(name, input_shape, backbone=backbone, **params)

    def fit_fold(self, name: str, data: FoldData, config: dict, run) -> FoldFit:
        """Train the head; predict its validation patients (the held-out rows that choose
        its thresholds) and the test slices (time per slice includes reading and
        preparing them).

        Its held-out rows are its validation patients only. K-fold predictions for all
        training patients would need K more CNNs, each trained on fewer patients: on the
        CT-ICH copy (about 13 training patients a fold) such CNNs reached slice AUC
        0.69-0.71 where the fold's CNN reached 0.92-0.96 on its validation patients, so
        they would tell an ensemble little about the CNN it actually gets."""
        model, _, validation = self.fold_model(name, data, config, run)
        probability_validation = _sigmoid(
            cached_slice_inputs(
                model, run.model_path(name, data.fold), data.dataset, validation, config
            )  # fmt: skip
        )
        test = data.index(data.test)
        start = time.perf_counter()
        probability = _sigmoid(slice_inputs(model, data.dataset, test, config))
        ms = (time.perf_counter() - start) * 1000 / len(test)
        held_out = held_out_frame(validation, probability_validation, True)
        return FoldFit(probability, ms, held_out)

    def fold_model(self, name: str, data: FoldData, config: dict, run):
        """The fold's CNN, trained on training patients only (or loaded if this run
        already trained it). Returns it with the data set rows it fitted and the training
        patients it held out for early stopping."""
        from ichkit import scans

        train, validation = data.index(data.train), data.index(data.validation)
        if validation is None:  # cross-validation: hold out some training patients
            inner = scans.patient_split(
                data.groups[data.train], data.labels[data.train],
                val_size=config["deep"]["validation_size"], test_size=0.0,
                random_state=config["seed"],
            )  # fmt: skip
            train, validation = train[inner.train], train[inner.validation]
        weights = run.model_path(name, data.fold)
        model = self._train(name, data.dataset, train, validation, config, weights)
        return model, train, validation

    def _train(self, name, dataset, train, validation, config, weights_path: Path):
        """A head fitted on rows ``train``, early-stopped on ``validation``; loaded from
        ``weights_path`` instead when that exists (a resumed run)."""
        from ichkit import scans
        from ichkit.deep.data import SliceBatches
        from ichkit.deep.training import train_classifier

        settings = config["deep"]
        shape = (settings["size"], settings["size"], 3)
        if weights_path.is_file():
            return self.build(name, shape, weights=weights_path)
        batches = batch_settings(config)
        augment = scans.RandomAugment(**settings["augment"], random_state=config["seed"])
        training = SliceBatches(
            dataset, train, augment=augment, shuffle=True, seed=config["seed"], **batches
        )
        model = self.build(name, shape, weights=settings["weights"], seed=config["seed"])
        train_classifier(
            model, training, SliceBatches(dataset, validation, **batches),
            epochs=settings["epochs"], learning_rate=settings["learning_rate"],
            optimizer=settings["optimizer"], warmup_epochs=settings["warmup_epochs"],
            patience=settings["patience"], checkpoint=weights_path, seed=config["seed"],
            verbose=0,
        )  # fmt: skip
        return model

    def load_fold(self, name: str, fold: int, context: ServingContext) -> CnnFold:
        return CnnFold(self, name, context.run.model_path(name, fold), context)

    def heatmap_cnn(self, name, config, members=()):
        return name


def batch_settings(config: dict) -> dict:
    settings = config["deep"]
    return {
        "size": settings["size"],
        "window": settings["window"],
        "batch_size": settings["batch_size"],
        "cache": settings["cache_slices"],
    }


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.asarray(logits, dtype=float)[:, 0]))


def slice_inputs(cnn, dataset, rows, config, kind: str = "logits") -> np.ndarray:
    """What the CNN makes of each slice: its logit (one column) or its pooled embedding."""
    from ichkit.deep.data import SliceBatches
    from ichkit.deep.sequence import embedding_model
    from ichkit.ensemble import probability_logits

    slices = SliceBatches(dataset, rows, **batch_settings(config))
    if kind == "embeddings":
        return embedding_model(cnn).predict(slices, verbose=0)
    return probability_logits(cnn.predict(slices, verbose=0)[:, :1]).astype("float32")


def cached_slice_inputs(cnn, weights: Path, dataset, rows, config, kind="logits") -> np.ndarray:
    """``slice_inputs``, kept in a ``FeatureStore`` beside the CNN's weights, in chunks
    keyed by the slices' content and the weights' digest: the heads, the LSTM, the GRU
    and a resumed run compute each chunk once, and retrained weights start afresh."""
    from ichkit.features.store import FeatureStore, slice_digest

    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    store = FeatureStore(weights.parent / "slice-inputs", f"{weights.name}:{digest}:{kind}")
    table = dataset.table.loc[rows]
    parts = []
    for start in range(0, len(rows), _INPUT_CHUNK):
        chunk = np.asarray(rows[start : start + _INPUT_CHUNK])
        pairs = zip(table.loc[chunk, "path"], table.loc[chunk, "frame"], strict=True)
        digests = [slice_digest(path, frame) for path, frame in pairs]
        path = store.chunk_path(digests)
        if path.is_file():
            parts.append(store.read(path))
            continue
        values = slice_inputs(cnn, dataset, chunk, config, kind)
        store.write(path, digests, values, [f"{kind}_{i}" for i in range(values.shape[1])])
        parts.append(values)
    return np.concatenate(parts).astype("float32")


class CnnFold:
    """A CNN head from its weights; ONNX Runtime predicts where ``context.onnx_folder()``
    gives a folder and the export works, Keras otherwise. ``keras`` is kept for Grad-CAM."""

    def __init__(self, family: CnnFamily, name: str, weights: Path, context: ServingContext):
        settings = context.config["deep"]
        self.size, self.window = settings["size"], settings["window"]
        self.keras = family.build(name, (self.size, self.size, 3), weights=weights)
        self._lock = context.keras_lock
        self.onnx = None
        onnx_dir = context.onnx_folder()
        if onnx_dir is not None:
            try:
                self.onnx = self._exported(name, weights, onnx_dir, context.n_threads)
            except Exception as error:  # noqa: BLE001  any export failure: Keras still works
                log.warning(
                    "ONNX export of '%s' failed (%s); predicting with Keras.", weights, error
                )
        self.engine = "onnxruntime" if self.onnx is not None else "keras"

    def _exported(self, name: str, weights: Path, folder: Path, n_threads: int):
        """The ONNX export of these weights, made once: named by the weights' digest."""
        from ichkit.deep.export import export_onnx
        from ichkit.deep.inference import OnnxClassifier

        digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
        target = folder / f"{name}__{digest}.onnx"
        if not target.is_file():
            with tempfile.TemporaryDirectory(dir=folder) as scratch:
                written = export_onnx(
                    self.keras, Path(scratch) / target.name, input_shape=(self.size, self.size, 3)
                )
                written.replace(target)
        return OnnxClassifier(target, n_threads=n_threads)

    def images(self, slices, memo: dict) -> np.ndarray:
        """The model inputs: (n, size, size, 3) in [0, 1], prepared as in training."""
        from ichkit.deep.data import prepare_slices

        key = ("images", self.size, self.window)
        return memoised(
            memo, key, lambda: prepare_slices(slices, size=self.size, window=self.window)
        )

    def probability(self, slices, memo: dict) -> np.ndarray:
        def compute():
            images = self.images(slices, memo)
            if self.onnx is not None:
                return self.onnx.predict_proba(images).astype(float)
            with self._lock:
                return self.keras.predict(images, verbose=0)[:, 0].astype(float)

        return memoised(memo, ("cnn", id(self)), compute)

    def embeddings(self, slices, memo: dict) -> np.ndarray:
        from ichkit.deep.sequence import embedding_model

        def compute():
            with self._lock:
                return embedding_model(self.keras).predict(self.images(slices, memo), verbose=0)

        return memoised(memo, ("embeddings", id(self)), compute)
