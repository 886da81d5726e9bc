"""Folders of image slices (scans/image_folders.py): class folders, label CSV, CT-ICH."""

import numpy as np
import pytest
from PIL import Image

from ichkit import scans
from ichkit.scans import DatasetError, ScanReadError


def _write_png(path, value=100, size=16):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), value, np.uint8)).save(path)


def test_real_ctich_counts(shared_data):
    dataset = scans.load(shared_data / "ct-ich-dev")
    table = dataset.table
    assert dataset.layout == "ctich"
    assert (len(table), table["patient_id"].nunique(), int(table["label"].sum())) == (605, 20, 90)
    assert dataset.is_ordered and not dataset.skipped
    assert set(dataset.subtypes) == set(scans.SUBTYPES)
    # Slice order follows SliceNumber within each patient, not the file names' text order.
    first = table[table["patient_id"] == "049"].sort_values("slice_index")
    assert first["slice_number"].tolist() == sorted(first["slice_number"])
    assert first["path"].iloc[9].endswith("brain/10.jpg")
    assert dataset.read(0).pixels.shape == (650, 650)


def test_ctich_rows_and_files_that_do_not_match(tmp_path):
    root = tmp_path / "ctich"
    for number in (1, 2, 3):
        _write_png(root / "Patients_CT" / "007" / "brain" / f"{number}.jpg")
    (root / "hemorrhage_diagnosis.csv").write_text(
        "\ufeffPatientNumber,SliceNumber,Intraventricular,Intraparenchymal,Subarachnoid,"
        "Epidural,Subdural,No_Hemorrhage,Fracture_Yes_No\r\n"
        "7,1,0,0,0,1,0,0,0\r\n7,2,0,0,0,0,0,1,0\r\n7,4,0,0,0,0,0,1,0\r\n"
    )
    with pytest.warns(UserWarning, match="Skipped 2"):
        dataset = scans.load(root)
    assert dataset.table["label"].tolist() == [1, 0]
    reasons = {item.reason for item in dataset.skipped}
    assert any("no image at" in reason for reason in reasons)
    assert "no row in hemorrhage_diagnosis.csv" in reasons


def test_kaggle_csv_with_space_in_header_and_unpadded_ids(tmp_path):
    for index in range(4):
        _write_png(tmp_path / "head_ct" / "head_ct" / f"{index:03d}.png", value=50 * index)
    (tmp_path / "labels.csv").write_text("id, hemorrhage\n0,1\n1,0\n2,1\n3,0\n")
    dataset = scans.load(tmp_path)
    assert dataset.layout == "csv"
    assert dataset.table["label"].tolist() == [1, 0, 1, 0]
    assert any("no patient ids" in note for note in dataset.notes)


def test_csv_mismatch_reports_each_problem_by_name(bad_inputs):
    with pytest.warns(UserWarning, match="Skipped 3"):
        dataset = scans.load(bad_inputs / "datasets" / "csv-mismatch")
    assert sorted(p.rsplit("/", 1)[-1] for p in dataset.table["path"]) == ["000.png", "001.png"]
    skipped = {item.path.rsplit("/", 1)[-1]: item.reason for item in dataset.skipped}
    assert "maybe" in skipped["002.png"]
    assert skipped["003.png"] == "no label row in labels.csv"
    assert skipped["labels.csv (row '004')"] == "label row has no matching image file"


def test_csv_mismatch_strict_stops_at_the_first(bad_inputs):
    with pytest.raises(ScanReadError, match="002.png"):
        scans.load(bad_inputs / "datasets" / "csv-mismatch", strict=True)


def test_class_folders_and_patient_pattern(tmp_path):
    for patient in ("p1", "p2"):
        for index in range(3):
            _write_png(tmp_path / "Normal" / f"{patient}_{index}.png")
            _write_png(tmp_path / "hemorrhage" / f"{patient}_h{index}.png")
    dataset = scans.load(tmp_path, patient_pattern=r"(?P<patient>p\d)_")
    assert dataset.layout == "folders"
    assert sorted(dataset.table["patient_id"].unique()) == ["p1", "p2"]
    assert dataset.table["label"].sum() == 6
    assert not dataset.notes


def test_unknown_class_folder_names_the_fix(tmp_path):
    _write_png(tmp_path / "normal" / "a.png")
    _write_png(tmp_path / "bleeds" / "b.png")
    with pytest.raises(DatasetError, match=r"bleeds.*class_names=\{'bleeds': 0 or 1\}"):
        scans.load(tmp_path)
    dataset = scans.load(tmp_path, class_names={"bleeds": 1})
    assert sorted(dataset.table["label"]) == [0, 1]


def test_bad_images_inside_a_folder_are_skipped_and_listed(tmp_path, bad_inputs):
    _write_png(tmp_path / "normal" / "good.png")
    _write_png(tmp_path / "hemorrhage" / "good.png")
    (tmp_path / "hemorrhage" / "empty.png").write_bytes(b"")
    (tmp_path / "normal" / "page.jpg").write_bytes(
        (bad_inputs / "images/html-named.jpg").read_bytes()
    )
    with pytest.warns(UserWarning, match="Skipped 2 of 4"):
        dataset = scans.load(tmp_path)
    assert len(dataset) == 2
    assert {item.reason.split(" (")[0] for item in dataset.skipped} == {
        "empty file",
        "not an image",
    }
    with pytest.raises(ScanReadError, match="empty.png': empty file"):
        scans.load(tmp_path, strict=True)


def test_single_class_is_refused_before_training(bad_inputs):
    dataset = scans.load(bad_inputs / "datasets" / "single-class")
    with pytest.raises(DatasetError, match="one class only"):
        dataset.require_trainable()


def test_no_images_is_refused(bad_inputs):
    with pytest.raises(DatasetError, match="No images found"):
        scans.load(bad_inputs / "datasets" / "no-images")
