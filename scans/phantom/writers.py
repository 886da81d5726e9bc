"""Write a phantom data set in the layouts real head CT arrives in.

``write_phantom`` draws the scans with ``make_phantom_scans`` and writes them as

``png``
    The Kaggle "Head CT - hemorrhage" layout, extended with patients, slice order and
    subtypes: ``head_ct/<id>.png`` (brain window, 8-bit) and ``labels.csv``.
``dicom``
    One CT series per patient, ``<patient_id>/series-001/IM-<n>.dcm`` with file numbers
    in shuffled order, and ``labels.csv`` keyed by ``SOPInstanceUID``.
``nifti``
    The nnU-Net v2 layout: ``imagesTr/<patient_id>_0000.nii.gz`` (int16 Hounsfield
    units), ``labelsTr/<patient_id>.nii.gz`` (codes 1..5 in ``SUBTYPES`` order) and
    ``dataset.json``.
``ctich``
    The PhysioNet CT-ICH export: ``Patients_CT/<NNN>/brain/<k>.jpg`` and ``bone/<k>.jpg``
    and ``hemorrhage_diagnosis.csv`` (with a UTF-8 byte-order mark).

The scans depend only on ``seed``, ``n_scans``, ``size`` and ``n_slices``, never on
the format, so the same seed gives the same patients in every layout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ichkit.scans.dataset import SUBTYPES
from ichkit.scans.phantom.drawing import PhantomScan, make_phantom_scans
from ichkit.scans.validation import unknown_name_message

__all__ = ["PHANTOM_FORMATS", "write_phantom"]

#: Layouts ``write_phantom`` can write.
PHANTOM_FORMATS = ("png", "dicom", "nifti", "ctich")

_KAGGLE_HEADER = (
    "id, hemorrhage, patient_id, scan_id, slice_index, "
    "epidural, subdural, subarachnoid, intraparenchymal, intraventricular"
)
_CTICH_HEADER = (
    "PatientNumber,SliceNumber,Intraventricular,Intraparenchymal,Subarachnoid,"
    "Epidural,Subdural,No_Hemorrhage,Fracture_Yes_No"
)
_DICOM_HEADER = "SOPInstanceUID,label," + ",".join(SUBTYPES)
_DICOM_SERIES_FOLDER = "series-001"
_HU_OFFSET = 1024


def write_phantom(
    out: str | Path,
    n_scans: int = 8,
    *,
    seed: int | None = 0,
    format: str = "png",
    size: int = 128,
    n_slices: int = 24,
) -> Path:
    """Write a phantom data set of ``n_scans`` patients in one of the real layouts.

    Parameters
    ----------
    out : str or Path
        Folder to create; it must not exist or be empty.
    n_scans : int, default=8
        Number of scans, one per patient (ids ``P000``, ``P001``, ...; CT-ICH uses
        patient numbers ``001``, ``002``, ...).
    seed : int or None, default=0
        Seed of the data set; scan ``i`` comes from child ``i`` of
        ``numpy.random.SeedSequence(seed)``, whatever the format.
    format : {"png", "dicom", "nifti", "ctich"}, default="png"
        Layout to write (see the module docstring).
    size : int, default=128
        Rows and columns of each slice.
    n_slices : int, default=24
        Slices per scan, from the skull base to the vertex.

    Returns
    -------
    Path
        The folder written.

    Raises
    ------
    ValueError
        If ``format`` is unknown or the other parameters are out of range.
    FileExistsError
        If ``out`` exists and is not an empty folder.

    Examples
    --------
    >>> import tempfile
    >>> root = write_phantom(tempfile.mkdtemp() + "/demo", 2, size=32, n_slices=8)
    >>> sorted(path.name for path in root.iterdir())
    ['head_ct', 'labels.csv']
    """
    writer = _writer(format)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = "a folder that is not empty" if out.is_dir() else "a file"
        raise FileExistsError(
            f"Cannot write the phantom to '{out}': it is {what}. write_phantom refuses to "
            "overwrite; give a new or empty folder, or remove this one first."
        )
    scans = make_phantom_scans(n_scans, seed=seed, size=size, n_slices=n_slices)
    out.mkdir(parents=True, exist_ok=True)
    writer(out, scans, seed)
    return out


def _writer(format: str) -> Callable[[Path, list[PhantomScan], int | None], None]:
    writers = {
        "png": _write_png,
        "dicom": _write_dicom,
        "nifti": _write_nifti,
        "ctich": _write_ctich,
    }
    if format not in writers:
        raise ValueError(unknown_name_message("format", format, PHANTOM_FORMATS))
    return writers[format]


def _window(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    """Hounsfield units to 8-bit grey values through a display window."""
    scaled = np.clip((hu - (center - width / 2)) / width, 0.0, 1.0) * 255.0
    return np.rint(scaled).astype(np.uint8)


def _patient_id(index: int) -> str:
    return f"P{index:03d}"


def _write_csv(
    path: Path, header: str, rows: list[list[object]], *, encoding: str = "utf-8"
) -> None:
    lines = [header] + [",".join(str(value) for value in row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding=encoding, newline="")


def _write_png(out: Path, scans: list[PhantomScan], seed: int | None) -> None:
    from PIL import Image

    folder = out / "head_ct"
    folder.mkdir()
    n_images = sum(scan.n_slices for scan in scans)
    digits = max(3, len(str(n_images - 1)))
    rows, index = [], 0
    for patient, scan in enumerate(scans):
        patient_id = _patient_id(patient)
        for slice_index in range(scan.n_slices):
            pixels = _window(scan.hu[slice_index], 40.0, 80.0)
            Image.fromarray(pixels).save(folder / f"{index:0{digits}d}.png")
            subtypes = scan.slice_subtypes[slice_index].tolist()
            label = int(max(subtypes))
            rows.append([index, label, patient_id, patient_id, slice_index, *subtypes])
            index += 1
    _write_csv(out / "labels.csv", _KAGGLE_HEADER, rows)


def _write_ctich(out: Path, scans: list[PhantomScan], seed: int | None) -> None:
    from PIL import Image

    rows = []
    for patient, scan in enumerate(scans, start=1):
        folder = out / "Patients_CT" / f"{patient:03d}"
        for name, center, width in (("brain", 40.0, 120.0), ("bone", 700.0, 3200.0)):
            (folder / name).mkdir(parents=True)
            for slice_index in range(scan.n_slices):
                pixels = _window(scan.hu[slice_index], center, width)
                Image.fromarray(pixels).save(folder / name / f"{slice_index + 1}.jpg", quality=95)
        for slice_index in range(scan.n_slices):
            flags = dict(zip(SUBTYPES, scan.slice_subtypes[slice_index].tolist(), strict=True))
            any_hemorrhage = int(max(flags.values()))
            rows.append(
                [
                    patient,
                    slice_index + 1,
                    flags["intraventricular"],
                    flags["intraparenchymal"],
                    flags["subarachnoid"],
                    flags["epidural"],
                    flags["subdural"],
                    1 - any_hemorrhage,
                    0,
                ]
            )
    _write_csv(out / "hemorrhage_diagnosis.csv", _CTICH_HEADER, rows, encoding="utf-8-sig")


def _write_nifti(out: Path, scans: list[PhantomScan], seed: int | None) -> None:
    import nibabel

    from ichkit.scans.nifti import slices_to_ras

    (out / "imagesTr").mkdir()
    (out / "labelsTr").mkdir()
    for patient, scan in enumerate(scans):
        patient_id = _patient_id(patient)
        # Stored in RAS+ (x: columns, y: rows, z: slices) so that the reader's viewing
        # orientation gives back hu[k] as it is: slices_to_ras inverts ras_to_slices.
        row_mm, column_mm, slice_mm = scan.spacing_mm
        affine = np.diag([column_mm, row_mm, slice_mm, 1.0])
        hu = slices_to_ras(np.clip(np.rint(scan.hu), -32768, 32767).astype(np.int16))
        mask = slices_to_ras(scan.mask)
        for data, path in (
            (hu, out / "imagesTr" / f"{patient_id}_0000.nii.gz"),
            (mask, out / "labelsTr" / f"{patient_id}.nii.gz"),
        ):
            image = nibabel.Nifti1Image(np.ascontiguousarray(data), affine)
            image.header.set_xyzt_units("mm")
            image.set_qform(affine, code=1)
            image.set_sform(affine, code=1)
            nibabel.save(image, path)
    description = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, **{name: code for code, name in enumerate(SUBTYPES, 1)}},
        "numTraining": len(scans),
        "file_ending": ".nii.gz",
    }
    (out / "dataset.json").write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")


def _write_dicom(out: Path, scans: list[PhantomScan], seed: int | None) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        PYDICOM_IMPLEMENTATION_UID,
        CTImageStorage,
        ExplicitVRLittleEndian,
    )

    n_scans = len(scans)
    rows = []
    for patient, scan in enumerate(scans):
        patient_id = _patient_id(patient)
        n_slices, size = scan.n_slices, scan.hu.shape[1]
        row_mm, column_mm, slice_mm = scan.spacing_mm

        key = ("ichkit-phantom", seed, n_scans, size, n_slices, patient_id)

        study, series, frame = (_uid(*key, part) for part in ("study", "series", "frame"))
        # File numbers are a permutation, so that name order is not anatomical order.
        numbers = np.random.default_rng(
            [0 if seed is None else seed, patient, n_slices]
        ).permutation(n_slices)
        folder = out / patient_id / _DICOM_SERIES_FOLDER
        folder.mkdir(parents=True)
        origin = -(size - 1) / 2 * column_mm, -(size - 1) / 2 * row_mm
        stored_all = np.clip(np.rint(scan.hu) + _HU_OFFSET, -32768, 32767).astype("<i2")
        for slice_index in range(n_slices):
            instance = _uid(*key, "instance", slice_index)
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = CTImageStorage
            meta.MediaStorageSOPInstanceUID = instance
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
            dataset = Dataset()
            dataset.file_meta = meta
            dataset.preamble = b"\0" * 128
            dataset.SOPClassUID = CTImageStorage
            dataset.SOPInstanceUID = instance
            dataset.StudyInstanceUID = study
            dataset.SeriesInstanceUID = series
            dataset.FrameOfReferenceUID = frame
            dataset.PatientID = patient_id
            dataset.PatientName = f"Phantom^{patient_id}"
            dataset.StudyDescription = "ichkit phantom head CT"
            dataset.SeriesDescription = "Head without contrast (synthetic)"
            dataset.Modality = "CT"
            dataset.Manufacturer = "ichkit"
            dataset.SeriesNumber = 1
            dataset.InstanceNumber = slice_index + 1
            dataset.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            dataset.PatientPosition = "HFS"
            dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            dataset.ImagePositionPatient = [
                _decimal(origin[0]),
                _decimal(origin[1]),
                _decimal(slice_index * slice_mm),
            ]
            dataset.SliceLocation = _decimal(slice_index * slice_mm)
            dataset.SliceThickness = _decimal(slice_mm)
            dataset.PixelSpacing = [_decimal(row_mm), _decimal(column_mm)]
            dataset.Rows = size
            dataset.Columns = size
            dataset.SamplesPerPixel = 1
            dataset.PhotometricInterpretation = "MONOCHROME2"
            dataset.BitsAllocated = 16
            dataset.BitsStored = 16
            dataset.HighBit = 15
            dataset.PixelRepresentation = 1
            dataset.RescaleIntercept = -_HU_OFFSET
            dataset.RescaleSlope = 1
            dataset.RescaleType = "HU"
            dataset.WindowCenter = 40
            dataset.WindowWidth = 80
            dataset.PixelData = stored_all[slice_index].tobytes()
            name = f"IM-{numbers[slice_index] + 1:04d}.dcm"
            dataset.save_as(folder / name, enforce_file_format=True)
            subtypes = scan.slice_subtypes[slice_index].tolist()
            rows.append([instance, int(max(subtypes)), *subtypes])
    _write_csv(out / "labels.csv", _DICOM_HEADER, rows)


def _uid(*parts: object) -> str:
    """A UID drawn from ``parts``: the same data set gets the same UIDs, others differ."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[str(part) for part in parts])


def _decimal(value: float) -> str:
    """A number as a DICOM decimal string (at most 16 characters)."""
    return f"{value:.8g}"
