"""Slice embeddings from a trained CNN, and a bidirectional LSTM/GRU over each scan.

The hybrid of the RSNA 2019 intracranial hemorrhage winners: a CNN trained per slice
turns every slice into an embedding (the output of its global pooling layer,
``"pool"`` in ``ichkit.deep.backbones``), then a bidirectional recurrent network reads the
ordered slices of a scan and predicts every slice with the context of its
neighbours (layer ``"slice"``), and the scan as the maximum of its slice
probabilities (layer ``"scan"``: a scan has hemorrhage if any slice has).

The steps, in order::

    embeddings = embed_slices(classifier, images)           # (n_slices, dim)
    train = pad_scans(embeddings, scan_ids, slice_index, labels)
    model = build_sequence_model("lstm", train.inputs.shape[-1], seed=0)
    fit_sequence_model(model, train, validation=validation)
    probabilities = predict_slices(model, test)            # (n_slices,), input order

Leakage: the embedding CNN must be trained on the training patients only (its
early stopping on a validation split of those patients). The embeddings of test
patients are then computed by that CNN, and the sequence model is fitted on the
training patients' embeddings only, so nothing of the test patients reaches either
model. Embeddings of the patients a CNN was trained on are fitted, more confident
than those of unseen patients, so a sequence model can learn to trust them too much;
with few patients, reading the CNN's logit and learning only a correction to it
(``residual=True``) is the safer start (``ichkit.experiments.fitting.fit_sequence`` says
what was measured).

Padding is marked by an explicit boolean ``mask`` input rather than a
``Masking(mask_value=0.0)`` layer: an embedding after ReLU and pooling can be all
zeros for a real slice (every channel dead on a blank slice above the vertex), which
``Masking`` would silently drop, and padded steps need not be zeros at all. The mask
goes to every recurrent layer (``mask=``) and to the scan maximum; the slice loss
gives padded and unlabelled slices a sample weight of 0 and averages over the
weighted slices only.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd
from keras import ops

from ichkit.scans.validation import (
    check_bool,
    check_fraction,
    check_int,
    check_real,
    unknown_name_message,
)

__all__ = [
    "RECURRENT_KINDS",
    "MaskedMaximum",
    "ScanBatch",
    "build_sequence_model",
    "embed_slices",
    "embedding_model",
    "fit_sequence_model",
    "pad_scans",
    "predict_scans",
    "predict_slices",
]

#: Recurrent layers ``build_sequence_model`` accepts for ``kind``.
RECURRENT_KINDS = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}

#: Label of a padded or unlabelled slice in ``ScanBatch.labels``.
_NO_LABEL = -1.0


# --- Slice embeddings ----------------------------------------------------------------


def embedding_model(classifier: keras.Model, layer_name: str = "pool") -> keras.Model:
    """A model from the classifier's input to the output of one of its layers.

    Parameters
    ----------
    classifier : keras.Model
        A trained Functional slice classifier (``ichkit.deep.backbones``: ``"features"`` →
        ``"pool"`` → ``"dropout"`` → ``"hemorrhage"``).
    layer_name : str, default="pool"
        The layer whose output is the embedding: the global pooling output, the
        classifier's penultimate representation. ``[layer.name for layer in
        classifier.layers]`` lists the names.

    Returns
    -------
    keras.Model
        Shares its weights with ``classifier`` (nothing is copied or retrained).

    Raises
    ------
    ValueError
        If ``classifier`` has no layer named ``layer_name``.
    """
    if not isinstance(classifier, keras.Model):
        raise TypeError(
            "The 'classifier' parameter of embedding_model must be a keras.Model. "
            f"Got {type(classifier).__name__}."
        )
    names = [layer.name for layer in classifier.layers]
    if layer_name not in names:
        message = unknown_name_message("layer", layer_name, names, match=layer_name)
        raise ValueError(f"{message[:-1]} (model '{classifier.name}').")
    output = classifier.get_layer(layer_name).output
    return keras.Model(classifier.inputs, output, name=f"{classifier.name}_{layer_name}")


def embed_slices(
    classifier: keras.Model,
    images: np.ndarray,
    *,
    batch_size: int = 32,
    layer_name: str = "pool",
) -> np.ndarray:
    """Embed every slice with a trained classifier's pooling layer.

    Parameters
    ----------
    classifier : keras.Model
        A trained slice classifier (see ``embedding_model``).
    images : ndarray of shape (n_slices, height, width, channels)
        Slices prepared as for the classifier (``ichkit.deep.backbones``: 3 channels in [0, 1]).
    batch_size : int, default=32
        Slices per forward pass.
    layer_name : str, default="pool"
        The layer whose output is the embedding.

    Returns
    -------
    ndarray of shape (n_slices, embedding_dim), float32
        One row per slice, in the order of ``images``; outputs of more than one
        dimension per slice are flattened.
    """
    check_int(batch_size, "batch_size", "embed_slices", minimum=1)
    images = np.asarray(images, dtype="float32")
    if images.ndim != 4:
        raise ValueError(
            "The 'images' parameter of embed_slices must be a stack of slices "
            f"(n_slices, height, width, channels). Got an array of shape {images.shape}."
        )
    model = embedding_model(classifier, layer_name)
    embedding_dim = int(np.prod(model.output.shape[1:]))
    if len(images) == 0:
        return np.zeros((0, embedding_dim), dtype="float32")
    embeddings = model.predict(images, batch_size=batch_size, verbose=0)
    return np.asarray(embeddings, dtype="float32").reshape(len(images), -1)


# --- Padding scans into a batch ------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ScanBatch:
    """Slices grouped into scans, in slice order, right-padded to one length.

    Made by ``pad_scans``. Scans are sorted by ``scan_ids``; within a scan, slices by
    ``slice_index``.

    Attributes
    ----------
    inputs : ndarray of shape (n_scans, max_length, embedding_dim), float32
        Slice embeddings; zeros at padded steps.
    mask : ndarray of shape (n_scans, max_length), bool
        True at real slices, False at padding.
    labels : ndarray of shape (n_scans, max_length) or (n_scans, max_length, n_outputs), or None
        float32 labels in [0, 1]; -1 at padded steps and at unlabelled slices (which
        are still read as context but add nothing to the loss).
    scan_ids : ndarray of shape (n_scans,)
        The scan of each row of ``inputs``.
    rows : ndarray of shape (n_scans, max_length), int64
        Position of each step's slice in the arrays given to ``pad_scans``; -1 at
        padding. ``unpad`` uses it.
    """

    inputs: np.ndarray
    mask: np.ndarray
    labels: np.ndarray | None
    scan_ids: np.ndarray
    rows: np.ndarray

    @property
    def n_scans(self) -> int:
        """Number of scans."""
        return int(self.mask.shape[0])

    @property
    def n_slices(self) -> int:
        """Number of real (unpadded) slices."""
        return int(self.mask.sum())

    @property
    def lengths(self) -> np.ndarray:
        """Slices per scan."""
        return self.mask.sum(axis=1)

    @property
    def model_inputs(self) -> dict[str, np.ndarray]:
        """The inputs of a ``build_sequence_model`` model: ``embeddings`` and ``mask``."""
        return {"embeddings": self.inputs, "mask": self.mask}

    def unpad(self, predictions: np.ndarray) -> np.ndarray:
        """Per-step values back to one row per slice, in the order given to ``pad_scans``.

        Parameters
        ----------
        predictions : ndarray of shape (n_scans, max_length, ...)
            Values per step, such as the ``"slice"`` output of a sequence model.

        Returns
        -------
        ndarray of shape (n_slices, ...)
            Row ``i`` belongs to row ``i`` of the arrays given to ``pad_scans``;
            padded steps are dropped.
        """
        predictions = np.asarray(predictions)
        if predictions.shape[:2] != self.mask.shape:
            raise ValueError(
                "ScanBatch.unpad needs one value per step, of shape (n_scans, max_length, "
                f"...) = {self.mask.shape + ('...',)}. Got an array of shape "
                f"{predictions.shape}."
            )
        restored = np.empty((self.n_slices, *predictions.shape[2:]), dtype=predictions.dtype)
        restored[self.rows[self.mask]] = predictions[self.mask]
        return restored

    def scan_labels(self) -> np.ndarray:
        """Scan labels: 1 if any slice is positive, 0 if every slice is labelled negative,
        -1 if some slices are unlabelled and none is positive.

        Returns
        -------
        ndarray of shape (n_scans,) or (n_scans, n_outputs), float32
        """
        if self.labels is None:
            raise ValueError("This ScanBatch has no labels; pass labels to pad_scans.")
        labels = self.labels
        step_mask = self.mask if labels.ndim == 2 else self.mask[..., None]
        positive = np.where(step_mask, labels, 0.0).max(axis=1)
        unknown = (step_mask & (labels < 0)).any(axis=1)
        scan_labels = np.where((positive <= 0) & unknown, _NO_LABEL, np.maximum(positive, 0))
        return scan_labels.astype("float32")


def pad_scans(
    embeddings: np.ndarray,
    scan_ids,
    slice_index,
    labels=None,
) -> ScanBatch:
    """Group slice embeddings into scans in slice order, right-padded to one length.

    Rows may come in any order (a ``ScanDataset.table`` or a shuffled subset of it):
    ``ScanBatch.unpad`` returns per-slice values in this same order.

    Parameters
    ----------
    embeddings : array-like of shape (n_slices, embedding_dim)
        One embedding per slice (``embed_slices``).
    scan_ids : array-like of shape (n_slices,)
        The scan of each slice (``table["scan_id"]``).
    slice_index : array-like of shape (n_slices,)
        Order of each slice within its scan (``table["slice_index"]``); distinct
        within a scan, gaps allowed.
    labels : array-like of shape (n_slices,) or (n_slices, n_outputs), default=None
        Labels in [0, 1]; NaN, ``pd.NA`` or -1 for an unlabelled slice.

    Returns
    -------
    ScanBatch

    Raises
    ------
    ValueError
        If lengths differ, a slice has no ``slice_index``, two slices of a scan share
        one, or an embedding is not finite.

    Examples
    --------
    >>> batch = pad_scans(np.eye(3), ["b", "a", "a"], [0, 1, 0], [1, 0, 1])
    >>> batch.scan_ids.tolist(), batch.mask.tolist()
    (['a', 'b'], [[True, True], [True, False]])
    >>> batch.labels.tolist()
    [[1.0, 0.0], [1.0, -1.0]]
    >>> batch.unpad(batch.labels).tolist()
    [1.0, 0.0, 1.0]
    """
    embeddings = np.asarray(embeddings, dtype="float32")
    if embeddings.ndim != 2:
        raise ValueError(
            "The 'embeddings' parameter of pad_scans must be a 2-D array "
            f"(n_slices, embedding_dim). Got an array of shape {embeddings.shape}."
        )
    n_slices = len(embeddings)
    if n_slices == 0:
        raise ValueError("pad_scans needs at least one slice. Got 0 embeddings.")
    if not np.isfinite(embeddings).all():
        n_bad = int((~np.isfinite(embeddings).all(axis=1)).sum())
        raise ValueError(
            f"The 'embeddings' parameter of pad_scans must be finite. Got {n_bad} of "
            f"{n_slices} rows with NaN or infinity."
        )
    scan_ids = _as_column(scan_ids, "scan_ids", n_slices)
    order_values = pd.to_numeric(pd.Series(_as_column(slice_index, "slice_index", n_slices)))
    if order_values.isna().any():
        raise ValueError(
            "The 'slice_index' parameter of pad_scans must give every slice its place in "
            f"its scan. Got {int(order_values.isna().sum())} of {n_slices} missing; a "
            "sequence model needs ordered slices (ScanDataset.is_ordered)."
        )
    order_values = order_values.to_numpy(dtype=float)
    scan_codes, unique_scans = pd.factorize(pd.Series(scan_ids), sort=True)
    sorted_rows = np.lexsort((order_values, scan_codes))
    sorted_codes = scan_codes[sorted_rows]
    sorted_order = order_values[sorted_rows]
    repeated = (sorted_codes[1:] == sorted_codes[:-1]) & (sorted_order[1:] == sorted_order[:-1])
    if repeated.any():
        first = np.flatnonzero(repeated)[0] + 1
        value = sorted_order[first]
        value = int(value) if value.is_integer() else value
        raise ValueError(
            f"Scan '{scan_ids[sorted_rows[first]]}' has two slices with slice_index "
            f"{value}; cannot order its slices. Each slice of a scan needs its own "
            "slice_index."
        )

    n_scans = len(unique_scans)
    lengths = np.bincount(scan_codes, minlength=n_scans)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    positions = np.arange(n_slices) - starts[sorted_codes]
    max_length = int(lengths.max())

    inputs = np.zeros((n_scans, max_length, embeddings.shape[1]), dtype="float32")
    mask = np.zeros((n_scans, max_length), dtype=bool)
    rows = np.full((n_scans, max_length), -1, dtype=np.int64)
    inputs[sorted_codes, positions] = embeddings[sorted_rows]
    mask[sorted_codes, positions] = True
    rows[sorted_codes, positions] = sorted_rows

    padded_labels = None
    if labels is not None:
        labels = _as_labels(labels, n_slices)
        padded_labels = np.full((n_scans, max_length, *labels.shape[1:]), _NO_LABEL, "float32")
        padded_labels[sorted_codes, positions] = labels[sorted_rows]
    scan_array = np.asarray(unique_scans.to_numpy(), dtype=object)
    if all(isinstance(scan, str) for scan in scan_array):
        scan_array = scan_array.astype(str)
    return ScanBatch(inputs, mask, padded_labels, scan_array, rows)


def _as_column(values, name: str, n_slices: int) -> np.ndarray:
    """``values`` as a 1-D numpy array of ``n_slices`` items."""
    values = values.to_numpy() if hasattr(values, "to_numpy") else np.asarray(values)
    if values.ndim != 1 or len(values) != n_slices:
        raise ValueError(
            f"The '{name}' parameter of pad_scans must have one value per embedding "
            f"({n_slices}). Got shape {values.shape}."
        )
    return values


def _as_labels(labels, n_slices: int) -> np.ndarray:
    """Labels as float32 with -1 where unlabelled; checks shape and range."""
    if hasattr(labels, "to_numpy"):
        labels = labels.to_numpy(dtype=float, na_value=np.nan)
    labels = np.asarray(labels, dtype=float)
    if labels.ndim not in (1, 2) or len(labels) != n_slices:
        raise ValueError(
            "The 'labels' parameter of pad_scans must have shape (n_slices,) or "
            f"(n_slices, n_outputs) with n_slices={n_slices}. Got shape {labels.shape}."
        )
    labels = np.where(np.isnan(labels), _NO_LABEL, labels)
    valid = (labels == _NO_LABEL) | ((labels >= 0) & (labels <= 1))
    if not valid.all():
        raise ValueError(
            "The 'labels' parameter of pad_scans must be in [0, 1], or NaN or -1 for an "
            f"unlabelled slice. Got {float(labels[~valid][0])!r}."
        )
    return labels.astype("float32")


# --- The model -----------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="ichkit")
class MaskedMaximum(keras.layers.Layer):
    """Maximum over time of per-step values, over unmasked steps only.

    Called on ``[values, mask]`` with values of shape (batch, steps, channels) in
    [0, 1] (probabilities) and a boolean mask (batch, steps); returns (batch,
    channels). Padded steps count as 0, so a fully padded row gives 0.
    """

    def call(self, inputs):
        values, mask = inputs
        mask = ops.expand_dims(ops.cast(mask, "bool"), axis=-1)
        return ops.max(ops.where(mask, values, ops.zeros_like(values)), axis=1)

    def compute_output_shape(self, input_shape):
        values_shape = input_shape[0]
        return (values_shape[0], values_shape[2])

    def compute_mask(self, inputs, mask=None):
        return None


def build_sequence_model(
    kind: str,
    embedding_dim: int,
    *,
    units: int = 64,
    n_layers: int = 1,
    dropout: float = 0.2,
    n_outputs: int = 1,
    residual: bool = False,
    seed: int | None = None,
) -> keras.Model:
    """A bidirectional LSTM or GRU that labels every slice of a scan, and the scan.

    Inputs ``embeddings`` (batch, steps, embedding_dim) and ``mask`` (batch, steps),
    as in ``ScanBatch.model_inputs``. Layers: ``embedding_dropout`` →
    ``n_layers`` × ``bidirectional_<kind>_<i>`` (``units`` per direction, every one
    given the mask) → ``dropout`` → ``slice`` (``Dense(n_outputs, sigmoid)`` per step)
    → ``scan``, the maximum of the slice probabilities over unmasked steps. Outputs a
    dict with ``"slice"`` (batch, steps, n_outputs) and ``"scan"`` (batch, n_outputs).

    Parameters
    ----------
    kind : {"lstm", "gru"}
        The recurrent layer.
    embedding_dim : int
        Length of one slice embedding (``embed_slices(...).shape[1]``).
    units : int, default=64
        Units of each direction of each recurrent layer.
    n_layers : int, default=1
        Stacked bidirectional layers.
    dropout : float, default=0.2
        Dropout rate on the embeddings, between recurrent layers and before ``slice``.
    n_outputs : int, default=1
        Sigmoid outputs per slice: 1 for any hemorrhage; 6 for any hemorrhage and
        the five subtypes, as ``ichkit.deep.backbones``.
    residual : bool, default=False
        Read the last ``n_outputs`` input features as the slice classifier's own
        logits and predict ``sigmoid(logit + correction)``, the correction coming
        from the recurrent layers through a zero-initialised ``correction`` layer.
        An untrained model then reproduces the slice classifier exactly, and
        training learns only what the neighbouring slices add: on small data the
        safer start.
    seed : int, default=None
        Seeds Keras, numpy, torch and Python (``keras.utils.set_random_seed``) before
        the weights are initialised; None leaves the global state alone.

    Returns
    -------
    keras.Model
        A Functional model, not compiled (``fit_sequence_model`` compiles it).
    """
    owner = "build_sequence_model"
    if kind not in RECURRENT_KINDS:
        raise ValueError(
            f"The 'kind' parameter of {owner} names the recurrent layer. "
            + unknown_name_message("recurrent kind", kind, RECURRENT_KINDS)
        )
    check_int(embedding_dim, "embedding_dim", owner, minimum=1)
    check_int(units, "units", owner, minimum=1)
    check_int(n_layers, "n_layers", owner, minimum=1)
    check_fraction(dropout, "dropout", owner)
    check_int(n_outputs, "n_outputs", owner, minimum=1)
    check_bool(residual, "residual", owner)
    if residual and embedding_dim < n_outputs:
        raise ValueError(
            f"A residual model reads its last n_outputs={n_outputs} input features as "
            f"logits, but embedding_dim={embedding_dim} is smaller."
        )
    if seed is not None:
        check_int(seed, "seed", owner, minimum=0)
        keras.utils.set_random_seed(seed)

    embeddings = keras.Input((None, embedding_dim), name="embeddings")
    mask = keras.Input((None,), dtype="bool", name="mask")
    x = keras.layers.Dropout(dropout, name="embedding_dropout")(embeddings)
    for index in range(1, n_layers + 1):
        if index > 1:
            x = keras.layers.Dropout(dropout, name=f"recurrent_dropout_{index - 1}")(x)
        recurrent = RECURRENT_KINDS[kind](units, return_sequences=True)
        x = keras.layers.Bidirectional(recurrent, name=f"bidirectional_{kind}_{index}")(
            x, mask=mask
        )
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    if residual:
        correction = keras.layers.Dense(n_outputs, kernel_initializer="zeros", name="correction")(x)
        logits = keras.layers.Add(name="logit")([embeddings[..., -n_outputs:], correction])
        slice_probabilities = keras.layers.Activation("sigmoid", name="slice")(logits)
    else:
        slice_probabilities = keras.layers.Dense(n_outputs, activation="sigmoid", name="slice")(x)
    scan_probabilities = MaskedMaximum(name="scan")([slice_probabilities, mask])
    return keras.Model(
        inputs={"embeddings": embeddings, "mask": mask},
        outputs={"slice": slice_probabilities, "scan": scan_probabilities},
        name=f"bidirectional_{kind}",
    )


# --- Training and prediction ---------------------------------------------------------


def fit_sequence_model(
    model: keras.Model,
    batch: ScanBatch,
    *,
    validation: ScanBatch | None = None,
    epochs: int = 50,
    batch_size: int = 8,
    learning_rate: float = 1e-3,
    seed: int | None = 0,
    patience: int = 8,
    scan_loss_weight: float = 0.0,
    verbose: int = 0,
) -> keras.callbacks.History:
    """Compile and fit a ``build_sequence_model`` model on labelled scans.

    The slice loss is binary cross-entropy averaged over labelled real slices only:
    padded and unlabelled steps get a sample weight of 0 and the loss is divided by
    the sum of the weights (``reduction="mean_with_sample_weight"``), so the amount of
    padding does not change it. With several outputs, a slice counts only if all its
    outputs are labelled. ``scan_loss_weight``
    adds binary cross-entropy of the ``scan`` output against ``ScanBatch.scan_labels``.

    Parameters
    ----------
    model : keras.Model
        From ``build_sequence_model``; compiled here with Adam.
    batch : ScanBatch
        Training scans, with labels.
    validation : ScanBatch, default=None
        Validation scans (other patients), with labels. When given, training stops
        after ``patience`` epochs without a lower validation loss and the best
        weights are restored.
    epochs : int, default=50
        Most passes over the training scans.
    batch_size : int, default=8
        Scans per gradient step.
    learning_rate : float, default=1e-3
        Adam's learning rate.
    seed : int, default=0
        Seeds shuffling and dropout (``keras.utils.set_random_seed``); None leaves
        the global state alone.
    patience : int, default=8
        Epochs without improvement before early stopping.
    scan_loss_weight : float, default=0.0
        Weight of the scan loss beside the slice loss (weight 1).
    verbose : int, default=0
        Keras progress output.

    Returns
    -------
    keras.callbacks.History
        ``history.history["loss"]`` and, with validation, ``["val_loss"]``.
    """
    owner = "fit_sequence_model"
    _check_model_and_batch(model, batch, owner, "batch")
    if batch.labels is None:
        raise ValueError(
            f"The 'batch' parameter of {owner} has no labels; pass labels to pad_scans."
        )
    if validation is not None:
        _check_model_and_batch(model, validation, owner, "validation")
        if validation.labels is None:
            raise ValueError(
                f"The 'validation' parameter of {owner} has no labels; pass labels to pad_scans."
            )
    check_int(epochs, "epochs", owner, minimum=1)
    check_int(batch_size, "batch_size", owner, minimum=1)
    check_real(learning_rate, "learning_rate", owner)
    if learning_rate <= 0:
        raise ValueError(
            f"The 'learning_rate' parameter of {owner} must be > 0. Got {learning_rate!r}."
        )
    check_int(patience, "patience", owner, minimum=0)
    check_real(scan_loss_weight, "scan_loss_weight", owner)
    if scan_loss_weight < 0:
        raise ValueError(
            f"The 'scan_loss_weight' parameter of {owner} must be >= 0. Got {scan_loss_weight!r}."
        )
    if seed is not None:
        check_int(seed, "seed", owner, minimum=0)
        keras.utils.set_random_seed(seed)

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss={
            "slice": keras.losses.BinaryCrossentropy(reduction="mean_with_sample_weight"),
            "scan": keras.losses.BinaryCrossentropy(reduction="mean_with_sample_weight"),
        },
        loss_weights={"slice": 1.0, "scan": float(scan_loss_weight)},
    )
    callbacks = []
    validation_data = None
    if validation is not None:
        validation_data = _training_arrays(validation, model)
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=patience, restore_best_weights=True
            )
        )
    inputs, targets, weights = _training_arrays(batch, model)
    return model.fit(
        inputs,
        targets,
        sample_weight=weights,
        validation_data=validation_data,
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=verbose,
    )


def predict_slices(model: keras.Model, batch: ScanBatch, *, batch_size: int = 32) -> np.ndarray:
    """Per-slice probabilities, one per slice in the order given to ``pad_scans``.

    Returns
    -------
    ndarray of shape (n_slices,), or (n_slices, n_outputs) when ``n_outputs > 1``
    """
    outputs = _predict(model, batch, batch_size, "predict_slices")
    probabilities = batch.unpad(np.asarray(outputs["slice"]))
    return probabilities[:, 0] if probabilities.shape[1] == 1 else probabilities


def predict_scans(model: keras.Model, batch: ScanBatch, *, batch_size: int = 32) -> np.ndarray:
    """Scan probabilities (the maximum over each scan's slices), in ``batch.scan_ids`` order.

    Returns
    -------
    ndarray of shape (n_scans,), or (n_scans, n_outputs) when ``n_outputs > 1``
    """
    probabilities = np.asarray(_predict(model, batch, batch_size, "predict_scans")["scan"])
    return probabilities[:, 0] if probabilities.shape[1] == 1 else probabilities


def _predict(model: keras.Model, batch: ScanBatch, batch_size: int, owner: str) -> dict:
    """Both outputs of the sequence model for a checked batch."""
    _check_model_and_batch(model, batch, owner, "batch")
    check_int(batch_size, "batch_size", owner, minimum=1)
    return model.predict(batch.model_inputs, batch_size=batch_size, verbose=0)


def _check_model_and_batch(model, batch, owner: str, name: str) -> None:
    """A sequence model and a ScanBatch whose embedding length it takes."""
    if not isinstance(batch, ScanBatch):
        raise TypeError(
            f"The '{name}' parameter of {owner} must be a ScanBatch (from pad_scans). "
            f"Got {type(batch).__name__}."
        )
    input_names = getattr(model, "input_names", None) or [
        tensor.name for tensor in getattr(model, "inputs", [])
    ]
    if not isinstance(model, keras.Model) or set(input_names) != {"embeddings", "mask"}:
        raise TypeError(
            f"The 'model' parameter of {owner} must be a model from build_sequence_model "
            f"(inputs 'embeddings' and 'mask'). Got {type(model).__name__}"
            + (f" with inputs {input_names}." if isinstance(model, keras.Model) else ".")
        )
    expected = model.get_layer("embedding_dropout").input.shape[-1]
    if batch.inputs.shape[-1] != expected:
        raise ValueError(
            f"The '{name}' parameter of {owner} has embeddings of length "
            f"{batch.inputs.shape[-1]}, but the model was built with embedding_dim="
            f"{expected}. Embed slices with the classifier the model was built for."
        )


def _training_arrays(batch: ScanBatch, model: keras.Model):
    """``(inputs, targets, sample_weights)`` dicts for ``model.fit``."""
    n_outputs = model.get_layer("slice").output.shape[-1]
    labels = batch.labels if batch.labels.ndim == 3 else batch.labels[..., None]
    if labels.shape[-1] != n_outputs:
        raise ValueError(
            f"The model was built with n_outputs={n_outputs}, but the labels have "
            f"{labels.shape[-1]} per slice. Give pad_scans labels of shape "
            f"(n_slices, {n_outputs})."
        )
    # A slice counts when it is real and all its outputs are labelled.
    slice_weights = (batch.mask & (labels >= 0).all(axis=-1)).astype("float32")
    scan_labels = batch.scan_labels()
    scan_labels = scan_labels if scan_labels.ndim == 2 else scan_labels[:, None]
    scan_weights = (scan_labels >= 0).all(axis=-1).astype("float32")
    targets = {"slice": np.maximum(labels, 0.0), "scan": np.maximum(scan_labels, 0.0)}
    weights = {"slice": slice_weights, "scan": scan_weights}
    return batch.model_inputs, targets, weights
