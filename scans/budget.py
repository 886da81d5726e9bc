"""The decoding budget: how much any reader may decode, checked from the header first.

Every reader (PIL images, DICOM in every transfer syntax, NIfTI) asks
``check_claimed_size`` about the size a file *claims* (rows x columns x frames x
bytes per pixel) before it decodes a single pixel, so that a small file claiming a
huge image (a decompression bomb, or a header written wrong) is refused in
milliseconds instead of taking the machine's memory. The limits live here and only
here: ``DecodeBudget`` holds them, ``DEFAULT_BUDGET`` is what every reader uses unless
told otherwise.

A budget reaches the readers in one of three ways, the most specific first:

- a reader's ``budget=`` argument;
- ``using_budget(budget)``, for the code run inside the ``with`` block in this thread
  (one web request, say), including the loaders (``scans.load``) it calls;
- ``set_default_budget(budget)``, for the whole process (a command line flag).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator
from dataclasses import dataclass

from ichkit.scans.errors import ScanReadError
from ichkit.scans.validation import check_int

__all__ = [
    "DEFAULT_BUDGET",
    "DecodeBudget",
    "check_claimed_size",
    "current_budget",
    "set_default_budget",
    "using_budget",
]

#: The bytes one decoded pixel costs at least: every reader hands on float32 values.
_FLOAT32_BYTES = 4


@dataclass(frozen=True)
class DecodeBudget:
    """The most a reader may decode from one file, judged from the file's header.

    Parameters
    ----------
    max_pixels_per_slice : int, default=8192 * 8192
        Rows x columns of one slice or frame (67 M). A CT slice is at most a few
        thousand pixels wide; a larger claim is a decompression bomb or a mistake.
    max_voxels : int, default=512 * 512 * 1000
        Rows x columns x frames (or slices) of one file (262 M): a 1000-slice
        512 x 512 volume, longer than any head CT series.
    max_decoded_bytes : int, default=1024**3
        Bytes of the decoded array (1 GiB): voxels x bytes per voxel, counting at
        least the 4 bytes of the float32 values every reader returns.

    Examples
    --------
    >>> from ichkit.scans.budget import DecodeBudget, using_budget
    >>> with using_budget(DecodeBudget(max_pixels_per_slice=4096 * 4096)):  # doctest: +SKIP
    ...     dataset = scans.load("data/ct-ich")
    """

    max_pixels_per_slice: int = 8192 * 8192
    max_voxels: int = 512 * 512 * 1000
    max_decoded_bytes: int = 1024**3

    def __post_init__(self) -> None:
        # A frozen value object: checked once when made, so a reader can trust it.
        for name in ("max_pixels_per_slice", "max_voxels", "max_decoded_bytes"):
            check_int(getattr(self, name), name, "DecodeBudget", minimum=1)


#: The budget every reader uses unless given another.
DEFAULT_BUDGET = DecodeBudget()

_process_budget = DEFAULT_BUDGET
_scoped_budget: contextvars.ContextVar[DecodeBudget | None] = contextvars.ContextVar(
    "ichkit_decode_budget", default=None
)


def current_budget() -> DecodeBudget:
    """The budget in force here: ``using_budget``'s, else the process default."""
    return _scoped_budget.get() or _process_budget


def set_default_budget(budget: DecodeBudget) -> DecodeBudget:
    """Make ``budget`` the process-wide default (all threads); returns the previous one."""
    global _process_budget
    if not isinstance(budget, DecodeBudget):
        raise TypeError(
            f"The 'budget' parameter of set_default_budget must be a DecodeBudget. "
            f"Got {budget!r} of type {type(budget).__name__}."
        )
    previous, _process_budget = _process_budget, budget
    return previous


@contextlib.contextmanager
def using_budget(budget: DecodeBudget) -> Iterator[DecodeBudget]:
    """Use ``budget`` for the readers called inside the block, in this thread only.

    Context-local (``contextvars``), so concurrent web requests may each have their
    own. Threads started inside the block (joblib's) get the process default.
    """
    if not isinstance(budget, DecodeBudget):
        raise TypeError(
            f"The 'budget' parameter of using_budget must be a DecodeBudget. "
            f"Got {budget!r} of type {type(budget).__name__}."
        )
    token = _scoped_budget.set(budget)
    try:
        yield budget
    finally:
        _scoped_budget.reset(token)


def check_claimed_size(
    path: str | os.PathLike[str],
    *,
    rows: int,
    columns: int,
    n_frames: int = 1,
    bytes_per_pixel: int = _FLOAT32_BYTES,
    budget: DecodeBudget | None = None,
) -> None:
    """Refuse a file whose header claims more than the budget, before decoding it.

    Parameters
    ----------
    path : str or path-like
        The file, for the message.
    rows, columns : int
        One slice's (or frame's) size as the header claims it.
    n_frames : int, default=1
        Frames (DICOM, multi-page images) or slices (a volume) the file claims.
    bytes_per_pixel : int, default=4
        Bytes one decoded pixel takes (all samples); counted as at least 4, the
        float32 copy every reader makes.
    budget : DecodeBudget, default=None
        The limits; ``current_budget()`` when None.

    Raises
    ------
    ScanReadError
        An empty claim (a size of 0), or one over a limit: the reason starts with
        "too large to decode safely" and says the claim and the limit.
    """
    budget = budget or current_budget()
    if rows < 1 or columns < 1 or n_frames < 1:
        frames = f" x {n_frames} frames" if n_frames != 1 else ""
        raise ScanReadError(
            path, f"invalid header: claims {rows}x{columns} pixels{frames}, an empty image"
        )
    n_pixels = rows * columns
    n_voxels = n_pixels * n_frames
    n_bytes = n_voxels * max(bytes_per_pixel, _FLOAT32_BYTES)
    claim = f"{rows}x{columns} pixels" + (f" x {n_frames} frames" if n_frames > 1 else "")
    if n_pixels > budget.max_pixels_per_slice:
        over = (
            f"claims {rows}x{columns} pixels ({_millions(n_pixels)}) per slice, over the "
            f"limit of {_millions(budget.max_pixels_per_slice)}"
        )
    elif n_voxels > budget.max_voxels:
        over = (
            f"claims {claim} ({_millions(n_voxels)} voxels), over the limit of "
            f"{_millions(budget.max_voxels)}"
        )
    elif n_bytes > budget.max_decoded_bytes:
        over = (
            f"claims {claim} that decode to {_mebibytes(n_bytes)}, over the limit of "
            f"{_mebibytes(budget.max_decoded_bytes)}"
        )
    else:
        return
    raise ScanReadError(path, f"too large to decode safely: {over}; not decoded")


def _millions(count: int) -> str:
    return f"{count / 1e6:,.0f} M" if count >= 10**6 else f"{count:,}"


def _mebibytes(count: int) -> str:
    return f"{count / 2**20:,.0f} MiB"
