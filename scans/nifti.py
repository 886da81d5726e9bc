"""One NIfTI volume (nibabel) as slices in Hounsfield units, in viewing orientation.

``read_nifti_volume`` reorients a volume to RAS+ and lays out each axial slice as
radiologists view it; ``read_nifti_slice`` is one slice of it. Folders of volumes, with
the masks their labels come from, are ``ichkit.scans.nifti_series.load_nifti``.

The header (shape, data type) is checked against the decoding budget before a voxel
is read. A data set reads a volume slice by slice, so the volume read last is kept,
one per thread and never more, keyed by the file's path, modification time and
size; ``clear_volume_cache`` lets it go (a web app calls it after each request).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ichkit.scans._slice import SliceImage
from ichkit.scans.budget import DecodeBudget, check_claimed_size, current_budget
from ichkit.scans.errors import ScanReadError

if TYPE_CHECKING:
    import nibabel

__all__ = [
    "NAN_FILL_HU",
    "NIFTI_SUFFIXES",
    "clear_volume_cache",
    "ras_to_slices",
    "read_nifti_slice",
    "read_nifti_volume",
    "slices_to_ras",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: Value written where a voxel is NaN or infinite: air.
NAN_FILL_HU = -1024.0


def read_nifti_volume(
    path: str | os.PathLike[str], *, budget: DecodeBudget | None = None
) -> tuple[np.ndarray, int]:
    """A volume as (n_slices, height, width) float32 slices, inferior to superior.

    Reoriented to RAS+ (nibabel's closest canonical), then each axial slice laid out
    as radiologists view it: anterior at the top, the patient's right on the left.
    NaN and infinite voxels become air (``NAN_FILL_HU``); their number is returned
    too. The array is a view of the volume read last (see ``clear_volume_cache``).

    Parameters
    ----------
    path : str or path-like
        A ``.nii`` or ``.nii.gz`` file.
    budget : DecodeBudget, default=None
        The decoding limits; ``ichkit.scans.budget.current_budget()`` when None.

    Raises
    ------
    ScanReadError
        Not a readable NIfTI volume, not 3-D, complex or otherwise not grey-valued
        voxels, or a header claiming more than the budget (refused before reading).
    """
    volume = _cached_volume(path, budget or current_budget())
    return volume.slices, volume.n_non_finite


def read_nifti_slice(
    path: str | os.PathLike[str], *, frame: int, budget: DecodeBudget | None = None
) -> SliceImage:
    """Slice ``frame`` (0 = most inferior) of a NIfTI volume, in Hounsfield units."""
    slices, _ = read_nifti_volume(path, budget=budget)
    if not 0 <= frame < len(slices):
        raise ScanReadError(path, f"slice {frame} out of range: the volume has {len(slices)}")
    # A copy: the caller keeps one slice, never the whole cached volume.
    return SliceImage(pixels=np.array(slices[frame]), hounsfield=True, path=str(path))


def clear_volume_cache() -> None:
    """Let go of the volume this thread read last (each thread keeps at most one).

    Call it when a volume's reading is over (a web request that read an upload), so
    that its memory does not outlive its use.
    """
    _cache.entry = None


@dataclass(frozen=True)
class _Volume:
    slices: np.ndarray
    n_nan: int
    n_infinite: int
    non_finite_slices: list[int]

    @property
    def n_non_finite(self) -> int:
        return self.n_nan + self.n_infinite


#: One (key, volume) per thread: a thread reads one volume slice by slice, and
#: concurrent readers (web requests) do not evict each other's volume.
_cache = threading.local()


def _cached_volume(path: str | os.PathLike[str], budget: DecodeBudget) -> _Volume:
    """The volume at ``path``, read once for a run of reads of its slices."""
    try:
        stat = os.stat(path)
    except FileNotFoundError as error:
        raise ScanReadError(path, "file not found") from error
    except OSError as error:
        raise ScanReadError(path, f"cannot open ({error.strerror or error})") from error
    key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size, budget)
    entry = getattr(_cache, "entry", None)
    if entry is not None and entry[0] == key:
        return entry[1]
    _cache.entry = None  # let the previous volume go before the next is read
    volume = _read_volume(path, budget)
    _cache.entry = (key, volume)
    return volume


def _open_volume(
    path: str | os.PathLike[str], budget: DecodeBudget
) -> tuple[nibabel.Nifti1Image, tuple[int, int, int], np.ndarray]:
    """Open a volume and check its header; no voxel is read.

    Returns the image, its 3-D storage shape and nibabel's orientation of the
    storage axes (``io_orientation``): row ``i`` says which RAS axis storage axis
    ``i`` becomes and whether it is flipped.
    """
    import nibabel
    from nibabel.orientations import io_orientation

    try:
        # mmap=False: the file may be deleted (an upload) while its volume is in use.
        image = nibabel.load(path, mmap=False)
        shape = tuple(int(size) for size in image.shape)
        dtype = image.get_data_dtype()
    except FileNotFoundError as error:
        raise ScanReadError(path, "file not found") from error
    except Exception as error:  # noqa: BLE001 - nibabel raises many types for bad files
        raise ScanReadError(path, f"not a readable NIfTI volume ({error})") from error
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise ScanReadError(path, f"expected a 3-D volume, got shape {shape}")
    if dtype.kind == "c":
        raise ScanReadError(
            path,
            f"complex-valued voxels ({dtype}); a CT volume holds real Hounsfield units",
            "Save the magnitude (or real part) as a real-valued volume.",
        )
    if dtype.fields is not None or dtype.kind not in "biuf":
        raise ScanReadError(
            path, f"voxels of type {dtype} are not grey values (RGB or another record type)"
        )
    check_claimed_size(
        path, rows=shape[1], columns=shape[0], n_frames=shape[2],
        bytes_per_pixel=dtype.itemsize, budget=budget,
    )  # fmt: skip
    try:
        orientation = io_orientation(image.affine)
    except Exception as error:  # noqa: BLE001 - a singular or non-finite affine
        raise ScanReadError(path, f"not a readable NIfTI volume (affine: {error})") from error
    return image, shape, orientation


def _n_axial_slices(path: str | os.PathLike[str], budget: DecodeBudget) -> int:
    """How many axial slices a volume has, from its header alone."""
    _, shape, orientation = _open_volume(path, budget)
    return next(
        (size for size, (axis, _) in zip(shape, orientation, strict=True) if axis == 2), shape[2]
    )


def _read_volume(path: str | os.PathLike[str], budget: DecodeBudget) -> _Volume:
    """Read, reorient, fill NaN and infinite voxels with air (never cached itself)."""
    from nibabel.orientations import apply_orientation

    image, shape, orientation = _open_volume(path, budget)
    try:
        # float32 straight from the proxy: nibabel applies scl_slope/scl_inter; the
        # reorientation below is views only, so the float32 array is the one copy kept.
        with np.errstate(over="ignore", invalid="ignore"):  # inf from scaling: filled below
            data = np.asarray(image.dataobj, dtype=np.float32).reshape(shape, order="A")
        if np.isnan(orientation).any():  # an axis nibabel cannot place: keep storage order
            canonical = data
        else:
            canonical = apply_orientation(data, orientation)
    except Exception as error:  # noqa: BLE001 - truncated data, bad gzip stream, ...
        raise ScanReadError(path, f"not a readable NIfTI volume ({error})") from error
    non_finite = ~np.isfinite(canonical)
    n_nan = n_infinite = 0
    non_finite_slices: list[int] = []
    if non_finite.any():
        bad_values = canonical[non_finite]
        n_nan = int(np.isnan(bad_values).sum())
        n_infinite = bad_values.size - n_nan
        non_finite_slices = np.nonzero(non_finite.any(axis=(0, 1)))[0].tolist()
        canonical[non_finite] = NAN_FILL_HU
    return _Volume(_viewing_slices(canonical), n_nan, n_infinite, non_finite_slices)


def _viewing_slices(data: np.ndarray) -> np.ndarray:
    """``ras_to_slices`` as a view (no copy): the one place the layout is decided."""
    return np.transpose(data[::-1, ::-1, :], (2, 1, 0))


def ras_to_slices(data: np.ndarray) -> np.ndarray:
    """An (x, y, z) RAS+ array as (z, rows, columns) slices in viewing orientation.

    x runs left to right and y posterior to anterior; a radiologist views an axial
    slice with anterior at the top and the patient's right on the image's left.
    """
    return np.ascontiguousarray(_viewing_slices(data))


def slices_to_ras(slices: np.ndarray) -> np.ndarray:
    """The inverse of ``ras_to_slices``: what a writer stores with a positive diagonal affine."""
    return np.ascontiguousarray(np.transpose(slices, (2, 1, 0))[::-1, ::-1, :])
