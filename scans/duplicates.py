"""Near-duplicate slices across the parts of a split: the leak grouping cannot see.

Patient-grouped splits (``ichkit.scans.splits``) keep every slice of a patient in one
part, but not the same image stored under two patient ids, or a re-exported copy.
``find_near_duplicates`` hashes every image with a perceptual hash and reports the
pairs in different parts whose hashes are close.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ichkit.scans._slice import SliceImage
from ichkit.scans.dataset import ScanDataset
from ichkit.scans.splits import Split
from ichkit.scans.validation import check_int
from ichkit.scans.windowing import Window, get_window

__all__ = ["find_near_duplicates"]

_DUPLICATE_COLUMNS = [
    "index_a",
    "index_b",
    "part_a",
    "part_b",
    "path_a",
    "path_b",
    "patient_id_a",
    "patient_id_b",
    "distance",
]


def find_near_duplicates(
    dataset_or_images: ScanDataset | Sequence[SliceImage | np.ndarray] | np.ndarray,
    parts: Sequence | np.ndarray | Split,
    *,
    max_distance: int = 12,
    hash_size: int = 16,
    window: str | tuple[float, float] | Window | None = "brain",
) -> pd.DataFrame:
    """Pairs of near-identical images that fall in different parts of a split.

    Each image is windowed, made 8-bit and hashed with the perceptual hash of
    ImageHash (``phash``: signs of the low-frequency DCT). Pairs in different parts
    whose hashes differ in at most ``max_distance`` bits are reported. Duplicated
    slices across train and test (the same scan under two patient ids, re-exported
    copies) silently inflate published accuracies; patient grouping cannot catch them.

    Hamming distances are computed on packed bit arrays, one block of rows at a time,
    between parts only, so thousands of images take seconds.

    Parameters
    ----------
    dataset_or_images : ScanDataset, sequence of SliceImage or ndarray, or ndarray
        A data set (each slice read with ``read(i)``), or the images themselves; a 3-D
        array is a stack of 2-D images.
    parts : array-like of shape (n_images,) or Split
        The part (``train``, ``validation``, ``test``, ...) of every image, by position;
        a ``Split`` is converted with ``Split.part_names()``. Images whose part is
        missing (None, NaN or "") are left out.
    max_distance : int, default=12
        Largest Hamming distance between hashes reported, in bits (of
        ``hash_size ** 2``).
    hash_size : int, default=16
        Side of the hash; the hash has ``hash_size ** 2`` bits. ImageHash's usual 8
        is too coarse for CT: it mostly encodes the head's outline, and on the real
        CT-ICH slices different patients came within 4 bits. Measured there with
        16 (256 bits): copies resized, re-saved as JPEG (quality 70) and brightened
        5% stayed within 8 bits; slices of different patients were never closer
        than 30. Cropping to the head before hashing made both worse.
    window : str, (center, width), Window or None, default="brain"
        Window applied before hashing (see ``get_window``). ``SliceImage`` objects that
        are not in Hounsfield units are only scaled to ``[0, 1]``; plain arrays are
        taken as Hounsfield units. None scales every image by its own minimum and
        maximum instead (for arrays that are already grey values).

    Returns
    -------
    DataFrame
        One row per pair with ``index_a < index_b``: ``index_a, index_b, part_a,
        part_b, path_a, path_b, patient_id_a, patient_id_b, distance``, sorted by
        distance. Paths and patient ids are missing unless a ScanDataset is given.

    Raises
    ------
    ValueError
        If ``parts`` does not have one entry per image or a parameter is out of range.

    Notes
    -----
    Images without any contrast after windowing (blank slices above or below the head)
    all share one hash and are not compared.
    """
    check_int(hash_size, "hash_size", "find_near_duplicates", minimum=2)
    check_int(max_distance, "max_distance", "find_near_duplicates", minimum=0)
    windowing = None if window is None else get_window(window)

    if isinstance(dataset_or_images, ScanDataset):
        n_images = len(dataset_or_images)
        paths = dataset_or_images.table["path"].to_numpy(dtype=object)
        patients = dataset_or_images.table["patient_id"].to_numpy(dtype=object)
        read = dataset_or_images.read
    else:
        n_images = len(dataset_or_images)
        paths = np.full(n_images, None, dtype=object)
        patients = np.full(n_images, None, dtype=object)
        read = dataset_or_images.__getitem__
    if isinstance(parts, Split):
        parts = parts.part_names()
    parts = np.asarray(parts, dtype=object)
    if parts.shape != (n_images,):
        raise ValueError(
            f"The 'parts' parameter of find_near_duplicates must give one part per image: "
            f"{n_images} images, got {parts.shape[0] if parts.ndim else 'a scalar'} parts."
        )
    in_a_part = np.array([not _is_missing(part) for part in parts], dtype=bool)

    hashes = np.zeros((n_images, hash_size * hash_size), dtype=bool)
    keep = np.zeros(n_images, dtype=bool)
    for index in np.flatnonzero(in_a_part):
        grey = _to_uint8(read(int(index)), windowing)
        if grey is None:
            continue
        hashes[index] = _phash(grey, hash_size)
        keep[index] = True

    pairs = _close_pairs_across_parts(hashes, parts, keep, max_distance)
    if not pairs:
        return pd.DataFrame({column: pd.Series(dtype=object) for column in _DUPLICATE_COLUMNS})
    index_a, index_b, distance = (np.concatenate(values) for values in zip(*pairs, strict=True))
    table = pd.DataFrame(
        {
            "index_a": index_a,
            "index_b": index_b,
            "part_a": parts[index_a],
            "part_b": parts[index_b],
            "path_a": paths[index_a],
            "path_b": paths[index_b],
            "patient_id_a": patients[index_a],
            "patient_id_b": patients[index_b],
            "distance": distance,
        }
    )
    return table.sort_values(["distance", "index_a", "index_b"], ignore_index=True)


# --- helpers -----------------------------------------------------------------------------


def _is_missing(value: object) -> bool:
    if value is None or (isinstance(value, str) and value == ""):
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _to_uint8(image: SliceImage | np.ndarray, window: Window | None) -> np.ndarray | None:
    """The image as 8-bit grey for hashing, or None when it has no contrast."""
    if window is not None:
        unit = window(image)
    else:
        pixels = image.pixels if isinstance(image, SliceImage) else image
        pixels = np.asarray(pixels, dtype=np.float32)
        low, high = np.nanmin(pixels), np.nanmax(pixels)
        unit = (pixels - low) / (high - low) if high > low else np.zeros_like(pixels)
    if unit.ndim == 3:  # a window stack or RGB: hash the mean grey
        unit = unit.mean(axis=-1)
    if unit.ndim != 2:
        raise ValueError(
            f"find_near_duplicates needs 2-D images; got an image of shape {unit.shape}."
        )
    grey = np.round(np.nan_to_num(unit, nan=0.0) * 255).astype(np.uint8)
    if grey.min() == grey.max():
        return None
    return grey


def _phash(grey: np.ndarray, hash_size: int) -> np.ndarray:
    import imagehash
    from PIL import Image

    return imagehash.phash(Image.fromarray(grey), hash_size=hash_size).hash.ravel()


def _close_pairs_across_parts(
    hashes: np.ndarray, parts: np.ndarray, keep: np.ndarray, max_distance: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(index_a, index_b, distance) blocks of kept images in different parts, a < b."""
    words = _pack_bits(hashes)
    kept = np.flatnonzero(keep)
    part_codes, part_names = pd.factorize(pd.Series(parts[kept], dtype=object))
    members = [kept[part_codes == code] for code in range(len(part_names))]
    n_words = words.shape[1]
    found = []
    for first in range(len(members)):
        for second in range(first + 1, len(members)):
            rows, columns = members[first], members[second]
            if len(rows) == 0 or len(columns) == 0:
                continue
            # Blocks of rows bounded to about 8 million word comparisons each.
            block = max(1, 8_000_000 // max(1, len(columns) * n_words))
            for start in range(0, len(rows), block):
                block_rows = rows[start : start + block]
                differing = words[block_rows, np.newaxis, :] ^ words[np.newaxis, columns, :]
                distance = np.bitwise_count(differing).sum(axis=-1)
                row_at, column_at = np.nonzero(distance <= max_distance)
                if row_at.size == 0:
                    continue
                index_a, index_b = block_rows[row_at], columns[column_at]
                found.append(
                    (
                        np.minimum(index_a, index_b),
                        np.maximum(index_a, index_b),
                        distance[row_at, column_at].astype(np.int64),
                    )
                )
    return found


def _pack_bits(bits: np.ndarray) -> np.ndarray:
    """Rows of booleans as rows of uint64 words (zero-padded)."""
    packed = np.packbits(bits, axis=1)
    n_bytes = -(-packed.shape[1] // 8) * 8
    padded = np.zeros((packed.shape[0], n_bytes), dtype=np.uint8)
    padded[:, : packed.shape[1]] = packed
    return padded.view(np.uint64)
