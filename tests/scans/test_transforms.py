"""Tests for scans.transforms on synthetic head-like images made here with numpy."""

from __future__ import annotations

import numpy as np
import pytest

from ichkit.scans._slice import SliceImage
from ichkit.scans.transforms import (
    Compose,
    CropToHead,
    NeighborSlices,
    NormalizeIntensity,
    RandomAugment,
    Resize,
    ScaleIntensity,
    Transform,
    prepare_slice,
)
from ichkit.scans.windowing import Window, WindowStack

SIZE = 128
# Head: an ellipse centred at (70, 60) with radii 40 (rows) and 30 (columns).
HEAD_ROWS = (30, 110)
HEAD_COLUMNS = (30, 90)


def head_phantom(size: int = SIZE) -> np.ndarray:
    """A disc of 40 HU brain inside a ring of 1000 HU skull, on -1000 HU air."""
    rows, columns = np.mgrid[:size, :size]
    radius = np.hypot((rows - 70) / 40, (columns - 60) / 30)
    hounsfield = np.full((size, size), -1000.0, dtype=np.float32)
    hounsfield[radius < 1] = 1000.0
    hounsfield[radius < 0.85] = 40.0
    hounsfield[60:75, 50:58] = 70.0  # a small bleed, brighter than brain
    return hounsfield


def asymmetric_image() -> np.ndarray:
    image = np.zeros((32, 40), dtype=np.float32)
    image[5:20, 3:12] = 1.0
    image[25:30, 30:38] = 0.5
    return image


# --- Compose -------------------------------------------------------------------------------


def test_compose_applies_in_order():
    pipeline = Compose([lambda image: image + 1, lambda image: image * 10])
    np.testing.assert_array_equal(pipeline(np.zeros((2, 2))), np.full((2, 2), 10.0))
    assert len(pipeline) == 2
    assert callable(pipeline[0])


def test_compose_rejects_non_callables():
    with pytest.raises(TypeError, match="'transforms' parameter of Compose must be callable"):
        Compose([Resize(4), "resize"])


def test_transforms_satisfy_the_protocol():
    for transform in (CropToHead(), Resize(8), ScaleIntensity(), NormalizeIntensity(), Window()):
        assert isinstance(transform, Transform)


# --- CropToHead ----------------------------------------------------------------------------


def test_crop_removes_background_around_head():
    hounsfield = head_phantom()
    cropped = CropToHead(margin=0)(hounsfield)
    assert cropped.shape == (HEAD_ROWS[1] - HEAD_ROWS[0] - 1, HEAD_COLUMNS[1] - HEAD_COLUMNS[0] - 1)
    # Everything that is not air survives the crop.
    assert np.count_nonzero(cropped > -500) == np.count_nonzero(hounsfield > -500)
    # The border rows and columns touch the skull.
    for edge in (cropped[0], cropped[-1], cropped[:, 0], cropped[:, -1]):
        assert edge.max() == 1000


def test_crop_keeps_margin():
    box = CropToHead(margin=5).box(head_phantom())
    assert box == (
        HEAD_ROWS[0] + 1 - 5,
        HEAD_ROWS[1] + 5,
        HEAD_COLUMNS[0] + 1 - 5,
        HEAD_COLUMNS[1] + 5,
    )


def test_crop_box_is_the_same_for_hounsfield_windowed_and_grey_images():
    hounsfield = head_phantom()
    windowed = Window(40, 80)(hounsfield)
    grey = np.round(Window(40, 380)(hounsfield) * 255).astype(np.uint8)
    crop = CropToHead(margin=3)
    assert crop.box(hounsfield) == crop.box(windowed) == crop.box(grey)


def test_crop_ignores_padding_outside_the_field_of_view():
    hounsfield = head_phantom()
    hounsfield[:, :8] = -3024.0  # scanner padding, far below air
    assert CropToHead().box(hounsfield) == CropToHead().box(head_phantom())


def test_crop_keeps_largest_component_not_small_specks_or_table():
    hounsfield = head_phantom()
    hounsfield[2:5, 2:5] = 500.0  # a speck
    hounsfield[122:124, :] = 200.0  # the scanner table, thin next to the head
    assert CropToHead(margin=0).box(hounsfield) == (31, 110, 31, 90)


def test_crop_keeps_every_large_piece_of_a_fragmented_head():
    # In a narrow window fat is as black as air: the neck falls apart from the skull.
    image = np.zeros((128, 128), dtype=np.float32)
    image[20:70, 30:100] = 1.0  # skull and brain
    image[80:110, 40:90] = 0.5  # neck, beyond a band of fat
    image[5:8, 5:8] = 1.0  # a speck
    assert CropToHead(margin=0).box(image) == (20, 110, 30, 100)


def test_crop_with_reference_finds_head_on_hounsfield_units():
    hounsfield = head_phantom()
    hounsfield[75:80, :] = np.where(hounsfield[75:80, :] > -500, -100.0, -1000.0)  # fat band
    windowed = Window(40, 80)(hounsfield)  # the fat band is black here
    cropped = CropToHead(margin=0)(windowed, reference=hounsfield)
    assert cropped.shape == (79, 59)
    with pytest.raises(ValueError, match="'reference' of CropToHead must have the image's"):
        CropToHead()(windowed, reference=hounsfield[:10])


def test_crop_channel_last_image():
    stacked = WindowStack()(head_phantom())
    cropped = CropToHead(margin=0)(stacked)
    assert cropped.shape == (79, 59, 3)
    assert cropped.dtype == np.float32


def test_crop_of_blank_image_returns_whole_image():
    blank = np.full((20, 30), -1000.0)
    assert CropToHead().box(blank) is None
    np.testing.assert_array_equal(CropToHead()(blank), blank)


def test_crop_square_pads_with_minimum_where_needed():
    image = np.zeros((20, 60), dtype=np.float32)
    image[5:15, 5:55] = 1.0
    cropped = CropToHead(margin=0, square=True)(image)
    assert cropped.shape == (50, 50)
    assert cropped.min() == 0
    assert CropToHead(margin=0, square=True)(head_phantom()).shape == (79, 79)


def test_crop_explicit_threshold():
    image = np.zeros((20, 20))
    image[2:6, 2:6] = 0.3
    image[10:18, 10:18] = 0.8
    assert CropToHead(margin=0, threshold=0.5).box(image) == (10, 18, 10, 18)


def test_crop_parameter_checks():
    with pytest.raises(
        ValueError, match="The 'margin' parameter of CropToHead must be an int >= 0. Got -1."
    ):
        CropToHead(margin=-1)
    with pytest.raises(
        TypeError, match="The 'square' parameter of CropToHead must be True or False"
    ):
        CropToHead(square="yes")
    with pytest.raises(ValueError, match=r"CropToHead needs a 2-D image .* Got shape \(5,\)"):
        CropToHead()(np.zeros(5))


# --- Resize --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "size", "expected"),
    [
        ((128, 96), 64, (64, 64)),
        ((128, 96), (32, 48), (32, 48)),
        ((30, 20), 100, (100, 100)),
        ((128, 96, 3), 50, (50, 50, 3)),
    ],
)
def test_resize_shapes(shape, size, expected):
    image = np.random.default_rng(0).random(shape)
    resized = Resize(size)(image)
    assert resized.shape == expected
    assert resized.dtype == np.float32
    assert resized.min() >= image.min() - 1e-6
    assert resized.max() <= image.max() + 1e-6


def test_resize_keeps_channels_apart():
    image = np.zeros((64, 64, 2))
    image[..., 1] = 1.0
    resized = Resize(16)(image)
    np.testing.assert_allclose(resized[..., 0], 0)
    np.testing.assert_allclose(resized[..., 1], 1)


@pytest.mark.parametrize("bad", [0, -3, (10,), (10, 0), 2.5, "224", True])
def test_resize_rejects_bad_size(bad):
    with pytest.raises(ValueError, match="The 'size' parameter of Resize must be an int > 0"):
        Resize(bad)


# --- intensity -----------------------------------------------------------------------------


def test_scale_intensity_to_unit_interval():
    image = np.array([[-1000.0, 0.0], [40.0, 1000.0]])
    scaled = ScaleIntensity()(image)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, [[0, 0.5], [0.52, 1]])


def test_scale_intensity_channel_wise_and_constant():
    image = np.stack([np.array([[0.0, 2.0]]), np.array([[5.0, 5.0]])], axis=-1)
    scaled = ScaleIntensity(channel_wise=True)(image)
    np.testing.assert_allclose(scaled[..., 0], [[0, 1]])
    np.testing.assert_allclose(scaled[..., 1], [[0, 0]])


def test_normalize_intensity_zero_mean_unit_variance():
    image = np.random.default_rng(1).normal(50, 20, size=(32, 32))
    normalised = NormalizeIntensity()(image)
    assert normalised.dtype == np.float32
    assert abs(normalised.mean()) < 1e-5
    assert abs(normalised.std() - 1) < 1e-4
    np.testing.assert_array_equal(NormalizeIntensity()(np.full((3, 3), 7.0)), 0)


def test_normalize_intensity_fixed_statistics_and_per_channel():
    image = np.ones((2, 2, 3))
    fixed = NormalizeIntensity(mean=[0.5, 1.0, 0.0], std=[0.5, 1.0, 2.0])(image)
    np.testing.assert_allclose(fixed[0, 0], [1.0, 0.0, 0.5])
    image = np.random.default_rng(2).random((8, 8, 2)) * [1, 100]
    per_channel = NormalizeIntensity(channel_wise=True)(image)
    np.testing.assert_allclose(per_channel.mean(axis=(0, 1)), 0, atol=1e-5)
    np.testing.assert_allclose(per_channel.std(axis=(0, 1)), 1, atol=1e-4)


def test_normalize_intensity_parameter_checks():
    with pytest.raises(ValueError, match="'mean' and 'std' parameters of NormalizeIntensity"):
        NormalizeIntensity(mean=0.5)
    with pytest.raises(ValueError, match="The 'std' parameter of NormalizeIntensity must be > 0"):
        NormalizeIntensity(mean=0.0, std=0.0)


# --- NeighborSlices ------------------------------------------------------------------------


def numbered_stack(n_slices: int = 5) -> np.ndarray:
    """Slice ``i`` holds the value ``i`` everywhere."""
    return np.arange(n_slices, dtype=np.float32)[:, None, None] * np.ones(
        (n_slices, 4, 6), dtype=np.float32
    )


def test_neighbor_slices_shape_and_order():
    output = NeighborSlices(1)(numbered_stack())
    assert output.shape == (5, 4, 6, 3)
    assert output.dtype == np.float32
    assert output[2, 0, 0].tolist() == [1, 2, 3]


def test_neighbor_slices_repeat_the_border():
    output = NeighborSlices(2)(numbered_stack())
    assert output.shape == (5, 4, 6, 5)
    assert output[0, 1, 1].tolist() == [0, 0, 0, 1, 2]
    assert output[4, 1, 1].tolist() == [2, 3, 4, 4, 4]
    single = NeighborSlices(1)(numbered_stack(1))
    assert single[0, 0, 0].tolist() == [0, 0, 0]


def test_neighbor_slices_zero_neighbors_is_the_stack():
    stack = numbered_stack()
    np.testing.assert_array_equal(NeighborSlices(0)(stack)[..., 0], stack)


def test_neighbor_slices_of_channel_last_stack():
    stack = np.stack([numbered_stack(), -numbered_stack()], axis=-1)  # (5, 4, 6, 2)
    output = NeighborSlices(1)(stack)
    assert output.shape == (5, 4, 6, 6)
    assert output[2, 0, 0].tolist() == [1, -1, 2, -2, 3, -3]


def test_neighbor_slices_checks():
    with pytest.raises(
        ValueError, match="The 'n_neighbors' parameter of NeighborSlices must be an int >= 0"
    ):
        NeighborSlices(-1)
    with pytest.raises(
        ValueError, match=r"NeighborSlices needs a scan's stack .* Got shape \(4, 6\)"
    ):
        NeighborSlices()(np.zeros((4, 6)))


# --- RandomAugment -------------------------------------------------------------------------


def test_augment_is_reproducible_for_a_seed():
    image = Window()(head_phantom())
    first, second = RandomAugment(random_state=7), RandomAugment(random_state=7)
    for _ in range(3):
        np.testing.assert_array_equal(first(image), second(image))


def test_augment_differs_between_seeds_and_calls():
    image = Window()(head_phantom())
    augment = RandomAugment(random_state=1)
    once, twice = augment(image), augment(image)
    assert not np.array_equal(once, twice)
    assert not np.array_equal(
        RandomAugment(random_state=1)(image), RandomAugment(random_state=2)(image)
    )


@pytest.mark.parametrize(
    "image",
    [
        head_phantom(),
        head_phantom().astype(np.int16),
        Window()(head_phantom()),
        WindowStack()(head_phantom()),
    ],
    ids=["hounsfield-float32", "hounsfield-int16", "windowed", "stack"],
)
def test_augment_keeps_shape_and_dtype(image):
    output = RandomAugment(random_state=0)(image)
    assert output.shape == image.shape
    assert output.dtype == image.dtype


def test_augment_fills_with_the_minimum_not_zero():
    square = np.full((64, 64), 40.0)
    square[0, 0] = -1000.0  # the image's air
    output = RandomAugment(rotation_degrees=45, zoom=0, horizontal_flip=False, random_state=3)(
        square
    )
    assert output.min() == -1000.0
    # Rotated corners are filled with air, not with 0.
    assert np.count_nonzero(output == -1000.0) > 100
    assert not np.any(output == 0)


def test_flip_really_flips():
    image = asymmetric_image()
    augment = RandomAugment(rotation_degrees=0, zoom=0, horizontal_flip=True, random_state=0)
    outputs = [augment(image) for _ in range(20)]
    flipped = [np.allclose(output, image[:, ::-1]) for output in outputs]
    unchanged = [np.allclose(output, image) for output in outputs]
    assert all(a != b for a, b in zip(flipped, unchanged, strict=True))
    assert any(flipped)
    assert any(unchanged)


def test_no_flip_no_rotation_no_zoom_is_identity():
    image = asymmetric_image()
    augment = RandomAugment(rotation_degrees=0, zoom=0, horizontal_flip=False, random_state=0)
    np.testing.assert_allclose(augment(image), image, atol=1e-6)


def test_augment_batch_matches_calls_one_by_one():
    batch = np.stack([Window()(head_phantom()), Window()(head_phantom()[::-1])])
    together = RandomAugment(random_state=5).augment_batch(batch)
    augment = RandomAugment(random_state=5)
    one_by_one = np.stack([augment(image) for image in batch])
    assert together.shape == batch.shape
    assert together.dtype == batch.dtype
    np.testing.assert_array_equal(together, one_by_one)
    assert not np.array_equal(together[0], together[1][::-1])


def test_augment_parameter_checks():
    with pytest.raises(ValueError, match="The 'zoom' parameter of RandomAugment must be in"):
        RandomAugment(zoom=1.5)
    with pytest.raises(ValueError, match="The 'rotation_degrees' parameter of RandomAugment"):
        RandomAugment(rotation_degrees=-1)
    with pytest.raises(ValueError, match="The 'random_state' parameter of RandomAugment"):
        RandomAugment(random_state="seed")
    with pytest.raises(ValueError, match="augment_batch needs a batch"):
        RandomAugment().augment_batch(np.zeros(4))


# --- prepare_slice -------------------------------------------------------------------------


def test_prepare_slice_brain_window():
    image = SliceImage(head_phantom(), hounsfield=True)
    prepared = prepare_slice(image, size=64)
    assert prepared.shape == (64, 64)
    assert prepared.dtype == np.float32
    assert 0 <= prepared.min() and prepared.max() <= 1
    # Cropped, the head fills the frame: about 77% air before, under half after.
    air_uncropped = np.mean(prepare_slice(image, size=64, crop=False) == 0)
    assert np.mean(prepared == 0) < 0.5 < air_uncropped


@pytest.mark.parametrize(
    ("window", "shape"),
    [("stack", (32, 32, 3)), ((80, 200), (32, 32)), (WindowStack(["brain", "bone"]), (32, 32, 2))],
)
def test_prepare_slice_windows(window, shape):
    prepared = prepare_slice(SliceImage(head_phantom(), hounsfield=True), size=32, window=window)
    assert prepared.shape == shape


def test_prepare_slice_grey_image_and_array():
    grey = np.round(Window(40, 380)(head_phantom()) * 255).astype(np.float32)
    prepared = prepare_slice(SliceImage(grey, hounsfield=False), size=(40, 30), window="stack")
    assert prepared.shape == (40, 30, 3)
    np.testing.assert_array_equal(prepared[..., 0], prepared[..., 2])
    assert prepare_slice(head_phantom(), size=16).shape == (16, 16)


def test_prepare_slice_typo():
    with pytest.raises(ValueError, match="Did you mean 'subdural'"):
        prepare_slice(head_phantom(), window="subdual")
