"""Training a slice classifier the way small data needs: warm-up, then early stopping on AUC."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np

__all__ = ["train_classifier", "balanced_class_weight"]


def balanced_class_weight(labels) -> dict[int, float]:
    """Weights that make both classes count equally (scikit-learn's 'balanced')."""
    labels = np.asarray(labels).astype(int)
    counts = np.bincount(labels, minlength=2).astype(float)
    return {label: float(len(labels) / (2 * max(count, 1))) for label, count in enumerate(counts)}


def train_classifier(
    model: keras.Model,
    train: keras.utils.PyDataset,
    validation: keras.utils.PyDataset,
    *,
    epochs: int = 20,
    learning_rate: float = 1e-3,
    optimizer: str = "adam",
    class_weight: str | dict | None = "balanced",
    warmup_epochs: int = 3,
    patience: int = 4,
    checkpoint: str | Path | None = None,
    seed: int = 0,
    verbose: str | int = "auto",
) -> keras.callbacks.History:
    """Compile and fit ``model`` with binary cross-entropy; keep the best validation AUC.

    Early stopping watches the validation AUC but only after ``warmup_epochs``: on
    a few hundred slices the first epochs are noise, and stopping there is common.
    The weights of the best epoch are restored (and then saved to ``checkpoint``).

    Parameters
    ----------
    model : keras.Model
        From ``ichkit.deep.backbones.build_classifier``.
    train, validation : PyDataset
        ``ichkit.deep.data.SliceBatches`` of the training and validation patients.
    epochs, learning_rate : int, float
    optimizer : {"adam", "rmsprop"}, default="adam"
    class_weight : "balanced", dict or None, default="balanced"
    warmup_epochs, patience : int
    checkpoint : path, default=None
        Where the best weights go (``.weights.h5``) once training has finished.
    seed : int, default=0
    verbose : "auto", 0, 1 or 2
    """
    keras.utils.set_random_seed(seed)
    optimizers = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop}
    if optimizer not in optimizers:
        raise ValueError(f"Unknown optimizer {optimizer!r}; expected 'adam' or 'rmsprop'.")
    model.compile(
        optimizer=optimizers[optimizer](learning_rate=learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.AUC(name="auc")],
    )
    if class_weight == "balanced":
        class_weight = balanced_class_weight(train.labels)
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_auc",
            mode="max",
            patience=patience,
            start_from_epoch=warmup_epochs,
            restore_best_weights=True,
        )
    ]
    history = model.fit(
        train,
        validation_data=validation,
        epochs=epochs,
        class_weight=class_weight,
        callbacks=callbacks,
        verbose=verbose,
    )
    if checkpoint is not None:
        _save_weights_atomically(model, Path(checkpoint))
    return history


def _save_weights_atomically(model: keras.Model, path: Path) -> None:
    """The finished model's weights, written whole or not at all: a resumed run treats
    an existing file as a finished training, so it must never hold a half-trained or
    half-written model (hence not ``ModelCheckpoint``, which writes during training)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{os.getpid()}.{path.name}")  # keeps the .weights.h5 ending
    model.save_weights(temporary)
    os.replace(temporary, path)
