"""Tests for scans.windowing: presets, properties of the window map, non-HU images."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ichkit.scans._slice import SliceImage
from ichkit.scans.windowing import (
    WINDOW_PRESETS,
    Window,
    WindowStack,
    get_window,
    list_windows,
    window_from_header,
)

centers = st.floats(min_value=-2000, max_value=3000, allow_nan=False)
widths = st.floats(min_value=1, max_value=5000, allow_nan=False)
hounsfield_arrays = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=1, max_dims=3, max_side=8),
    elements=st.floats(min_value=-4000, max_value=4000, allow_nan=False),
)


@settings(max_examples=60, deadline=None)
@given(hounsfield=hounsfield_arrays, center=centers, width=widths)
def test_output_is_float32_in_unit_interval(hounsfield, center, width):
    output = Window(center, width)(hounsfield)
    assert output.dtype == np.float32
    assert output.shape == hounsfield.shape
    assert np.all((output >= 0) & (output <= 1))


@settings(max_examples=60, deadline=None)
@given(hounsfield=hounsfield_arrays, center=centers, width=widths)
def test_output_is_monotone_in_hounsfield_units(hounsfield, center, width):
    ordered = np.sort(hounsfield.ravel())
    output = Window(center, width)(ordered)
    assert np.all(np.diff(output) >= 0)


@settings(max_examples=60, deadline=None)
@given(center=centers, width=widths)
def test_center_maps_to_one_half_and_edges_to_zero_and_one(center, width):
    window = Window(center, width)
    output = window(np.array([center, window.lower, window.upper, window.lower - 1]))
    np.testing.assert_allclose(output, [0.5, 0.0, 1.0, 0.0], atol=1e-3)


@settings(max_examples=30, deadline=None)
@given(width=st.floats(max_value=0, allow_nan=False, allow_infinity=False))
def test_width_must_be_positive(width):
    with pytest.raises(ValueError, match="The 'width' parameter of Window must be > 0. Got"):
        Window(40, width)


def test_width_message_matches_house_style():
    with pytest.raises(
        ValueError, match=r"^The 'width' parameter of Window must be > 0\. Got -80\.$"
    ):
        Window(center=40, width=-80)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_center_must_be_finite(bad):
    with pytest.raises(ValueError, match="The 'center' parameter of Window must be finite"):
        Window(bad, 80)


def test_center_must_be_a_number():
    with pytest.raises(TypeError, match="The 'center' parameter of Window must be a real number"):
        Window("40", 80)


def test_brain_window_values():
    brain = Window(40, 80)
    output = brain(np.array([-1000.0, 0.0, 20.0, 40.0, 60.0, 80.0, 1000.0]))
    np.testing.assert_allclose(output, [0, 0, 0.25, 0.5, 0.75, 1, 1])


def test_presets_table():
    assert WINDOW_PRESETS["brain"] == (40, 80)
    assert WINDOW_PRESETS["subdural"] == (80, 200)
    assert WINDOW_PRESETS["bone"] == (600, 2800)
    assert WINDOW_PRESETS["soft_tissue"] == (40, 380)
    assert list_windows() == ["brain", "subdural", "bone", "soft_tissue"]


@pytest.mark.parametrize("name", list(WINDOW_PRESETS))
def test_get_window_resolves_every_preset(name):
    window = get_window(name)
    assert (window.center, window.width) == WINDOW_PRESETS[name]


def test_get_window_ignores_case_spaces_and_hyphens():
    assert get_window("Soft tissue") == get_window("soft-tissue") == get_window("soft_tissue")


def test_get_window_accepts_pair_and_window():
    assert get_window((50, 150)) == Window(50, 150)
    assert get_window(np.array([50.0, 150.0])) == Window(50, 150)
    window = Window(1, 2)
    assert get_window(window) is window


def test_get_window_pair_checks_width():
    with pytest.raises(ValueError, match="The 'width' parameter of Window must be > 0. Got -5"):
        get_window((40, -5))


@pytest.mark.parametrize(("typo", "suggestion"), [("brian", "brain"), ("subdurall", "subdural")])
def test_unknown_name_suggests_the_closest(typo, suggestion):
    with pytest.raises(ValueError, match=f"Unknown window '{typo}'. Did you mean '{suggestion}'"):
        get_window(typo)


def test_unknown_name_without_close_match_lists_known_windows():
    with pytest.raises(
        ValueError, match="Known windows: brain, subdural, bone, soft_tissue"
    ) as error:
        get_window("lung")
    assert "Did you mean" not in str(error.value)


@pytest.mark.parametrize("bad", [40, None, (1, 2, 3), ("a", "b")])
def test_get_window_rejects_other_types(bad):
    with pytest.raises(TypeError, match="A window must be a preset name"):
        get_window(bad)


def test_window_on_hounsfield_slice_image():
    pixels = np.array([[-1000.0, 40.0], [80.0, 2000.0]], dtype=np.float32)
    output = Window(40, 80)(SliceImage(pixels, hounsfield=True))
    np.testing.assert_allclose(output, [[0, 0.5], [1, 1]])


@pytest.mark.parametrize("max_value", [255.0, 65535.0])
def test_grey_slice_is_only_scaled_not_rewindowed(max_value):
    pixels = np.array([[0.0, max_value / 4], [max_value / 2, max_value]], dtype=np.float32)
    image = SliceImage(pixels, hounsfield=False, max_value=max_value)
    expected = pixels / max_value
    for window in (Window(40, 80), Window(600, 2800)):
        output = window(image)
        assert output.dtype == np.float32
        np.testing.assert_allclose(output, expected)


def test_grey_slice_needs_positive_max_value():
    image = SliceImage(np.zeros((2, 2)), hounsfield=False, max_value=0.0, path="a.png")
    with pytest.raises(ValueError, match="'max_value' of SliceImage 'a.png' must be > 0"):
        Window()(image)


def test_window_rejects_non_numeric_pixels():
    with pytest.raises(TypeError, match="Window needs numeric pixels"):
        Window()(np.array([["a", "b"]]))


def test_window_stack_channels_are_the_windows():
    hounsfield = np.linspace(-1000, 3000, 20).reshape(4, 5)
    stacked = WindowStack()(hounsfield)
    assert stacked.shape == (4, 5, 3)
    assert stacked.dtype == np.float32
    for channel, name in enumerate(("brain", "subdural", "bone")):
        np.testing.assert_array_equal(stacked[..., channel], get_window(name)(hounsfield))


def test_window_stack_custom_windows_and_repr():
    stack = WindowStack(["brain", (50, 100)])
    assert len(stack) == 2
    assert stack(np.zeros((3, 3))).shape == (3, 3, 2)
    assert repr(stack) == "WindowStack(windows=((40, 80), (50, 100)))"
    assert len(WindowStack("bone")) == 1


def test_window_stack_repeats_grey_channel_for_non_hounsfield_images():
    pixels = np.array([[0.0, 51.0], [102.0, 255.0]], dtype=np.float32)
    stacked = WindowStack()(SliceImage(pixels, hounsfield=False))
    assert stacked.shape == (2, 2, 3)
    for channel in range(3):
        np.testing.assert_allclose(stacked[..., channel], pixels / 255)


def test_window_stack_rejects_empty_and_typos():
    with pytest.raises(ValueError, match="must name at least one window"):
        WindowStack(())
    with pytest.raises(ValueError, match="Did you mean 'bone'"):
        WindowStack(["brain", "boen"])


def test_window_from_header():
    pixels = np.zeros((2, 2), dtype=np.float32)
    assert window_from_header(SliceImage(pixels, True, window=(35.0, 90.0))) == Window(35, 90)
    assert window_from_header(SliceImage(pixels, True)) == get_window("brain")
    assert window_from_header(SliceImage(pixels, True, window=(40.0, 0.0))) == get_window("brain")
    assert window_from_header(SliceImage(pixels, True), default="bone") == get_window("bone")
