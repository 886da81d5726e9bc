"""Slices streamed to Keras in batches: read, window, crop, resize, augment on the fly."""

from __future__ import annotations

import math

import keras
import numpy as np

from ichkit.scans._slice import SliceImage
from ichkit.scans.dataset import ScanDataset
from ichkit.scans.transforms import RandomAugment, prepare_slice

__all__ = ["SliceBatches", "prepare_images", "prepare_slices"]


def prepare_images(
    dataset: ScanDataset, indices, *, size: int = 224, window: str = "stack"
) -> np.ndarray:
    """Slices ``indices`` of ``dataset`` as a (n, size, size, 3) float32 array in [0, 1].

    ``window="stack"`` gives the brain/subdural/bone channels; a single window name
    (``"brain"``) is repeated over three channels. Grey exports pass through their
    own window (see ``scans.Window``).
    """
    return prepare_slices([dataset.read(int(i)) for i in indices], size=size, window=window)


def prepare_slices(
    slices: list[SliceImage], *, size: int = 224, window: str = "stack"
) -> np.ndarray:
    """Slices already read, prepared as ``prepare_images`` prepares a data set's rows."""
    batch = np.stack([prepare_slice(image, size=size, window=window) for image in slices])
    batch = batch.astype(np.float32)
    return batch if batch.ndim == 4 else np.repeat(batch[..., None], 3, axis=-1)


class SliceBatches(keras.utils.PyDataset):
    """Batches of prepared slices and labels, read from disk as they are needed.

    Memory holds one batch, not the data set, so data sets larger than memory train.

    Parameters
    ----------
    dataset : ScanDataset
    indices : array-like of int
        Rows of ``dataset.table`` to serve (a split's part).
    size : int, default=224
    window : str, default="stack"
    batch_size : int, default=16
    augment : RandomAugment, default=None
        Applied to every slice of every batch (training only).
    shuffle : bool, default=False
        Reshuffle the order each epoch (seeded by ``seed``).
    seed : int, default=0
    cache : bool, default=False
        Keep prepared slices (before augmentation) in memory after their first read:
        later epochs skip decoding and preparing. For data sets that fit in memory
        (605 slices at 128 px take 120 MB); off, memory holds one batch.
    **kwargs
        ``workers``, ``use_multiprocessing``, ``max_queue_size`` of PyDataset.
    """

    def __init__(
        self,
        dataset: ScanDataset,
        indices,
        *,
        size: int = 224,
        window: str = "stack",
        batch_size: int = 16,
        augment: RandomAugment | None = None,
        shuffle: bool = False,
        seed: int = 0,
        cache: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dataset, self.size, self.window = dataset, size, window
        self.indices = np.asarray(indices, dtype=int)
        self.batch_size, self.augment, self.shuffle = batch_size, augment, shuffle
        self.labels = dataset.table["label"].to_numpy(dtype=float, na_value=np.nan)[self.indices]
        self._prepared: dict[int, np.ndarray] | None = {} if cache else None
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(len(self.indices))
        if shuffle:
            self._rng.shuffle(self._order)

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __getitem__(self, batch: int):
        chosen = self._order[batch * self.batch_size : (batch + 1) * self.batch_size]
        images = self._images(self.indices[chosen])
        if self.augment is not None:
            images = self.augment.augment_batch(images)
        return images, self.labels[chosen].astype(np.float32)

    def _images(self, rows: np.ndarray) -> np.ndarray:
        if self._prepared is None:
            return prepare_images(self.dataset, rows, size=self.size, window=self.window)
        missing = [int(row) for row in rows if int(row) not in self._prepared]
        if missing:
            prepared = prepare_images(self.dataset, missing, size=self.size, window=self.window)
            self._prepared.update(zip(missing, prepared, strict=True))
        return np.stack([self._prepared[int(row)] for row in rows])

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self._rng.shuffle(self._order)
