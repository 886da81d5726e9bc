"""Reading uploads by content: every bad input gets its status and a message naming the file."""

from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path

import nibabel
import numpy as np
import pytest

from ichkit.webapp.uploads import UploadError, UploadLimits, read_upload


def _upload(source: Path, folder: Path, limits: UploadLimits | None = None):
    """Copy ``source`` into its own folder as the server saves it, and read it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "upload"
    shutil.copyfile(source, path)
    return read_upload(path, source.name, limits)


BAD_IMAGES = [
    ("images/zero-byte.png", 400, "is empty"),
    ("images/truncated.png", 422, "truncated"),
    ("images/truncated.jpg", 422, "truncated"),
    ("images/not-an-image.png", 415, "is not a PNG or JPEG slice"),
    ("images/html-named.jpg", 415, "is not a PNG or JPEG slice"),
    ("images/decompression-bomb.png", 413, "too large to decode safely"),
    ("dicom/no-pixel-data.dcm", 422, "no pixel data"),
    ("dicom/truncated.dcm", 422, "truncated or corrupt"),
    ("dicom/not-dicom.dcm", 415, "is not a PNG or JPEG slice"),
    ("dicom/unsupported-compression.dcm", 422, "compression not supported"),
    ("archives/path-climbing.zip", 400, "points outside the zip's folder"),
]


@pytest.mark.parametrize(("name", "status", "reason"), BAD_IMAGES)
def test_bad_inputs_get_their_status_and_name_the_file(bad_inputs, tmp_path, name, status, reason):
    source = bad_inputs / name
    with pytest.raises(UploadError, match=reason) as caught:
        _upload(source, tmp_path / "request")
    assert caught.value.status == status
    assert f"'{source.name}'" in str(caught.value)
    assert str(tmp_path) not in str(caught.value)  # no server path leaks


def test_path_climbing_zip_writes_nothing(bad_inputs, tmp_path):
    with pytest.raises(UploadError):
        _upload(bad_inputs / "archives/path-climbing.zip", tmp_path / "a" / "b" / "request")
    assert not list(tmp_path.rglob("escaped.txt"))
    assert sorted(p.name for p in (tmp_path / "a" / "b" / "request").iterdir()) == ["upload"]


@pytest.mark.parametrize("name", ["valid-16bit.png", "valid-rgba.png", "valid-1x1.png"])
def test_valid_odd_images_are_one_slice(bad_inputs, tmp_path, name):
    upload = _upload(bad_inputs / "images" / name, tmp_path)
    assert upload.kind == "slice" and len(upload.slices) == 1
    assert upload.slices[0].pixels.ndim == 2 and upload.names == [name]


def test_nan_voxels_are_handled_and_reported(bad_inputs, tmp_path):
    upload = _upload(bad_inputs / "nifti/nan-voxels.nii.gz", tmp_path)
    assert upload.kind == "scan" and len(upload.slices) == 8
    assert not any(np.isnan(image.pixels).any() for image in upload.slices)
    assert any("NaN voxels" in note and "nan-voxels.nii.gz" in note for note in upload.notes)


def test_dicom_series_zip_is_one_ordered_scan(dicom_series, tmp_path):
    upload = _upload(dicom_series, tmp_path)
    assert upload.kind == "scan" and len(upload.slices) == 8
    assert all(name.startswith("series/IM-") for name in upload.names)
    assert all(image.hounsfield for image in upload.slices)


def test_dicom_slice_and_nifti_volume(dicom_folder, nifti_volume, tmp_path):
    one = _upload(next(dicom_folder.iterdir()), tmp_path / "a")
    assert one.kind == "slice" and one.slices[0].hounsfield
    volume = _upload(nifti_volume, tmp_path / "b")
    assert volume.kind == "scan" and volume.names[:2] == ["slice 0", "slice 1"]


def test_zip_of_two_series_is_refused(dicom_folder, tmp_path):
    path = tmp_path / "two.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for folder in sorted(dicom_folder.parent.parent.parent.rglob("series-*")):
            for file in folder.iterdir():
                archive.write(file, f"{folder.parent.name}/{file.name}")
    with pytest.raises(UploadError, match="holds 2 series") as caught:
        _upload(path, tmp_path / "request")
    assert caught.value.status == 422


def test_zip_without_scans_and_corrupt_zip(tmp_path):
    path = tmp_path / "text.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "no scan here")
    with pytest.raises(UploadError, match="holds no DICOM file") as caught:
        _upload(path, tmp_path / "a")
    assert caught.value.status == 415
    path.write_bytes(path.read_bytes()[:30])
    with pytest.raises(UploadError, match="corrupt zip") as caught:
        _upload(path, tmp_path / "b")
    assert caught.value.status == 422


def test_zip_limits_count_bytes_as_they_come_out(dicom_series, tmp_path):
    small = UploadLimits(max_unzipped_bytes=10_000)
    with pytest.raises(UploadError, match="unpacks to more than 10000 bytes") as caught:
        _upload(dicom_series, tmp_path / "a", small)
    assert caught.value.status == 413
    with pytest.raises(UploadError, match="holds 8 files; at most 3") as caught:
        _upload(dicom_series, tmp_path / "b", UploadLimits(max_zip_entries=3))
    assert caught.value.status == 413


def test_zip_symlinks_are_not_followed(dicom_series, tmp_path):
    path = tmp_path / "link.zip"
    shutil.copyfile(dicom_series, path)
    with zipfile.ZipFile(path, "a") as archive:
        link = zipfile.ZipInfo("series/passwd")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    upload = _upload(path, tmp_path / "request")
    assert len(upload.slices) == 8 and "series/passwd" not in upload.names


def test_volume_limits_come_from_the_header(nifti_volume, tmp_path):
    with pytest.raises(UploadError, match="too large to decode safely") as caught:
        _upload(nifti_volume, tmp_path / "a", UploadLimits(max_voxels=1000))
    assert caught.value.status == 413
    four_d = tmp_path / "4d.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.zeros((8, 8, 4, 2), np.float32), np.eye(4)), four_d)
    with pytest.raises(UploadError, match="one 3-D scan") as caught:
        _upload(four_d, tmp_path / "b")
    assert caught.value.status == 422
    with pytest.raises(UploadError, match="at most 3 are read"):
        _upload(nifti_volume, tmp_path / "c", UploadLimits(max_slices=3))


def test_pickle_is_never_loaded(tmp_path, monkeypatch):
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("an upload was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(UploadError, match="is not a PNG or JPEG slice") as caught:
        _upload(path, tmp_path / "request")
    assert caught.value.status == 415
