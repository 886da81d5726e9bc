"""Reading single image slices, including every bad image in ../shared/data/bad-inputs."""

import numpy as np
import pytest
from PIL import Image

from ichkit.scans import ScanReadError, read_image, read_slice


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("zero-byte.png", "empty file"),
        ("truncated.png", "truncated or corrupt image"),
        ("truncated.jpg", "truncated or corrupt image"),
        ("not-an-image.png", "not an image"),
        ("html-named.jpg", "not an image"),
        ("decompression-bomb.png", "too large to decode safely"),
    ],
)
def test_bad_images_name_the_file_and_the_reason(bad_inputs, name, reason):
    with pytest.raises(ScanReadError, match=reason) as caught:
        read_image(bad_inputs / "images" / name)
    assert caught.value.path.endswith(name)
    assert name in str(caught.value)


def test_decompression_bomb_is_refused_from_its_header(bad_inputs, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("decoded a decompression bomb")

    monkeypatch.setattr(Image.Image, "load", never)
    with pytest.raises(ScanReadError, match="too large"):
        read_image(bad_inputs / "images" / "decompression-bomb.png")


def test_sixteen_bit_keeps_intensity_order(bad_inputs):
    image = read_image(bad_inputs / "images" / "valid-16bit.png")
    raw = np.asarray(Image.open(bad_inputs / "images" / "valid-16bit.png"))
    assert image.max_value == 65535
    assert image.pixels.max() > 255
    np.testing.assert_array_equal(np.argsort(image.pixels.ravel(), kind="stable"),
                                  np.argsort(raw.ravel(), kind="stable"))  # fmt: skip


def test_rgba_loads_as_one_grey_channel(bad_inputs):
    image = read_image(bad_inputs / "images" / "valid-rgba.png")
    assert image.pixels.ndim == 2 and image.pixels.dtype == np.float32
    assert not image.hounsfield and image.max_value == 255


def test_one_pixel_image_loads(bad_inputs):
    assert read_image(bad_inputs / "images" / "valid-1x1.png").pixels.shape == (1, 1)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "I;16"])
@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_modes_and_formats(tmp_path, mode, suffix):
    if suffix == ".jpg" and mode in ("RGBA", "I;16"):
        pytest.skip("JPEG holds neither alpha nor 16 bits")
    grey = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (25, 1))
    if mode == "I;16":
        image = Image.fromarray(grey.astype(np.uint16) * 256)
    else:
        image = Image.fromarray(grey).convert(mode)
    path = tmp_path / f"slice{suffix}"
    image.save(path)
    pixels = read_image(path).pixels
    assert pixels.shape == (25, 25)
    expected = grey.astype(np.float32) * (256 if mode == "I;16" else 1)
    np.testing.assert_allclose(pixels, expected, atol=3 * (256 if mode == "I;16" else 1))


def test_content_decides_not_the_name(tmp_path):
    path = tmp_path / "slice.jpg"
    Image.fromarray(np.full((8, 8), 100, np.uint8)).save(path, format="PNG")
    assert read_image(path).pixels.mean() == 100


def test_read_slice_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="Unknown slice format 'tiff'"):
        read_slice(tmp_path / "x", format="tiff")
