"""Uniform local binary pattern (LBP) histograms of the brain at several radii.

The codes are those of scikit-image's ``local_binary_pattern(image, n_points, radius,
method="uniform")`` (Ojala et al., 2002): the neighbours are ``n_points`` bilinearly
interpolated points on a circle (pixels outside the image read 0); a pattern is
uniform when its neighbours, read from the first to the last, change between "below
the centre" and "not below" at most twice (scikit-image does not count the change
from the last neighbour back to the first), and its code is the number of neighbours
not below the centre; every other pattern shares code ``n_points + 1``.

scikit-image computes every pixel of the image in a per-pixel loop: about 9 ms per
radius at 256x256 with 8 points, 28 ms for the default three radii, far over a 6 ms
budget. This module computes the same codes with whole-array operations on the
brain's bounding box only, sharing the column interpolations between neighbours: about
1.5 ms per slice (CT-ICH slices at 256x256, one core, brain mask excluded), 6.5 ms
when the brain fills the whole slice. The tests check the codes against scikit-image.
One difference is deliberate: a neighbour equal to the centre in exact arithmetic
counts as "not below" even where the interpolation rounds it a hair lower
(``TIE_TOLERANCE``); scikit-image's rounding splits such ties at random, and flat CT
regions are full of them.

References
----------
T. Ojala, M. Pietikainen and T. Maenpaa, "Multiresolution gray-scale and rotation
invariant texture classification with local binary patterns", IEEE TPAMI 24(7),
971-987, 2002.
"""

from __future__ import annotations

import math

import numpy as np

from ichkit.features._base import SliceFeatures
from ichkit.features.brain import bounding_box
from ichkit.scans.validation import check_distinct, number_label

__all__ = ["LBPFeatures", "TIE_TOLERANCE"]

#: A neighbour at most this many Hounsfield units below the centre counts as equal.
#: Far below CT's resolution, far above the rounding of bilinear interpolation.
TIE_TOLERANCE = 1e-3


class LBPFeatures(SliceFeatures):
    """Histograms of uniform local binary patterns over the brain, one per radius.

    Parameters
    ----------
    radii : sequence of float, default=(1, 2, 3)
        Radii of the neighbour circles in pixels, each in [1, 16].
    n_points : int, default=8
        Neighbours on every circle, in [4, 24]. Eight at every radius (rather than
        ``8 * radius``, which costs twice as much) keeps the histograms short.

    Attributes
    ----------
    feature_names_out_ : ndarray of str
        ``lbp_r<radius>_uniform<k>`` (``k`` neighbours not below the centre, ``k`` in
        ``0 .. n_points``) and ``lbp_r<radius>_nonuniform``, per radius.

    Notes
    -----
    Codes are computed on the Hounsfield units, with neighbours anywhere in the
    image, and counted over the brain mask only. Each radius's histogram sums to 1,
    except for an empty brain, where it is all 0.

    Examples
    --------
    >>> import numpy as np
    >>> slices = np.random.default_rng(0).normal(40, 10, size=(2, 32, 32))
    >>> histograms = LBPFeatures(radii=(1,)).fit_transform(slices)
    >>> histograms.shape, float(histograms[0].sum())
    ((2, 10), 1.0)
    """

    _constraints = {"radii": ("floats", 1, 16), "n_points": ("int", 4, 24)}

    def __init__(self, radii=(1, 2, 3), *, n_points=8):
        self.radii = radii
        self.n_points = n_points

    def _prepare(self) -> None:
        check_distinct(self, "radii")

    def _names(self) -> list[str]:
        names = []
        for radius in self.radii:
            prefix = f"lbp_r{number_label(radius)}"
            names += [f"{prefix}_uniform{k}" for k in range(self.n_points + 1)]
            names.append(f"{prefix}_nonuniform")
        return names

    def _features(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        n_bins = self.n_points + 2
        if not mask.any():
            return np.zeros(n_bins * len(self.radii))
        margin = math.ceil(max(self.radii)) + 1
        # Zeros around the image: scikit-image reads 0 outside it.
        padded = np.pad(np.asarray(image, dtype=np.float64), margin)
        rows, columns = bounding_box(mask)
        rows = slice(rows.start + margin, rows.stop + margin)
        columns = slice(columns.start + margin, columns.stop + margin)
        # Codes >= 64 are outside the brain and not counted.
        outside = np.left_shift(
            (~mask[_unpad(rows, margin), _unpad(columns, margin)]).view(np.uint8), 6
        )
        histograms = []
        for radius in self.radii:
            key = _uniform_key(padded, rows, columns, self.n_points, float(radius))
            key += outside
            counts = np.bincount(key.ravel(), minlength=128)
            histogram = np.append(counts[: self.n_points + 1], counts[32:64].sum())
            histograms.append(histogram / histogram.sum())
        return np.concatenate(histograms)


def _unpad(region: slice, margin: int) -> slice:
    return slice(region.start - margin, region.stop - margin)


def _uniform_key(
    padded: np.ndarray, rows: slice, columns: slice, n_points: int, radius: float
) -> np.ndarray:
    """Uniform LBP code of the pixels ``padded[rows, columns]``, as a uint8 key.

    The key is the number of neighbours not below the centre, plus 32 for a
    non-uniform pattern. ``padded`` must hold ``ceil(radius) + 1`` pixels around the
    region. The interpolation follows scikit-image's order of operations (along the
    row first, then between rows), so that the codes match.
    """
    angles = 2 * np.pi * np.arange(n_points) / n_points
    row_offsets = np.round(-radius * np.sin(angles), 5)
    column_offsets = np.round(radius * np.cos(angles), 5)
    height, width = rows.stop - rows.start, columns.stop - columns.start
    reach = math.ceil(radius) + 1
    center = padded[rows, columns]
    threshold = center - TIE_TOLERANCE
    # Each column offset is interpolated once, over the rows that any neighbour needs.
    band = slice(rows.start - reach, rows.stop + reach)
    along_rows: dict[float, np.ndarray] = {}
    n_ones = np.zeros((height, width), dtype=np.uint8)
    changes = np.zeros((height, width), dtype=np.uint8)
    not_below = np.empty((height, width), dtype=bool)
    previous = np.empty((height, width), dtype=bool)
    changed = np.empty((height, width), dtype=bool)
    for index, (row_offset, column_offset) in enumerate(
        zip(row_offsets, column_offsets, strict=True)
    ):
        if column_offset not in along_rows:
            along_rows[column_offset] = _interpolate_columns(padded, band, columns, column_offset)
        interpolated = along_rows[column_offset]
        first_row = math.floor(row_offset)
        fraction = row_offset - first_row
        top = interpolated[reach + first_row : reach + first_row + height]
        if fraction:
            bottom = interpolated[reach + first_row + 1 : reach + first_row + 1 + height]
            neighbour = (1 - fraction) * top + fraction * bottom
        else:
            neighbour = top
        np.greater_equal(neighbour, threshold, out=not_below)
        np.add(n_ones, not_below.view(np.uint8), out=n_ones)
        if index:
            np.not_equal(not_below, previous, out=changed)
            np.add(changes, changed.view(np.uint8), out=changes)
        not_below, previous = previous, not_below
    non_uniform = np.greater(changes, 2)
    n_ones += np.left_shift(non_uniform.view(np.uint8), 5)
    return n_ones


def _interpolate_columns(
    padded: np.ndarray, band: slice, columns: slice, offset: float
) -> np.ndarray:
    """``padded[band]`` interpolated linearly at ``columns`` shifted by ``offset``."""
    first = math.floor(offset)
    fraction = offset - first
    left = padded[band, columns.start + first : columns.stop + first]
    if not fraction:
        return left
    right = padded[band, columns.start + first + 1 : columns.stop + first + 1]
    return (1 - fraction) * left + fraction * right
