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
import struct
import warnings
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ichkit.scans._slice import SliceImage
from ichkit.scans.budget import DecodeBudget, check_claimed_size, current_budget
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
#: The bit depths DICOM allows for one stored sample (PS3.5 8.1.1); float pixel data is 32/64.
_BITS_ALLOCATED = (1, 8, 16, 32, 64)
#: Bytes per pixel of the modality LUT's result: pydicom computes Hounsfield units in float64.
_HOUNSFIELD_BYTES = 8
#: Hounsfield units any CT can hold, air (-1000) to dense metal on extended scales
#: (about 30 000), with a wide margin: values beyond come from a broken rescale, not a scan.
_ANY_CT_RANGE = (-1e5, 1e5)
#: JPEG start-of-frame markers SOF0-SOF15 (less DHT, JPG and DAC), and JPEG-LS SOF55.
_START_OF_FRAME_MARKERS = frozenset(range(0xFFC0, 0xFFD0)) - {0xFFC4, 0xFFC8, 0xFFCC} | {0xFFF7}


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


def read_dicom_slice(
    path: str | os.PathLike[str], *, budget: DecodeBudget | None = None
) -> SliceImage:
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
    budget : DecodeBudget, default=None
        The decoding limits; ``ichkit.scans.budget.current_budget()`` when None.

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
        pixel data, has a nonsense image header (Rows 0, BitsAllocated 12), claims
        more pixels than the decoding budget (refused before decoding, whatever the
        compression), is multi-frame or colour, uses a compression no installed
        plug-in decodes, or rescales to values outside any CT range. ``reason`` says
        which; the message names the file.

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
        dataset, n_pixel_bytes = _read_dataset(path, pixels=True, budget=budget)
        _check_image(dataset, path, n_pixel_bytes, budget=budget)
        return _decode(dataset, path)


def _read_dataset(
    path: str | os.PathLike[str], *, pixels: bool, budget: DecodeBudget | None = None
) -> tuple[Dataset, int | None]:
    """Parse a file as DICOM; return it with the number of pixel data bytes the file holds.

    A deflated data set, which pydicom inflates whole in memory, is first measured
    against the budget by inflating it as a stream (``_check_inflated_size``).

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
            _check_inflated_size(path, budget or current_budget())
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
        return _read_dataset(path, pixels=True, budget=budget)
    return dataset, n_bytes_found[-1] if n_bytes_found else None


def _check_inflated_size(path: Path, budget: DecodeBudget) -> None:
    """Refuse a deflated data set that inflates to more than the budget's bytes.

    pydicom inflates a Deflated Explicit VR Little Endian data set in one call, so
    a small file could take gigabytes before any header is read; this inflates it
    as a stream, keeping nothing, and stops at the limit.
    """
    import zlib

    from pydicom import uid
    from pydicom.filereader import read_file_meta_info

    try:
        meta = read_file_meta_info(path)
        if meta.get("TransferSyntaxUID") != uid.DeflatedExplicitVRLittleEndian:
            return
        # The deflated data start after the preamble, 'DICM', the 12-byte group
        # length element and the rest of group 0002 that it counts.
        start = 128 + 4 + 12 + int(meta.FileMetaInformationGroupLength)
    except Exception:  # noqa: BLE001 - no readable file meta: parsing will say why
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    n_bytes, chunk_size = 0, 1 << 20
    with path.open("rb") as file:
        file.seek(start)
        pending = file.read(chunk_size)
        while pending and n_bytes <= budget.max_decoded_bytes:
            try:
                n_bytes += len(inflater.decompress(pending, chunk_size))
            except zlib.error:
                return  # a corrupt stream: parsing will say why
            pending = inflater.unconsumed_tail or file.read(chunk_size)
    if n_bytes > budget.max_decoded_bytes:
        raise ScanReadError(
            path,
            "too large to decode safely: the deflated data set inflates to more than "
            f"{budget.max_decoded_bytes / 2**20:,.0f} MiB; not inflated",
        )


def _not_dicom(path: Path) -> ScanReadError:
    return ScanReadError(
        path,
        "not DICOM",
        "Neither a 'DICM' preamble nor DICOM elements were found; only DICOM files are read.",
    )


def _check_image(
    dataset: Dataset,
    path: str | os.PathLike[str],
    n_pixel_bytes: int | None,
    *,
    budget: DecodeBudget | None = None,
) -> None:
    """Raise ``ScanReadError`` unless the data set is one decodable greyscale slice.

    Everything here is read from the header (and, for compressed pixel data, the
    first fragment's codestream header): no pixel is decoded.
    """
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
    _check_claimed_size(dataset, path, budget)
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
        _check_codestream(dataset, path, syntax, budget)
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


def _check_claimed_size(
    dataset: Dataset, path: str | os.PathLike[str], budget: DecodeBudget | None
) -> None:
    """Refuse a nonsense Image Pixel header, or one claiming more than the budget.

    Rows x Columns x NumberOfFrames x SamplesPerPixel x BitsAllocated / 8 is what
    any decoder (native, RLE, JPEG, JPEG-LS, JPEG 2000) allocates, so it is checked
    here, before ``pixel_array``, for every transfer syntax alike.
    """
    # PixelData when parsing stopped before the pixel data element (headers only)
    keyword = next((keyword for keyword in _PIXEL_KEYWORDS if keyword in dataset), "PixelData")
    sizes = {name: _integer(dataset, name) for name in ("Rows", "Columns", "BitsAllocated")}
    missing = [name for name, value in sizes.items() if value is None]
    if missing:
        raise ScanReadError(path, f"truncated or corrupt DICOM (no {missing[0]})")
    rows, columns, bits = sizes["Rows"], sizes["Columns"], sizes["BitsAllocated"]
    if rows < 1 or columns < 1:
        raise ScanReadError(
            path, f"invalid header: Rows {rows}, Columns {columns}; an image has at least 1 of each"
        )
    allowed = {"PixelData": _BITS_ALLOCATED, "FloatPixelData": (32,)}.get(keyword, (64,))
    if bits not in allowed:
        raise ScanReadError(
            path,
            f"invalid header: BitsAllocated {bits} for {keyword}; must be "
            f"{', '.join(map(str, allowed[:-1]))}{' or ' if len(allowed) > 1 else ''}{allowed[-1]}",
        )
    bits_stored = _integer(dataset, "BitsStored")
    if bits_stored is not None and not 1 <= bits_stored <= bits:
        raise ScanReadError(
            path, f"invalid header: BitsStored {bits_stored} with BitsAllocated {bits}"
        )
    n_samples = max(_integer(dataset, "SamplesPerPixel") or 1, 1)
    n_frames = max(_integer(dataset, "NumberOfFrames") or 1, 1)  # pydicom reads 0 as 1
    check_claimed_size(
        path,
        rows=rows,
        columns=columns,
        n_frames=n_frames,
        bytes_per_pixel=max(n_samples * math.ceil(bits / 8), _HOUNSFIELD_BYTES),
        budget=budget,
    )


def _check_codestream(
    dataset: Dataset, path: str | os.PathLike[str], syntax: str, budget: DecodeBudget | None
) -> None:
    """Check the size a JPEG, JPEG-LS or JPEG 2000 frame's own header claims.

    These decoders allocate what the codestream says, not what Rows and Columns
    say, so a small header over a huge codestream would get past the header check.
    RLE decoders use Rows and Columns, already checked.
    """
    from pydicom import uid
    from pydicom.encaps import generate_fragments, parse_basic_offsets

    if "PixelData" not in dataset:  # parsing stopped before the pixel data
        return
    try:
        buffer = BytesIO(dataset.PixelData)
        parse_basic_offsets(buffer)  # moves past the Basic Offset Table
        fragment = next(generate_fragments(buffer), b"")
    except Exception:  # noqa: BLE001 - malformed encapsulation: decoding will say why
        return
    if syntax in uid.JPEG2000TransferSyntaxes:
        size = _j2k_size(fragment)
    elif syntax in uid.JPEGTransferSyntaxes or syntax in uid.JPEGLSTransferSyntaxes:
        size = _jpeg_size(fragment)
    else:
        return
    if size is None:
        return
    rows, columns, n_components, precision = size
    if rows == 0 or columns == 0:
        return  # JPEG's DNL marker gives the rows later; the header check holds
    bytes_per_pixel = n_components * math.ceil(precision / 8)
    check_claimed_size(
        path,
        rows=rows,
        columns=columns,
        bytes_per_pixel=max(bytes_per_pixel, _HOUNSFIELD_BYTES),
        budget=budget,
    )


def _jpeg_size(codestream: bytes) -> tuple[int, int, int, int] | None:
    """(rows, columns, components, precision) from a JPEG or JPEG-LS frame header (SOF).

    Parsed by hand (ITU-T T.81 B.2.2; T.87 uses the same layout for SOF55): pydicom's
    parser is private and gives nothing for a JPEG-LS stream without its scan header,
    which the decoder would still size its output from.
    """
    if not codestream.startswith(b"\xff\xd8"):  # SOI
        return None
    offset = 2
    while offset + 4 <= len(codestream):
        marker, length = struct.unpack_from(">HH", codestream, offset)
        if marker in _START_OF_FRAME_MARKERS:
            if offset + 10 > len(codestream):
                return None
            precision, rows, columns, n_components = struct.unpack_from(
                ">BHHB", codestream, offset + 4
            )
            return rows, columns, n_components, precision
        if marker >> 8 != 0xFF or length < 2:
            return None  # not a marker segment: a broken stream, for the decoder to report
        offset += 2 + length
    return None


def _j2k_size(codestream: bytes) -> tuple[int, int, int, int] | None:
    """(rows, columns, components, precision) from a JPEG 2000 SIZ segment.

    Parsed by hand: pydicom's ``get_j2k_parameters`` returns the precision only.
    The SIZ layout is ISO/IEC 15444-1 A.5.1, right after the SOC marker.
    """
    offset = 0
    if codestream.startswith(b"\x00\x00\x00\x0cjP  "):  # a JP2 file: find its jp2c box
        offset = 12
        while offset + 8 <= len(codestream) and codestream[offset + 4 : offset + 8] != b"jp2c":
            length = int.from_bytes(codestream[offset : offset + 4], "big")
            if length < 8:
                return None
            offset += length
        offset += 8
    if codestream[offset : offset + 4] != b"\xff\x4f\xff\x51":  # SOC, then SIZ
        return None
    try:
        x_size, y_size, x_origin, y_origin = struct.unpack_from(">4I", codestream, offset + 8)
        (n_components,) = struct.unpack_from(">H", codestream, offset + 40)
        precision = (codestream[offset + 42] & 0x7F) + 1
    except (struct.error, IndexError):
        return None
    return y_size - y_origin, x_size - x_origin, n_components, precision


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
    padded = np.zeros(stored.shape, dtype=bool)
    padding = _padding_value(dataset, "PixelPaddingValue")
    if padding is not None:
        limit = _padding_value(dataset, "PixelPaddingRangeLimit")
        low, high = sorted((padding, padding if limit is None else limit))
        padded = (stored >= low) & (stored <= high)
    _check_hounsfield_range(dataset, path, np.asarray(hounsfield)[~padded])
    pixels = np.array(hounsfield, dtype=np.float32)
    pixels[padded] = PADDING_HU
    centers, widths = _numbers(dataset, "WindowCenter"), _numbers(dataset, "WindowWidth")
    window = (centers[0], widths[0]) if centers and widths and widths[0] > 0 else None
    return SliceImage(pixels=pixels, hounsfield=True, path=str(path), window=window)


def _check_hounsfield_range(
    dataset: Dataset, path: str | os.PathLike[str], values: np.ndarray
) -> None:
    """Refuse a slice whose rescale gives values no CT holds (inf, NaN, 1e300 HU)."""
    if values.size == 0:
        return
    with np.errstate(invalid="ignore"):
        low, high = float(np.min(values)), float(np.max(values))
    lowest, highest = _ANY_CT_RANGE
    if math.isfinite(low) and math.isfinite(high) and lowest <= low and high <= highest:
        return
    if "ModalityLUTSequence" in dataset:
        cause = "the Modality LUT Sequence gives"
    else:
        slope = _as_number_text(_text(dataset, "RescaleSlope") or "1")
        intercept = _as_number_text(_text(dataset, "RescaleIntercept") or "0")
        cause = f"RescaleSlope {slope} (RescaleIntercept {intercept}) gives"
    raise ScanReadError(
        path,
        f"{cause} Hounsfield values from {low:.4g} to {high:.4g}, outside any CT range "
        f"({lowest:g} to {highest:g} HU)",
        "The rescale elements are broken; the stored values cannot be read as a CT.",
    )


def _as_number_text(text: str) -> str:
    try:
        return f"{float(text):g}"
    except ValueError:
        return repr(text)


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
