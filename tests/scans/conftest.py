"""Small synthetic DICOM files written with pydicom, for the DICOM tests.

Fixtures rather than imports: with ``--import-mode=importlib`` test modules cannot
import each other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SERIES_UID = "1.2.826.0.1.3680043.10.999.1"
BRAIN_STORED = 1064  # 40 HU with RescaleIntercept -1024


def _write_slice(
    path: Path,
    *,
    position: tuple[float, float, float] | None = (0.0, 0.0, 0.0),
    orientation: tuple[float, ...] | None = AXIAL,
    instance: int | None = 1,
    series_uid: str | None = SERIES_UID,
    patient_id: str | None = "SYNTH-1",
    stored: np.ndarray | None = None,
    signed: bool = True,
    intercept: float = -1024.0,
    preamble: bool = True,
    **elements: object,
) -> str:
    """Write a small single-frame CT slice; return its SOPInstanceUID."""
    dataset = Dataset()
    sop_instance_uid = generate_uid()
    dataset.SOPClassUID = CTImageStorage
    dataset.SOPInstanceUID = sop_instance_uid
    dataset.Modality = "CT"
    if patient_id is not None:
        dataset.PatientID = patient_id
    if series_uid is not None:
        dataset.SeriesInstanceUID = series_uid
    if position is not None:
        dataset.ImagePositionPatient = list(position)
    if orientation is not None:
        dataset.ImageOrientationPatient = list(orientation)
    if instance is not None:
        dataset.InstanceNumber = instance
    if stored is None:
        stored = np.full((8, 8), BRAIN_STORED)
    dataset.Rows, dataset.Columns = stored.shape[-2:]
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated = 16
    dataset.BitsStored = 16
    dataset.HighBit = 15
    dataset.PixelRepresentation = 1 if signed else 0
    dataset.RescaleSlope = 1
    dataset.RescaleIntercept = intercept
    for keyword, value in elements.items():
        setattr(dataset, keyword, value)
    dataset.PixelData = stored.astype(np.int16 if signed else np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if preamble:
        dataset.file_meta = FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        dataset.save_as(path, enforce_file_format=True)
    else:
        dataset.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    return sop_instance_uid


def _write_dicomdir(path: Path) -> None:
    """A DICOMDIR-like file: directory records, no image (Philips' DIRFILE)."""
    dataset = Dataset()
    dataset.FileSetID = "SYNTH"
    dataset.DirectoryRecordSequence = []
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.save_as(path, enforce_file_format=True)


@pytest.fixture
def write_slice():
    """``write_slice(path, position=..., instance=..., preamble=..., **elements)``."""
    return _write_slice


@pytest.fixture
def write_dicomdir():
    """``write_dicomdir(path)``: a DICOMDIR-like file without image."""
    return _write_dicomdir
