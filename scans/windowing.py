"""CT windowing: map Hounsfield units to grey values in [0, 1].

A window keeps the Hounsfield units between ``center - width / 2`` and
``center + width / 2`` and stretches them linearly over ``[0, 1]``; anything darker is
0 and anything brighter is 1. Hemorrhage (about 50 to 90 HU) differs from brain (about
20 to 45 HU) by a few tens of HU, which a narrow brain window makes visible.

Windowing needs Hounsfield units. Images that arrive already windowed (8- or 16-bit
PNG/JPG exports) have lost the units outside their window, so they pass through
unchanged apart from being scaled to ``[0, 1]``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ichkit.scans._slice import SliceImage
from ichkit.scans.validation import check_real, unknown_name_message

__all__ = [
    "DEFAULT_GREY_WINDOW",
    "WINDOW_PRESETS",
    "Window",
    "WindowStack",
    "get_window",
    "list_windows",
    "to_hounsfield",
    "window_from_header",
]

#: Named windows as ``name -> (center, width)`` in Hounsfield units.
#:
#: brain, subdural and bone are the three windows stacked as RGB channels by the
#: top solutions of the RSNA 2019 Intracranial Hemorrhage Detection challenge
#: (1st place, SeuTao et al.; the public "windowing" kernels they built on).
#: soft_tissue is the usual radiology soft-tissue window (Radiopaedia, "Windowing (CT)").
WINDOW_PRESETS: Mapping[str, tuple[float, float]] = MappingProxyType(
    {
        "brain": (40.0, 80.0),
        "subdural": (80.0, 200.0),
        "bone": (600.0, 2800.0),
        "soft_tissue": (40.0, 380.0),
    }
)

#: Windows stacked by ``WindowStack`` unless told otherwise.
DEFAULT_STACK = ("brain", "subdural", "bone")


@dataclass(frozen=True)
class Window:
    """Window Hounsfield units to ``[0, 1]``.

    ``Window(center, width)(image)`` returns ``clip((hu - lower) / width, 0, 1)`` as
    float32, with ``lower = center - width / 2``, so the center maps to 0.5.

    Parameters
    ----------
    center : float, default=40
        Window center (level) in Hounsfield units.
    width : float, default=80
        Window width in Hounsfield units; must be > 0.

    Raises
    ------
    ValueError
        If ``width`` is not > 0 or either value is not finite.
    TypeError
        If ``center`` or ``width`` is not a real number.

    Notes
    -----
    Called on a ``SliceImage`` whose ``hounsfield`` is False (an already-windowed 8- or
    16-bit image), the window is **not** applied: re-windowing grey values is not
    possible because the Hounsfield units outside the original window are gone. The
    pixels are only scaled by ``max_value`` to ``[0, 1]``. A plain ndarray is taken to
    hold Hounsfield units. NaN pixels stay NaN.

    Examples
    --------
    >>> import numpy as np
    >>> brain = Window(center=40, width=80)
    >>> brain(np.array([-1000.0, 0.0, 40.0, 80.0, 1000.0])).tolist()
    [0.0, 0.0, 0.5, 1.0, 1.0]
    """

    center: float = 40.0
    width: float = 80.0

    def __post_init__(self) -> None:
        check_real(self.center, "center", "Window")
        check_real(self.width, "width", "Window")
        if not self.width > 0:
            raise ValueError(f"The 'width' parameter of Window must be > 0. Got {self.width!r}.")

    @property
    def lower(self) -> float:
        """The Hounsfield unit that maps to 0."""
        return float(self.center) - float(self.width) / 2

    @property
    def upper(self) -> float:
        """The Hounsfield unit that maps to 1."""
        return float(self.center) + float(self.width) / 2

    def __call__(self, image: SliceImage | np.ndarray) -> np.ndarray:
        """Window ``image``.

        Parameters
        ----------
        image : SliceImage or ndarray
            A slice, or an array of Hounsfield units of any shape.

        Returns
        -------
        ndarray of float32, same shape as the pixels
            Values in ``[0, 1]``.
        """
        if isinstance(image, SliceImage):
            if not image.hounsfield:
                return _grey_to_unit(image)
            pixels = image.pixels
        else:
            pixels = image
        hounsfield = _as_float_array(pixels, "Window")
        scaled = (hounsfield - np.float32(self.lower)) / np.float32(self.width)
        return np.clip(scaled, 0.0, 1.0).astype(np.float32, copy=False)


class WindowStack:
    """Several windows of one slice stacked as channels, ``(height, width, n_windows)``.

    The default (brain, subdural, bone) is the three-channel input of the RSNA 2019
    Intracranial Hemorrhage Detection winners, which lets ImageNet-pretrained CNNs take
    CT as an RGB image.

    Parameters
    ----------
    windows : sequence of str, (center, width) or Window, default=("brain", "subdural", "bone")
        The windows, resolved with ``get_window``.

    Raises
    ------
    ValueError
        If ``windows`` is empty or names an unknown window.

    Notes
    -----
    For a ``SliceImage`` that is not in Hounsfield units the single grey channel
    (scaled to ``[0, 1]``) is repeated once per window, since grey values cannot be
    re-windowed; the output shape stays the same so that models need not care.

    Examples
    --------
    >>> import numpy as np
    >>> WindowStack()(np.zeros((4, 5))).shape
    (4, 5, 3)
    """

    def __init__(self, windows: Sequence[str | tuple[float, float] | Window] = DEFAULT_STACK):
        if isinstance(windows, str | Window) or _is_center_width(windows):
            windows = [windows]
        resolved = tuple(get_window(window) for window in windows)
        if not resolved:
            raise ValueError(
                "The 'windows' parameter of WindowStack must name at least one window. Got ()."
            )
        self.windows = resolved

    def __repr__(self) -> str:
        inner = ", ".join(f"({window.center:g}, {window.width:g})" for window in self.windows)
        return f"WindowStack(windows=({inner}))"

    def __len__(self) -> int:
        return len(self.windows)

    def __call__(self, image: SliceImage | np.ndarray) -> np.ndarray:
        """Window ``image`` once per window and stack the results on a new last axis.

        Parameters
        ----------
        image : SliceImage or ndarray
            A slice, or an array of Hounsfield units of any shape.

        Returns
        -------
        ndarray of float32, shape ``pixels.shape + (n_windows,)``
            Values in ``[0, 1]``.
        """
        if isinstance(image, SliceImage) and not image.hounsfield:
            grey = _grey_to_unit(image)
            return np.repeat(grey[..., np.newaxis], len(self.windows), axis=-1)
        return np.stack([window(image) for window in self.windows], axis=-1)


def list_windows() -> list[str]:
    """Names of the preset windows, in table order."""
    return list(WINDOW_PRESETS)


def get_window(window: str | tuple[float, float] | Window) -> Window:
    """Resolve a preset name or a user-defined ``(center, width)`` to a ``Window``.

    Parameters
    ----------
    window : str, (center, width) or Window
        A name from ``WINDOW_PRESETS`` (case, spaces and hyphens are ignored:
        ``"Soft tissue"`` is ``"soft_tissue"``), a pair of Hounsfield units, or a
        ``Window``, which is returned as it is.

    Returns
    -------
    Window

    Raises
    ------
    ValueError
        If the name is unknown (with the closest preset names) or the pair is not a
        valid window.
    TypeError
        If ``window`` is none of the above.

    Examples
    --------
    >>> get_window("subdural")
    Window(center=80.0, width=200.0)
    >>> get_window((50, 150))
    Window(center=50.0, width=150.0)
    """
    if isinstance(window, Window):
        return window
    if isinstance(window, str):
        key = window.strip().lower().replace("-", "_").replace(" ", "_")
        if key not in WINDOW_PRESETS:
            raise ValueError(_unknown_window_message(window, key))
        center, width = WINDOW_PRESETS[key]
        return Window(center, width)
    if _is_center_width(window):
        center, width = window
        return Window(float(center), float(width))
    raise TypeError(
        "A window must be a preset name (one of "
        f"{', '.join(repr(name) for name in WINDOW_PRESETS)}), a (center, width) pair of "
        f"Hounsfield units or a Window. Got {window!r} of type {type(window).__name__}."
    )


def window_from_header(image: SliceImage, default: str | tuple[float, float] = "brain") -> Window:
    """The window stored with a slice (DICOM WindowCenter/WindowWidth), else ``default``.

    Parameters
    ----------
    image : SliceImage
        A slice whose ``window`` may hold ``(center, width)``.
    default : str or (center, width), default="brain"
        Used when the slice has no window or its width is not > 0 (some scanners
        write 0 or negative widths).

    Returns
    -------
    Window
    """
    stored = image.window
    if stored is not None and _is_center_width(stored):
        center, width = stored
        if np.isfinite(center) and np.isfinite(width) and width > 0:
            return Window(float(center), float(width))
    return get_window(default)


def _grey_to_unit(image: SliceImage) -> np.ndarray:
    """Scale the grey values of an already-windowed slice by ``max_value`` to ``[0, 1]``."""
    if not image.max_value > 0:
        raise ValueError(
            f"The 'max_value' of SliceImage '{image.path}' must be > 0 to scale grey "
            f"values to [0, 1]. Got {image.max_value!r}."
        )
    pixels = _as_float_array(image.pixels, "Window")
    return np.clip(pixels / np.float32(image.max_value), 0.0, 1.0).astype(np.float32, copy=False)


def _as_float_array(pixels: object, owner: str) -> np.ndarray:
    array = np.asarray(pixels)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise TypeError(
            f"{owner} needs numeric pixels (Hounsfield units). Got an array of dtype {array.dtype}."
        )
    return array.astype(np.float32, copy=False)


def _is_center_width(value: object) -> bool:
    return (
        isinstance(value, Sequence | np.ndarray)
        and not isinstance(value, str)
        and len(value) == 2
        and all(isinstance(item, numbers.Real) and not isinstance(item, bool) for item in value)
    )


def _unknown_window_message(name: str, key: str) -> str:
    return unknown_name_message("window", name, WINDOW_PRESETS, match=key) + (
        " Or give a (center, width) pair in Hounsfield units."
    )


#: The window assumed for grey images that do not say theirs: the brain window.
DEFAULT_GREY_WINDOW = (40.0, 80.0)
#: Values given to grey pixels clipped by the export window; their true units are
#: unknown but beyond the window, and in head CT that is bone above and air below.
_CLIPPED_HIGH_HU, _CLIPPED_LOW_HU = 1000.0, -1000.0


def to_hounsfield(
    image: SliceImage, *, grey_window: tuple[float, float] = DEFAULT_GREY_WINDOW
) -> np.ndarray:
    """Hounsfield units, or their best estimate for an already-windowed image.

    A slice in Hounsfield units is returned as it is. A grey image exported with a
    window (``image.window``, else ``grey_window``) is mapped back linearly inside
    that window; pixels the export clipped (0 or ``max_value``) become -1000 or
    +1000 HU (air, bone). Features with Hounsfield-unit bands then mean the same on
    DICOM, NIfTI and on PNG/JPEG exports such as CT-ICH's (window 40/120).

    Examples
    --------
    >>> import numpy as np
    >>> grey = SliceImage(np.array([[0.0, 127.5, 255.0]]), hounsfield=False, window=(40, 120))
    >>> to_hounsfield(grey).tolist()
    [[-1000.0, 40.0, 1000.0]]
    """
    if image.hounsfield:
        return np.asarray(image.pixels, dtype=np.float32)
    center, width = image.window or grey_window
    check_real(width, "width", "to_hounsfield")
    grey = np.asarray(image.pixels, dtype=np.float32)
    hounsfield = grey / image.max_value * width + (center - width / 2)
    hounsfield[grey <= 0] = _CLIPPED_LOW_HU
    hounsfield[grey >= image.max_value] = _CLIPPED_HIGH_HU
    return hounsfield.astype(np.float32)
