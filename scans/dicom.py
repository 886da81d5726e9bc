"""One DICOM slice in Hounsfield units, with padding pixels set to air.

``read_dicom_slice`` decides by content whether a file is DICOM (any name, with or
without preamble), checks that it is one greyscale slice that an installed decoder
can read, and applies the modality LUT. ``is_dicom`` is the cheap content sniff.
Folders of slices are ``ichkit.scans.dicom_series.load_dicom``.

Only single-frame files are read: a multi-frame file (an enhanced CT volume) is
refused with a clear reason rather than read as its first frame.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ichkit.scans._slice import SliceImage
from ichkit.scans.errors import ScanReadError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["PADDING_HU", "is_dicom", "read_dicom_slice"]

#: Hounsfield value given to padding pixels (outside the reconstructed field of view): air.
PADDING_HU = -1024.0

#: Elements that any real DICOM object has at least one of; a forced parse of random
#: bytes yields only nonsense tags.
_IDENTIFYING_KEYWORDS = (
    "SOPClassUID", "SOPInstanceUID", "Modality", "StudyInstanceUID", "SeriesInstanceUID",
    "Rows", "PixelData", "DirectoryRecordSequence",
)  # fmt: skip
#: Groups a data set written without preamble starts with (meta, directory, identification).
_FIRST_GROUPS = (0x0002, 0x0004, 0x0008)
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def is_dicom(path: str | os.PathLike[str]) -> bool:
    """Whether a file's first bytes say DICOM; reads at most 132 bytes, never parses.

    True for 'DICM' after the 128-byte preamble, and for a file written without
    preamble whose first tag is in group 0002, 0004 or 0008 (either byte order).
    pydicom's own ``pydicom.misc.is_dicom`` checks the preamble only.

    Parameters
    ----------
    path : str or path-like
        The file; any name, with or without extension.

    Returns
    -------
    bool
        False for anything else, including folders and files that cannot be opened.
        A True is a guess: ``read_dicom_slice`` still checks the content.
    """
    try:
        with open(path, "rb") as file:
            head = file.read(132)
    except OSError:
        return False
    if head[128:132] == b"DICM":
        return True
    return len(head) >= 8 and any(
        int.from_bytes(head[:2], order) in _FIRST_GROUPS for order in ("little", "big")
    )


def read_dicom_slice(path: str | os.PathLike[str]) -> SliceImage:
    """Read one single-frame DICOM slice in Hounsfield units.

    Stored values go through the modality LUT (RescaleSlope and RescaleIntercept,
    or a Modality LUT Sequence). Pixels marked as padding by PixelPaddingValue (and
    PixelPaddingRangeLimit when present), compared on stored values, become air
    (``PADDING_HU``, -1024 HU). Compressed pixel data is decoded by the pylibjpeg
    plug-ins. A file without the 128-byte preamble is read when its content is a
    real DICOM data set.

    Parameters
    ----------
    path : str or path-like
        The file; any name, with or without extension.

    Returns
    -------
    SliceImage
        ``pixels`` float32 of shape (rows, columns) in Hounsfield units,
        ``hounsfield=True``, ``window`` the first (center, width) of the header's
        WindowCenter/WindowWidth (None when absent or invalid), ``path=str(path)``.

    Raises
    ------
    ScanReadError
        If the file is empty, not DICOM, truncated or corrupt, a DICOMDIR, has no
        pixel data, is multi-frame or colour, or uses a compression no installed
        plug-in decodes. ``reason`` says which; the message names the file.

    Examples
    --------
    >>> from scans.dicom import read_dicom_slice
    >>> image = read_dicom_slice("ge-head-ct/14.dcm")  # doctest: +SKIP
    >>> image.pixels.dtype, image.window  # doctest: +SKIP
    (dtype('float32'), (35.0, 100.0))
    """
    # pydicom warns about each odd value (``ID_...`` is not a valid UID, and so on);
    # real archives trip them on every file, and what matters is raised as a reason.
    with warnings.catch_warnings(action="ignore", category=UserWarning):
        dataset, n_pixel_bytes = _read_dataset(path, pixels=True)
        _check_image(dataset, path, n_pixel_bytes)
        return _decode(dataset, path)


def _read_dataset(path: str | os.PathLike[str], *, pixels: bool) -> tuple[Dataset, int | None]:
    """Parse a file as DICOM; return it with the number of pixel data bytes the file holds.

    The count is None when there is no pixel data element. With ``pixels=False``
    parsing stops at the pixel data element, whose header pydicom has just read:
    the count is its declared length, capped by what is left of the file, so a
    truncated file is found without reading the pixels.
    """
    import pydicom
    import pydicom.filereader
    from pydicom import uid
    from pydicom.tag import Tag

    path = Path(path)
    if path.is_dir():
        raise ScanReadError(path, "a folder, not a file", "Use load_dicom for a folder.")
    try:
        size = path.stat().st_size
    except FileNotFoundError as error:
        raise ScanReadError(path, "no such file") from error
    except OSError as error:
        raise ScanReadError(path, f"cannot open ({error.strerror or error})") from error
    if size == 0:
        raise ScanReadError(path, "empty file")

    pixel_tags = {Tag(keyword) for keyword in _PIXEL_KEYWORDS}
    n_bytes_found: list[int] = []

    def at_pixel_data(tag: int, vr: str | None, length: int) -> bool:
        # pydicom's stop condition, called after each top-level element header with
        # the file at the element's value.
        if tag not in pixel_tags:
            return False
        n_bytes_found.append(min(length, size - file.tell()))
        return True

    try:
        with path.open("rb") as file:
            if not is_dicom(path):
                raise _not_dicom(path)
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    if pixels:
                        dataset = pydicom.dcmread(file, force=True)
                    else:
                        dataset = pydicom.filereader.read_partial(
                            file, stop_when=at_pixel_data, force=True
                        )
            except Exception as error:  # pydicom raises many types on malformed input
                raise ScanReadError(
                    path, f"truncated or corrupt DICOM ({_describe(error)})"
                ) from error
    except OSError as error:
        raise ScanReadError(path, f"cannot read ({error.strerror or error})") from error

    meta = dataset.file_meta
    if dataset.preamble is None and not (
        "TransferSyntaxUID" in meta or any(keyword in dataset for keyword in _IDENTIFYING_KEYWORDS)
    ):
        raise _not_dicom(path)
    if len(dataset) == 0:
        # pydicom gives up silently but for a warning (end of file before a delimiter)
        detail = _describe(caught[-1].message) if caught else "no data elements"
        raise ScanReadError(path, f"truncated or corrupt DICOM ({detail})")
    if "TransferSyntaxUID" not in meta:  # no file meta: record how pydicom parsed it
        implicit, little = dataset.original_encoding
        explicit = uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian
        meta.TransferSyntaxUID = uid.ImplicitVRLittleEndian if implicit else explicit
    if pixels:
        keyword = next((keyword for keyword in _PIXEL_KEYWORDS if keyword in dataset), None)
        return dataset, None if keyword is None else len(dataset[keyword].value or b"")
    if meta.TransferSyntaxUID == uid.DeflatedExplicitVRLittleEndian:
        # pydicom inflates a deflated data set in memory, so the file position says
        # nothing about the pixel data; read it whole (rare, and small).
        return _read_dataset(path, pixels=True)
    return dataset, n_bytes_found[-1] if n_bytes_found else None


def _not_dicom(path: Path) -> ScanReadError:
    return ScanReadError(
        path,
        "not DICOM",
        "Neither a 'DICM' preamble nor DICOM elements were found; only DICOM files are read.",
    )


def _check_image(dataset: Dataset, path: str | os.PathLike[str], n_pixel_bytes: int | None) -> None:
    """Raise ``ScanReadError`` unless the data set is one decodable greyscale slice."""
    from pydicom import uid
    from pydicom.pixels import get_decoder
    from pydicom.pixels.utils import get_expected_length

    sop_class = _text(dataset, "SOPClassUID") or _text(dataset.file_meta, "MediaStorageSOPClassUID")
    if "DirectoryRecordSequence" in dataset or sop_class == uid.MediaStorageDirectoryStorage:
        raise ScanReadError(
            path,
            "a DICOMDIR (directory records), not an image",
            "The images it lists are separate files; load their folder.",
        )
    if n_pixel_bytes is None:
        sop_class_name = uid.UID(sop_class).name if sop_class else ""
        if sop_class_name and "Image Storage" not in sop_class_name:
            hint = f"It is a '{sop_class_name}' object, not an image."
        else:
            hint = "The header is an image's, but its Pixel Data element is missing."
        raise ScanReadError(path, "no pixel data", hint)
    n_frames = _integer(dataset, "NumberOfFrames")
    if n_frames is not None and n_frames > 1:
        raise ScanReadError(
            path,
            f"multi-frame DICOM ({n_frames} frames); only single-frame slices are read",
            "Split it into one file per frame (dcmtk, pydicom) or convert the volume to NIfTI.",
        )
    n_samples = _integer(dataset, "SamplesPerPixel")
    if n_samples is not None and n_samples != 1:
        raise ScanReadError(
            path,
            f"not a greyscale slice (SamplesPerPixel {n_samples}, "
            f"PhotometricInterpretation {_text(dataset, 'PhotometricInterpretation')})",
            "Colour DICOM (screenshots, secondary captures) holds no Hounsfield units.",
        )

    syntax = uid.UID(dataset.file_meta.TransferSyntaxUID)
    described = f"{syntax.name} ({syntax})" if syntax.name != str(syntax) else f"'{syntax}'"
    # 1.2.840.10008.1.2.7.x are the SMPTE ST 2110 (video and audio) syntaxes.
    if syntax in uid.MPEGTransferSyntaxes or syntax.startswith("1.2.840.10008.1.2.7."):
        raise ScanReadError(
            path,
            f"compression not supported: {described}, a video transfer syntax; none is supported",
            "Export the series as single-frame images (uncompressed, JPEG Lossless or JPEG 2000).",
        )
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as error:
        raise ScanReadError(
            path,
            f"compression not supported: {described}; pydicom has no decoder for it",
            "Convert the file to an uncompressed transfer syntax (e.g. gdcmconv --raw).",
        ) from error
    if not decoder.is_available:
        plugins = {
            "pylibjpeg-libjpeg": uid.JPEGTransferSyntaxes + uid.JPEGLSTransferSyntaxes,
            "pylibjpeg-openjpeg": uid.JPEG2000TransferSyntaxes,
            "pylibjpeg-rle": uid.RLETransferSyntaxes,
        }
        plugin = next((name for name, syntaxes in plugins.items() if syntax in syntaxes), None)
        if plugin:
            raise ScanReadError(
                path,
                f"compression not supported: {described}; no decoder installed, install {plugin}",
                f"Run: pip install pylibjpeg {plugin}",
            )
        raise ScanReadError(
            path,
            f"compression not supported: {described}; no decoder installed",
            f"Decoders pydicom can use: {', '.join(decoder.missing_dependencies)}.",
        )

    if syntax.is_encapsulated:
        return  # compressed: only decoding can tell whether the stream is whole
    try:
        expected = get_expected_length(dataset, unit="bytes")
    except (AttributeError, TypeError) as error:  # an Image Pixel element missing or empty
        missing = getattr(error, "name", None) or "Rows, Columns, SamplesPerPixel or BitsAllocated"
        raise ScanReadError(path, f"truncated or corrupt DICOM (no {missing})") from error
    if n_pixel_bytes < expected:
        raise ScanReadError(
            path, f"truncated or corrupt DICOM (pixel data has {n_pixel_bytes} of {expected} bytes)"
        )


def _decode(dataset: Dataset, path: str | os.PathLike[str]) -> SliceImage:
    """Decode checked pixel data into Hounsfield units, padding as air."""
    from pydicom.pixels import apply_modality_lut

    try:
        stored = dataset.pixel_array
        hounsfield = apply_modality_lut(stored, dataset)
    except Exception as error:  # decoder plug-ins raise many types on bad streams
        raise ScanReadError(
            path,
            f"truncated or corrupt DICOM (pixel data could not be decoded: {_describe(error)})",
        ) from error
    if stored.ndim != 2:
        raise ScanReadError(path, f"not a 2-D slice (pixel array of shape {stored.shape})")
    pixels = np.array(hounsfield, dtype=np.float32)
    padding = _padding_value(dataset, "PixelPaddingValue")
    if padding is not None:
        limit = _padding_value(dataset, "PixelPaddingRangeLimit")
        low, high = sorted((padding, padding if limit is None else limit))
        pixels[(stored >= low) & (stored <= high)] = PADDING_HU
    centers, widths = _numbers(dataset, "WindowCenter"), _numbers(dataset, "WindowWidth")
    window = (centers[0], widths[0]) if centers and widths and widths[0] > 0 else None
    return SliceImage(pixels=pixels, hounsfield=True, path=str(path), window=window)


def _padding_value(dataset: Dataset, keyword: str) -> int | None:
    """A padding value as a stored value, signed when the pixels are (the VR is US or SS)."""
    value = _integer(dataset, keyword)
    if value is None:
        return None
    bits = _integer(dataset, "BitsAllocated") or 16
    if _integer(dataset, "PixelRepresentation") == 1 and 2 ** (bits - 1) <= value < 2**bits:
        value -= 2**bits  # written as unsigned
    return value


# pydicom converts values lazily, so a malformed value raises only when read; the
# helpers below turn that into None, so that one bad value does not lose the slice.


def _text(dataset: Dataset, keyword: str) -> str | None:
    try:
        text = str(dataset.get(keyword) or "").strip().strip("\x00").strip()
    except Exception:
        return None
    return text or None


def _numbers(dataset: Dataset, keyword: str) -> list[float] | None:
    """All values of a numeric element (DS, IS, US, ...), or None when absent or invalid."""
    from pydicom.multival import MultiValue

    try:
        value = dataset.get(keyword)
        numbers = [float(item) for item in (value if isinstance(value, MultiValue) else [value])]
    except Exception:
        return None
    return numbers if numbers and all(map(math.isfinite, numbers)) else None


def _integer(dataset: Dataset, keyword: str) -> int | None:
    numbers = _numbers(dataset, keyword)
    return int(numbers[0]) if numbers and numbers[0].is_integer() else None


def _describe(error: BaseException | Warning) -> str:
    """The first line of an error or warning, without the file name (the message has it)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = re.sub(r" in file .*$", "", text)
    return text if len(text) <= 160 else text[:157] + "..."
