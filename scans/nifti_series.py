"""Folders of NIfTI head CT: one scan per volume, with slice labels from mask volumes.

``load_nifti`` finds the volumes below a folder, pairs each with its mask (nnU-Net's
``imagesTr``/``labelsTr``, a ``masks/`` folder, or an ``X_mask.nii.gz`` beside it) and
gives a ``ScanDataset`` with one row per slice. Reading one volume or slice is
``ichkit.scans.nifti``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ichkit.scans.budget import DecodeBudget, current_budget
from ichkit.scans.dataset import SUBTYPES, ScanDataset, SkipLog, warn_skipped
from ichkit.scans.errors import ScanReadError
from ichkit.scans.labels import subtype_name
from ichkit.scans.nifti import (
    NAN_FILL_HU,
    NIFTI_SUFFIXES,
    _cached_volume,
    _n_axial_slices,
    _read_volume,
    _Volume,
)

__all__ = ["load_nifti"]

#: Folders and name endings that hold masks, not images (nnU-Net, common exports).
_MASK_FOLDERS = ("labelsTr", "labelsTs", "masks", "labels", "segmentations")
_MASK_ENDINGS = ("_mask", "_seg", "_label", "_labels")


def load_nifti(root: str | Path, *, strict: bool = False, verify: bool = True) -> ScanDataset:
    """Load NIfTI volumes below ``root`` (or one file), one scan per volume.

    Masks are found the nnU-Net way (``imagesTr/X_0000.nii.gz`` with
    ``labelsTr/X.nii.gz``), in a ``masks/`` or ``labels/`` folder beside or above the
    images with the same name, or as ``X_mask.nii.gz`` / ``X_seg.nii.gz``. A slice is
    positive when its mask has any non-zero voxel. Subtypes come from the mask's
    values where a ``dataset.json`` (nnU-Net) names them (``epidural``, ``EDH``, ...).
    Volumes without a mask load unlabelled. NaN and infinite voxels become air and
    are reported in ``notes`` (and warned about). Each header is checked against the
    decoding budget (``ichkit.scans.budget``) before its voxels are read.
    """
    budget = current_budget()
    root = Path(root)
    images = [root] if root.is_file() else _volume_files(root)
    codes = _mask_codes(root if root.is_dir() else root.parent)
    log, rows, notes, warned = SkipLog(strict), [], [], []
    n_unlabelled = 0
    for path in images:
        case = _case_name(path)
        try:
            # verify: read it now (kept for the slice reads that follow); else the header
            volume = _cached_volume(path, budget) if verify else None
            n_slices = len(volume.slices) if volume else _n_axial_slices(path, budget)
        except ScanReadError as error:
            log.skip(path, error)
            continue
        if volume and volume.n_non_finite:
            note = f"'{path}': {_non_finite_count(volume)} on slice(s) " + (
                f"{', '.join(map(str, volume.non_finite_slices))} set to {NAN_FILL_HU:g} HU (air)"
            )
            notes.append(note)
            warned.append(note)
        mask_path = _find_mask(path, case)
        slice_labels = {}
        if mask_path is not None:
            try:
                slice_labels = _slice_labels(mask_path, n_slices, codes, budget)
            except ScanReadError as error:
                log.skip(path, f"its mask is unusable: {error.reason}")
                continue
        else:
            n_unlabelled += 1
        for index in range(n_slices):
            rows.append(
                {
                    "path": str(path),
                    "format": "nifti",
                    "frame": index,
                    "patient_id": case,
                    "scan_id": case,
                    "slice_index": index,
                    **{name: values[index] for name, values in slice_labels.items()},
                    "mask_path": str(mask_path) if mask_path else None,
                }
            )
    if n_unlabelled:
        notes.append(f"{n_unlabelled} of {len(images)} volumes have no mask: loaded unlabelled")
    for note in warned:
        warnings.warn(note, stacklevel=2)
    dataset = ScanDataset(
        pd.DataFrame(rows), layout="nifti", root=root, skipped=log.items, notes=notes
    )
    warn_skipped(dataset, len(images))
    return dataset


def _non_finite_count(volume: _Volume) -> str:
    """'3 NaN voxels', '2 infinite voxels' or '3 NaN and 2 infinite voxels'."""
    parts = [f"{volume.n_nan} NaN"] if volume.n_nan else []
    parts += [f"{volume.n_infinite} infinite"] if volume.n_infinite else []
    return " and ".join(parts) + " voxels"


def _volume_files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.name.endswith(NIFTI_SUFFIXES) and not _is_mask(p)
    )


def _is_mask(path: Path) -> bool:
    stem = _strip_suffix(path.name)
    return any(part in _MASK_FOLDERS for part in path.parent.parts[-1:]) or stem.endswith(
        _MASK_ENDINGS
    )


def _strip_suffix(name: str) -> str:
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _case_name(path: Path) -> str:
    """nnU-Net's case id: the file name without suffix and ``_0000`` channel number."""
    stem = _strip_suffix(path.name)
    return stem[:-5] if len(stem) > 5 and stem[-5] == "_" and stem[-4:].isdigit() else stem


def _find_mask(image: Path, case: str) -> Path | None:
    folders = [image.parent.parent / name for name in _MASK_FOLDERS]
    folders += [image.parent / name for name in _MASK_FOLDERS]
    names = [case + suffix for suffix in NIFTI_SUFFIXES]
    stem = _strip_suffix(image.name)
    candidates = [folder / name for folder in folders for name in names]
    candidates += [
        image.parent / (stem + ending + suffix)
        for ending in _MASK_ENDINGS
        for suffix in NIFTI_SUFFIXES
    ]
    return next((path for path in candidates if path.is_file() and path != image), None)


def _mask_codes(root: Path) -> dict[int, str]:
    """Mask value -> subtype from an nnU-Net ``dataset.json`` (v2 name->value or v1 value->name)."""
    path = root / "dataset.json"
    if not path.is_file():
        return {}
    try:
        labels = json.loads(path.read_text()).get("labels", {})
    except (OSError, ValueError) as error:
        raise ScanReadError(path, f"not valid JSON ({error})") from error
    pairs = [
        (int(value), str(name)) if str(value).lstrip("-").isdigit() else (int(name), str(value))
        for name, value in labels.items()
    ]
    return {value: subtype_name(name) for value, name in pairs if subtype_name(name)}


def _slice_labels(
    mask_path: Path, n_slices: int, codes: dict[int, str], budget: DecodeBudget
) -> dict[str, list[int]]:
    # Read without the cache, which keeps the image volume for its slice reads.
    mask = _read_volume(mask_path, budget).slices
    if len(mask) != n_slices:
        raise ScanReadError(mask_path, f"mask has {len(mask)} slices, the volume {n_slices}")
    values = np.rint(mask, out=mask)  # float label values; no int64 copy of a large mask
    labels = {"label": (values > 0).any(axis=(1, 2)).astype(int).tolist()}
    if codes:
        for subtype in SUBTYPES:
            subtype_values = [value for value, name in codes.items() if name == subtype]
            labels[subtype] = np.isin(values, subtype_values).any(axis=(1, 2)).astype(int).tolist()
    return labels
