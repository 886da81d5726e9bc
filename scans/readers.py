"""Reading one slice from any supported file: images (PNG, JPEG, TIFF, ...), DICOM, NIfTI."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageMode, UnidentifiedImageError

from ichkit.scans._slice import SliceImage
from ichkit.scans.budget import DEFAULT_BUDGET, DecodeBudget, check_claimed_size, current_budget
from ichkit.scans.errors import ScanReadError

__all__ = ["read_image", "read_slice", "MAX_IMAGE_PIXELS", "IMAGE_FORMATS", "IMAGE_SUFFIXES"]

#: The default limit on one image's pixels (8192 x 8192), kept for callers that name it;
#: the limits themselves live in ``ichkit.scans.budget.DecodeBudget``.
MAX_IMAGE_PIXELS = DEFAULT_BUDGET.max_pixels_per_slice
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: The PIL formats read as slices: raster formats whose header gives the decoded size.
#: Others PIL knows (EPS runs Ghostscript, ICO/ICNS hold several images, PSD layers)
#: are refused as not an image.
IMAGE_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "DIB", "GIF", "WEBP", "PPM", "JPEG2000")
#: Formats whose extra frames are previews of the first, not slices: PIL opens a camera's
#: multi-picture JPEG as "MPO".
_PREVIEW_FRAME_FORMATS = ("MPO",)

_MAX_VALUES = {"L": 255.0, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0}


def read_image(
    path: str | Path, *, max_pixels: int | None = None, budget: DecodeBudget | None = None
) -> SliceImage:
    """Read an image slice (PNG, JPEG, TIFF, BMP, GIF, WebP, ...) as grey values.

    The format is decided by the file's content, not its name. Colour and alpha are
    dropped (luminance); 16-bit images keep their values (``max_value=65535``). The
    size the header claims is checked against the decoding budget before any pixel
    is decoded. Only single-frame images are read: a multi-page TIFF or an animated
    GIF is refused rather than read as its first frame.

    Parameters
    ----------
    path : str or Path
        The image file.
    max_pixels : int, default=None
        A tighter limit on width x height than the budget's ``max_pixels_per_slice``
        (kept for callers of the former signature).
    budget : DecodeBudget, default=None
        The decoding limits; ``ichkit.scans.budget.current_budget()`` when None.

    Raises
    ------
    ScanReadError
        Empty, not an image (or a format not read here), truncated or corrupt,
        multi-frame, or too large to decode safely (refused from the header).
    """
    path = Path(path)
    budget = budget or current_budget()
    if max_pixels is not None:
        budget = dataclasses.replace(budget, max_pixels_per_slice=max_pixels)
    try:
        if path.stat().st_size == 0:
            raise ScanReadError(path, "empty file")
    except FileNotFoundError as error:
        raise ScanReadError(path, "file not found") from error
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path, formats=IMAGE_FORMATS) as image:
                _check_header(image, path, budget)
                image.load()
                pixels, max_value = _grey_pixels(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            reason = f"too large to decode safely ({error}); not decoded"
            raise ScanReadError(path, reason) from error
        except UnidentifiedImageError as error:
            raise ScanReadError(
                path,
                f"not an image (content is no image format read here: {', '.join(IMAGE_FORMATS)})",
            ) from error
        except (OSError, SyntaxError, ValueError, EOFError) as error:
            raise ScanReadError(path, f"truncated or corrupt image ({error})") from error
    return SliceImage(pixels=pixels, hounsfield=False, path=str(path), max_value=max_value)


def _check_header(image: Image.Image, path: Path, budget: DecodeBudget) -> None:
    """Refuse, from what PIL read of the header, an image too large or not one slice."""
    width, height = image.size
    try:
        mode = ImageMode.getmode(image.mode)
        bytes_per_pixel = np.dtype(mode.typestr).itemsize * len(mode.bands)
    except (KeyError, TypeError):
        bytes_per_pixel = 4  # a mode PIL cannot describe: count the float32 copy
    # Only the first frame is ever decoded, so it is the one measured.
    check_claimed_size(
        path, rows=height, columns=width, bytes_per_pixel=bytes_per_pixel, budget=budget
    )
    n_frames = getattr(image, "n_frames", 1)
    if n_frames > 1 and image.format not in _PREVIEW_FRAME_FORMATS:
        raise ScanReadError(
            path,
            f"multi-frame image ({image.format}, {n_frames} frames); only single-frame "
            "slices are read",
            "Save each frame as its own file, or convert the series to DICOM or NIfTI.",
        )


def _grey_pixels(image: Image.Image) -> tuple[np.ndarray, float]:
    """One grey channel as float32 and the largest value the mode can hold."""
    if image.mode in _MAX_VALUES:
        return np.asarray(image, dtype=np.float32), _MAX_VALUES[image.mode]
    if image.mode in ("I", "F"):
        pixels = np.asarray(image, dtype=np.float32)
        return pixels, 65535.0 if pixels.max(initial=0) > 255 else 255.0
    # RGB, RGBA, LA, P, 1, CMYK: luminance, alpha dropped.
    return np.asarray(image.convert("L"), dtype=np.float32), 255.0


def read_slice(path: str | Path, *, format: str, frame: int | None = None) -> SliceImage:
    """Read one slice of a data set row: ``format`` is ``image``, ``dicom`` or ``nifti``."""
    if format == "image":
        return read_image(path)
    if format == "dicom":
        from ichkit.scans.dicom import read_dicom_slice

        return read_dicom_slice(path)
    if format == "nifti":
        from ichkit.scans.nifti import read_nifti_slice

        return read_nifti_slice(path, frame=0 if frame is None else frame)
    raise ValueError(f"Unknown slice format {format!r}; expected 'image', 'dicom' or 'nifti'.")
