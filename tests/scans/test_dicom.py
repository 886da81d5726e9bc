"""One DICOM slice: Hounsfield units, padding, windows, compression, sniffing, bad files.

Real quirks come from ``../shared/data`` (skipped when absent); edge cases also run
on small synthetic slices written with pydicom (``write_slice`` in ``conftest.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydicom
import pytest

from ichkit.scans.dicom import PADDING_HU, is_dicom, read_dicom_slice
from ichkit.scans.errors import ScanReadError


def central_median(pixels: np.ndarray, half: int = 40) -> float:
    rows, columns = pixels.shape
    return float(
        np.median(
            pixels[rows // 2 - half : rows // 2 + half, columns // 2 - half : columns // 2 + half]
        )
    )


def test_ge_slice_is_hounsfield_with_padding_as_air(shared_data: Path):
    path = shared_data / "dicom" / "ge-head-ct" / "14.dcm"
    raw = pydicom.dcmread(path)
    assert raw.PixelPaddingValue == -1500 and raw.RescaleIntercept == 0
    assert raw.pixel_array.min() == -1500  # signed stored values, padding present

    image = read_dicom_slice(path)

    assert image.hounsfield is True
    assert image.path == str(path)
    assert image.pixels.dtype == np.float32 and image.pixels.ndim == 2
    assert image.window == (35.0, 100.0)
    assert image.pixels.min() == PADDING_HU  # padding became air, nothing below it
    assert np.mean(image.pixels <= -900) > 0.1  # air around the head
    assert 0 <= central_median(image.pixels) <= 80  # brain
    assert image.pixels.max() > 300  # skull


def test_philips_multi_valued_window_and_intercept(shared_data: Path):
    image = read_dicom_slice(shared_data / "dicom" / "philips-head-phantom" / "I110")

    assert image.window == (40.0, 80.0)  # stored as [40, 40] / [80, 80]
    assert image.pixels.min() >= -1024  # RescaleIntercept -1024 on unsigned 12-bit values
    assert np.mean(image.pixels <= -900) > 0.1
    assert 0 <= central_median(image.pixels) <= 80
    assert image.pixels.max() > 300


@pytest.mark.parametrize(
    ("name", "window"),
    [
        ("ID_000000e27.dcm", (40.0, 80.0)),  # explicit VR, '00040' / '00080'
        ("ID_0000aee4b.dcm", (36.0, 80.0)),  # implicit VR, '00036' / '00080'
        ("ID_0000f1657.dcm", (36.0, 80.0)),
    ],
)
def test_rsna_zero_padded_windows_in_both_vrs(shared_data: Path, name: str, window):
    image = read_dicom_slice(shared_data / "dicom" / "rsna-samples" / name)

    assert image.window == window
    assert -1100 < image.pixels.min() <= -900
    assert 0 <= central_median(image.pixels) <= 80
    assert image.pixels.max() > 300


def test_cq500_jpeg_lossless_decodes_with_padding_as_air(shared_data: Path):
    path = shared_data / "dicom" / "cq500-subset" / "CT000100.dcm"
    raw = pydicom.dcmread(path, stop_before_pixels=True)
    assert raw.file_meta.TransferSyntaxUID.is_compressed and raw.PixelPaddingValue == -2000

    image = read_dicom_slice(path)

    assert image.pixels.shape == (512, 512)
    assert image.window == (30.0, 300.0)
    assert image.pixels.min() == PADDING_HU  # -2000 stored would be -3024 HU
    assert 0 <= central_median(image.pixels) <= 80
    assert image.pixels.max() > 300


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("no-pixel-data.dcm", r"no pixel data"),
        ("truncated.dcm", r"truncated or corrupt DICOM \(pixel data has 261846 of 524288 bytes\)"),
        ("not-dicom.dcm", r"not DICOM"),
        (
            "unsupported-compression.dcm",
            r"compression not supported: MPEG2 Main Profile / Main Level "
            r"\(1\.2\.840\.10008\.1\.2\.4\.100\), a video transfer syntax; none is supported",
        ),
    ],
)
def test_bad_dicom_files_raise_with_reason_and_name(bad_inputs: Path, name: str, reason: str):
    path = bad_inputs / "dicom" / name
    with pytest.raises(ScanReadError, match=f"Cannot read '{re.escape(str(path))}': {reason}"):
        read_dicom_slice(path)


def test_missing_decoder_names_the_plugin_to_install(shared_data: Path, monkeypatch):
    class Unavailable:
        is_available = False
        missing_dependencies = ["pylibjpeg - requires pylibjpeg-libjpeg"]

    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda syntax: Unavailable())
    with pytest.raises(
        ScanReadError,
        match=r"compression not supported: JPEG Lossless.*\(1\.2\.840\.10008\.1\.2\.4\.70\); "
        r"no decoder installed, install pylibjpeg-libjpeg\. Run: pip install",
    ):
        read_dicom_slice(shared_data / "dicom" / "cq500-subset" / "CT000100.dcm")


def test_preamble_less_file_is_read(tmp_path: Path, write_slice):
    path = tmp_path / "IM0001"
    write_slice(path, preamble=False)
    assert pydicom.dcmread(path, force=True).preamble is None

    image = read_dicom_slice(path)

    assert np.all(image.pixels == 40.0)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        np.random.default_rng(0).bytes(4096),
        b"\x08\x00" + np.random.default_rng(1).bytes(4094),  # starts like a bare data set
        b"file,label\nIM0001,1\n",
    ],
    ids=["empty", "random", "random-group-0008", "csv"],
)
def test_empty_random_and_text_files_are_refused(tmp_path: Path, content: bytes):
    path = tmp_path / "suspect.dcm"
    path.write_bytes(content)
    reason = "empty file" if not content else "not DICOM"
    with pytest.raises(ScanReadError, match=f"'{re.escape(str(path))}': {reason}"):
        read_dicom_slice(path)


def test_missing_file_is_a_scan_read_error(tmp_path: Path):
    with pytest.raises(ScanReadError, match=r"absent\.dcm': no such file"):
        read_dicom_slice(tmp_path / "absent.dcm")


@pytest.mark.parametrize(
    ("signed", "intercept", "padding", "stored", "expected"),
    [
        # signed, intercept 0, one padding value (GE)
        (
            True,
            0.0,
            {"PixelPaddingValue": -2000},
            [-2000, -1999, 40, 1500],
            [PADDING_HU, -1999, 40, 1500],
        ),
        # a padding range [-2000, -1900]
        (
            True,
            0.0,
            {"PixelPaddingValue": -2000, "PixelPaddingRangeLimit": -1900},
            [-2000, -1950, -1900, -1899],
            [PADDING_HU, PADDING_HU, PADDING_HU, -1899],
        ),
        # unsigned with a high padding value: compared before rescaling
        (
            False,
            -1024.0,
            {"PixelPaddingValue": 4095},
            [4095, 0, 1064, 4094],
            [PADDING_HU, -1024, 40, 3070],
        ),
    ],
    ids=["value", "range", "unsigned"],
)
def test_padding_is_compared_on_stored_values(
    tmp_path: Path, write_slice, signed, intercept, padding, stored, expected
):
    path = tmp_path / "padded.dcm"
    write_slice(path, stored=np.array([stored]), signed=signed, intercept=intercept, **padding)

    image = read_dicom_slice(path)

    np.testing.assert_array_equal(image.pixels[0], np.array(expected, dtype=np.float32))


@pytest.mark.parametrize(
    ("elements", "window"),
    [
        ({"WindowCenter": "40", "WindowWidth": "80"}, (40.0, 80.0)),
        ({"WindowCenter": ["00040", "00700"], "WindowWidth": ["00080", "03200"]}, (40.0, 80.0)),
        ({"WindowCenter": "-600", "WindowWidth": "1500"}, (-600.0, 1500.0)),
        ({}, None),
        ({"WindowCenter": "40"}, None),
        ({"WindowCenter": "40", "WindowWidth": "0"}, None),
    ],
    ids=["single", "multi-zero-padded", "negative-center", "missing", "no-width", "zero-width"],
)
def test_window_from_header(tmp_path: Path, write_slice, elements, window):
    path = tmp_path / "window.dcm"
    write_slice(path, **elements)
    assert read_dicom_slice(path).window == window


def test_multi_frame_is_refused(tmp_path: Path, write_slice):
    path = tmp_path / "volume.dcm"
    write_slice(path, stored=np.zeros((2, 4, 4)), NumberOfFrames=2)
    with pytest.raises(ScanReadError, match=r"multi-frame DICOM \(2 frames\); only single-frame"):
        read_dicom_slice(path)


def test_dicomdir_is_refused(tmp_path: Path, write_dicomdir):
    path = tmp_path / "DIRFILE"
    write_dicomdir(path)
    with pytest.raises(
        ScanReadError, match=r"DIRFILE': a DICOMDIR \(directory records\), not an image"
    ):
        read_dicom_slice(path)


def test_is_dicom_sniffs_the_first_bytes_not_the_name(tmp_path: Path, write_slice, write_dicomdir):
    write_slice(tmp_path / "with-preamble.txt")
    write_slice(tmp_path / "IM0001", preamble=False)
    write_dicomdir(tmp_path / "DIRFILE")
    (tmp_path / "dicm-then-garbage").write_bytes(bytes(128) + b"DICM" + b"\xff" * 64)
    (tmp_path / "random.dcm").write_bytes(np.random.default_rng(0).bytes(4096))
    (tmp_path / "labels.dcm").write_text("file,label\nIM0001,1\n")
    (tmp_path / "empty.dcm").write_bytes(b"")

    found = {path.name: is_dicom(path) for path in sorted(tmp_path.iterdir())}

    assert found == {
        "DIRFILE": True,
        "IM0001": True,
        "dicm-then-garbage": True,  # a sniff, not a parse: read_dicom_slice still checks
        "empty.dcm": False,
        "labels.dcm": False,
        "random.dcm": False,
        "with-preamble.txt": True,
    }
    assert not is_dicom(tmp_path / "absent.dcm") and not is_dicom(tmp_path)
