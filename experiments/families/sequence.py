"""Bidirectional LSTM/GRU over the ordered slices of a scan, reading the fold's CNN."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ichkit.experiments.families._base import (
    FoldData,
    FoldFit,
    ModelFamily,
    ServingContext,
    held_out_frame,
)
from ichkit.experiments.families.cnn import (
    CnnFamily,
    cached_slice_inputs,
    output_column,
    slice_inputs,
)

__all__ = ["SequenceFamily", "SequenceFold"]


class SequenceFamily(ModelFamily):
    """A BiLSTM/BiGRU over each scan's slices; what it reads of each slice (the fold
    CNN's logit or embedding) is decided here, for training and serving alike."""

    name = "sequence"
    suffix = ".keras"
    reads = "scans"

    def build(self, name: str, embedding_dim: int = 1, **params):
        """The untrained model over ``embedding_dim`` inputs a slice."""
        from ichkit.experiments.registry import accepted_params, resolve

        builder = resolve(name).load_builder()
        return builder(name, embedding_dim, **accepted_params(builder, params))

    def fit_fold(self, name: str, data: FoldData, config: dict, run) -> FoldFit:
        """Fit on what the fold's CNN (trained on training patients only) makes of every
        slice.

        ``sequence.inputs: logits`` (the default): the CNN's slice logit, which the model
        corrects from the neighbouring slices (``build_sequence_model(residual=True)``),
        so it starts as the CNN and learns only what the neighbours add. ``inputs:
        embeddings``: the CNN's pooled embeddings. The CNN's validation patients, which
        it did not fit, stop the training early and are its held-out rows (they choose
        its thresholds).

        The fold's CNN is refitted on every training patient
        (``CnnFamily.fold_model``), so no training patient is out of its sample. The
        sequence model therefore learns from the inner CNN, trained without the
        validation patients: its view of the inner training patients to fit, of the
        validation patients to stop early and to choose the thresholds. At test time it
        reads the fold's CNN, as it does when served.

        Training reads the inner CNN's outputs on the patients it was trained on.
        Out-of-fold logits from CNNs trained on fewer patients were tried and dropped.
        On the validation patients of two CT-ICH folds (never the test patients), those
        CNNs were much weaker (slice AUC about 0.70 against 0.92-0.96) and LSTM/GRU
        trained on their logits lost 0.03-0.15 AUC against the fold CNN, while LSTM/GRU
        trained on the fold CNN's own logits gained 0.001-0.003; with the embeddings
        beside the logit they lost 0.03-0.12 (the CNN's training slices are separable in
        its embeddings).
        """
        from ichkit.deep.sequence import fit_sequence_model

        settings = config["sequence"]
        cnn_name, kind = settings["cnn"], settings["inputs"]
        cnn = CnnFamily().fold_model(cnn_name, data, config, run)
        dataset, labels = data.dataset, data.rows["label"]  # the fold's target
        # its target's logit, or the embedding (shared by every target)
        columns = [output_column(config, data.target)] if kind == "logits" else slice(None)
        inputs = {
            part: cached_slice_inputs(cnn.inner, cnn.inner_path, dataset, rows, config, kind)[
                :, columns
            ]
            for part, rows in (("train", cnn.inner_train), ("validation", cnn.validation))
        }
        model = self.build(name, inputs["train"].shape[1], units=settings["units"],
                           residual=kind == "logits", seed=config["seed"])  # fmt: skip
        fit_sequence_model(
            model, _scan_batch(dataset, cnn.inner_train, inputs["train"], labels),
            validation=_scan_batch(dataset, cnn.validation, inputs["validation"], labels),
            epochs=settings["epochs"], batch_size=settings["batch_size"],
            learning_rate=settings["learning_rate"], seed=config["seed"],
            patience=settings["patience"],
        )  # fmt: skip
        probability_validation = _predict(model, dataset, cnn.validation, inputs["validation"],
                                          labels)  # fmt: skip

        test = data.index(data.test)
        start = time.perf_counter()  # the CNN and the sequence model together
        test_inputs = slice_inputs(cnn.model, dataset, test, config, kind)[:, columns]
        probability = _predict(model, dataset, test, test_inputs, labels)
        ms = (time.perf_counter() - start) * 1000 / len(test)
        model.save(run.model_path(name, data.fold))
        held_out = held_out_frame(cnn.validation, probability_validation, True)
        return FoldFit(probability, ms, held_out)

    def load_fold(self, name: str, fold: int, context: ServingContext) -> SequenceFold:
        settings = context.config["sequence"]
        cnn = context.fold_model(settings["cnn"], fold)
        path = context.run.model_path(name, fold)
        return SequenceFold(path, cnn, settings, keras_lock=context.keras_lock)

    def heatmap_cnn(self, name, config, members=()):
        return config["sequence"]["cnn"]


def _scan_batch(dataset, rows, inputs, labels):
    """The scans of ``rows`` padded for the model, with ``labels`` (the fold's target)."""
    from ichkit.deep.sequence import pad_scans

    table = dataset.table.loc[rows]
    return pad_scans(inputs, table["scan_id"], table["slice_index"], labels.loc[rows])


def _predict(model, dataset, rows, inputs, labels) -> np.ndarray:
    from ichkit.deep.sequence import predict_slices

    return predict_slices(model, _scan_batch(dataset, rows, inputs, labels))


class SequenceFold:
    """A saved BiLSTM/BiGRU reading its fold CNN's logits (or embeddings, as the run's
    ``sequence.inputs`` says) over one uploaded scan."""

    def __init__(self, path: Path, cnn, settings: dict, *, keras_lock):
        import keras

        import ichkit.deep.sequence  # noqa: F401  registers its custom layers before loading

        self.model = keras.models.load_model(path)  # the run's own file, never an upload
        self.cnn, self.inputs, self._lock = cnn, settings["inputs"], keras_lock
        self.engine = f"keras over the slice {settings['inputs']} of {settings['cnn']}"

    def probability(self, slices, memo: dict) -> np.ndarray:
        from ichkit.deep.sequence import pad_scans, predict_slices
        from ichkit.ensemble import probability_logits

        if self.inputs == "logits":
            inputs = probability_logits(self.cnn.probability(slices, memo)[:, None])
        else:
            inputs = self.cnn.embeddings(slices, memo)
        n = len(slices)
        batch = pad_scans(inputs.astype(np.float32), np.zeros(n, dtype=int), np.arange(n))
        with self._lock:
            return np.asarray(predict_slices(self.model, batch), dtype=float)
