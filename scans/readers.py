"""Reading one slice from any supported file: PNG/JPEG images, DICOM, NIfTI."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ichkit.scans._slice import SliceImage
from ichkit.scans.errors import ScanReadError

__all__ = ["read_image", "read_slice", "MAX_IMAGE_PIXELS", "IMAGE_SUFFIXES"]

#: Images larger than this (8192 x 8192) are refused before decoding: a CT slice is at
#: most a few thousand pixels wide, and a bigger claim is a decompression bomb or a mistake.
MAX_IMAGE_PIXELS = 8192 * 8192
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

_MAX_VALUES = {"L": 255.0, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0}


def read_image(path: str | Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> SliceImage:
    """Read a PNG/JPEG slice as grey values, whatever its mode and bit depth.

    The format is decided by the file's content, not its name. Colour and alpha are
    dropped (luminance); 16-bit images keep their values (``max_value=65535``).

    Parameters
    ----------
    path : str or Path
        The image file.
    max_pixels : int, default=MAX_IMAGE_PIXELS
        Larger images are refused from their header, without decoding.

    Raises
    ------
    ScanReadError
        Empty, not an image, truncated or corrupt, or too large to decode safely.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ScanReadError(path, "empty file")
    except FileNotFoundError as error:
        raise ScanReadError(path, "file not found") from error
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ScanReadError(
                        path,
                        f"too large to decode safely ({width}x{height} pixels, limit "
                        f"{max_pixels}); not decoded",
                    )
                image.load()
                pixels, max_value = _grey_pixels(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            reason = f"too large to decode safely ({error}); not decoded"
            raise ScanReadError(path, reason) from error
        except UnidentifiedImageError as error:
            raise ScanReadError(path, "not an image (content is no known image format)") from error
        except (OSError, SyntaxError, ValueError) as error:
            raise ScanReadError(path, f"truncated or corrupt image ({error})") from error
    return SliceImage(pixels=pixels, hounsfield=False, path=str(path), max_value=max_value)


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
