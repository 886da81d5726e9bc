"""``scans.load``: one entry point that finds a data set's layout and loads it."""

from __future__ import annotations

import os
from pathlib import Path

from ichkit.scans.dataset import ScanDataset, describe_skipped
from ichkit.scans.dicom import is_dicom
from ichkit.scans.errors import DatasetError
from ichkit.scans.nifti import NIFTI_SUFFIXES
from ichkit.scans.readers import IMAGE_SUFFIXES
from ichkit.scans.validation import unknown_name_message

__all__ = ["load", "detect_layout", "LAYOUTS"]

#: Layout names, in the order ``detect_layout`` tries them.
LAYOUTS = ("ctich", "nifti", "dicom", "csv", "folders")
_DICOM_PROBE_LIMIT = 200


def load(
    path: str | Path,
    kind: str | None = None,
    *,
    labels: str | Path | None = None,
    strict: bool = False,
    verify: bool = True,
    patient_pattern: str | None = None,
    class_names: dict[str, int] | None = None,
) -> ScanDataset:
    """Load a head CT data set in any supported layout.

    Parameters
    ----------
    path : str or Path
        A data set folder (or a single DICOM or NIfTI file).
    kind : {'ctich', 'nifti', 'dicom', 'csv', 'folders'}, default=None
        The layout; found from the content when None (see ``detect_layout``).
    labels : path, default=None
        A label CSV for the ``csv`` and ``dicom`` layouts, when not ``labels.csv``.
    strict : bool, default=False
        Raise at the first unreadable file instead of skipping it.
    verify : bool, default=True
        Decode every slice once now, so unreadable files are found before training.
    patient_pattern : str, default=None
        For loose images: a regular expression whose group ``patient`` finds the
        patient id in each file's relative path.
    class_names : dict, default=None
        For class folders: extra folder name to 0/1 mappings.

    Returns
    -------
    ScanDataset

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    DatasetError
        No images found, or nothing readable.
    ScanReadError
        With ``strict=True``, the first unreadable file.

    Examples
    --------
    >>> from ichkit import scans
    >>> dataset = scans.load("data/ct-ich")  # doctest: +SKIP
    >>> dataset.table[["patient_id", "slice_index", "label"]].head()  # doctest: +SKIP
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Data set path '{path}' does not exist.")
    layout = kind or detect_layout(path)
    if layout not in LAYOUTS:
        raise ValueError(unknown_name_message("layout", layout, LAYOUTS))
    if layout == "ctich":
        from ichkit.scans.image_folders import load_ctich

        dataset = load_ctich(path, strict=strict, verify=verify)
    elif layout == "nifti":
        from ichkit.scans.nifti_series import load_nifti

        dataset = load_nifti(path, strict=strict, verify=verify)
    elif layout == "dicom":
        from ichkit.scans.dicom_series import load_dicom

        dataset = load_dicom(path, labels=labels, strict=strict, verify=verify)
    elif layout == "csv":
        from ichkit.scans.image_folders import load_csv

        dataset = load_csv(
            path, labels=labels, patient_pattern=patient_pattern, strict=strict, verify=verify
        )
    else:
        from ichkit.scans.image_folders import load_folders

        dataset = load_folders(
            path,
            class_names=class_names,
            patient_pattern=patient_pattern,
            strict=strict,
            verify=verify,
        )
    if len(dataset) == 0:
        reason = (
            f"all {len(dataset.skipped)} files were skipped: {describe_skipped(dataset.skipped)}"
            if dataset.skipped
            else "no slices found"
        )
        raise DatasetError(f"No readable slices in '{path}' ({layout} layout): {reason}.")
    return dataset


def detect_layout(path: str | Path) -> str:
    """Name the layout of a data set from what it contains.

    Tried in order: ``ctich`` (``Patients_CT/`` and ``hemorrhage_diagnosis.csv``),
    ``nifti`` (``.nii``/``.nii.gz`` files), ``dicom`` (DICOM content, with or
    without preamble, or a ``.dcm`` name), ``csv`` (images and a label CSV),
    ``folders`` (class subfolders of images).

    Raises
    ------
    DatasetError
        When no images of any kind are found.
    """
    path = Path(path)
    if path.is_file():
        if path.name.endswith(NIFTI_SUFFIXES):
            return "nifti"
        if _looks_like_dicom(path):
            return "dicom"
        raise DatasetError(
            f"'{path}' is a single file that is neither DICOM nor NIfTI; give the folder "
            "of a data set (class folders or images with a label CSV)."
        )
    if (path / "Patients_CT").is_dir() and (path / "hemorrhage_diagnosis.csv").is_file():
        return "ctich"
    files = [Path(folder, name) for folder, _, names in os.walk(path) for name in names]
    if any(file.name.endswith(NIFTI_SUFFIXES) for file in files):
        return "nifti"
    candidates = [f for f in files if f.suffix.lower() in ("", ".dcm", ".dicom", ".ima")]
    if any(_looks_like_dicom(file) for file in candidates[:_DICOM_PROBE_LIMIT]):
        return "dicom"
    images = [file for file in files if file.suffix.lower() in IMAGE_SUFFIXES]
    if images:
        has_csv = any(path.glob("*.csv")) or any(path.glob("*/*.csv"))
        return "csv" if has_csv else "folders"
    raise DatasetError(
        f"No images found in '{path}' ({len(files)} files; looked for PNG/JPEG images, "
        "DICOM files and NIfTI volumes)."
    )


def _looks_like_dicom(path: Path) -> bool:
    """DICOM content by its first bytes (``is_dicom``: preamble or none), or a .dcm name."""
    return is_dicom(path) or path.suffix.lower() == ".dcm"
