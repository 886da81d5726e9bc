"""Folders of PNG/JPEG head CT: class folders, a label CSV (Kaggle), PhysioNet CT-ICH."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from joblib import Parallel, delayed
from PIL import Image

from ichkit.scans.budget import check_claimed_size
from ichkit.scans.dataset import SUBTYPES, WINDOW_COLUMNS, ScanDataset, SkipLog, warn_skipped
from ichkit.scans.errors import DatasetError, ScanReadError
from ichkit.scans.labels import binary_value, read_labels, subtype_name
from ichkit.scans.readers import IMAGE_SUFFIXES, read_image

__all__ = ["load_folders", "load_csv", "load_ctich", "CLASS_NAMES"]

#: Class folder names understood without help (lower case), mapped to the label.
CLASS_NAMES = {
    **dict.fromkeys(("normal", "no", "negative", "healthy", "no_hemorrhage", "0"), 0),
    **dict.fromkeys(("hemorrhage", "haemorrhage", "yes", "positive", "ich", "bleed", "1"), 1),
    **dict.fromkeys(SUBTYPES, 1),
}
#: The window of CT-ICH's brain/ images (Hssayeni et al.): level 40, width 120.
_CTICH_BRAIN_WINDOW = (40.0, 120.0)
_CSV_KEYS = ("id", "image", "image_id", "filename", "file", "path")
_LOOSE_NOTE = (
    "no patient ids: each image is treated as its own patient. If several images come "
    "from one patient, give patient ids (patient_pattern, or a patient_id column) or "
    "splits will leak that patient across train and test."
)


def load_folders(
    root: str | Path,
    *,
    class_names: dict[str, int] | None = None,
    patient_pattern: str | None = None,
    strict: bool = False,
    verify: bool = True,
) -> ScanDataset:
    """Load images sorted into one subfolder per class (``normal/``, ``hemorrhage/``).

    Parameters
    ----------
    root : path
        Folder whose subfolders are classes; images may be nested below them.
    class_names : dict, default=None
        Folder name to label (0/1) for names outside ``CLASS_NAMES``.
    patient_pattern : str, default=None
        Regular expression searched in each image's path relative to ``root``; its
        group ``patient`` (or first group) is the patient id. Without it every image
        is its own patient.
    strict : bool, default=False
        Raise at the first unreadable image instead of skipping it.
    verify : bool, default=True
        Decode every image once so that truncated files are found now, not in training.
    """
    root = Path(root)
    names = {**CLASS_NAMES, **{k.lower(): v for k, v in (class_names or {}).items()}}
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [p.name for p in folders if p.name.lower() not in names and _has_images(p)]
    if unknown:
        raise DatasetError(
            f"Class folders of '{root}' not understood: {', '.join(unknown)}. Known names: "
            f"{', '.join(sorted(names))}. Pass class_names={{'{unknown[0]}': 0 or 1}}."
        )
    pattern = re.compile(patient_pattern) if patient_pattern else None
    log, rows = SkipLog(strict), []
    for folder in folders:
        if folder.name.lower() not in names:
            continue
        for path in _image_files(folder):
            relative = path.relative_to(root).with_suffix("").as_posix()
            patient = _match_patient(pattern, relative, path) if pattern else relative
            label = names[folder.name.lower()]
            rows.append({"path": str(path), "patient_id": patient, "label": label})
    notes = [] if pattern else [_LOOSE_NOTE]
    return _finish(rows, root, "folders", log, notes, verify, patients_known=bool(pattern))


def load_csv(
    root: str | Path,
    *,
    labels: str | Path | None = None,
    patient_pattern: str | None = None,
    strict: bool = False,
    verify: bool = True,
) -> ScanDataset:
    """Load images listed in a label CSV: the Kaggle "Head CT - hemorrhage" layout.

    ``labels.csv`` (header ``id, hemorrhage``; ids may be zero-padded or not) beside
    or above a folder of images named by id. Optional columns ``patient_id``,
    ``scan_id``, ``slice_index`` and subtype columns are used when present. Images
    without a row, rows without an image, unknown label values and invalid windows
    are each reported by name.

    Optional columns ``window_center`` and ``window_width`` give the window (in
    Hounsfield units) each image was exported with, as in RSNA exports made with
    each slice's own header window; ``to_hounsfield`` then maps that image's grey
    values back with its own window instead of one assumed for all. They go into
    the table's columns of the same names (empty where a row has none; absent when
    no row has one).

    Raises
    ------
    DatasetError
        No label CSV, or one that gives an id two different labels (see
        ``read_labels``).
    """
    root = Path(root)
    csv_path = Path(labels) if labels else find_label_csv(root)
    if csv_path is None:
        raise DatasetError(f"No label CSV found in '{root}'; pass labels='path/to/labels.csv'.")
    table = read_labels(csv_path, key_columns=_CSV_KEYS)
    pattern = re.compile(patient_pattern) if patient_pattern else None
    log, rows, used = SkipLog(strict), [], set()
    for path in _image_files(root):
        relative = path.relative_to(root)
        key, values = table.lookup(path.stem, path.name, relative.as_posix())
        if key is None:
            log.skip(path, f"no label row in {csv_path.name}")
            continue
        used.add(key)
        if values is None:
            log.skip(path, table.invalid[key])
            continue
        metadata = table.metadata.get(key, {})
        patient = metadata.get("patient_id")
        if pattern:
            patient = _match_patient(pattern, relative.with_suffix("").as_posix(), path)
        window = table.windows.get(key)
        rows.append(
            {
                "path": str(path),
                "patient_id": patient or path.stem,
                "scan_id": metadata.get("scan_id") or patient or path.stem,
                "slice_index": metadata.get("slice_index"),
                **values,
                **(dict(zip(WINDOW_COLUMNS, window, strict=True)) if window else {}),
            }
        )
    for key in sorted(set(table.rows) | set(table.invalid)):
        if key not in used:
            log.skip(f"{csv_path} (row '{key}')", "label row has no matching image file")
    has_patients = bool(pattern) or any("patient_id" in m for m in table.metadata.values())
    notes = [*table.notes, *([] if has_patients else [_LOOSE_NOTE])]
    return _finish(rows, root, "csv", log, notes, verify, patients_known=has_patients)


def load_ctich(root: str | Path, *, strict: bool = False, verify: bool = True) -> ScanDataset:
    """Load the PhysioNet CT-ICH export (Hssayeni et al.).

    ``Patients_CT/<NNN>/brain/<k>.jpg`` (brain window), ``bone/<k>.jpg`` and
    ``hemorrhage_diagnosis.csv`` with one row per slice and subtype columns. Slices
    are numbered 1..N per patient from skull base to vertex, so each patient folder
    is an ordered scan. The bone-window image goes into the ``bone_path`` column.
    """
    root = Path(root)
    csv_path = root / "hemorrhage_diagnosis.csv"
    try:
        table = pd.read_csv(csv_path, dtype=str, encoding="utf-8-sig", skipinitialspace=True)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise DatasetError(f"Cannot read '{csv_path}': {error}") from error
    table.columns = [column.strip() for column in table.columns]
    missing = {"PatientNumber", "SliceNumber", "No_Hemorrhage"} - set(table.columns)
    if missing:
        raise DatasetError(f"'{csv_path}' lacks the CT-ICH columns {', '.join(sorted(missing))}.")
    subtype_columns = {subtype_name(c): c for c in table.columns if subtype_name(c)}
    folders = {
        int(p.name): p for p in (root / "Patients_CT").iterdir() if p.is_dir() and p.name.isdigit()
    }
    log, rows, listed = SkipLog(strict), [], set()
    for _, row in table.iterrows():
        patient, number = int(row["PatientNumber"]), int(row["SliceNumber"])
        folder = folders.get(patient, root / "Patients_CT" / f"{patient:03d}")
        path = folder / "brain" / f"{number}.jpg"
        listed.add(path)
        if not path.is_file():
            log.skip(f"{csv_path} (patient {patient}, slice {number})", f"no image at '{path}'")
            continue
        values = {name: binary_value(row[column]) for name, column in subtype_columns.items()}
        normal = binary_value(row["No_Hemorrhage"])
        if normal is None or None in values.values():
            log.skip(path, f"unknown label value in {csv_path.name}")
            continue
        if normal == int(any(values.values())):
            reason = f"No_Hemorrhage={normal} contradicts the subtype columns"
            log.skip(path, f"{reason} in {csv_path.name}")
            continue
        bone = folder / "bone" / f"{number}.jpg"
        rows.append(
            {
                "path": str(path),
                "patient_id": folder.name,
                "scan_id": folder.name,
                "slice_number": number,
                "label": 1 - normal,
                **values,
                "bone_path": str(bone) if bone.is_file() else None,
                "window_center": _CTICH_BRAIN_WINDOW[0],
                "window_width": _CTICH_BRAIN_WINDOW[1],
            }
        )
    for folder in folders.values():
        for path in sorted((folder / "brain").glob("*.jpg")):
            if path not in listed:
                log.skip(path, f"no row in {csv_path.name}")
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame["slice_index"] = frame.groupby("patient_id")["slice_number"].rank(method="first") - 1
    return _finish(frame, root, "ctich", log, [], verify)


def find_label_csv(root: Path) -> Path | None:
    """The label CSV of an image data set: ``labels.csv`` in ``root`` or one folder down,
    else the only CSV there."""
    candidates = sorted(root.glob("*.csv")) + sorted(root.glob("*/*.csv"))
    named = [path for path in candidates if path.name.lower() == "labels.csv"]
    if named:
        return named[0]
    if len(candidates) > 1:
        raise DatasetError(
            f"Several CSV files in '{root}' ({', '.join(p.name for p in candidates)}); "
            "pass labels='...' to say which holds the labels."
        )
    return candidates[0] if candidates else None


def _image_files(folder: Path) -> list[Path]:
    """Image files below ``folder`` by name; their content is checked when read."""
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )  # fmt: skip


def _has_images(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.rglob("*"))


def _match_patient(pattern: re.Pattern, text: str, path: Path) -> str:
    match = pattern.search(text)
    if match is None:
        raise DatasetError(
            f"patient_pattern {pattern.pattern!r} does not match '{path}' (searched in '{text}')."
        )
    if match.groupdict().get("patient"):
        return match.group("patient")
    return match.group(1) if match.groups() else match.group(0)


def _image_size(path: str, verify: bool) -> tuple[int, int]:
    """(height, width) of an image; decodes it fully when ``verify``."""
    if verify:
        return read_image(path).pixels.shape
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception:  # noqa: BLE001 - any failure to open is "unreadable"
        return read_image(path).pixels.shape  # raises the precise ScanReadError
    check_claimed_size(path, rows=height, columns=width)  # the decoding budget in force
    return height, width


def _checked_size(path: str, verify: bool) -> tuple[int, int] | ScanReadError:
    try:
        return _image_size(path, verify)
    except ScanReadError as error:
        return error


def _finish(
    rows: list[dict] | pd.DataFrame,
    root: Path,
    layout: str,
    log: SkipLog,
    notes: list[str],
    verify: bool,
    *,
    patients_known: bool = True,
) -> ScanDataset:
    """Check every image (in threads: decoding releases the GIL), drop the unreadable, build."""
    frame = pd.DataFrame(rows)
    n_files = len(frame) + len(log.items)
    built = {"layout": layout, "root": root, "notes": notes, "patients_known": patients_known}
    if frame.empty:
        return ScanDataset(frame, skipped=log.items, **built)
    sizes = Parallel(n_jobs=-1, prefer="threads")(
        delayed(_checked_size)(path, verify) for path in frame["path"]
    )
    keep = []
    for path, size in zip(frame["path"], sizes, strict=True):
        if isinstance(size, ScanReadError):
            log.skip(path, size)
        keep.append(not isinstance(size, ScanReadError))
    frame = frame[keep].assign(
        format="image",
        height=[s[0] for s in sizes if not isinstance(s, ScanReadError)],
        width=[s[1] for s in sizes if not isinstance(s, ScanReadError)],
    )
    if "scan_id" not in frame.columns:
        frame["scan_id"] = frame["patient_id"]
    dataset = ScanDataset(frame, skipped=log.items, **built)
    warn_skipped(dataset, n_files)
    return dataset
