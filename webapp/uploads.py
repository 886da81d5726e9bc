"""An uploaded file read as slices, judged by its content: never by its name, never unpickled.

``read_upload`` takes a file saved inside a temporary folder and returns an ``Upload``:
one slice (PNG, JPEG or DICOM) or the ordered slices of one scan (a zip of a DICOM
series, a NIfTI volume, or a zip holding one NIfTI volume). Anything else raises
``UploadError`` with an HTTP status and a message that names the uploaded file and the
reason, never a path on the server.
"""

from __future__ import annotations

import dataclasses
import math
import stat
import warnings
import zipfile
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

__all__ = ["UploadError", "UploadLimits", "Upload", "read_upload"]

_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"
_ZIP = (b"PK\x03\x04", b"PK\x05\x06")
_GZIP = b"\x1f\x8b"
_ACCEPTED = "a PNG or JPEG slice, a DICOM slice, a zip of a DICOM series, or a NIfTI volume"


class UploadError(ValueError):
    """An upload that cannot be used; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may hold; the request size itself is Flask's ``MAX_CONTENT_LENGTH``.

    ``max_pixels`` bounds one slice and ``max_voxels`` a volume (both checked from the
    header, before decoding), ``max_slices`` a scan, ``max_unzipped_bytes`` and
    ``max_zip_entries`` a zip's content.
    """

    max_pixels: int = 8192 * 8192
    max_voxels: int = 512 * 512 * 1000
    max_slices: int = 1000
    max_unzipped_bytes: int = 1024**3
    max_zip_entries: int = 5000


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
    written while reading (a zip's entries) goes into ``path``'s folder.

    Raises
    ------
    UploadError
        400 empty or a zip that climbs out of its folder; 413 too large to decode
        safely; 415 not a format read here; 422 truncated, corrupt, without pixels,
        or holding no single scan.
    """
    limits = limits or UploadLimits()
    with open(path, "rb") as file:
        head = file.read(352)
    if not head:
        raise UploadError(400, f"'{filename}' is empty.")
    if head.startswith((_PNG, _JPEG)):
        return Upload("slice", filename, [_read_image(path, filename, limits)], [filename])
    if head.startswith(_ZIP):
        return _read_zip(path, filename, limits)
    if head.startswith(_GZIP) or _is_nifti_header(head):
        suffix = ".nii.gz" if head.startswith(_GZIP) else ".nii"
        volume = path.rename(path.with_name(path.name + suffix))
        return _read_volume(volume, filename, limits)
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


# --- scans: a NIfTI volume, or a zip of a DICOM series ---------------------------------


def _read_volume(path: Path, filename: str, limits: UploadLimits) -> Upload:
    """One NIfTI volume: its shape is checked from the header before any voxel is read."""
    import nibabel

    try:
        shape = nibabel.load(path).shape
    except Exception as error:  # noqa: BLE001  nibabel raises many types for bad files
        raise UploadError(
            422, f"Cannot read '{filename}': not a readable NIfTI volume ({error})."
        ) from None
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
    return _scan_upload(lambda: load_nifti(path), filename, {str(path): filename}, limits)


def _read_zip(path: Path, filename: str, limits: UploadLimits) -> Upload:
    """A zip of one DICOM series (or one NIfTI volume), extracted under generated names."""
    folder = path.with_name("unzipped")
    names = _extract_zip(path, filename, folder, limits)
    volumes = [entry for entry in folder.iterdir() if entry.name.endswith((".nii", ".nii.gz"))]
    if len(volumes) == 1:
        return _read_volume(volumes[0], f"{filename}: {names[str(volumes[0])]}", limits)
    if volumes:
        raise UploadError(422, f"'{filename}' holds {len(volumes)} NIfTI volumes; upload one scan.")
    dicom_files = [entry for entry in folder.iterdir() if is_dicom(entry)]
    if not dicom_files:
        raise UploadError(
            415, f"'{filename}' holds no DICOM file and no NIfTI volume ({len(names)} entries)."
        )
    return _scan_upload(lambda: load_dicom(folder), filename, names, limits)


def _extract_zip(path: Path, filename: str, folder: Path, limits: UploadLimits) -> dict[str, str]:
    """Every file entry of the zip into ``folder``, named by its position (the entry's
    own name is never used as a path). Returns the written path -> entry name.

    The whole listing is checked before anything is written: an entry whose name
    climbs out of the zip's folder (``../x``, ``/etc/x``, ``C:x``) refuses the zip.
    Sizes are counted as the bytes come out, not as the zip claims them.
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
        folder.mkdir()
        written, budget = {}, limits.max_unzipped_bytes
        for position, info in enumerate(entries):
            target = folder / f"{position:05d}{_volume_suffix(info.filename)}"
            try:
                budget = _copy_entry(archive, info, target, budget)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
                raise UploadError(
                    422,
                    f"Cannot read '{filename}': its entry '{info.filename}' "
                    f"is truncated or corrupt ({error}).",
                ) from None
            if budget < 0:
                raise UploadError(
                    413,
                    f"'{filename}' unpacks to more than "
                    f"{limits.max_unzipped_bytes} bytes; refused.",
                )
            written[str(target)] = info.filename
    return written


def _copy_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int) -> int:
    """Stream one entry to ``target``; returns the byte budget left (negative: over)."""
    with archive.open(info) as source, open(target, "wb") as sink:
        while chunk := source.read(1 << 20):
            budget -= len(chunk)
            if budget < 0:
                break
            sink.write(chunk)
    return budget


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


def _scan_upload(load, filename: str, names: dict[str, str], limits: UploadLimits) -> Upload:
    """Load one scan with a ``scans`` loader; skipped files are reported, not fatal."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # skipped files are listed instead
            dataset = load()
    except (ScanReadError, DatasetError) as error:
        raise UploadError(422, f"Cannot read '{filename}': {_rename(str(error), names)}") from None
    skipped = [f"{names.get(item.path, filename)}: {item.reason}" for item in dataset.skipped]
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
            slices.append(_renamed(dataset.read(int(row)), names.get(path, filename)))
        except ScanReadError as error:
            skipped.append(f"{names.get(path, filename)}: {error.reason}")
            continue
        labels.append(names.get(path, filename) if pd.isna(frame) else f"slice {int(frame)}")
    if not slices:
        raise UploadError(422, f"'{filename}' holds no readable slice.")
    notes = [_rename(note, names) for note in dataset.notes]
    return Upload("scan", filename, slices, labels, skipped, notes)


def _rename(text: str, names: dict[str, str]) -> str:
    """``text`` with every server path replaced by the name the client knows."""
    for path, name in names.items():
        text = text.replace(path, name)
    return text
