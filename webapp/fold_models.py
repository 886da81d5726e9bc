"""One fold's trained model of each family, giving a probability for every uploaded slice.

Each class has ``probability(upload, memo) -> (n_slices,)``. ``memo`` is one request's
store, so the CNN that a sequence model and an ensemble both read, or the features
that five classical models share, are computed once a request.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from ichkit.webapp.uploads import Upload

__all__ = ["ClassicalFold", "CnnFold", "EnsembleFold", "SequenceFold", "load_trusted_joblib"]

log = logging.getLogger(__name__)


def load_trusted_joblib(path: Path) -> dict:
    """A joblib file of the served run itself (a pickle: never one from an upload)."""
    import joblib

    return joblib.load(path)


def _memo(memo: dict, key, compute):
    if key not in memo:
        memo[key] = compute()
    return memo[key]


class ClassicalFold:
    """A tuned classical model on handcrafted features (``ichkit.classical.persistence`` file)."""

    def __init__(self, path: Path):
        from ichkit.features.extraction import build_extractor

        payload = load_trusted_joblib(path)
        self.model, self.feature_names = payload["model"], payload["feature_names"]
        self.feature_config = payload["feature_config"]
        self._extractor = build_extractor(self.feature_config)
        self._key = ("features", json.dumps(self.feature_config, sort_keys=True))

    def probability(self, upload: Upload, memo: dict) -> np.ndarray:
        from ichkit.features.extraction import slice_features

        features = _memo(
            memo,
            self._key,
            lambda: np.stack(
                [
                    slice_features(image, self.feature_config, extractor=self._extractor)
                    for image in upload.slices
                ]
            ),
        )
        frame = pd.DataFrame(features, columns=self.feature_names)
        return np.asarray(self.model.predict_proba(frame), dtype=float)


class CnnFold:
    """A CNN head from its weights; ONNX Runtime predicts where ``onnx_dir`` is given and
    the export works, Keras otherwise. ``keras`` is kept for Grad-CAM."""

    def __init__(
        self,
        name: str,
        weights: Path,
        deep_config: dict,
        *,
        onnx_dir: Path | None,
        n_threads: int,
        keras_lock: threading.Lock,
    ):
        from ichkit.deep.backbones import build_classifier

        self.size, self.window = deep_config["size"], deep_config["window"]
        self.keras = build_classifier(name, (self.size, self.size, 3), weights=weights)
        self._lock = keras_lock
        self.onnx = None
        if onnx_dir is not None:
            try:
                self.onnx = self._exported(name, weights, onnx_dir, n_threads)
            except Exception as error:  # noqa: BLE001  any export failure: Keras still works
                log.warning(
                    "ONNX export of '%s' failed (%s); predicting with Keras.", weights, error
                )

    def _exported(self, name: str, weights: Path, folder: Path, n_threads: int):
        """The ONNX export of these weights, made once: named by the weights' digest."""
        import hashlib

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

    def images(self, upload: Upload, memo: dict) -> np.ndarray:
        """The model inputs: (n, size, size, 3) in [0, 1], prepared as in training."""
        from ichkit.deep.data import prepare_slices

        key = ("images", self.size, self.window)
        return _memo(
            memo, key, lambda: prepare_slices(upload.slices, size=self.size, window=self.window)
        )

    def probability(self, upload: Upload, memo: dict) -> np.ndarray:
        def compute():
            images = self.images(upload, memo)
            if self.onnx is not None:
                return self.onnx.predict_proba(images).astype(float)
            with self._lock:
                return self.keras.predict(images, verbose=0)[:, 0].astype(float)

        return _memo(memo, ("cnn", id(self)), compute)

    def embeddings(self, upload: Upload, memo: dict) -> np.ndarray:
        from ichkit.deep.sequence import embedding_model

        def compute():
            with self._lock:
                return embedding_model(self.keras).predict(self.images(upload, memo), verbose=0)

        return _memo(memo, ("embeddings", id(self)), compute)


class SequenceFold:
    """A BiLSTM/BiGRU over a scan's ordered slices, reading its fold CNN's logits (or
    embeddings, as the run's ``sequence.inputs`` says)."""

    def __init__(self, path: Path, cnn: CnnFold, inputs: str, *, keras_lock: threading.Lock):
        import keras

        import ichkit.deep.sequence  # noqa: F401  registers its custom layers before loading

        self.model = keras.models.load_model(path)  # the run's own file, never an upload
        self.cnn, self.inputs, self._lock = cnn, inputs, keras_lock

    def probability(self, upload: Upload, memo: dict) -> np.ndarray:
        from ichkit.deep.sequence import pad_scans, predict_slices
        from ichkit.ensemble import probability_logits

        if self.inputs == "logits":
            inputs = probability_logits(self.cnn.probability(upload, memo)[:, None])
        else:
            inputs = self.cnn.embeddings(upload, memo)
        n = len(upload.slices)
        batch = pad_scans(inputs.astype(np.float32), np.zeros(n, dtype=int), np.arange(n))
        with self._lock:
            return np.asarray(predict_slices(self.model, batch), dtype=float)


class EnsembleFold:
    """Soft voting or stacking over its members' probabilities on the same fold."""

    def __init__(self, payload: dict, members: dict):
        self.combiner, self.members = payload["combiner"], members

    def probability(self, upload: Upload, memo: dict) -> np.ndarray:
        columns = [fold.probability(upload, memo) for fold in self.members.values()]
        return self.combiner.predict_proba(np.column_stack(columns))[:, 1].astype(float)
