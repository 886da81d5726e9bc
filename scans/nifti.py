"""One NIfTI volume (nibabel) as slices in Hounsfield units, in viewing orientation.

``read_nifti_volume`` reorients a volume to RAS+ and lays out each axial slice as
radiologists view it; ``read_nifti_slice`` is one slice of it. Volumes are cached, since
a data set reads a volume slice by slice. Folders of volumes, with the masks their
labels come from, are ``ichkit.scans.nifti_series.load_nifti``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ichkit.scans._slice import SliceImage
from ichkit.scans.errors import ScanReadError

__all__ = [
    "NAN_FILL_HU",
    "NIFTI_SUFFIXES",
    "ras_to_slices",
    "read_nifti_slice",
    "read_nifti_volume",
    "slices_to_ras",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: Value written where a voxel is NaN: air.
NAN_FILL_HU = -1024.0


def read_nifti_volume(path: str | Path) -> tuple[np.ndarray, int]:
    """A volume as (n_slices, height, width) float32 slices, inferior to superior.

    Reoriented to RAS+ (nibabel's closest canonical), then each axial slice laid out
    as radiologists view it: anterior at the top, the patient's right on the left.
    NaN voxels become air (``NAN_FILL_HU``); their number is returned too.
    """
    volume = _canonical_volume(str(path))
    return volume.slices, volume.n_nan


def read_nifti_slice(path: str | Path, *, frame: int) -> SliceImage:
    """Slice ``frame`` (0 = most inferior) of a NIfTI volume, in Hounsfield units."""
    slices, _ = read_nifti_volume(path)
    if not 0 <= frame < len(slices):
        raise ScanReadError(path, f"slice {frame} out of range: the volume has {len(slices)}")
    return SliceImage(pixels=slices[frame], hounsfield=True, path=str(path))


@dataclass(frozen=True)
class _Volume:
    slices: np.ndarray
    n_nan: int
    nan_slices: list[int]


@lru_cache(maxsize=4)
def _canonical_volume(path: str) -> _Volume:
    """Load once, reorient, fill NaN (cached: a data set reads a volume slice by slice)."""
    import nibabel

    try:
        image = nibabel.as_closest_canonical(nibabel.load(path))
        data = np.asarray(image.dataobj, dtype=np.float32)
    except FileNotFoundError as error:
        raise ScanReadError(path, "file not found") from error
    except Exception as error:  # noqa: BLE001 - nibabel raises many types for bad files
        raise ScanReadError(path, f"not a readable NIfTI volume ({error})") from error
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ScanReadError(path, f"expected a 3-D volume, got shape {data.shape}")
    nan = np.isnan(data)
    nan_slices = sorted(set(np.nonzero(nan)[2].tolist()))
    data[nan] = NAN_FILL_HU
    return _Volume(ras_to_slices(data), int(nan.sum()), nan_slices)


def ras_to_slices(data: np.ndarray) -> np.ndarray:
    """An (x, y, z) RAS+ array as (z, rows, columns) slices in viewing orientation.

    x runs left to right and y posterior to anterior; a radiologist views an axial
    slice with anterior at the top and the patient's right on the image's left.
    """
    return np.ascontiguousarray(np.transpose(data[::-1, ::-1, :], (2, 1, 0)))


def slices_to_ras(slices: np.ndarray) -> np.ndarray:
    """The inverse of ``ras_to_slices``: what a writer stores with a positive diagonal affine."""
    return np.ascontiguousarray(np.transpose(slices, (2, 1, 0))[::-1, ::-1, :])
