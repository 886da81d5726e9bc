"""Slices streamed to Keras in batches: read, window, crop, resize, add the neighbouring
slices (2.5-D), augment on the fly."""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np

from ichkit.scans._slice import SliceImage
from ichkit.scans.dataset import ScanDataset
from ichkit.scans.transforms import NeighborSlices, RandomAugment, prepare_slice

__all__ = ["SliceBatches", "neighbour_rows", "prepare_images", "prepare_slices"]


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
    slices: list[SliceImage], *, size: int = 224, window: str = "stack", neighbors: int = 0
) -> np.ndarray:
    """Slices already read, prepared as ``prepare_images`` prepares a data set's rows;
    with ``neighbors``, ``slices`` are one scan in order and each gets its neighbours as
    channels, as ``SliceBatches(neighbors=...)`` gives them in training."""
    batch = np.stack([prepare_slice(image, size=size, window=window) for image in slices])
    batch = batch.astype(np.float32)
    batch = batch if batch.ndim == 4 else np.repeat(batch[..., None], 3, axis=-1)
    return NeighborSlices(neighbors)(batch) if neighbors else batch


def neighbour_rows(table, rows, n_neighbors: int) -> np.ndarray:
    """For each of ``rows``, the rows of the ``n_neighbors`` slices below it, itself and
    the slices above it in its scan (by ``slice_index``), as ``NeighborSlices`` orders
    them: (len(rows), 2 * n_neighbors + 1). Scan edges repeat the edge slice, and a
    slice without a known order (a loose image) is its own neighbour."""
    rows = np.asarray(rows)
    offsets = np.arange(-n_neighbors, n_neighbors + 1)
    result = np.repeat(rows[:, None], len(offsets), axis=1)
    if n_neighbors == 0 or "slice_index" not in table or "scan_id" not in table:
        return result
    ordered = table[["scan_id", "slice_index"]].dropna().sort_values(["scan_id", "slice_index"])
    by_scan = {
        scan: group.index.to_numpy() for scan, group in ordered.groupby("scan_id", sort=False)
    }
    position = {
        row: (scan, i) for scan, members in by_scan.items() for i, row in enumerate(members)
    }
    for k, row in enumerate(rows):
        if row in position:
            scan, i = position[row]
            members = by_scan[scan]
            result[k] = members[np.clip(i + offsets, 0, len(members) - 1)]
    return result


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
    neighbors : int, default=0
        2.5-D input: the slices below and above each slice in its scan, as channels
        (``neighbour_rows``): ``3 * (2 * neighbors + 1)`` channels.
    augment : RandomAugment, default=None
        Applied to every slice of every batch (training only); a slice and its
        neighbours move together.
    flip : bool, default=False
        Serve every slice mirrored left-right (test-time augmentation).
    shuffle : bool, default=False
        Reshuffle the order each epoch (seeded by ``seed``).
    seed : int, default=0
    cache : bool, default=False
        Keep prepared slices (before augmentation) in memory after their first read:
        later epochs skip decoding and preparing. For data sets that fit in memory
        (605 slices at 128 px take 120 MB); off, memory holds one batch.
    label_columns : sequence of str, default=("label",)
        The table's label columns served: one gives labels of shape (n,), several
        (any hemorrhage and subtypes) labels of shape (n, n_columns).
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
        neighbors: int = 0,
        augment: RandomAugment | None = None,
        flip: bool = False,
        shuffle: bool = False,
        seed: int = 0,
        cache: bool = False,
        label_columns: Sequence[str] = ("label",),
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.dataset, self.size, self.window = dataset, size, window
        self.indices = np.asarray(indices, dtype=int)
        self.batch_size, self.augment, self.shuffle = batch_size, augment, shuffle
        self.neighbors, self.flip = neighbors, flip
        self._stacks = neighbour_rows(dataset.table, self.indices, neighbors)
        columns = list(label_columns)
        labels = dataset.table[columns].to_numpy(dtype=float, na_value=np.nan)[self.indices]
        self.labels = labels[:, 0] if len(columns) == 1 else labels
        self._prepared: dict[int, np.ndarray] | None = {} if cache else None
        self._rng = np.random.default_rng(seed)
        self._order = np.arange(len(self.indices))
        if shuffle:
            self._rng.shuffle(self._order)

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def __getitem__(self, batch: int):
        chosen = self._order[batch * self.batch_size : (batch + 1) * self.batch_size]
        stacks = self._stacks[chosen]  # (batch, 2 * neighbors + 1) rows
        slices = self._images(stacks.ravel()).reshape(*stacks.shape, self.size, self.size, 3)
        images = np.concatenate(list(np.moveaxis(slices, 1, 0)), axis=-1)
        if self.augment is not None:
            images = self.augment.augment_batch(images)
        if self.flip:
            images = images[:, :, ::-1]
        return images, self.labels[chosen].astype(np.float32)

    def _images(self, rows: np.ndarray) -> np.ndarray:
        """Prepared slices of ``rows`` (a row may repeat: a neighbour of several)."""
        unique, positions = np.unique(rows, return_inverse=True)
        if self._prepared is None:
            return prepare_images(self.dataset, unique, size=self.size, window=self.window)[
                positions
            ]
        missing = [int(row) for row in unique if int(row) not in self._prepared]
        if missing:
            prepared = prepare_images(self.dataset, missing, size=self.size, window=self.window)
            self._prepared.update(zip(missing, prepared, strict=True))
        return np.stack([self._prepared[int(row)] for row in unique])[positions]

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self._rng.shuffle(self._order)
