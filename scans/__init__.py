"""Reading head CT as it really arrives, preparing slices, splitting by patient, and the phantom.

``scans.load(path)`` finds the layout (class folders, images with a label CSV, DICOM,
NIfTI, PhysioNet CT-ICH) and returns a ``ScanDataset``: a table of slices with
patient, scan, order and labels, and ``read(i)`` for the pixels.
"""

from scans._slice import SliceImage
from scans.dataset import SUBTYPES, ScanDataset, Skipped
from scans.errors import DatasetError, ScanReadError
from scans.inspect import inspect
from scans.loading import LAYOUTS, detect_layout, load
from scans.readers import read_image, read_slice

__all__ = [
    "LAYOUTS",
    "SUBTYPES",
    "DatasetError",
    "ScanDataset",
    "ScanReadError",
    "SliceImage",
    "Skipped",
    "detect_layout",
    "inspect",
    "load",
    "read_image",
    "read_slice",
]
