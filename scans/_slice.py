"""The in-memory slice that every reader returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SliceImage"]


@dataclass(frozen=True)
class SliceImage:
    """One 2-D slice and what its numbers mean.

    Parameters
    ----------
    pixels : ndarray of shape (height, width), float32
        Hounsfield units when ``hounsfield`` is True (DICOM, NIfTI, phantom volumes);
        otherwise grey values of an already-windowed image, in ``[0, max_value]``.
    hounsfield : bool
        Whether ``pixels`` are Hounsfield units.
    max_value : float
        The largest grey value the source could hold (255 for 8-bit, 65535 for
        16-bit images); unused for Hounsfield units.
    path : str
        The file the slice came from, for messages.
    window : tuple of (center, width) or None
        The display window stored with the slice (DICOM WindowCenter/WindowWidth).
    """

    pixels: np.ndarray
    hounsfield: bool
    path: str = ""
    max_value: float = 255.0
    window: tuple[float, float] | None = None
