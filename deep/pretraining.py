"""Self-supervised pretraining of a CNN head on unlabelled slices (SimCLR, Chen et al.
2020): the head learns to recognise two augmented views of one slice among the views of
the other slices of its batch, before it ever sees a label.

It needs no download and no outside data, so it can run inside each fold on the
training part's slices only (``deep.pretrain: contrastive`` in ``ichkit run``); the
test patients never reach it. Written with ``keras.ops`` (one loss over a batch of
both views) rather than a self-supervised library, so it stays backend-agnostic and
trains the same Functional head that the classifier then fine-tunes.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from ichkit.deep.training import TrainingRecipe, denormals_flushed
from ichkit.scans.transforms import RandomAugment

__all__ = ["ContrastiveViews", "nt_xent_loss", "pretrain_contrastive"]


class ContrastiveViews(keras.utils.PyDataset):
    """Two independently augmented views of every slice of ``slices``' batches.

    Each batch of n slices becomes one batch of 2n images, the first views then the
    second views in the same order (what ``nt_xent_loss`` expects); the targets are
    zeros (the loss reads none). The augmentation is stronger than a classifier's:
    rotation, zoom and flips (``RandomAugment``), then per-image contrast, brightness
    and Gaussian noise, clipped to [0, 1].

    Parameters
    ----------
    slices : PyDataset
        Batches of prepared slices, e.g. ``SliceBatches`` (their labels are ignored).
    rotation_degrees : float, default=20
    zoom : float, default=0.25
    intensity : float, default=0.2
        Contrast factors are drawn from ``[1 - intensity, 1 + intensity]``, brightness
        shifts from ``[-intensity / 2, intensity / 2]``.
    noise : float, default=0.03
        Standard deviation of the added Gaussian noise.
    seed : int, default=0
    """

    def __init__(
        self,
        slices: keras.utils.PyDataset,
        *,
        rotation_degrees: float = 20,
        zoom: float = 0.25,
        intensity: float = 0.2,
        noise: float = 0.03,
        seed: int = 0,
    ):
        super().__init__()
        self.slices, self.intensity, self.noise = slices, intensity, noise
        self._augments = [
            RandomAugment(rotation_degrees, zoom, random_state=seed + view) for view in (0, 1)
        ]
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, batch: int):
        images = self.slices[batch]
        images = images[0] if isinstance(images, tuple) else images
        views = np.concatenate([self._jitter(a.augment_batch(images)) for a in self._augments])
        return views, np.zeros(len(views), dtype=np.float32)

    def _jitter(self, images: np.ndarray) -> np.ndarray:
        shape = (len(images),) + (1,) * (images.ndim - 1)
        contrast = self._rng.uniform(1 - self.intensity, 1 + self.intensity, shape)
        brightness = self._rng.uniform(-self.intensity / 2, self.intensity / 2, shape)
        noisy = images * contrast + brightness + self._rng.normal(0, self.noise, images.shape)
        return np.clip(noisy, 0.0, 1.0).astype(np.float32)

    def on_epoch_end(self) -> None:
        self.slices.on_epoch_end()


def nt_xent_loss(temperature: float = 0.2):
    """SimCLR's normalised temperature-scaled cross-entropy as a Keras loss.

    ``y_pred`` is (2n, d): the projections of n first views then their n second views.
    Each image must pick its partner out of the other 2n - 1 by cosine similarity.
    ``y_true`` is ignored.
    """

    def loss(y_true, y_pred):
        z = ops.normalize(y_pred, axis=-1)
        n = ops.shape(z)[0] // 2
        similarity = ops.matmul(z, ops.transpose(z)) / temperature
        similarity = similarity - 1e9 * ops.eye(2 * n, dtype=similarity.dtype)  # not itself
        partners = ops.concatenate([ops.arange(n, 2 * n), ops.arange(0, n)])
        return ops.sparse_categorical_crossentropy(partners, similarity, from_logits=True)

    return loss


def pretrain_contrastive(
    model: keras.Model,
    slices: keras.utils.PyDataset,
    *,
    epochs: int = 20,
    learning_rate: float = 1e-3,
    temperature: float = 0.2,
    projection_dim: int = 64,
    seed: int = 0,
    verbose: str | int = 0,
) -> list[float]:
    """Pretrain ``model``'s layers up to its ``"pool"`` embedding, in place, with SimCLR.

    A two-layer projection head is put on the embedding for the pretraining only and
    dropped after it (as SimCLR does); the classifier's own top (dropout and sigmoid)
    is left as built. Fine-tune ``model`` afterwards with ``train_classifier``.

    Parameters
    ----------
    model : keras.Model
        From ``ichkit.deep.backbones.build_classifier``.
    slices : PyDataset
        The unlabelled slices (e.g. ``SliceBatches`` of the training patients,
        shuffled); two views of each are made by ``ContrastiveViews``.
    epochs : int, default=20
        Passes over ``slices``, with the warm-up and cosine schedule of
        ``TrainingRecipe``.
    learning_rate : float, default=1e-3
    temperature : float, default=0.2
    projection_dim : int, default=64
    seed : int, default=0
    verbose : "auto", 0, 1 or 2

    Returns
    -------
    list of float
        The contrastive loss of each epoch.
    """
    keras.utils.set_random_seed(seed)
    embedding = model.get_layer("pool").output
    hidden = layers.Dense(embedding.shape[-1], activation="relu", name="projection_hidden")
    projection = layers.Dense(projection_dim, name="projection")(hidden(embedding))
    contrastive = keras.Model(model.input, projection, name=f"{model.name}_simclr")
    views = ContrastiveViews(slices, seed=seed)
    contrastive.compile(
        optimizer=TrainingRecipe(epochs, learning_rate).make_optimizer(epochs * len(views)),
        loss=nt_xent_loss(temperature),
    )
    with denormals_flushed():
        history = contrastive.fit(views, epochs=epochs, verbose=verbose)
    return [float(value) for value in history.history["loss"]]
