"""scans.load: layout detection and the errors a user meets first."""

import re

import numpy as np
import pytest
from PIL import Image

from ichkit import scans


def test_detects_each_real_layout(shared_data):
    assert scans.detect_layout(shared_data / "ct-ich-dev") == "ctich"
    assert scans.detect_layout(shared_data / "dicom" / "philips-head-phantom") == "dicom"
    assert scans.detect_layout(shared_data / "bad-inputs" / "nifti") == "nifti"
    assert scans.detect_layout(shared_data / "bad-inputs" / "datasets" / "csv-mismatch") == "csv"
    assert (
        scans.detect_layout(shared_data / "bad-inputs" / "datasets" / "single-class") == "folders"
    )


def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        scans.load(tmp_path / "nowhere")


def test_unknown_kind_suggests_the_closest(tmp_path):
    with pytest.raises(ValueError, match="Did you mean 'dicom'"):
        scans.load(tmp_path, kind="dicm")


def test_everything_unreadable_is_refused(tmp_path):
    (tmp_path / "normal").mkdir()
    (tmp_path / "normal" / "a.png").write_bytes(b"")
    with pytest.warns(UserWarning):
        with pytest.raises(scans.DatasetError, match="all 1 files were skipped"):
            scans.load(tmp_path)


def test_several_csvs_need_a_choice(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "0.png")
    (tmp_path / "a.csv").write_text("id,label\n0,1\n")
    (tmp_path / "b.csv").write_text("id,label\n0,0\n")
    with pytest.raises(scans.DatasetError, match="pass labels="):
        scans.load(tmp_path)
    assert scans.load(tmp_path, labels=tmp_path / "b.csv").table["label"].tolist() == [0]


def test_inspect_reports_the_required_keys(shared_data):
    summary = scans.inspect(scans.load(shared_data / "ct-ich-dev"))
    for key in ("layout", "n_slices", "n_patients", "n_scans", "n_positive", "skipped"):
        assert key in summary
    assert summary["image_sizes"] == {"650x650": 605}
    assert summary["subtypes"]["epidural"] > 0


def test_detects_dicom_without_preamble_or_extension(tmp_path, write_slice):
    write_slice(tmp_path / "IM0001", preamble=False)

    assert scans.detect_layout(tmp_path) == "dicom"
    assert scans.detect_layout(tmp_path / "IM0001") == "dicom"
    assert len(scans.load(tmp_path)) == 1


def test_refusal_names_each_file_up_to_ten_then_counts_the_rest(tmp_path):
    (tmp_path / "normal").mkdir()
    for index in range(12):
        (tmp_path / "normal" / f"empty{index:02d}.png").write_bytes(b"")
    (tmp_path / "normal" / "page.png").write_text("<html>not an image</html>")
    with pytest.warns(UserWarning), pytest.raises(scans.DatasetError) as caught:
        scans.load(tmp_path)
    message = str(caught.value)
    assert "all 13 files were skipped: " in message
    named = re.findall(r"'[^']*/(\w+\.png)': ([^;]+)", message)
    assert len(named) == 10 and len({name for name, _ in named}) == 10
    assert all(reason.startswith(("empty file", "not an image")) for _, reason in named)
    assert re.search(r"; and 3 more \(.*\(\d\)\)\.$", message)


def test_skip_warning_names_each_file_with_its_reason(tmp_path):
    for name in ("a", "b"):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / f"{name}.png")
    (tmp_path / "c.png").write_bytes(b"")
    (tmp_path / "labels.csv").write_text("id,label\na,0\nb,1\nc,1\nd,0\n")
    with pytest.warns(UserWarning, match="Skipped 2 of") as record:
        scans.load(tmp_path)
    message = str(record[0].message)
    assert re.search(r"'[^']*c\.png': empty file", message)
    orphan = r"'[^']*labels\.csv \(row 'd'\)': label row has no matching image file"
    assert re.search(orphan, message)
