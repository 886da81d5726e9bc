"""The plausibility gate: nonsense refused with its reason; real slices and the phantom not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ichkit import scans
from ichkit.scans import SliceImage, check_scan, check_slice, read_dicom_slice, read_image
from ichkit.scans.inspect import format_inspection
from ichkit.scans.phantom import make_phantom_scan, write_phantom

#: rsna-course-dev PNGs that hold no head, checked by eye: all black (the export's
#: window left nothing), or only the arcs of a headrest or table (slices beyond the
#: head). The gate may refuse these and no other slice of the data set.
RSNA_WITHOUT_HEAD = {
    # all black
    "ID_30cc50784", "ID_4bb98a6eb", "ID_853886f7e", "ID_92f2573ab", "ID_b2480ba22",
    "ID_d312a6608", "ID_df5ed5c36", "ID_eabbfa602", "ID_ed568579d", "ID_f44ab75d4",
    "ID_f44ddf237",
    # a headrest's or table's arcs only
    "ID_084ffa2d5", "ID_2f0f46c08", "ID_45461fcda", "ID_48f3de41a", "ID_4b83a29c2",
    "ID_4e8164fe4", "ID_5d6e0d115", "ID_8caff5bb1", "ID_8d9083552", "ID_af458b45b",
    "ID_af8406d1e", "ID_bf03cd1ee", "ID_d5638488b", "ID_d9a1c9c81", "ID_ec6c1ec7e",
    "ID_efcb17d6b",
}  # fmt: skip


def _phantom_slice(size: int = 128, *, level: float = 0.5) -> np.ndarray:
    """Hounsfield units of one phantom slice, ``level`` of the way up the head."""
    scan = make_phantom_scan(3, size=size, n_slices=12)
    return scan.hu[int(level * (len(scan.hu) - 1))].astype(np.float32)


def _grey(pixels: np.ndarray) -> SliceImage:
    return SliceImage(np.asarray(pixels, dtype=np.float32), hounsfield=False)


def _hounsfield(pixels: np.ndarray) -> SliceImage:
    return SliceImage(np.asarray(pixels, dtype=np.float32), hounsfield=True)


def _headrest_arcs(size: int = 512) -> np.ndarray:
    """A slice beyond the head: only the thin U of a headrest, as in rsna-course-dev."""
    rows, columns = np.mgrid[:size, :size]
    radius = np.hypot(rows - size * 0.5, columns - size * 0.5)
    arc = (np.abs(radius - size * 0.35) < 2) & (rows > size * 0.5)
    sides = (np.abs(np.abs(columns - size * 0.5) - size * 0.35) < 2) & (rows <= size * 0.5)
    return np.where(arc | sides, 255.0, 0.0)


# --- nonsense, one class at a time ------------------------------------------------------


def test_a_1x1_png_is_too_small(tmp_path):
    Image.new("L", (1, 1), 128).save(tmp_path / "one.png")
    assert check_slice(read_image(tmp_path / "one.png")) == (
        "too small (1x1 pixels; a CT slice is at least 32x32)"
    )


def test_a_black_cmyk_jpeg_and_a_black_png_are_constant(tmp_path):
    Image.new("CMYK", (512, 512), (0, 0, 0, 255)).save(tmp_path / "black.jpg")
    Image.new("L", (512, 512), 0).save(tmp_path / "black.png")
    for name in ("black.jpg", "black.png"):
        assert check_slice(read_image(tmp_path / name)) == "constant image (every pixel is 0)"


def test_a_black_8192_square_is_constant():
    image = SliceImage(np.zeros((8192, 8192), dtype=np.uint8), hounsfield=False)
    assert check_slice(image).startswith("constant image")


def test_a_3x9000_png_has_an_extreme_aspect_ratio(tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (9000, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "thin.png")
    reason = check_slice(read_image(tmp_path / "thin.png"))
    assert reason.startswith("extreme aspect ratio (9000x3 pixels")


@pytest.mark.parametrize("kind", ["uniform grey", "gaussian grey", "hounsfield"])
def test_random_noise_has_no_image_structure(kind):
    random = np.random.default_rng(1)
    pixels = {
        "uniform grey": lambda: random.integers(0, 256, (512, 512)),
        "gaussian grey": lambda: np.clip(random.normal(128, 40, (512, 512)), 0, 255),
        "hounsfield": lambda: random.integers(-1024, 2000, (512, 512)),
    }[kind]()
    image = _hounsfield(pixels) if kind == "hounsfield" else _grey(pixels)
    assert check_slice(image).startswith("no image structure")


def test_non_finite_values_are_refused_in_a_slice_and_in_a_scan():
    head = _phantom_slice()
    overflowed = head.copy()
    overflowed[head > 0] = np.inf  # a RescaleSlope of 1e308 on every pixel above air
    assert check_slice(_hounsfield(overflowed)).startswith("non-finite values (")

    slices = [_hounsfield(head) for _ in range(9)] + [_hounsfield(np.full_like(head, np.nan))]
    assert check_scan(slices) == "non-finite values on 1 slice of 10 (slice 9)"


@pytest.mark.parametrize(("slope", "intercept"), [(1000.0, 0.0), (1.0, 20000.0)])
def test_broken_rescale_gives_hounsfield_values_outside_any_ct_range(slope, intercept):
    stored = _phantom_slice() + 1024  # as a scanner stores it, RescaleIntercept -1024
    image = _hounsfield(stored * slope + intercept - 1024)
    assert check_slice(image).startswith("Hounsfield values outside any CT range")


def test_an_all_zero_or_air_volume_is_refused_as_a_scan():
    zeros = [_hounsfield(np.zeros((128, 128))) for _ in range(20)]
    assert check_scan(zeros) == (
        "none of its 20 slices looks like a head CT slice (constant image: 20)"
    )
    noisy_air = np.random.default_rng(2).normal(-1000, 5, (20, 128, 128))
    reason = check_scan([_hounsfield(plane) for plane in noisy_air])
    assert reason.startswith("none of its 20 slices looks like a head CT slice")


def test_only_a_headrest_is_no_head_shaped_foreground():
    assert check_slice(_grey(_headrest_arcs())).startswith("no head-shaped foreground (only thin")


def test_foreground_everywhere_is_no_head_shaped_foreground():
    field = _grey(np.full((256, 256), 200.0))
    field.pixels[0, 0] = 0  # not constant, but no background around any head
    assert check_slice(field).startswith("no head-shaped foreground (foreground covers")


def _scrambled_dicom(source: Path, target: Path, n_columns: int) -> Path:
    """``source`` cut to ``n_columns`` columns, its pixels then labelled with Rows and
    Columns swapped: each row of the image runs into the next."""
    import pydicom

    dataset = pydicom.dcmread(source)
    pixels = np.ascontiguousarray(dataset.pixel_array[:, :n_columns])
    dataset.PixelData = pixels.tobytes()
    dataset.Rows, dataset.Columns = n_columns, pixels.shape[0]
    dataset.save_as(target)
    return target


def test_a_dicom_with_rows_and_columns_swapped_is_scrambled(tmp_path):
    root = write_phantom(tmp_path / "phantom", 1, seed=1, format="dicom", size=128)
    source = sorted(root.rglob("*.dcm"))[12]
    assert check_slice(read_dicom_slice(source)) is None
    for n_columns in (96, 112, 126):
        scrambled = _scrambled_dicom(source, tmp_path / f"swapped{n_columns}.dcm", n_columns)
        image = read_dicom_slice(scrambled)
        assert image.pixels.shape == (n_columns, 128)
        assert check_slice(image).startswith("scrambled"), n_columns


def test_a_real_dicom_with_rows_and_columns_swapped_is_scrambled(shared_data, tmp_path):
    source = shared_data / "dicom" / "ge-head-ct" / "14.dcm"
    for n_columns in (384, 448, 500, 510):
        scrambled = _scrambled_dicom(source, tmp_path / f"swapped{n_columns}.dcm", n_columns)
        assert check_slice(read_dicom_slice(scrambled)).startswith("scrambled"), n_columns


# --- what must pass ----------------------------------------------------------------------


def test_a_scan_passes_with_air_above_the_vertex_and_is_refused_with_too_few_heads():
    head = _hounsfield(_phantom_slice())
    air = _hounsfield(np.random.default_rng(3).normal(-1000, 5, (128, 128)))
    assert check_slice(air) is not None
    assert check_scan([air] * 9 + [head] * 3) is None  # a quarter holds the head
    assert check_scan([air] * 10 + [head] * 2).startswith("only 2 of its 12 slices")


@pytest.mark.parametrize("format", ["png", "dicom", "nifti", "ctich"])
@pytest.mark.parametrize("size", [32, 64, 128])
def test_the_phantom_passes_in_every_format(tmp_path, format, size):
    dataset = scans.load(write_phantom(tmp_path / "ph", 2, seed=size, format=format, size=size))
    for _, rows in dataset.iter_scans():
        images = [dataset.read(dataset.table.index.get_loc(index)) for index in rows.index]
        reasons = scans.check_slices(images)
        assert check_scan(images, reasons=reasons) is None
        middle = reasons[len(reasons) // 4 : 3 * len(reasons) // 4]
        assert middle == [None] * len(middle)  # where the head is, every slice passes


def _refused(dataset) -> dict[str, str]:
    refused = {}
    for position in range(len(dataset)):
        reason = check_slice(dataset.read(position))
        if reason is not None:
            refused[Path(dataset.table["path"].iloc[position]).stem] = reason
    return refused


def test_no_ct_ich_slice_is_refused(shared_data):
    dataset = scans.load(shared_data / "ct-ich-dev")
    assert len(dataset) == 605
    assert _refused(dataset) == {}


def test_rsna_course_dev_refuses_only_slices_without_a_head(shared_data):
    dataset = scans.load(shared_data / "rsna-course-dev")
    assert len(dataset) == 1200
    refused = _refused(dataset)
    assert set(refused) <= RSNA_WITHOUT_HEAD, sorted(set(refused) - RSNA_WITHOUT_HEAD)
    assert {reason.split(" (")[0] for reason in refused.values()} <= {
        "constant image",
        "no head-shaped foreground",
    }


@pytest.mark.parametrize(
    "series", ["ge-head-ct", "philips-head-phantom", "rsna-samples", "cq500-subset"]
)
def test_every_dicom_series_passes(shared_data, series):
    dataset = scans.load(shared_data / "dicom" / series)
    for _, rows in dataset.iter_scans():
        images = [dataset.read(dataset.table.index.get_loc(index)) for index in rows.index]
        assert check_scan(images) is None
    # Only the Philips phantom's last slice, its headrest alone, is refused on its own.
    expected = {"I280"} if series == "philips-head-phantom" else set()
    assert set(_refused(dataset)) == expected


# --- the inspection ------------------------------------------------------------------


def test_inspection_flags_implausible_slices_and_keeps_them(tmp_path):
    root = write_phantom(tmp_path / "ph", 2, seed=0, size=32, n_slices=8)
    blacked = sorted(root.rglob("*.png"))[3]
    Image.new("L", (32, 32), 0).save(blacked)
    dataset = scans.load(root)

    assert "n_implausible" not in scans.inspect(dataset)  # opt-in: it reads every pixel
    summary = scans.inspect(dataset, plausibility=True)
    assert summary["n_slices"] == 16  # nothing dropped
    assert summary["n_implausible"] == 1 and summary["n_implausible_scans"] == 0
    assert summary["implausible"] == [
        {"path": str(blacked), "reason": "constant image (every pixel is 0)"}
    ]
    text = format_inspection(summary)
    assert "Implausible: 1 slices do not look like head CT" in text
    assert f"{blacked}: constant image" in text
