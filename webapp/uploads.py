"""An uploaded file read as slices, judged by its content: never by its name, never unpickled.

``read_upload`` takes a file saved inside a temporary folder and returns an ``Upload``:
one slice (PNG, JPEG or DICOM) or the ordered slices of one scan (a zip of a DICOM
series, a NIfTI volume, or a zip holding one NIfTI volume). Anything else raises
``UploadError`` with an HTTP status and a message that names the uploaded file and the
reason, never a path on the server.

Compressed content (a zip's entries, a gzip-compressed NIfTI volume) is decompressed
chunk by chunk against a budget (``UploadLimits``): each chunk is counted before it is
written, so a zip or gzip bomb is refused before more than the budget reaches the disk,
and never reaches a reader. What the zip or the volume's header declares is checked
first, so most bombs are refused before anything is written.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import math
import re
import stat
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pandas as pd

from ichkit.scans import (
    DatasetError,
    ScanReadError,
    SliceImage,
    is_dicom,
    load_dicom,
    load_nifti,
    read_dicom_slice,
    read_image,
)
from ichkit.scans.budget import DEFAULT_BUDGET

__all__ = ["UploadError", "UploadLimits", "Upload", "read_upload", "without_server_paths"]

_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
_GZIP = b"\x1f\x8b"
_ACCEPTED = "a PNG or JPEG slice, a DICOM slice, a zip of a DICOM series, or a NIfTI volume"
_CHUNK_BYTES = 1 << 20
#: Unpacked bytes below which the compression ratio is not judged: one small file of
#: one colour (a blank slice) legitimately compresses a thousandfold.
_RATIO_FREE_BYTES = 16 * 1024**2
#: A NIfTI-2 header is 540 bytes, a NIfTI-1 header 348 (+ 4 extension bytes).
_NIFTI_HEADER_BYTES = 540
#: The folder a zip's entries are written to, and their generated names: an entry's own
#: name is never used as a path. Both are replaced by the client's names in messages.
_EXTRACTED_FOLDER = "entries"
_GENERATED_NAME = re.compile(
    r"(?<![\w/\\.-])entry-(?P<position>\d{5})(?:\.nii\.gz|\.nii)?(?![\w.-])"
)


class UploadError(ValueError):
    """An upload that cannot be used; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may hold; the request size itself is Flask's ``MAX_CONTENT_LENGTH``.

    ``max_pixels`` bounds one slice and ``max_voxels`` a volume (both checked from the
    header, before decoding), ``max_slices`` a scan. ``max_unzipped_bytes`` bounds what
    a zip or a gzip-compressed volume unpacks to, and ``max_compression_ratio`` the
    unpacked bytes over the upload's own size (judged once past 16 MiB): CT slices and
    volumes compress 1- to 15-fold, a bomb of zeros a thousandfold. Both are counted as
    the bytes come out, never taken from what the archive claims; ``max_zip_entries``
    bounds a zip's files.
    """

    # The decoding budget that scans.load and ichkit run use (ichkit.scans.budget).
    max_pixels: int = DEFAULT_BUDGET.max_pixels_per_slice
    max_voxels: int = DEFAULT_BUDGET.max_voxels
    max_slices: int = 1000
    max_unzipped_bytes: int = 1024**3
    max_zip_entries: int = 5000
    max_compression_ratio: float = 100


@dataclass
class Upload:
    """The slices of an upload, in scan order, with what the reading noticed.

    ``kind`` is ``"slice"`` (one image) or ``"scan"`` (the ordered slices of one series
    or volume); ``names`` name each slice for people (entry name in a zip, ``slice k``
    of a volume); ``skipped`` lists unreadable files left out, with the reason.
    """

    kind: str
    filename: str
    slices: list[SliceImage]
    names: list[str]
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_upload(path: Path, filename: str, limits: UploadLimits | None = None) -> Upload:
    """Read the upload saved at ``path`` (inside its own temporary folder).

    ``filename`` is the name the client gave, used in messages only. Everything
    written while reading (a zip's entries, a decompressed volume) goes into
    ``path``'s folder. Messages, notes and the names of skipped files name the upload
    (and the entry inside a zip) as the client called them, never a server path.

    Raises
    ------
    UploadError
        400 empty or a zip that climbs out of its folder; 413 too large to decode or
        unpack safely; 415 not a format read here; 422 truncated, corrupt, without
        pixels, or holding no single scan.
    """
    limits = limits or UploadLimits()
    names = _ServerNames(path, filename)
    try:
        upload = _read(path, filename, limits, names)
    except UploadError as error:
        raise UploadError(error.status, names.public(str(error))) from None
    upload.skipped = [names.public(text) for text in upload.skipped]
    upload.notes = [names.public(text) for text in upload.notes]
    return upload


def without_server_paths(
    text: str, folder: str | Path, filename: str, entries: Mapping[str, str] | None = None
) -> str:
    """``text`` with the server's paths and internal names replaced by the client's names.

    A path under ``folder`` (the request's temporary folder, however spelt) becomes the
    name of the zip entry it was extracted from, else ``filename``; so do the bare
    generated names of extracted entries (``entry-00003.dcm``) and the quoted names
    of the files and folders written while reading.

    Parameters
    ----------
    text : str
        A message, note or reason about the upload.
    folder : str or Path
        The folder the upload was saved in.
    filename : str
        The name the client gave the upload.
    entries : mapping, default=None
        Generated entry name (``entry-00003``) -> the entry's name inside the zip.
    """
    entries = entries or {}

    def client_name(match: re.Match) -> str:
        server_name = match.group(0).rstrip(".:")  # a sentence's end is not the path's
        trailing = match.group(0)[len(server_name) :]
        return _client_name(server_name, filename, entries) + trailing

    folder = Path(folder)
    for spelling in sorted({str(folder), str(folder.resolve())}, key=len, reverse=True):
        text = re.sub(re.escape(spelling) + r"(?:[/\\][^\s'\"(),;]*)?", client_name, text)
    text = _GENERATED_NAME.sub(client_name, text)
    internal = rf"'(?:{_EXTRACTED_FOLDER}|upload(?:\.nii(?:\.gz)?)?)'"
    return re.sub(internal, f"'{filename}'", text)


def _client_name(server_path: str, filename: str, entries: Mapping[str, str]) -> str:
    """The zip entry a file written while reading was extracted from, else the upload."""
    generated = _GENERATED_NAME.fullmatch(re.split(r"[/\\]", server_path)[-1])
    if generated is None:
        return filename
    return entries.get(f"entry-{generated.group('position')}", filename)


class _ServerNames:
    """The names given to what is written while reading one upload, and the client's."""

    def __init__(self, path: Path, filename: str):
        self.folder = path.parent
        self.filename = filename
        self.entries: dict[str, str] = {}  # generated entry name -> the name in the zip

    def of(self, path: str | Path) -> str:
        """The client's name for a file written while reading (a zip entry or the upload)."""
        return _client_name(str(path), self.filename, self.entries)

    def public(self, text: str) -> str:
        return without_server_paths(text, self.folder, self.filename, self.entries)


def _read(path: Path, filename: str, limits: UploadLimits, names: _ServerNames) -> Upload:
    with open(path, "rb") as file:
        head = file.read(352)
    if not head:
        raise UploadError(400, f"'{filename}' is empty.")
    if head.startswith((_PNG, _JPEG)):
        return Upload("slice", filename, [_read_image(path, filename, limits)], [filename])
    if head.startswith(_ZIP):
        return _read_zip(path, filename, limits, names)
    if head.startswith(_GZIP):
        return _read_volume(_gunzip_volume(path, filename, limits), filename, limits, names)
    if _is_nifti_header(head):
        volume = path.rename(path.with_name(path.name + ".nii"))
        return _read_volume(volume, filename, limits, names)
    if is_dicom(path):
        return Upload("slice", filename, [_read_dicom(path, filename)], [filename])
    raise UploadError(415, f"'{filename}' is not {_ACCEPTED} (judged by its content).")


def _read_image(path: Path, filename: str, limits: UploadLimits) -> SliceImage:
    try:
        return _renamed(read_image(path, max_pixels=limits.max_pixels), filename)
    except ScanReadError as error:
        raise _as_upload_error(error, filename) from None


def _read_dicom(path: Path, filename: str) -> SliceImage:
    try:
        return _renamed(read_dicom_slice(path), filename)
    except ScanReadError as error:
        raise _as_upload_error(error, filename) from None


def _as_upload_error(error: ScanReadError, filename: str) -> UploadError:
    """The reader's reason, about the client's file name rather than the server's path."""
    reason = error.reason.replace(error.path, filename)
    if "too large" in reason:
        status = 413
    elif reason.startswith(("not an image", "not DICOM")):
        status = 415
    else:
        status = 422
    return UploadError(status, f"Cannot read '{filename}': {reason}.")


def _renamed(image: SliceImage, filename: str) -> SliceImage:
    """The slice, named for messages by the client's file name, not the server's path."""
    return dataclasses.replace(image, path=filename)


def _is_nifti_header(head: bytes) -> bool:
    """NIfTI-1 ('n+1' at byte 344) or NIfTI-2 ('n+2' at byte 4), uncompressed."""
    return head[344:348] in (b"n+1\x00", b"ni1\x00") or head[4:8] == b"n+2\x00"


# --- the unpacking budget ---------------------------------------------------------------


class _UnpackBudget:
    """Bytes one upload may unpack to: ``max_unzipped_bytes``, and at most
    ``max_compression_ratio`` times the upload's own size once past 16 MiB."""

    def __init__(self, path: Path, filename: str, limits: UploadLimits):
        packed = path.stat().st_size
        by_ratio = max(_RATIO_FREE_BYTES, int(limits.max_compression_ratio * packed))
        self.filename = filename
        self.limit = min(limits.max_unzipped_bytes, by_ratio)
        self.why = (
            "the server's limit"
            if self.limit == limits.max_unzipped_bytes
            else f"{limits.max_compression_ratio:g} times its own {packed} bytes, "
            "more than scans compress"
        )
        self.used = 0

    def check_declared(self, n_bytes: int) -> None:
        """Refuse, before anything is written, what declares more than the budget."""
        if n_bytes > self.limit:
            raise UploadError(
                413,
                f"'{self.filename}' unpacks to more than {self.limit} bytes ({self.why}): "
                f"it declares {n_bytes}. Refused; nothing was unpacked.",
            )

    def take(self, n_bytes: int) -> None:
        """Count ``n_bytes`` just decompressed, before they are written."""
        self.used += n_bytes
        if self.used > self.limit:
            raise UploadError(
                413,
                f"'{self.filename}' unpacks to more than {self.limit} bytes ({self.why}); "
                "refused as the bytes came out.",
            )


# --- scans: a NIfTI volume, or a zip of a DICOM series ---------------------------------


def _gunzip_volume(path: Path, filename: str, limits: UploadLimits) -> Path:
    """The gzip-compressed NIfTI volume at ``path``, decompressed beside it.

    The header (the first bytes out) is read and its shape checked before anything is
    written; then exactly the bytes it declares are decompressed, counted against the
    unpacking budget chunk by chunk. Uses the standard library's ``gzip`` stream (not
    nibabel's reader, which would decompress the whole volume into memory first).
    """
    budget = _UnpackBudget(path, filename, limits)
    target = path.with_name(path.name.removesuffix(".gz").removesuffix(".nii") + ".nii")
    try:
        with gzip.open(path, "rb") as source:
            head = source.read(_NIFTI_HEADER_BYTES)
            header = _nifti_header(head, filename)
            shape = header.get_data_shape()
            _check_volume_shape(shape, filename, limits)
            declared = int(header.get_data_offset()) + math.prod(shape) * (
                header.get_data_dtype().itemsize
            )
            budget.check_declared(declared)
            written = min(len(head), declared)
            budget.take(written)
            with open(target, "wb") as sink:
                sink.write(head[:written])
                while written < declared:
                    chunk = source.read(min(_CHUNK_BYTES, declared - written))
                    if not chunk:
                        break
                    budget.take(len(chunk))
                    sink.write(chunk)
                    written += len(chunk)
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        raise UploadError(
            422, f"Cannot read '{filename}': truncated or corrupt gzip ({error})."
        ) from None
    if written < declared:
        raise UploadError(
            422,
            f"Cannot read '{filename}': truncated NIfTI volume (it unpacks to {written} "
            f"of the {declared} bytes its header declares).",
        )
    return target


def _nifti_header(head: bytes, filename: str):
    """The NIfTI-1 or NIfTI-2 header at the start of ``head`` (nibabel's parser)."""
    import nibabel

    if head[344:348] == b"n+1\x00":
        header_class = nibabel.Nifti1Header
    elif head[4:8] == b"n+2\x00":
        header_class = nibabel.Nifti2Header
    else:
        raise UploadError(
            415,
            f"Cannot read '{filename}': gzip-compressed, but not a NIfTI volume (no "
            "single-file NIfTI-1 or NIfTI-2 header).",
        )
    try:
        return header_class.from_fileobj(io.BytesIO(head))
    except Exception as error:  # noqa: BLE001  nibabel raises many types for bad headers
        raise UploadError(
            422, f"Cannot read '{filename}': not a readable NIfTI header ({error})."
        ) from None


def _check_volume_shape(shape: tuple[int, ...], filename: str, limits: UploadLimits) -> None:
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise UploadError(
            422,
            f"Cannot read '{filename}': a volume of shape {shape}; one "
            "3-D scan (x, y, slices) is read.",
        )
    if math.prod(shape) > limits.max_voxels:
        raise UploadError(
            413,
            f"Cannot read '{filename}': a volume of shape {shape} is too "
            f"large to decode safely (limit {limits.max_voxels} voxels).",
        )


def _read_volume(path: Path, filename: str, limits: UploadLimits, names: _ServerNames) -> Upload:
    """One uncompressed NIfTI volume: its shape is checked from the header before any
    voxel is read."""
    import nibabel

    try:
        shape = nibabel.load(path).shape
    except Exception as error:  # noqa: BLE001  nibabel raises many types for bad files
        raise UploadError(
            422, f"Cannot read '{filename}': not a readable NIfTI volume ({error})."
        ) from None
    _check_volume_shape(shape, filename, limits)
    return _scan_upload(lambda: load_nifti(path), filename, names, limits)


def _read_zip(path: Path, filename: str, limits: UploadLimits, names: _ServerNames) -> Upload:
    """A zip of one DICOM series (or one NIfTI volume), extracted under generated names."""
    folder = path.with_name(_EXTRACTED_FOLDER)
    written = _extract_zip(path, filename, folder, limits, names)
    volumes = [entry for entry in written if entry.name.endswith((".nii", ".nii.gz"))]
    if len(volumes) == 1:
        volume, shown = volumes[0], f"{filename}: {names.of(volumes[0])}"
        if volume.name.endswith(".gz"):
            volume = _gunzip_volume(volume, shown, limits)
        return _read_volume(volume, shown, limits, names)
    if volumes:
        raise UploadError(422, f"'{filename}' holds {len(volumes)} NIfTI volumes; upload one scan.")
    if not any(is_dicom(entry) for entry in written):
        raise UploadError(
            415, f"'{filename}' holds no DICOM file and no NIfTI volume ({len(written)} entries)."
        )
    return _scan_upload(lambda: load_dicom(folder), filename, names, limits)


def _extract_zip(
    path: Path, filename: str, folder: Path, limits: UploadLimits, names: _ServerNames
) -> list[Path]:
    """Every file entry of the zip into ``folder``, named by its position (the entry's
    own name is never used as a path, and is kept in ``names``). Returns the written files.

    The whole listing is checked before anything is written: an entry whose name
    climbs out of the zip's folder (``../x``, ``/etc/x``, ``C:x``), more entries than
    allowed, or declared sizes over the unpacking budget refuse the zip. The bytes are
    then counted again as they come out, since a zip's declared sizes may lie.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        message = f"Cannot read '{filename}': truncated or corrupt zip ({error})."
        raise UploadError(422, message) from None
    with archive:
        entries = [info for info in archive.infolist() if not info.is_dir()]
        for info in entries:
            if _climbs_out(info.filename):
                raise UploadError(
                    400,
                    f"'{filename}' refused: its entry '{info.filename}' points outside the "
                    "zip's folder. Nothing was extracted.",
                )
        entries = [
            info
            for info in entries
            if not info.filename.startswith("__MACOSX/") and not _is_link(info)
        ]
        if len(entries) > limits.max_zip_entries:
            raise UploadError(
                413,
                f"'{filename}' holds {len(entries)} files; at most "
                f"{limits.max_zip_entries} are read.",
            )
        budget = _UnpackBudget(path, filename, limits)
        budget.check_declared(sum(info.file_size for info in entries))
        folder.mkdir()
        written = []
        for position, info in enumerate(entries):
            generated = f"entry-{position:05d}"
            names.entries[generated] = info.filename
            target = folder / f"{generated}{_volume_suffix(info.filename)}"
            _copy_entry(archive, info, target, budget, filename)
            written.append(target)
    return written


def _copy_entry(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    target: Path,
    budget: _UnpackBudget,
    filename: str,
) -> None:
    """Stream one entry to ``target``, each chunk counted before it is written."""
    try:
        with archive.open(info) as source, open(target, "wb") as sink:
            while chunk := source.read(_CHUNK_BYTES):
                budget.take(len(chunk))
                sink.write(chunk)
    except UploadError:
        raise
    except (NotImplementedError, RuntimeError) as error:  # a method or encryption not read
        raise UploadError(
            422,
            f"Cannot read '{filename}': its entry '{info.filename}' cannot be unpacked ({error}).",
        ) from None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as error:
        raise UploadError(
            422,
            f"Cannot read '{filename}': its entry '{info.filename}' "
            f"is truncated or corrupt ({error}).",
        ) from None


def _climbs_out(name: str) -> bool:
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return (
        name.startswith(("/", "\\"))
        or ".." in parts
        or any(":" in part for part in parts)  # a Windows drive or stream
    )


def _is_link(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _volume_suffix(name: str) -> str:
    lower = name.lower()
    return next((s for s in (".nii.gz", ".nii") if lower.endswith(s)), "")


def _scan_upload(load, filename: str, names: _ServerNames, limits: UploadLimits) -> Upload:
    """Load one scan with a ``scans`` loader; skipped files are reported, not fatal."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # skipped files are listed instead
            dataset = load()
    except (ScanReadError, DatasetError) as error:
        raise UploadError(422, f"Cannot read '{filename}': {names.public(str(error))}") from None
    skipped = [f"{names.of(item.path)}: {item.reason}" for item in dataset.skipped]
    if len(dataset) == 0:
        first = f" (first: {skipped[0]})" if skipped else ""
        raise UploadError(422, f"'{filename}' holds no readable slice{first}.")
    n_scans = dataset.table["scan_id"].nunique()
    if n_scans > 1:
        raise UploadError(422, f"'{filename}' holds {n_scans} series; upload one scan at a time.")
    if len(dataset) > limits.max_slices:
        raise UploadError(
            413, f"'{filename}' has {len(dataset)} slices; at most {limits.max_slices} are read."
        )
    table = dataset.table.sort_values("slice_index")
    slices, labels = [], []
    for row, (path, frame) in zip(
        table.index, zip(table["path"], table["frame"], strict=True), strict=True
    ):
        try:
            slices.append(_renamed(dataset.read(int(row)), names.of(path)))
        except ScanReadError as error:
            skipped.append(f"{names.of(path)}: {error.reason}")
            continue
        labels.append(names.of(path) if pd.isna(frame) else f"slice {int(frame)}")
    if not slices:
        raise UploadError(422, f"'{filename}' holds no readable slice.")
    return Upload("scan", filename, slices, labels, skipped, list(dataset.notes))
