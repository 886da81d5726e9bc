"""Shape of the hyperdense regions of the brain, and its left-right asymmetry.

Blood is denser than brain. The pixels of the brain mask in the blood band, cleaned
of noise by a small opening, form regions whose number, size, shape and place carry
the subtype: a lens (epidural) or crescent (subdural) lies against the skull, an
intraparenchymal hematoma is a compact blob inside the brain. Most hemorrhages are
one-sided, so the brain's left-right asymmetry is a second, lesion-free cue.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, cKDTree

from ichkit.features._base import SliceFeatures
from ichkit.features.brain import bounding_box
from ichkit.features.intensity import BLOOD_BAND
from ichkit.scans.validation import check_band

__all__ = ["HyperdenseShapeFeatures"]

_NAMES = (
    "n_regions",
    "total_area",
    "largest_area",
    "largest_eccentricity",
    "largest_solidity",
    "largest_extent",
    "largest_skull_proximity",
    "nearest_skull_proximity",
    "regions_mean_hu",
    "asymmetry_mean_hu",
    "asymmetry_blood",
    "asymmetry_area",
    "mirror_difference_hu",
)
_CROSS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))
#: Region edge pixels above which distances are bounded first, to query only a few.
_MAX_QUERIES = 1000
#: Corners of a pixel around its centre, for the convex hull of a region.
_CORNERS = np.array([(-0.5, -0.5), (-0.5, 0.5), (0.5, -0.5), (0.5, 0.5)])


class HyperdenseShapeFeatures(SliceFeatures):
    """Number, size, shape and place of the hyperdense regions; left-right asymmetry.

    The regions are the brain mask's pixels in ``band``, opened with a disc of
    ``opening_radius`` and kept when they cover at least ``min_area_fraction`` of the
    image (8-connected). Features, all prefixed ``shape_``:

    - ``n_regions``; ``total_area`` and ``largest_area``, fractions of the brain.
    - The largest region's ``eccentricity`` (0 for a disc, near 1 for a line),
      ``solidity`` (area over convex-hull area; low for a crescent) and ``extent``
      (area over bounding-box area).
    - ``largest_skull_proximity`` and ``nearest_skull_proximity`` (over all regions):
      ``1 - d / r``, clipped to [0, 1], where ``d`` is the region's smallest distance
      to the outer edge of the brain mask, holes filled (next to the inner table of the
      skull, or the skull base), and ``r`` the radius of a disc of the brain's area. 1 means the
      region touches the skull (epidural, subdural), near 0 the brain's centre.
    - ``regions_mean_hu``: mean Hounsfield units of the regions.
    - Asymmetry about the brain's centroid column: absolute differences between
      the left and right halves of the mean Hounsfield units (``asymmetry_mean_hu``),
      of the fraction of the half in the regions (``asymmetry_blood``) and of
      the halves' areas over the brain's (``asymmetry_area``); and
      ``mirror_difference_hu``, the mean absolute difference between a pixel and its
      mirror image across that column, where both are brain.

    Parameters
    ----------
    band : (float, float), default=(50, 90)
        ``[low, high)`` of hyperdense (fresh blood) Hounsfield units.
    min_area_fraction : float, default=1.5e-4
        Smallest region kept, as a fraction of the image's pixels (at least one pixel):
        10 pixels of a 256 x 256 slice, about 9 mm² over a 24 cm field of view; a
        fraction keeps the same regions at every image size.
    opening_radius : int, default=1
        Radius in pixels of the disc that opens the band's pixels before labelling,
        removing noise specks and one-pixel bridges; 0 skips the opening.

    Attributes
    ----------
    feature_names_out_ : ndarray of str
        ``shape_n_regions``, ``shape_total_area``, ...

    Notes
    -----
    Without a kept region every region feature is 0 (so proximity 0 means "no region",
    not "far from the skull"); without brain every feature is 0. The asymmetry
    assumes a head roughly upright in the image; tilt adds to it.

    Examples
    --------
    >>> import numpy as np
    >>> rows, columns = np.mgrid[:64, :64]
    >>> X = np.where(np.hypot(rows - 32, columns - 32) < 28, 35.0, -1000.0)
    >>> X[(rows - 32) ** 2 + (columns - 24) ** 2 < 16] = 70.0
    >>> features = HyperdenseShapeFeatures().fit(X[np.newaxis])
    >>> values = features.transform(X[np.newaxis])[0]
    >>> dict(zip(features.get_feature_names_out()[:3], values[:3].round(3).tolist()))
    {'shape_n_regions': 1.0, 'shape_total_area': 0.018, 'shape_largest_area': 0.018}
    """

    _constraints = {
        "min_area_fraction": ("float", 0, 1),
        "opening_radius": ("int", 0, 10),
    }

    def __init__(self, band=BLOOD_BAND, *, min_area_fraction=1.5e-4, opening_radius=1):
        self.band = band
        self.min_area_fraction = min_area_fraction
        self.opening_radius = opening_radius

    def _prepare(self) -> None:
        check_band(self.band, "band", type(self).__name__)

    def _names(self) -> list[str]:
        return [f"shape_{name}" for name in _NAMES]

    def _features(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        features = dict.fromkeys(_NAMES, 0.0)
        n_brain = int(np.count_nonzero(mask))
        min_area = max(self.min_area_fraction * mask.size, 1.0)
        if n_brain == 0:
            return np.zeros(len(_NAMES))
        image, mask = _crop_to_mask(image, mask)
        low, high = self.band
        regions = mask & (image >= low) & (image < high)
        if self.opening_radius > 0 and regions.any():
            regions = _opening(regions, _disc_offsets(self.opening_radius))
        labels, n_labels = ndimage.label(regions, structure=np.ones((3, 3), dtype=bool))
        sizes = np.bincount(labels.ravel(), minlength=n_labels + 1)
        sizes[0] = 0
        keep = sizes >= min_area
        regions = keep[labels]

        if keep.any():
            largest_label = int(np.argmax(sizes))
            largest = labels == largest_label
            features["n_regions"] = float(np.count_nonzero(keep))
            features["total_area"] = sizes[keep].sum() / n_brain
            features["largest_area"] = sizes[largest_label] / n_brain
            features["regions_mean_hu"] = float(image[regions].mean())
            features.update(_region_shape(largest))
            features.update(_skull_proximity(mask, regions, largest))

        features.update(_asymmetry(image, mask, regions))
        return np.array([features[name] for name in _NAMES], dtype=np.float64)


def _crop_to_mask(image: np.ndarray, mask: np.ndarray, frame: int = 1):
    """The bounding box of ``mask`` with a ``frame`` of pixels (all outside the mask).

    Every later step works on the brain's box only; the frame keeps the background
    around the brain connected, so holes are still told from the outside.
    """
    box = bounding_box(mask, frame)
    return image[box], mask[box]


def _disc_offsets(radius: int) -> list[tuple[int, int]]:
    steps = np.arange(-radius, radius + 1)
    row_steps, column_steps = np.meshgrid(steps, steps, indexing="ij")
    inside = row_steps**2 + column_steps**2 <= radius**2
    return list(zip(row_steps[inside].tolist(), column_steps[inside].tolist(), strict=True))


def _shifted(mask: np.ndarray, offsets, combine, fill: bool) -> np.ndarray:
    """Erosion (``combine=np.logical_and``) or dilation by a flat element, with shifts.

    Several times faster than ``scipy.ndimage`` for small symmetric elements; pixels
    beyond the image are ``fill``.
    """
    reach = max(max(abs(row), abs(column)) for row, column in offsets)
    padded = np.pad(mask, reach, constant_values=fill)
    height, width = mask.shape
    result = np.full(mask.shape, combine is np.logical_and)
    for row, column in offsets:
        window = padded[reach + row : reach + row + height, reach + column : reach + column + width]
        combine(result, window, out=result)
    return result


def _opening(mask: np.ndarray, offsets) -> np.ndarray:
    # Beyond the image is unknown, not background: a region cut by the border keeps it.
    eroded = _shifted(mask, offsets, np.logical_and, fill=True)
    return _shifted(eroded, offsets, np.logical_or, fill=False)


def _edge(mask: np.ndarray) -> np.ndarray:
    """Pixels of ``mask`` with a 4-neighbour outside it (or beyond the image)."""
    return mask & ~_shifted(mask, _CROSS, np.logical_and, fill=False)


def _region_shape(region: np.ndarray) -> dict[str, float]:
    region = _crop_to_mask(region, region, frame=0)[1]
    height, width = region.shape
    row_counts = region.sum(axis=1, dtype=np.float64)
    column_counts = region.sum(axis=0, dtype=np.float64)
    area = row_counts.sum()
    row_offsets = np.arange(height) - row_counts @ np.arange(height) / area
    column_offsets = np.arange(width) - column_counts @ np.arange(width) / area
    # Eccentricity of the ellipse with the region's second moments, as in
    # skimage.measure.regionprops, from the eigenvalues of their 2 x 2 matrix.
    row_variance = row_counts @ row_offsets**2 / area
    column_variance = column_counts @ column_offsets**2 / area
    covariance = row_offsets @ region.astype(np.float64) @ column_offsets / area
    half_sum = (row_variance + column_variance) / 2
    half_gap = np.hypot((row_variance - column_variance) / 2, covariance)
    large, small = half_sum + half_gap, max(half_sum - half_gap, 0.0)
    eccentricity = np.sqrt(1.0 - small / large) if large > 1e-12 else 0.0
    # The convex hull of the corners of the region's edge pixels (the hull of the whole
    # region, with far fewer points): a single pixel or a line has area > 0.
    edge = np.argwhere(_edge(region))
    corners = (edge[:, np.newaxis, :] + _CORNERS).reshape(-1, 2)
    hull_area = ConvexHull(corners).volume
    return {
        "largest_eccentricity": float(eccentricity),
        "largest_solidity": float(min(1.0, area / hull_area)),
        "largest_extent": float(area / (height * width)),
    }


def _skull_proximity(brain: np.ndarray, regions: np.ndarray, largest: np.ndarray):
    """``1 - d / r`` for the largest region and the nearest one, see the class docstring."""
    # The brain with its holes (calcifications, air, fat) filled: only the outer edge
    # counts, not the rim of the pineal gland. Background is what joins the border.
    background, n_background = ndimage.label(~brain)
    on_border = np.unique(
        np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]])
    )
    is_outside = np.zeros(n_background + 1, dtype=bool)
    is_outside[on_border] = True
    is_outside[0] = False
    filled = ~is_outside[background]
    radius = max(np.sqrt(np.count_nonzero(filled) / np.pi), 1.0)
    # Exact Euclidean distances from the regions' edge pixels (the nearest pixel of a
    # region is on its edge) to the brain's edge pixels: a k-d tree over a few hundred
    # points is cheaper than a distance transform of the whole brain.
    tree = cKDTree(np.argwhere(_edge(filled)))
    region_edge = _edge(regions)
    largest = largest[region_edge]
    points = np.argwhere(region_edge)
    if len(points) > _MAX_QUERIES:
        # Many edge pixels (noise or texture): query only those that can be nearest.
        # The chessboard distance c to the outside bounds the Euclidean distance d to
        # the brain's edge: c - 1 <= d <= sqrt(2) c.
        chessboard = ndimage.distance_transform_cdt(np.pad(filled, 1), metric="chessboard")
        chessboard = chessboard[1:-1, 1:-1][region_edge]
        bound = np.sqrt(2) * chessboard
        candidates = (chessboard - 1 <= bound.min()) | (
            largest & (chessboard - 1 <= bound[largest].min())
        )
        points, largest = points[candidates], largest[candidates]
    distances, _ = tree.query(points)
    nearest = distances.min()
    largest_distance = distances[largest].min()
    return {
        "largest_skull_proximity": float(np.clip(1.0 - largest_distance / radius, 0.0, 1.0)),
        "nearest_skull_proximity": float(np.clip(1.0 - nearest / radius, 0.0, 1.0)),
    }


def _asymmetry(image: np.ndarray, brain: np.ndarray, regions: np.ndarray):
    """Left-right differences about the brain's centroid column, see the class docstring."""
    width = image.shape[1]
    columns = np.arange(width)
    column_counts = brain.sum(axis=0)
    column_sums = np.where(brain, image, 0.0).sum(axis=0, dtype=np.float64)
    column_regions = regions.sum(axis=0)
    n_brain = column_counts.sum()
    centre = column_counts @ columns / n_brain
    halves = []
    for side in (columns < centre, columns > centre):
        n_side = column_counts[side].sum()
        if n_side == 0:
            halves.append((0.0, 0.0, 0))
        else:
            halves.append(
                (column_sums[side].sum() / n_side, column_regions[side].sum() / n_side, n_side)
            )
    (left_mean, left_blood, n_left), (right_mean, right_blood, n_right) = halves
    mirrors = int(round(2 * centre)) - columns
    valid = (mirrors >= 0) & (mirrors < width)
    columns, mirrors = columns[valid], mirrors[valid]
    pairs = brain[:, columns] & brain[:, mirrors]
    if pairs.any():
        differences = np.abs(image[:, columns] - image[:, mirrors])[pairs]
        mirror_difference = float(differences.mean(dtype=np.float64))
    else:
        mirror_difference = 0.0
    return {
        "asymmetry_mean_hu": abs(left_mean - right_mean) if n_left and n_right else 0.0,
        "asymmetry_blood": abs(left_blood - right_blood),
        "asymmetry_area": abs(n_left - n_right) / n_brain,
        "mirror_difference_hu": mirror_difference,
    }
