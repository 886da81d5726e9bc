"""The phantom's writers (scans/phantom/writers.py): every layout, file by file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ichkit.scans.dataset import SUBTYPES
from ichkit.scans.phantom import (
    PHANTOM_FORMATS,
    PhantomScan,
    make_phantom_scans,
    write_phantom,
    writers,
)

TINY = {"size": 32, "n_slices": 8}


def _window(hu: np.ndarray, center: float, width: float) -> np.ndarray:
    return np.rint(np.clip((hu - (center - width / 2)) / width, 0, 1) * 255).astype(np.uint8)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="Did you mean 'nifti'"):
        write_phantom(tmp_path / "out", format="nifty")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        write_phantom(tmp_path / "full", 1, **TINY)
    (tmp_path / "empty").mkdir()
    assert write_phantom(tmp_path / "empty", 1, **TINY) == tmp_path / "empty"


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize("format", PHANTOM_FORMATS)
def test_writers_are_deterministic(tmp_path, format):
    first = _files(write_phantom(tmp_path / "a", 2, seed=3, format=format, **TINY))
    second = _files(write_phantom(tmp_path / "b", 2, seed=3, format=format, **TINY))
    other = _files(write_phantom(tmp_path / "c", 2, seed=4, format=format, **TINY))
    assert first == second
    assert first != other


def test_png_layout(tmp_path):
    root = write_phantom(tmp_path / "png", 2, seed=1, format="png", **TINY)
    scans = make_phantom_scans(2, seed=1, **TINY)
    names = sorted(path.name for path in (root / "head_ct").iterdir())
    assert names == [f"{index:03d}.png" for index in range(16)]
    text = (root / "labels.csv").read_bytes().decode("utf-8")
    lines = text.splitlines()
    assert lines[0] == (
        "id, hemorrhage, patient_id, scan_id, slice_index, "
        "epidural, subdural, subarachnoid, intraparenchymal, intraventricular"
    )
    assert len(lines) == 17 and all(" " not in line for line in lines[1:])
    from PIL import Image

    for index, line in enumerate(lines[1:]):
        fields = line.split(",")
        patient, slice_index = divmod(index, 8)
        scan = scans[patient]
        assert fields[:5] == [
            str(index),
            str(scan.slice_labels[slice_index]),
            f"P{patient:03d}",
            f"P{patient:03d}",
            str(slice_index),
        ]
        assert fields[5:] == [str(value) for value in scan.slice_subtypes[slice_index]]
        with Image.open(root / "head_ct" / f"{index:03d}.png") as image:
            assert image.mode == "L"
            np.testing.assert_array_equal(np.asarray(image), _window(scan.hu[slice_index], 40, 80))


def test_png_names_widen_past_a_thousand_slices(tmp_path, monkeypatch):
    # 1001 blank slices stand in for ~42 real scans, to keep the test fast.
    blank = PhantomScan(
        hu=np.full((1001, 32, 32), -1000, dtype=np.float32),
        mask=np.zeros((1001, 32, 32), dtype=np.uint8),
        slice_subtypes=np.zeros((1001, 5), dtype=np.int64),
        spacing_mm=(7.5, 7.5, 5.0),
        subtypes=(),
    )
    monkeypatch.setattr(writers, "make_phantom_scans", lambda *args, **kwargs: [blank])
    root = write_phantom(tmp_path / "png", 1, format="png")
    names = sorted(path.name for path in (root / "head_ct").iterdir())
    assert names[0] == "0000.png" and names[-1] == "1000.png" and len(names) == 1001


def test_dicom_layout(tmp_path):
    import pydicom

    root = write_phantom(tmp_path / "dicom", 2, seed=2, format="dicom", **TINY)
    scans = make_phantom_scans(2, seed=2, **TINY)
    rows = list(csv.reader((root / "labels.csv").read_text(encoding="utf-8").splitlines()))
    assert rows[0] == ["SOPInstanceUID", "label", *SUBTYPES]
    labels = {row[0]: [int(value) for value in row[1:]] for row in rows[1:]}
    assert len(labels) == 16
    shuffled = False
    for patient, scan in enumerate(scans):
        series = list((root / f"P{patient:03d}").iterdir())
        assert len(series) == 1 and series[0].is_dir()
        paths = sorted(series[0].glob("*.dcm"))
        assert [path.name for path in paths] == [f"IM-{number:04d}.dcm" for number in range(1, 9)]
        slices = []
        for path in paths:
            assert path.read_bytes()[128:132] == b"DICM"
            dataset = pydicom.dcmread(path)
            assert dataset.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
            assert dataset.SOPClassUID == pydicom.uid.CTImageStorage
            assert dataset.Modality == "CT" and dataset.PatientID == f"P{patient:03d}"
            assert dataset.PixelRepresentation == 1 and dataset.RescaleIntercept == -1024
            assert dataset.RescaleSlope == 1
            assert (dataset.WindowCenter, dataset.WindowWidth) == (40, 80)
            assert [float(value) for value in dataset.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
            assert [float(value) for value in dataset.PixelSpacing] == [7.5, 7.5]
            slices.append(dataset)
        order = [dataset.InstanceNumber for dataset in slices]
        shuffled |= order != sorted(order)
        slices.sort(key=lambda dataset: dataset.InstanceNumber)
        positions = [float(dataset.ImagePositionPatient[2]) for dataset in slices]
        assert np.all(np.diff(positions) > 0)
        for k, dataset in enumerate(slices):
            hu = dataset.pixel_array * float(dataset.RescaleSlope) + float(dataset.RescaleIntercept)
            np.testing.assert_array_equal(hu, np.rint(scan.hu[k]))
            expected = [int(scan.slice_labels[k]), *scan.slice_subtypes[k].tolist()]
            assert labels[dataset.SOPInstanceUID] == expected
    assert shuffled, "file names follow anatomical order"


def test_nifti_layout(tmp_path):
    import nibabel

    from ichkit.scans.nifti import ras_to_slices

    root = write_phantom(tmp_path / "nifti", 2, seed=5, format="nifti", **TINY)
    scans = make_phantom_scans(2, seed=5, **TINY)
    assert json.loads((root / "dataset.json").read_text()) == {
        "channel_names": {"0": "CT"},
        "labels": {
            "background": 0,
            "epidural": 1,
            "subdural": 2,
            "subarachnoid": 3,
            "intraparenchymal": 4,
            "intraventricular": 5,
        },
        "numTraining": 2,
        "file_ending": ".nii.gz",
    }
    assert sorted(path.name for path in (root / "imagesTr").iterdir()) == [
        "P000_0000.nii.gz",
        "P001_0000.nii.gz",
    ]
    assert sorted(path.name for path in (root / "labelsTr").iterdir()) == [
        "P000.nii.gz",
        "P001.nii.gz",
    ]
    for patient, scan in enumerate(scans):
        image = nibabel.load(root / "imagesTr" / f"P{patient:03d}_0000.nii.gz")
        label = nibabel.load(root / "labelsTr" / f"P{patient:03d}.nii.gz")
        assert image.get_data_dtype() == np.int16 and label.get_data_dtype() == np.uint8
        np.testing.assert_allclose(image.affine, np.diag([7.5, 7.5, 15.0, 1.0]))
        canonical = nibabel.as_closest_canonical(image)
        np.testing.assert_allclose(canonical.affine, image.affine)
        # Read back in viewing orientation, slice k is hu[k] as generated.
        data = ras_to_slices(np.asarray(canonical.dataobj))
        masks = ras_to_slices(np.asarray(label.dataobj))
        for k in range(scan.n_slices):
            np.testing.assert_array_equal(data[k], np.rint(scan.hu[k]))
            np.testing.assert_array_equal(masks[k], scan.mask[k])


def test_ctich_layout(tmp_path):
    from PIL import Image

    root = write_phantom(tmp_path / "ctich", 2, seed=6, format="ctich", **TINY)
    scans = make_phantom_scans(2, seed=6, **TINY)
    raw = (root / "hemorrhage_diagnosis.csv").read_bytes()
    assert raw.startswith(
        b"\xef\xbb\xbfPatientNumber,SliceNumber,Intraventricular,Intraparenchymal,"
        b"Subarachnoid,Epidural,Subdural,No_Hemorrhage,Fracture_Yes_No\n"
    )
    rows = [line.split(",") for line in raw.decode("utf-8-sig").splitlines()[1:]]
    assert len(rows) == 16
    assert sorted(path.name for path in (root / "Patients_CT").iterdir()) == ["001", "002"]
    order = ["intraventricular", "intraparenchymal", "subarachnoid", "epidural", "subdural"]
    for row in rows:
        patient, slice_number = int(row[0]), int(row[1])
        assert row[0] == str(patient)  # no zero padding
        scan = scans[patient - 1]
        flags = scan.slice_subtypes[slice_number - 1]
        assert row[2:7] == [str(flags[SUBTYPES.index(name)]) for name in order]
        assert row[7:] == [str(1 - scan.slice_labels[slice_number - 1]), "0"]
    for patient, scan in enumerate(scans, start=1):
        for window, center, width in (("brain", 40, 120), ("bone", 700, 3200)):
            folder = root / "Patients_CT" / f"{patient:03d}" / window
            assert sorted(path.name for path in folder.iterdir()) == sorted(
                f"{k}.jpg" for k in range(1, 9)
            )
            with Image.open(folder / "4.jpg") as image:
                assert image.format == "JPEG" and image.mode == "L"
                pixels = np.asarray(image).astype(float)
            expected = _window(scan.hu[3], center, width).astype(float)
            assert np.abs(pixels - expected).mean() < 4  # JPEG is lossy
