"""Folders of DICOM head CT: series of slices in slice order, with labels from a CSV.

``load_dicom`` walks a folder (any file names, with or without extension), groups
slices into series, orders each series by position along the slice normal (never
by file name) and attaches labels from a CSV. Reading one slice is ``ichkit.scans.dicom``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ichkit.scans.dataset import (
    ScanDataset,
    SkipLog,
    describe_skipped,
    join_listed,
    warn_skipped,
)
from ichkit.scans.dicom import _check_image, _decode, _integer, _numbers, _read_dataset, _text
from ichkit.scans.errors import DatasetError, ScanReadError
from ichkit.scans.labels import LabelTable, read_labels

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["LABEL_KEY_COLUMNS", "load_dicom"]

#: Key columns (lower case) a label CSV may use, in order of preference. A SOP instance
#: UID labels one slice, a series instance UID every slice of the series, and a file,
#: path or id the file whose path relative to the root, name or stem equals it.
LABEL_KEY_COLUMNS = (
    "sopinstanceuid", "sop_instance_uid", "seriesinstanceuid", "series_instance_uid",
    "file", "filename", "path", "id",
)  # fmt: skip

#: Two slices closer than this along the normal are at the same position.
_SAME_POSITION_MM = 0.01
#: Spacing is uneven when gaps differ by more than the larger of these.
_SPACING_TOLERANCE_MM = 0.05
_SPACING_TOLERANCE_FRACTION = 0.02
#: Two direction cosine vectors whose dot product is above this point the same way
#: (within about 0.8 degrees): slices of one orientation.
_SAME_DIRECTION_COSINE = 0.9999
#: Tilt from axial worth a note (degrees).
_TILT_NOTE_DEGREES = 0.5
#: Show a progress bar for the header pass from this many files on.
_PROGRESS_MIN_FILES = 200


@dataclass(frozen=True)
class _Header:
    """The header values ``load_dicom`` groups, orders and labels slices by (None: absent)."""

    path: Path
    sop_instance_uid: str | None = None
    series_instance_uid: str | None = None
    patient_id: str | None = None
    position: tuple[float, ...] | None = None  # ImagePositionPatient, 3 values
    orientation: tuple[float, ...] | None = None  # ImageOrientationPatient, 6 values
    instance_number: int | None = None
    height: int | None = None  # Rows
    width: int | None = None  # Columns

    @classmethod
    def of(cls, dataset: Dataset, path: Path) -> _Header:
        position = _numbers(dataset, "ImagePositionPatient") or []
        orientation = _numbers(dataset, "ImageOrientationPatient") or []
        return cls(
            path=path,
            sop_instance_uid=_text(dataset, "SOPInstanceUID"),
            series_instance_uid=_text(dataset, "SeriesInstanceUID"),
            patient_id=_text(dataset, "PatientID"),
            position=tuple(position) if len(position) == 3 else None,
            orientation=tuple(orientation) if len(orientation) == 6 else None,
            instance_number=_integer(dataset, "InstanceNumber"),
            height=_integer(dataset, "Rows"),
            width=_integer(dataset, "Columns"),
        )


def load_dicom(
    root: str | os.PathLike[str],
    *,
    labels: str | os.PathLike[str] | None = None,
    strict: bool = False,
    verify: bool = True,
) -> ScanDataset:
    """Load every DICOM slice under a folder as series in slice order.

    Files are found recursively whatever their names (Philips ``I10``, ``I100``
    have no extension); hidden files and folders (``.name``) are left out, and
    non-images (non-DICOM files, DICOMDIRs, objects without pixel data) are listed
    in ``skipped`` with the reason. Slices are grouped by SeriesInstanceUID (the
    folder when missing) and ordered by ImagePositionPatient projected on the
    slice normal (the cross product of the ImageOrientationPatient vectors), which
    holds for gantry tilt and uneven spacing; without position or orientation, by
    InstanceNumber. File names never decide the order.

    Parameters
    ----------
    root : str or path-like
        A folder of DICOM files (searched recursively) or one file.
    labels : str or path-like, default=None
        A label CSV keyed by one of ``LABEL_KEY_COLUMNS``: a SOP instance UID
        labels that slice (RSNA's ``ID,Label`` long format included), a series
        instance UID every slice of the series, a file/filename/path/id the file
        whose path relative to ``root``, name or stem equals it. When None,
        ``root/labels.csv`` is used if it exists. With labels, slices without a
        label row, with an invalid label, and label rows without a file are
        skipped with the reason.
    strict : bool, default=False
        Raise at the first skipped file or label row instead of going on.
    verify : bool, default=True
        Decode every slice once, so that truncated or undecodable files are
        skipped now rather than failing later. With False only headers are read
        (fast, for large archives); compressed streams that are corrupt then fail
        only when read.

    Returns
    -------
    ScanDataset
        Layout ``"dicom"``, one row per slice: ``path`` (absolute), ``format``
        ``"dicom"``, ``patient_id`` (PatientID, else the top-level folder under
        ``root``), ``scan_id`` (SeriesInstanceUID, else the folder), ``slice_index``
        (0, 1, ... in position order), ``label`` and subtype columns from the CSV,
        and ``sop_instance_uid``, ``series_instance_uid``, ``instance_number``,
        ``position_mm`` (position along the slice normal), ``height`` and ``width``
        (Rows and Columns). ``notes`` record uneven spacing, tilt, duplicate
        positions and fallbacks.

    Raises
    ------
    FileNotFoundError
        If ``root`` or ``labels`` does not exist.
    ScanReadError
        With ``strict=True``, at the first file or label row that is skipped; and
        when the label CSV has no key or label column.
    DatasetError
        If no slice could be loaded.

    Warns
    -----
    UserWarning
        When two slices of a series share a position (slice order is ambiguous),
        and once when anything was skipped.

    Examples
    --------
    >>> from scans.dicom_series import load_dicom
    >>> dataset = load_dicom("dicom/cq500-subset")  # doctest: +SKIP
    >>> len(dataset), dataset.is_ordered  # doctest: +SKIP
    (40, True)
    """
    root = Path(os.path.abspath(root))
    if not root.exists():
        raise FileNotFoundError(
            f"DICOM root '{root}' does not exist; load_dicom needs a folder of DICOM files "
            "or one DICOM file."
        )
    base = root if root.is_dir() else root.parent
    label_path = _label_csv(root, labels)
    files = _list_files(root, exclude=label_path)
    log = SkipLog(strict=strict)
    notes: list[str] = []

    headers: list[_Header] = []
    skipped: list[_Header] = []  # still match their label rows, which are then not orphans
    # pydicom warns about each odd value; what matters is a skip reason.
    with warnings.catch_warnings(action="ignore", category=UserWarning):
        for path in _progress(files):
            header = _Header(path)
            try:
                dataset, n_pixel_bytes = _read_dataset(path, pixels=verify)
                header = _Header.of(dataset, path)
                _check_image(dataset, path, n_pixel_bytes)
                if verify:
                    _decode(dataset, path)
            except ScanReadError as error:
                log.skip(path, error)
                skipped.append(header)
            else:
                headers.append(header)

    labelled: dict[_Header, dict[str, int]] = {header: {} for header in headers}
    n_label_rows_unmatched = 0
    subtypes: list[str] = []
    if label_path is not None:
        label_table = read_labels(label_path, key_columns=LABEL_KEY_COLUMNS)
        subtypes = list(label_table.subtypes)
        notes.extend(label_table.notes)
        labelled, n_label_rows_unmatched = _match_labels(
            label_table, headers, skipped, base, log, notes
        )

    by_series: dict[str, dict[_Header, dict[str, int]]] = defaultdict(dict)
    for header, values in labelled.items():
        by_series[header.series_instance_uid or _folder_name(header.path, base)][header] = values
    rows = []
    ambiguities: list[str] = []
    scans = [
        (scan_id, members, values_of)
        for series_id, values_of in by_series.items()
        for scan_id, members in _split_by_geometry(
            series_id, list(values_of), base, notes, ambiguities
        )
    ]
    for scan_id, members, values_of in scans:
        ordered = _order_series(scan_id, members, base, notes, ambiguities)
        for slice_index, header, position in ordered:
            values = values_of[header]
            rows.append(
                {
                    "path": str(header.path),
                    "format": "dicom",
                    "frame": None,
                    "patient_id": header.patient_id or _top_folder(header.path, base),
                    "scan_id": scan_id,
                    "slice_index": slice_index,
                    "label": values.get("label"),
                    **{name: values.get(name) for name in subtypes},
                    "sop_instance_uid": header.sop_instance_uid,
                    "series_instance_uid": header.series_instance_uid,
                    "instance_number": header.instance_number,
                    "position_mm": np.nan if position is None else position,
                    "height": header.height,
                    "width": header.width,
                }
            )
    n_without_series = sum(header.series_instance_uid is None for header in labelled)
    if n_without_series:
        notes.append(
            f"{n_without_series} slices have no SeriesInstanceUID; they are grouped into "
            "series by folder."
        )
    n_without_patient = sum(header.patient_id is None for header in labelled)
    if n_without_patient:
        notes.append(
            f"{n_without_patient} slices have no PatientID; their patient is the top-level "
            f"folder under '{base}'."
        )
    for message in ambiguities:
        warnings.warn(message, UserWarning, stacklevel=2)
    if not rows:
        raise DatasetError(_nothing_loaded_message(root, files, log))
    table = pd.DataFrame(rows)
    integers = ["instance_number", "height", "width"]
    table[integers] = table[integers].astype("Int64")
    dataset = ScanDataset(table, layout="dicom", root=root, skipped=log.items, notes=notes)
    warn_skipped(dataset, len(files) + n_label_rows_unmatched)
    return dataset


def _label_csv(root: Path, labels: str | os.PathLike[str] | None) -> Path | None:
    if labels is not None:
        path = Path(os.path.abspath(labels))
        if not path.is_file():
            raise FileNotFoundError(
                f"The label CSV '{labels}' given to load_dicom does not exist. Pass a CSV "
                f"keyed by one of {', '.join(LABEL_KEY_COLUMNS)}, or labels=None to use "
                "'<root>/labels.csv' when there is one."
            )
        return path
    default = root / "labels.csv"
    return default if root.is_dir() and default.is_file() else None


def _list_files(root: Path, exclude: Path | None) -> list[Path]:
    """Every regular, non-hidden file under ``root`` in a stable order, but the label CSV."""
    if root.is_file():
        return [root]
    excluded = os.path.realpath(exclude) if exclude is not None else None
    found = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in sorted(names):
            path = Path(folder, name)
            if name.startswith(".") or not path.is_file():
                continue
            if exclude is not None and name == exclude.name and os.path.realpath(path) == excluded:
                continue
            found.append(path)
    return found


def _progress(files: list[Path]) -> Iterable[Path]:
    if len(files) <= _PROGRESS_MIN_FILES:
        return files
    from tqdm import tqdm

    return tqdm(files, desc="Reading DICOM headers", unit="file", disable=None)


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def _folder_name(path: Path, base: Path) -> str:
    """The folder of a file relative to the root (the root's name for files directly in it)."""
    folder = Path(_relative(path, base)).parent
    return base.name if str(folder) == "." else folder.as_posix()


def _top_folder(path: Path, base: Path) -> str:
    parts = Path(_relative(path, base)).parts
    return parts[0] if len(parts) > 1 else base.name


def _label_keys(kind: str, header: _Header, base: Path) -> tuple[str, ...]:
    """The keys a label row of this kind may have for a file: its UID, or its path's forms."""
    if kind != "file":
        uid = header.sop_instance_uid if kind == "sop" else header.series_instance_uid
        return (uid,) if uid else ()
    path = header.path
    relative = _relative(path, base)
    without_suffix = relative[: -len(path.suffix)] if path.suffix else relative
    keys = (relative, without_suffix, relative.replace("/", "\\"), path.name, path.stem, str(path))
    return tuple(dict.fromkeys(keys))


def _match_labels(
    table: LabelTable,
    headers: list[_Header],
    skipped: list[_Header],
    base: Path,
    log: SkipLog,
    notes: list[str],
) -> tuple[dict[_Header, dict[str, int]], int]:
    """Labels of each slice; slices without a valid row and rows without a file are skipped.

    A row that more than one file matches (the same name in two folders, a copied
    SOP instance) labels all of them, with a note. Returns the labelled slices and
    the number of rows without a file.
    """
    if table.key_column in ("sopinstanceuid", "sop_instance_uid"):
        kind = "sop"
    elif table.key_column in ("seriesinstanceuid", "series_instance_uid"):
        kind = "series"
    else:
        kind = "file"
    name = table.path.name
    files_of: dict[str, list[Path]] = defaultdict(list)
    labelled = {}
    for header in headers:
        key, values = table.lookup(*_label_keys(kind, header, base))
        if key is None:
            log.skip(header.path, f"no label row in {name}")
            continue
        files_of[key].append(header.path)
        if values is None:
            log.skip(header.path, table.invalid[key])
            continue
        labelled[header] = values
    # A row whose file was skipped for its own reason does have a file.
    matched = set(files_of) | {table.lookup(*_label_keys(kind, h, base))[0] for h in skipped}
    shared = {key: paths for key, paths in files_of.items() if len(paths) > 1}
    if shared and kind != "series":
        key, paths = next(iter(shared.items()))
        fix = (
            "key the CSV by paths relative to the root to tell them apart"
            if kind == "file"
            else "the files are copies of one SOP instance; remove the copies"
        )
        notes.append(
            f"{len(shared)} rows of {name} match more than one file (row '{key}': "
            f"{', '.join(_relative(path, base) for path in paths[:3])}); each such row labels "
            f"all its files; {fix}."
        )
    unmatched = [key for key in (*table.rows, *table.invalid) if key not in matched]
    for key in unmatched:
        log.skip(f"{table.path} (row '{key}')", "label row has no matching DICOM file")
    return labelled, len(unmatched)


def _split_by_geometry(
    series_id: str, members: list[_Header], base: Path, notes: list[str], ambiguities: list[str]
) -> list[tuple[str, list[_Header]]]:
    """The slices of one series as ``(scan_id, slices)``: one scan per slice size
    (Rows x Columns) and orientation (ImageOrientationPatient).

    Slices of different sizes or orientations are not one volume: a scout, a
    reformat or a secondary capture filed under the series' UID is the usual cause,
    and ordering them into one stack would interleave images of different planes and
    scales. Dropping the smaller group would lose images that may be a real second
    reconstruction, so, as dcm2niix and 3D Slicer do, each group becomes its own
    scan: the largest keeps the series id, the others get it with their size and
    plane (``'1.2.3 (256x256 axial)'``), and a note and a warning name their files.
    A slice without orientation joins the largest group of its size.
    """
    groups: list[list[_Header]] = []
    for header in sorted(members, key=lambda h: h.orientation is None):
        matching = [group for group in groups if _same_geometry(group[0], header)]
        if matching:
            max(matching, key=len).append(header)
        else:
            groups.append([header])
    if len(groups) == 1:
        return [(series_id, members)]
    groups.sort(key=lambda group: (-len(group), -_n_pixels(group[0]), str(group[0].path)))
    kept, *others = groups
    names = [_geometry_name(group[0]) for group in groups]
    if len(set(names)) < len(names):  # same size and plane, different in-plane direction
        names = [f"{name} {_orientation_text(g[0])}" for name, g in zip(names, groups, strict=True)]
    parts = [(series_id, kept)]
    described = [f"{len(kept)} slices {names[0]} (kept as scan '{series_id}')"]
    for name, group in zip(names[1:], others, strict=True):
        scan_id = f"{series_id} ({name})"
        parts.append((scan_id, group))
        files = join_listed([_relative(header.path, base) for header in group])
        described.append(f"{len(group)} slices {name} (now scan '{scan_id}': {files})")
    message = (
        f"Series '{series_id}' in '{_folder_name(kept[0].path, base)}' mixes slice sizes or "
        f"orientations: {'; '.join(described)}. They were split into one scan per size and "
        "orientation, never ordered as one; a scout or reformat filed under the series' UID is "
        "the usual cause."
    )
    notes.append(message)
    ambiguities.append(message)
    return parts


def _same_geometry(first: _Header, second: _Header) -> bool:
    """Whether two slices have the same size and, where both have one, orientation."""
    if (first.height, first.width) != (second.height, second.width):
        return False
    if first.orientation is None or second.orientation is None:
        return True
    directions = np.reshape(first.orientation, (2, 3)), np.reshape(second.orientation, (2, 3))
    return all(
        float(np.dot(a, b)) > _SAME_DIRECTION_COSINE * np.linalg.norm(a) * np.linalg.norm(b)
        for a, b in zip(*directions, strict=True)
    )


def _n_pixels(header: _Header) -> int:
    return (header.height or 0) * (header.width or 0)


def _geometry_name(header: _Header) -> str:
    """``'512x512 axial'``: the size and the plane whose axis the slice normal is closest to."""
    normal = _normal(header.orientation)
    plane = (
        "of unknown orientation"
        if normal is None
        else ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]
    )
    return f"{header.height}x{header.width} {plane}"


def _orientation_text(header: _Header) -> str:
    if header.orientation is None:
        return "(no orientation)"
    return "(" + ", ".join(f"{value:.3g}" for value in header.orientation) + ")"


def _order_series(
    scan_id: str, members: list[_Header], base: Path, notes: list[str], ambiguities: list[str]
) -> list[tuple[int | None, _Header, float | None]]:
    """``(slice_index, header, position_mm)`` for the slices of one series, in slice order.

    Positions are ImagePositionPatient projected on the slice normal of the first
    slice; without position and orientation on every slice, InstanceNumber orders;
    without either, ``slice_index`` is None. Slices that cannot be told apart add a
    message to ``ambiguities`` (and to ``notes``) for the caller to warn with.
    """
    members = sorted(members, key=lambda header: str(header.path))  # deterministic ties only
    where = f"Series '{scan_id}' in '{_folder_name(members[0].path, base)}'"
    normals = [_normal(header.orientation) for header in members]
    n_missing = sum(h.position is None or n is None for h, n in zip(members, normals, strict=True))
    if n_missing == 0:
        normal = normals[0]
        if any(abs(float(np.dot(normal, other))) < _SAME_DIRECTION_COSINE for other in normals):
            notes.append(
                f"{where}: slices have different orientations; ordered along the normal of "
                f"'{_relative(members[0].path, base)}'."
            )
        positions = [float(np.dot(h.position, normal)) for h in members]
        order = sorted(range(len(members)), key=lambda i: (positions[i], _instance_key(members[i])))
        ordered = [(members[i], positions[i]) for i in order]
        _describe_geometry(where, ordered, normal, base, notes, ambiguities)
        return [(index, header, position) for index, (header, position) in enumerate(ordered)]

    lacking = (
        f"{n_missing} of {len(members)} slices lack ImagePositionPatient or ImageOrientationPatient"
    )
    if any(header.instance_number is None for header in members):
        notes.append(
            f"{where}: {lacking}, and InstanceNumber is incomplete; slice order unknown, "
            "slice_index left empty."
        )
        return [(None, header, None) for header in members]
    notes.append(f"{where}: {lacking}; ordered by InstanceNumber.")
    ordered_headers = sorted(members, key=_instance_key)
    pairs = [
        (first, second)
        for first, second in zip(ordered_headers, ordered_headers[1:], strict=False)
        if first.instance_number == second.instance_number
    ]
    if pairs:
        problem = (
            f"{where} has two slices with InstanceNumber {pairs[0][0].instance_number} "
            "and no position"
        )
        _ambiguous(problem, pairs, base, notes, ambiguities)
    return [(index, header, None) for index, header in enumerate(ordered_headers)]


def _normal(orientation: tuple[float, ...] | None) -> np.ndarray | None:
    """The unit slice normal: the cross product of the row and column directions."""
    if orientation is None:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    length = float(np.linalg.norm(normal))
    return normal / length if length > 1e-6 else None


def _instance_key(header: _Header) -> tuple[bool, int]:
    number = header.instance_number
    return (number is None, number if number is not None else 0)


def _describe_geometry(
    where: str,
    ordered: list[tuple[_Header, float]],
    normal: np.ndarray,
    base: Path,
    notes: list[str],
    ambiguities: list[str],
) -> None:
    """Notes on tilt and spacing, and an ambiguity for slices at the same position."""
    tilt = math.degrees(math.acos(min(1.0, abs(float(normal[2])))))
    if tilt > _TILT_NOTE_DEGREES:
        notes.append(
            f"{where}: slice plane tilted {tilt:.1f} degrees from axial (gantry tilt or a "
            "reformat); slices ordered along the slice normal."
        )
    positions = np.array([position for _, position in ordered])
    gaps = np.diff(positions)
    same = np.flatnonzero(gaps < _SAME_POSITION_MM)
    if same.size:
        pairs = [(ordered[i][0], ordered[i + 1][0]) for i in same]
        problem = (
            f"{where} has two slices at the same position, {positions[same[0]]:.2f} mm along "
            "the slice normal"
        )
        _ambiguous(problem, pairs, base, notes, ambiguities)
    distinct = gaps[gaps >= _SAME_POSITION_MM]
    if distinct.size >= 2:
        median = float(np.median(distinct))
        tolerance = max(_SPACING_TOLERANCE_MM, _SPACING_TOLERANCE_FRACTION * median)
        if float(distinct.max() - distinct.min()) > tolerance:
            notes.append(
                f"{where}: uneven slice spacing, {distinct.min():.2f} to {distinct.max():.2f} mm "
                f"between neighbouring slices (median {median:.2f} mm)."
            )


def _ambiguous(
    problem: str,
    pairs: list[tuple[_Header, _Header]],
    base: Path,
    notes: list[str],
    ambiguities: list[str],
) -> None:
    first, second = pairs[0]
    more = f" ({len(pairs) - 1} more such pairs in this series.)" if len(pairs) > 1 else ""
    message = (
        f"{problem} ({_relative(first.path, base)}, {_relative(second.path, base)}); slice "
        "order is ambiguous. Both are kept, ordered by InstanceNumber; remove one if it is "
        f"a duplicate.{more}"
    )
    notes.append(message)
    ambiguities.append(message)


def _nothing_loaded_message(root: Path, files: list[Path], log: SkipLog) -> str:
    if not files:
        return (
            f"No DICOM slices loaded from '{root}': it holds no files. Pass a folder of "
            "DICOM files (any file names) or one DICOM file."
        )
    return (
        f"No DICOM slices loaded from '{root}': all {len(files)} files were skipped: "
        f"{describe_skipped(log.items)}. Pass a folder that holds DICOM images, or check the "
        "label CSV."
    )
