"""Training a slice classifier the way small data needs: a step budget, warm-up then
cosine decay, augmentation and (optionally) mixup; the budget's length chosen on
patient-grouped validation, then a refit on every training patient.

Why not early stopping: on a few hundred slices an epoch is about ten to thirty
steps, and the validation part is three or four patients. Early stopping on their
AUC stops on noise, and holds those patients out of the final model. A fixed budget
of steps with a learning-rate schedule that ends at zero trains to the end each time;
the validation patients only choose how long that budget is (``choose_epochs``), and
the refit then learns from them too.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import keras
import numpy as np

__all__ = [
    "TrainingRecipe",
    "balanced_binary_crossentropy",
    "balanced_class_weight",
    "choose_epochs",
    "cosine_schedule",
    "denormals_flushed",
    "save_weights_atomically",
    "train_classifier",
]


@contextlib.contextmanager
def denormals_flushed() -> Iterator[None]:
    """Inside the block, the torch backend treats denormal floats as zero (TensorFlow and
    JAX do so by default); outside it, the process's floating-point mode is as before.

    Without it some inputs (measured: 2.5-D stacks of CT-ICH slices) fill a small CNN's
    activations with denormals and each training step takes five times longer (0.95 s
    against 0.19 s on 2 cores). It is not left on for the process: SciPy's k-d tree
    (the shape features) crashed with a segmentation fault under it.
    """
    if keras.backend.backend() != "torch":
        yield
        return
    import torch

    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def balanced_class_weight(labels) -> dict[int, float]:
    """Weights that make both classes count equally (scikit-learn's 'balanced')."""
    labels = np.asarray(labels).astype(int)
    counts = np.bincount(labels, minlength=2).astype(float)
    return {label: float(len(labels) / (2 * max(count, 1))) for label, count in enumerate(counts)}


def balanced_binary_crossentropy(labels, *, epsilon: float = 1e-7):
    """Binary cross-entropy over several outputs (any hemorrhage and the subtypes), each
    output's two classes weighted to count equally, as ``balanced_class_weight`` does for
    one output.

    Written here because Keras' ``class_weight`` weighs whole samples by one class and
    cannot weigh each output's positives on their own; a rare subtype (a tenth of the
    slices) would otherwise be learnt as "never".

    Parameters
    ----------
    labels : array-like of shape (n_samples, n_outputs)
        The training labels the weights come from (0/1).
    epsilon : float, default=1e-7
        Probabilities are clipped to ``[epsilon, 1 - epsilon]`` before the logarithm.
    """
    labels = np.asarray(labels, dtype=float)
    positive = np.clip(np.nanmean(labels, axis=0), 1e-6, 1 - 1e-6)
    weight_positive = (0.5 / positive).astype("float32")
    weight_negative = (0.5 / (1 - positive)).astype("float32")

    def loss(y_true, y_pred):
        y_pred = keras.ops.clip(y_pred, epsilon, 1 - epsilon)
        y_true = keras.ops.cast(y_true, y_pred.dtype)
        positive = keras.ops.convert_to_tensor(weight_positive, dtype=y_pred.dtype)
        negative = keras.ops.convert_to_tensor(weight_negative, dtype=y_pred.dtype)
        terms = positive * y_true * keras.ops.log(y_pred)
        terms = terms + negative * (1 - y_true) * keras.ops.log(1 - y_pred)
        return -keras.ops.mean(terms, axis=-1)

    return loss


def cosine_schedule(
    learning_rate: float, total_steps: int, *, warmup_fraction: float = 0.1
) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up from 0 over ``warmup_fraction`` of the steps, then cosine decay to 0
    (Keras' ``CosineDecay`` with ``warmup_target``; Goyal et al. 2017, Loshchilov and
    Hutter 2017). Warm-up keeps the first large steps from wrecking freshly initialised
    BatchNorm statistics; decaying to zero makes the last epochs settle instead of
    leaving the weights wherever the last noisy step put them."""
    total_steps = max(int(total_steps), 1)
    warmup = int(round(warmup_fraction * total_steps))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else learning_rate,
        decay_steps=max(total_steps - warmup, 1),
        alpha=0.0,
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
    )


class TrainingRecipe:
    """How a slice classifier is trained: the settings of ``train_classifier``.

    Parameters
    ----------
    epochs : int, default=20
        The budget, in passes over the training slices: ``epochs * ceil(n / batch_size)``
        optimizer steps, so the budget scales with the data.
    learning_rate : float, default=1e-3
        The peak learning rate, reached after the warm-up.
    warmup_fraction : float, default=0.1
        Share of the steps spent warming up (then cosine decay to 0).
    optimizer : {"adam", "adamw", "rmsprop"}, default="adam"
    weight_decay : float, default=0.0
        AdamW's decoupled weight decay (``optimizer="adamw"`` only).
    class_weight : "balanced", dict or None, default="balanced"
        Ignored with mixup, whose mixed labels are not classes.
    mixup : float, default=0.0
        Beta(mixup, mixup) mixing of pairs of slices and their labels (Zhang et al.
        2018); 0 turns it off.
    """

    def __init__(
        self,
        epochs: int = 20,
        learning_rate: float = 1e-3,
        *,
        warmup_fraction: float = 0.1,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
        class_weight: str | dict | None = "balanced",
        mixup: float = 0.0,
    ):
        if optimizer not in _OPTIMIZERS:
            raise ValueError(
                f"Unknown optimizer {optimizer!r}; expected one of {', '.join(_OPTIMIZERS)}."
            )
        if int(epochs) < 1 or not 0 <= warmup_fraction < 1 or mixup < 0:
            raise ValueError(
                "A TrainingRecipe needs epochs >= 1, warmup_fraction in [0, 1) and mixup "
                f">= 0. Got epochs={epochs!r}, warmup_fraction={warmup_fraction!r}, "
                f"mixup={mixup!r}."
            )
        self.epochs, self.learning_rate = int(epochs), float(learning_rate)
        self.warmup_fraction, self.optimizer = float(warmup_fraction), optimizer
        self.weight_decay, self.class_weight, self.mixup = weight_decay, class_weight, mixup

    def __repr__(self) -> str:
        return (
            f"TrainingRecipe(epochs={self.epochs}, learning_rate={self.learning_rate}, "
            f"warmup_fraction={self.warmup_fraction}, optimizer={self.optimizer!r}, "
            f"mixup={self.mixup})"
        )

    def make_optimizer(self, total_steps: int) -> keras.optimizers.Optimizer:
        schedule = cosine_schedule(
            self.learning_rate, total_steps, warmup_fraction=self.warmup_fraction
        )
        if self.optimizer == "adamw":
            return keras.optimizers.AdamW(schedule, weight_decay=self.weight_decay)
        return _OPTIMIZERS[self.optimizer](schedule)


_OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "rmsprop": keras.optimizers.RMSprop,
}


class _ValidationAuc(keras.callbacks.Callback):
    """The validation AUC after each epoch, from scikit-learn (the data are small, and
    Keras' streaming AUC approximates it with thresholds)."""

    def __init__(self, validation: keras.utils.PyDataset):
        super().__init__()
        self.validation, self.aucs = validation, []

    def on_epoch_end(self, epoch, logs=None):
        from sklearn.metrics import roc_auc_score

        labels = np.asarray(self.validation.labels, dtype=float).reshape(
            len(self.validation.labels), -1
        )
        both = [k for k in range(labels.shape[1]) if np.unique(labels[:, k]).size == 2]
        if not both:
            self.aucs.append(float("nan"))
            return
        scores = self.model.predict(self.validation, verbose=0)
        # several outputs: the mean AUC of those whose validation slices have both classes
        self.aucs.append(float(np.mean([roc_auc_score(labels[:, k], scores[:, k])
                                        for k in both])))  # fmt: skip


def train_classifier(
    model: keras.Model,
    train: keras.utils.PyDataset,
    validation: keras.utils.PyDataset | None = None,
    *,
    recipe: TrainingRecipe | None = None,
    checkpoint: str | Path | None = None,
    seed: int = 0,
    verbose: str | int = "auto",
) -> list[float]:
    """Compile and fit ``model`` with binary cross-entropy over the recipe's whole budget.

    Parameters
    ----------
    model : keras.Model
        From ``ichkit.deep.backbones.build_classifier``.
    train : PyDataset
        ``ichkit.deep.data.SliceBatches`` of the training patients (shuffled, augmented;
        ``mixup`` is applied here, batch by batch).
    validation : PyDataset, default=None
        Patients held out of ``train``: their AUC is measured after every epoch (what
        ``choose_epochs`` reads). Training never stops early on it.
    recipe : TrainingRecipe, default=None
        None is ``TrainingRecipe()``.
    checkpoint : path, default=None
        Where the final weights go (``.weights.h5``) once training has finished.
    seed : int, default=0
    verbose : "auto", 0, 1 or 2

    Returns
    -------
    list of float
        The validation AUC after each epoch (empty without ``validation``).
    """
    recipe = recipe or TrainingRecipe()
    keras.utils.set_random_seed(seed)
    loss, class_weight = keras.losses.BinaryCrossentropy(), recipe.class_weight
    several_outputs = np.ndim(train.labels) == 2
    if recipe.mixup:
        train, class_weight = _Mixup(train, recipe.mixup, seed), None
    elif several_outputs and class_weight == "balanced":  # each output balanced on its own
        loss, class_weight = balanced_binary_crossentropy(train.labels), None
    elif class_weight == "balanced":
        class_weight = balanced_class_weight(train.labels)
    model.compile(optimizer=recipe.make_optimizer(recipe.epochs * len(train)), loss=loss)
    tracker = _ValidationAuc(validation) if validation is not None else None
    with denormals_flushed():
        model.fit(
            train, epochs=recipe.epochs, class_weight=class_weight,
            callbacks=[tracker] if tracker else [], verbose=verbose,
        )  # fmt: skip
    if checkpoint is not None:
        save_weights_atomically(model, Path(checkpoint))
    return tracker.aucs if tracker else []


def choose_epochs(validation_aucs: Sequence[float], candidates: Sequence[int]) -> int:
    """The candidate budget (in epochs) whose validation AUC, averaged over it and the
    epoch before, is highest; ties and curves without an AUC go to the longest.

    The averaging damps the epoch-to-epoch noise of three or four validation patients.
    Every candidate is at most ``len(validation_aucs)``.
    """
    aucs = np.asarray(validation_aucs, dtype=float)
    candidates = sorted({int(c) for c in candidates if 1 <= int(c) <= len(aucs)})
    if not candidates:
        raise ValueError(f"No candidate budget fits a curve of {len(aucs)} epochs.")
    scores = [np.nanmean(aucs[max(c - 2, 0) : c]) if np.isfinite(aucs[:c]).any() else -1.0
              for c in candidates]  # fmt: skip
    best = max(scores)
    return max(c for c, s in zip(candidates, scores, strict=True) if s >= best - 1e-9)


class _Mixup(keras.utils.PyDataset):
    """Batches of ``batches`` with mixup: each slice blended with another of its batch."""

    def __init__(self, batches: keras.utils.PyDataset, alpha: float, seed: int):
        super().__init__()
        self.batches, self.alpha = batches, alpha
        self.labels = batches.labels
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, batch: int):
        images, labels = self.batches[batch]
        mix = self._rng.beta(self.alpha, self.alpha, size=len(labels)).astype(np.float32)
        partner = self._rng.permutation(len(labels))
        weight = mix.reshape(-1, *([1] * (images.ndim - 1)))
        images = weight * images + (1 - weight) * images[partner]
        mix = mix.reshape(-1, *([1] * (labels.ndim - 1)))  # one per slice, for every output
        return images, mix * labels + (1 - mix) * labels[partner]

    def on_epoch_end(self) -> None:
        self.batches.on_epoch_end()


def save_weights_atomically(model: keras.Model, path: Path) -> None:
    """The finished model's weights, written whole or not at all: a resumed run treats
    an existing file as a finished training, so it must never hold a half-trained or
    half-written model (hence not ``ModelCheckpoint``, which writes during training)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{os.getpid()}.{path.name}")  # keeps the .weights.h5 ending
    model.save_weights(temporary)
    os.replace(temporary, path)
