"""Reading head CT as it really arrives, preparing slices, splitting by patient, and the phantom.

``scans.load(path)`` finds the layout (class folders, images with a label CSV, DICOM,
NIfTI, PhysioNet CT-ICH) and returns a ``ScanDataset``: a table of slices with
patient, scan, order and labels, and ``read(i)`` for the pixels.

The modules, by job:

- data sets: ``loading`` (``load``, the layout dispatcher), ``dataset`` (``ScanDataset``),
  ``labels`` (label tables), ``inspect`` (a data set's summary);
- one slice and one data set per format: ``readers`` (images, ``read_slice``) with
  ``image_folders``; ``dicom`` with ``dicom_series``; ``nifti`` with ``nifti_series``;
- preparing slices: ``windowing``, ``transforms``;
- leakage: ``splits`` (patient-grouped splits), ``duplicates`` (near-duplicate slices);
- ``budget``: the decoding limits every reader checks before decoding;
  ``plausibility``: whether a slice or scan looks like head CT, the gate in front of
  every verdict;
- ``phantom/``: the synthetic head CT and its writers;
- ``validation``: the parameter checks of the whole project; ``errors``: the exceptions.
"""

from ichkit.scans._slice import SliceImage
from ichkit.scans.budget import DEFAULT_BUDGET, DecodeBudget, using_budget
from ichkit.scans.dataset import SUBTYPES, ScanDataset, Skipped
from ichkit.scans.dicom import is_dicom, read_dicom_slice
from ichkit.scans.dicom_series import load_dicom
from ichkit.scans.duplicates import find_near_duplicates
from ichkit.scans.errors import DatasetError, ScanReadError
from ichkit.scans.inspect import inspect
from ichkit.scans.loading import LAYOUTS, detect_layout, load
from ichkit.scans.nifti_series import load_nifti
from ichkit.scans.plausibility import check_scan, check_slice, check_slices
from ichkit.scans.readers import read_image, read_slice
from ichkit.scans.splits import Split, grouped_kfold, patient_split
from ichkit.scans.transforms import (
    Compose,
    CropToHead,
    NeighborSlices,
    NormalizeIntensity,
    RandomAugment,
    Resize,
    ScaleIntensity,
    prepare_slice,
)
from ichkit.scans.windowing import WINDOW_PRESETS, Window, WindowStack, get_window, to_hounsfield

__all__ = [
    "DEFAULT_BUDGET",
    "DecodeBudget",
    "using_budget",
    "LAYOUTS",
    "SUBTYPES",
    "WINDOW_PRESETS",
    "Compose",
    "CropToHead",
    "DatasetError",
    "NeighborSlices",
    "NormalizeIntensity",
    "RandomAugment",
    "Resize",
    "ScaleIntensity",
    "ScanDataset",
    "ScanReadError",
    "SliceImage",
    "Skipped",
    "Split",
    "Window",
    "WindowStack",
    "check_scan",
    "check_slice",
    "check_slices",
    "detect_layout",
    "find_near_duplicates",
    "get_window",
    "grouped_kfold",
    "inspect",
    "is_dicom",
    "load",
    "load_dicom",
    "load_nifti",
    "patient_split",
    "prepare_slice",
    "read_dicom_slice",
    "read_image",
    "read_slice",
    "to_hounsfield",
]
