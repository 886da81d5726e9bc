"""One decoding budget for every reader (scans/budget.py): claims refused before decoding.

Images (every PIL format read), DICOM in every transfer syntax, NIfTI: a header that
claims more than the budget is refused from the header, fast and without memory
growth; nonsense headers, broken rescales, complex and infinite voxels get a reason;
the NIfTI volume cache never holds more than one volume per thread.
"""

from __future__ import annotations

import gc
import re
import struct
import threading
import time
import tracemalloc
import warnings
import weakref
import zlib
from pathlib import Path

import nibabel
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom import uid
from pydicom.encaps import encapsulate

from ichkit import scans
from ichkit.scans import ScanReadError, read_dicom_slice, read_image
from ichkit.scans.budget import (
    DEFAULT_BUDGET,
    DecodeBudget,
    check_claimed_size,
    current_budget,
    set_default_budget,
    using_budget,
)
from ichkit.scans.nifti import clear_volume_cache, read_nifti_slice, read_nifti_volume

TINY = DecodeBudget(max_pixels_per_slice=100, max_voxels=1000, max_decoded_bytes=10**6)


def _never_decode(monkeypatch) -> None:
    """Make any decoding (PIL ``load``, pydicom ``pixel_array``) fail the test."""

    def never(*args, **kwargs):
        raise AssertionError("decoded pixels of a file that claims too much")

    monkeypatch.setattr(Image.Image, "load", never)
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(never))


# --- the budget itself --------------------------------------------------------------


def test_budget_checks_its_own_limits():
    with pytest.raises(ValueError, match=r"'max_voxels' parameter of DecodeBudget .* >= 1"):
        DecodeBudget(max_voxels=0)
    with pytest.raises(TypeError, match="DecodeBudget"):
        DecodeBudget(max_pixels_per_slice=1.5)


def test_the_message_says_the_claim_and_the_limit():
    with pytest.raises(
        ScanReadError,
        match=r"'x.dcm': too large to decode safely: claims 16384x16384 pixels \(268 M\) "
        r"per slice, over the limit of 67 M; not decoded",
    ):
        check_claimed_size("x.dcm", rows=16384, columns=16384, bytes_per_pixel=2)
    with pytest.raises(ScanReadError, match=r"512x512 pixels x 2000 frames \(524 M voxels\)"):
        check_claimed_size("v.nii", rows=512, columns=512, n_frames=2000)
    with pytest.raises(ScanReadError, match=r"decode to 1,536 MiB, over the limit of 1,024 MiB"):
        check_claimed_size("f.dcm", rows=8192, columns=8192, n_frames=3, bytes_per_pixel=8)
    with pytest.raises(ScanReadError, match=r"invalid header: claims 0x512 pixels"):
        check_claimed_size("e.dcm", rows=0, columns=512)
    check_claimed_size("ok.dcm", rows=512, columns=512, n_frames=300, bytes_per_pixel=2)


def test_scoped_and_process_budgets(tmp_path):
    assert current_budget() is DEFAULT_BUDGET
    with using_budget(TINY):
        assert current_budget() is TINY
        seen = []
        thread = threading.Thread(target=lambda: seen.append(current_budget()))
        thread.start()
        thread.join()
        assert seen == [DEFAULT_BUDGET]  # a using_budget block is this thread's only
    assert current_budget() is DEFAULT_BUDGET
    previous = set_default_budget(TINY)
    try:
        assert previous is DEFAULT_BUDGET and current_budget() is TINY
    finally:
        set_default_budget(previous)
    with pytest.raises(TypeError, match="must be a DecodeBudget"):
        set_default_budget({"max_voxels": 5})


# --- images -------------------------------------------------------------------------


def _png_claiming(path: Path, width: int, height: int) -> Path:
    """A 1x1 PNG whose IHDR is rewritten to claim ``width`` x ``height`` (CRC fixed)."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = struct.pack(">II", width, height) + data[24:29]
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    path.write_bytes(bytes(data))
    return path


def test_png_claiming_more_than_the_budget_is_refused_unread(tmp_path, monkeypatch):
    path = _png_claiming(tmp_path / "claims.png", 9000, 8000)  # 72 M: under PIL's own alarm
    _never_decode(monkeypatch)
    with pytest.raises(ScanReadError, match=r"claims 8000x9000 pixels \(72 M\) per slice"):
        read_image(path)


@pytest.mark.parametrize("format", ["PNG", "JPEG", "TIFF", "BMP", "GIF", "WEBP"])
def test_every_image_format_is_measured_before_decoding(tmp_path, monkeypatch, format):
    path = tmp_path / f"slice.{format.lower()}"
    Image.new("L", (40, 30), 90).save(path, format=format)
    assert read_image(path).pixels.shape == (30, 40)
    _never_decode(monkeypatch)
    with pytest.raises(ScanReadError, match=r"too large to decode safely: claims 30x40"):
        read_image(path, budget=TINY)
    with using_budget(TINY), pytest.raises(ScanReadError, match="claims 30x40"):
        read_image(path)
    with pytest.raises(ScanReadError, match="over the limit of 1,000"):
        read_image(path, max_pixels=1000)  # the former signature still works


@pytest.mark.parametrize("format", ["GIF", "TIFF", "WEBP"])
def test_multi_frame_images_are_refused(tmp_path, format):
    frames = [Image.new("L", (16, 16), value) for value in (0, 120, 240)]
    path = tmp_path / f"animated.{format.lower()}"
    frames[0].save(path, format=format, save_all=True, append_images=frames[1:])
    with pytest.raises(ScanReadError, match=rf"multi-frame image \({format}, 3 frames\)"):
        read_image(path)


def test_formats_not_read_as_slices_are_not_images(tmp_path):
    path = tmp_path / "icon.png"
    Image.new("L", (16, 16)).save(path, format="TGA")
    with pytest.raises(ScanReadError, match="not an image"):
        read_image(path)


# --- DICOM --------------------------------------------------------------------------


def _rle_bomb(path: Path, write_slice, n: int = 16384) -> Path:
    """An 8 MB RLE DICOM claiming n x n 16-bit pixels (the acceptance check's bomb)."""
    write_slice(path)
    dataset = pydicom.dcmread(path)
    segment = b"\x81\x00" * (n * n // 128)  # runs of 128 zeros
    frame = struct.pack("<16I", 2, 64, 64 + len(segment), *([0] * 13)) + segment + segment
    dataset.Rows = dataset.Columns = n
    dataset.PixelData = encapsulate([frame])
    dataset["PixelData"].VR = "OB"
    dataset["PixelData"].is_undefined_length = True
    dataset.file_meta.TransferSyntaxUID = uid.RLELossless
    dataset.save_as(path, enforce_file_format=True)
    return path


def test_rle_dicom_claiming_16384_squared_is_refused_fast_and_small(tmp_path, write_slice):
    path = _rle_bomb(tmp_path / "rle16384.dcm", write_slice)
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(
            ScanReadError, match=r"too large to decode safely: claims 16384x16384 pixels"
        ):
            read_dicom_slice(path)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 2
    assert peak < 50 * 2**20  # the file is 8 MB; decoding it would take 512 MB


def test_rle_bomb_is_skipped_by_the_loader_without_decoding(tmp_path, write_slice, monkeypatch):
    _rle_bomb(tmp_path / "series" / "bomb.dcm", write_slice, n=10000)
    write_slice(tmp_path / "series" / "good.dcm", position=(0.0, 0.0, 5.0), instance=2)
    with pytest.warns(UserWarning, match="bomb.dcm"):
        dataset = scans.load(tmp_path / "series", kind="dicom")
    assert len(dataset) == 1
    assert dataset.skipped[0].reason.startswith("too large to decode safely: claims 10000x10000")


def _deflated(path: Path, write_slice, pixel_data: bytes | None = None) -> Path:
    write_slice(path)
    dataset = pydicom.dcmread(path)
    if pixel_data is not None:
        dataset.PixelData = pixel_data
    dataset.file_meta.TransferSyntaxUID = uid.DeflatedExplicitVRLittleEndian
    dataset.save_as(path, enforce_file_format=True)
    return path


def test_deflated_data_set_is_measured_before_pydicom_inflates_it(tmp_path, write_slice):
    small = _deflated(tmp_path / "small.dcm", write_slice)
    assert np.all(read_dicom_slice(small).pixels == 40.0)  # a normal deflated slice reads
    bomb = _deflated(tmp_path / "bomb.dcm", write_slice, bytes(4 * 10**6))
    assert bomb.stat().st_size < 20_000
    with pytest.raises(
        ScanReadError, match=r"too large to decode safely: the deflated data set inflates to more"
    ):
        read_dicom_slice(bomb, budget=TINY)


def _sof(marker: int, rows: int, columns: int, precision: int = 16) -> bytes:
    """A JPEG / JPEG-LS stream start: SOI, then a frame header (SOF) for one component."""
    segment = struct.pack(">HBHHB3B", 11, precision, rows, columns, 1, 1, 0x11, 0)
    return b"\xff\xd8" + struct.pack(">H", marker) + segment + b"\x00" * 64


def _siz(rows: int, columns: int, precision: int = 16) -> bytes:
    """A JPEG 2000 codestream start: SOC, then a SIZ segment for one component."""
    siz = struct.pack(">HH8IH3B", 41, 0, columns, rows, 0, 0, columns, rows, 0, 0, 1,
                      precision - 1, 1, 1)  # fmt: skip
    return b"\xff\x4f\xff\x51" + siz + b"\x00" * 64


CODESTREAMS = {
    "jpeg-baseline": (uid.JPEGBaseline8Bit, lambda r, c: _sof(0xFFC0, r, c, precision=8)),
    "jpeg-lossless": (uid.JPEGLosslessSV1, lambda r, c: _sof(0xFFC3, r, c)),
    "jpeg-ls": (uid.JPEGLSLossless, lambda r, c: _sof(0xFFF7, r, c)),
    "jpeg-2000": (uid.JPEG2000Lossless, _siz),
}


def _encapsulated(path: Path, write_slice, syntax, codestream: bytes, rows: int, columns: int):
    write_slice(path)
    dataset = pydicom.dcmread(path)
    dataset.Rows, dataset.Columns = rows, columns
    dataset.PixelData = encapsulate([codestream])
    dataset["PixelData"].VR = "OB"
    dataset["PixelData"].is_undefined_length = True
    dataset.file_meta.TransferSyntaxUID = syntax
    dataset.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("name", list(CODESTREAMS))
def test_compressed_header_claiming_too_much_is_refused(tmp_path, write_slice, monkeypatch, name):
    syntax, make = CODESTREAMS[name]
    path = _encapsulated(tmp_path / f"{name}.dcm", write_slice, syntax, make(8, 8), 16384, 16384)
    _never_decode(monkeypatch)
    with pytest.raises(ScanReadError, match=r"claims 16384x16384 pixels \(268 M\) per slice"):
        read_dicom_slice(path)


@pytest.mark.parametrize("name", list(CODESTREAMS))
def test_codestream_claiming_more_than_its_header_is_refused(
    tmp_path, write_slice, monkeypatch, name
):
    # The decoders allocate what the codestream says, whatever Rows and Columns say.
    syntax, make = CODESTREAMS[name]
    path = _encapsulated(tmp_path / f"{name}.dcm", write_slice, syntax, make(60000, 50000), 8, 8)
    _never_decode(monkeypatch)
    with pytest.raises(ScanReadError, match=r"claims 60000x50000 pixels \(3,000 M\) per slice"):
        read_dicom_slice(path)


@pytest.mark.parametrize(
    ("elements", "reason"),
    [
        ({"Rows": 0}, r"invalid header: Rows 0, Columns 8; an image has at least 1 of each"),
        ({"Columns": 0}, r"invalid header: Rows 8, Columns 0"),
        (
            {"BitsAllocated": 12},
            r"invalid header: BitsAllocated 12 for PixelData; must be "
            r"1, 8, 16, 32 or 64",
        ),  # fmt: skip
        ({"BitsStored": 20}, r"invalid header: BitsStored 20 with BitsAllocated 16"),
    ],
    ids=["rows-0", "columns-0", "bits-allocated-12", "bits-stored-20"],
)
def test_nonsense_pixel_headers_are_refused(tmp_path, write_slice, monkeypatch, elements, reason):
    path = tmp_path / "nonsense.dcm"
    write_slice(path, **elements)
    _never_decode(monkeypatch)
    with pytest.raises(ScanReadError, match=f"'{re.escape(str(path))}': {reason}"):
        read_dicom_slice(path)


@pytest.mark.parametrize(
    ("slope", "intercept", "reason"),
    [
        (
            "1e308",
            "-1024",
            r"RescaleSlope 1e\+308 \(RescaleIntercept -1024\) gives Hounsfield "
            r"values from .* to inf, outside any CT range",
        ),  # fmt: skip
        ("1", "1e12", r"RescaleSlope 1 \(RescaleIntercept 1e\+12\) gives Hounsfield values"),
    ],
    ids=["slope-1e308", "intercept-1e12"],
)
def test_absurd_rescale_is_refused_never_inf(tmp_path, write_slice, slope, intercept, reason):
    path = tmp_path / "rescale.dcm"
    write_slice(path)
    dataset = pydicom.dcmread(path)
    dataset.RescaleSlope, dataset.RescaleIntercept = slope, intercept
    dataset.save_as(path, enforce_file_format=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # numpy's overflow, on purpose
        with pytest.raises(ScanReadError, match=reason):
            read_dicom_slice(path)


def test_extended_but_real_hounsfield_ranges_still_read(tmp_path, write_slice):
    path = tmp_path / "metal.dcm"
    write_slice(path, stored=np.array([[0, 31000]]), intercept=-1024.0)  # dense metal
    assert read_dicom_slice(path).pixels.max() == 31000 - 1024


# --- NIfTI --------------------------------------------------------------------------


def _save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return path


def test_nifti_header_claiming_too_many_voxels_is_refused_before_reading(tmp_path):
    header = nibabel.Nifti1Header()
    header.set_data_dtype(np.int16)
    header.set_data_shape((2000, 2000, 2000))
    path = tmp_path / "claims.nii"
    path.write_bytes(header.binaryblock + b"\x00" * 4)  # the header alone: 8 GB claimed
    _save(tmp_path / "good.nii.gz", np.zeros((4, 4, 2), np.float32))
    with pytest.raises(
        ScanReadError, match=r"too large to decode safely: claims 2000x2000 pixels x 2000 frames"
    ):
        read_nifti_volume(path)
    with pytest.warns(UserWarning, match="claims.nii"):
        dataset = scans.load(tmp_path, kind="nifti", verify=False)
    assert dataset.skipped[0].reason.startswith("too large to decode safely")


def test_complex_nifti_is_refused(tmp_path):
    path = _save(tmp_path / "complex.nii.gz", np.ones((4, 4, 3), np.complex64))
    with pytest.raises(ScanReadError, match=r"complex-valued voxels \(complex64\)"):
        read_nifti_volume(path)


def test_infinite_voxels_become_air_and_are_reported(tmp_path):
    data = np.zeros((6, 6, 4), np.float32)
    data[1, 1, 2], data[2, 2, 2], data[3, 3, 3] = np.inf, -np.inf, np.nan
    path = _save(tmp_path / "inf.nii.gz", data)
    slices, n_filled = read_nifti_volume(path)
    assert n_filled == 3 and np.isfinite(slices).all()
    with pytest.warns(UserWarning, match=r"1 NaN and 2 infinite voxels on slice\(s\) 2, 3"):
        dataset = scans.load(path)
    assert all(np.isfinite(dataset.read(index).pixels).all() for index in range(len(dataset)))


def test_infinite_scaling_never_yields_infinite_pixels(tmp_path):
    image = nibabel.Nifti1Image(np.full((4, 4, 2), 30000, np.int16), np.eye(4))
    image.header.set_slope_inter(1e38, 0)  # overflows float32: inf once scaled
    nibabel.save(image, tmp_path / "scaled.nii")
    assert np.isfinite(read_nifti_slice(tmp_path / "scaled.nii", frame=0).pixels).all()


def test_volume_cache_holds_one_volume_and_clears(tmp_path):
    first = _save(tmp_path / "a.nii.gz", np.zeros((8, 8, 3), np.float32))
    second = _save(tmp_path / "b.nii.gz", np.ones((8, 8, 3), np.float32))
    slices, _ = read_nifti_volume(first)
    held = weakref.ref(slices.base if slices.base is not None else slices)
    del slices
    assert read_nifti_slice(first, frame=1).pixels.max() == 0
    assert held() is not None  # kept for the next slice of the same volume
    one_slice = read_nifti_slice(second, frame=0)
    gc.collect()
    assert held() is None  # reading another volume let the first one go
    assert not np.shares_memory(one_slice.pixels, read_nifti_volume(second)[0])
    slices, _ = read_nifti_volume(second)
    held = weakref.ref(slices.base if slices.base is not None else slices)
    del slices
    clear_volume_cache()
    gc.collect()
    assert held() is None


def test_volume_cache_notices_a_rewritten_file(tmp_path):
    path = _save(tmp_path / "upload.nii", np.zeros((4, 4, 2), np.float32))
    assert read_nifti_slice(path, frame=0).pixels.max() == 0
    _save(path, np.full((4, 4, 3), 7, np.float32))  # same path, new content (a reused name)
    assert read_nifti_slice(path, frame=2).pixels.max() == 7


def test_headers_only_counts_axial_slices_of_a_reoriented_volume(tmp_path):
    # Stored with the axial axis first: 5 axial slices, though shape[2] is 7.
    affine = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
    path = _save(tmp_path / "sagittal.nii.gz", np.zeros((5, 6, 7), np.float32), affine)
    assert len(scans.load(path, verify=False)) == len(scans.load(path)) == 5


# --- no false refusals on real data -------------------------------------------------

#: Slices per real data set and what was skipped, measured before the budget existed.
REAL_DATA = {
    "ct-ich-dev": 605,
    "rsna-course-dev": 1200,
    "dicom/cq500-subset": 40,
    "dicom/ge-head-ct": 28,
    "dicom/philips-head-phantom": 28,
    "dicom/rsna-samples": 3,
}


@pytest.mark.parametrize("name", list(REAL_DATA))
def test_every_real_slice_still_reads(shared_data, name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dataset = scans.load(shared_data / name, verify=True)
    assert (len(dataset), dataset.skipped) == (REAL_DATA[name], [])
