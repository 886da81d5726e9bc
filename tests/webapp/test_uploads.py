"""Reading uploads by content: every bad input gets its status and a message naming the file."""

from __future__ import annotations

import math
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


def test_zip_entry_count_is_limited(dicom_series, tmp_path):
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


# --- bombs: refused before more than the budget is written ------------------------------


def _written(folder: Path) -> int:
    """Bytes written into ``folder`` besides the saved upload itself."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and p.name != "upload")


@pytest.fixture(scope="module")
def zeros_zip(tmp_path_factory) -> Path:
    """1 GiB of zeros in one zip entry (about 4.7 MB packed), as in the issue."""
    path = tmp_path_factory.mktemp("bomb") / "zeros.zip"
    chunk = bytes(1 << 24)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("zeros.dcm", "w", force_zip64=True) as entry:
            for _ in range(64):
                entry.write(chunk)
    return path


def test_zip_bomb_is_refused_before_anything_is_written(zeros_zip, tmp_path):
    with pytest.raises(UploadError, match="unpacks to more than .* nothing was unpacked") as caught:
        _upload(zeros_zip, tmp_path)
    assert caught.value.status == 413 and "times its own" in str(caught.value)
    assert _written(tmp_path) == 0


def test_zip_over_the_byte_limit_is_refused_before_writing(dicom_series, tmp_path):
    with pytest.raises(UploadError, match="unpacks to more than 10000 bytes") as caught:
        _upload(dicom_series, tmp_path, UploadLimits(max_unzipped_bytes=10_000))
    assert caught.value.status == 413 and _written(tmp_path) == 0


def test_zip_declaring_less_than_it_holds_writes_no_more_than_declared(tmp_path):
    """The declared size is patched down to 1000 bytes; the entry holds 64 MiB."""
    path = tmp_path / "liar.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("scan.dcm", bytes(64 << 20))
    real = (64 << 20).to_bytes(4, "little")
    data = bytearray(path.read_bytes())
    assert data.count(real) == 2  # the local header and the central directory
    path.write_bytes(bytes(data).replace(real, (1000).to_bytes(4, "little")))
    with pytest.raises(UploadError, match="truncated or corrupt") as caught:
        _upload(path, tmp_path / "request")
    assert caught.value.status == 422
    assert _written(tmp_path / "request") <= 1000


def _nifti_gzip(path: Path, shape: tuple[int, ...], trailing_zeros: int = 0) -> Path:
    """A gzip-compressed NIfTI-1 header and zero voxels of ``shape``, streamed (never
    held in memory), with ``trailing_zeros`` more bytes after the volume."""
    import gzip

    header = nibabel.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.int16)
    header["vox_offset"] = 352
    n_bytes = math.prod(shape) * 2 + trailing_zeros
    with gzip.open(path, "wb", compresslevel=1) as file:
        file.write(header.binaryblock + b"\x00" * 4)
        while n_bytes > 0:
            file.write(bytes(min(n_bytes, 1 << 24)))
            n_bytes -= 1 << 24
    return path


def test_gzip_bombs_are_refused_before_anything_is_written(tmp_path):
    import gzip

    text = tmp_path / "zeros.nii.gz"
    with gzip.open(text, "wb", compresslevel=1) as file:
        for _ in range(64):
            file.write(bytes(1 << 24))  # 1 GiB of zeros: no NIfTI header
    with pytest.raises(UploadError, match="gzip-compressed, but not a NIfTI volume") as caught:
        _upload(text, tmp_path / "a")
    assert caught.value.status == 415 and _written(tmp_path / "a") == 0
    huge = _nifti_gzip(tmp_path / "huge.nii.gz", (512, 512, 100))
    with pytest.raises(UploadError, match="too large to decode safely") as caught:
        _upload(huge, tmp_path / "b", UploadLimits(max_voxels=512 * 512 * 50))
    assert caught.value.status == 413 and _written(tmp_path / "b") == 0
    blank = _nifti_gzip(tmp_path / "blank.nii.gz", (512, 512, 300))  # 157 MB of zeros
    with pytest.raises(UploadError, match="times its own .* nothing was unpacked") as caught:
        _upload(blank, tmp_path / "c")
    assert caught.value.status == 413 and _written(tmp_path / "c") == 0


def test_gzip_volume_is_unpacked_only_as_far_as_its_header_declares(tmp_path):
    volume = _nifti_gzip(tmp_path / "small.nii.gz", (64, 64, 8), trailing_zeros=1 << 26)
    upload = _upload(volume, tmp_path / "request")
    assert upload.kind == "scan" and len(upload.slices) == 8
    assert _written(tmp_path / "request") == 352 + 64 * 64 * 8 * 2


def test_truncated_gzip_volume_is_a_422(nifti_volume, tmp_path):
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(nifti_volume.read_bytes()[: nifti_volume.stat().st_size // 2])
    with pytest.raises(UploadError, match="'cut.nii.gz': truncated") as caught:
        _upload(path, tmp_path / "request")
    assert caught.value.status == 422


# --- messages name the client's files, never the server's ------------------------------


def _assert_no_server_names(text: str, folder: Path) -> None:
    assert str(folder) not in text and str(folder.resolve()) not in text
    for internal in ("'upload", "'entries'", "entry-0", "ichkit-upload"):
        assert internal not in text, text


def test_gzip_of_text_names_the_file_not_the_server_path(tmp_path):
    import gzip

    path = tmp_path / "text.nii.gz"
    path.write_bytes(gzip.compress(b"not a volume"))
    with pytest.raises(UploadError, match="'text.nii.gz'") as caught:
        _upload(path, tmp_path / "request")
    assert caught.value.status == 415
    _assert_no_server_names(str(caught.value), tmp_path)


def test_zip_without_a_readable_dicom_names_each_entry(dicom_folder, tmp_path):
    path = tmp_path / "broken.zip"
    first = next(dicom_folder.iterdir()).read_bytes()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("series/cut.dcm", first[:400])
        archive.writestr("series/notes.txt", "no scan here")
    with pytest.raises(UploadError, match="'broken.zip'") as caught:
        _upload(path, tmp_path / "request")
    message = str(caught.value)
    assert caught.value.status == 422
    assert "series/cut.dcm" in message and "series/notes.txt" in message
    _assert_no_server_names(message, tmp_path)


def test_duplicate_position_note_names_the_zip_entries(
    dicom_folder, series_zip_with_copy, tmp_path
):
    files = sorted(dicom_folder.iterdir())
    upload = _upload(series_zip_with_copy, tmp_path / "request")
    note = next(note for note in upload.notes if "same position" in note)
    assert f"series/{files[0].name}" in note and "series/copy.dcm" in note and "'dup.zip'" in note
    _assert_no_server_names(note, tmp_path)
    _assert_no_server_names(note, series_zip_with_copy.parent)
    assert "series/copy.dcm" in upload.names


def test_zipped_volume_errors_name_the_entry(tmp_path):
    import gzip

    path = tmp_path / "volume.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("scan/head.nii.gz", gzip.compress(b"not a volume"))
    with pytest.raises(UploadError, match="'volume.zip: scan/head.nii.gz'") as caught:
        _upload(path, tmp_path / "request")
    _assert_no_server_names(str(caught.value), tmp_path)


def test_without_server_paths_replaces_every_spelling(tmp_path):
    from ichkit.webapp.uploads import without_server_paths

    folder = tmp_path / "ichkit-upload-x1"
    folder.mkdir()
    entries = {"entry-00003": "series/IM-3.dcm"}
    text = (
        f"'{folder}/upload.nii.gz' and {folder.resolve()}/entries/entry-00003, "
        "(entry-00003, entry-00009.nii) in 'entries'; the entry 'a/entry-00003.dcm' "
        f"is the client's own name. Read {folder}/upload."
    )
    public = without_server_paths(text, folder, "scan.zip", entries)
    assert public == (
        "'scan.zip' and series/IM-3.dcm, (series/IM-3.dcm, scan.zip) in 'scan.zip'; the "
        "entry 'a/entry-00003.dcm' is the client's own name. Read scan.zip."
    )
