"""Intensity statistics of the brain: first-order moments, percentiles and Hounsfield bands.

Both extractors describe the pixels of the slice's ``brain_mask`` only, so the skull,
scalp and air do not weigh on them. Fresh blood (about 50 to 90 HU) is denser than
brain (about 20 to 45 HU) and much lighter than bone, which is why the bands and the
upper percentiles carry most of the signal for hemorrhage.

Grey exports mapped back with ``scans.to_hounsfield`` only keep the units inside their
window (CT-ICH's 40/120: -20 to 100 HU); the brain mask's range (``TISSUE_HU``, -5 to
100 HU) and the default bands lie inside it, so the features mean the same there as on
DICOM or NIfTI.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ichkit.features._base import SliceFeatures
from ichkit.features.brain import TISSUE_HU
from ichkit.scans.validation import check_band, check_unique, number_label

__all__ = ["BLOOD_BAND", "DEFAULT_BANDS", "FirstOrderFeatures", "HounsfieldBandFeatures"]

#: Bands of ``HounsfieldBandFeatures`` as ``(name, low, high)``, half-open ``[low, high)``.
#: Cerebrospinal fluid, grey and white matter, the overlap of grey matter with thin or
#: anaemic blood, fresh blood, and clot or partial volume with bone.
DEFAULT_BANDS = (
    ("csf", 0.0, 15.0),
    ("parenchyma", 15.0, 45.0),
    ("borderline", 45.0, 50.0),
    ("blood", 50.0, 90.0),
    ("dense", 90.0, 100.0),
)
#: Fresh blood, ``[low, high)`` in Hounsfield units.
BLOOD_BAND = (50.0, 90.0)
#: Pixels above this count as head (anything denser than fat) for ``huband_blood_head_fraction``.
_HEAD_HU = -200.0
#: Percentiles always computed, for the interquartile range.
_QUARTILES = (25.0, 75.0)


class FirstOrderFeatures(SliceFeatures):
    """First-order statistics of the Hounsfield units inside the brain mask.

    Mean, standard deviation, skewness, excess kurtosis, minimum, maximum, range,
    interquartile range, the ``percentiles``, and the entropy and uniformity of a
    histogram of ``n_bins`` equal bins over the brain mask's range (``TISSUE_HU``,
    -5 to 100 HU).

    Parameters
    ----------
    percentiles : sequence of float, default=(5, 25, 50, 75, 95, 99)
        Percentiles in [0, 100], each named ``firstorder_p<q>`` (``p2.5`` is
        ``firstorder_p2p5``); no repeats.
    n_bins : int, default=21
        Histogram bins for the entropy and uniformity (21 gives 5 HU bins).

    Attributes
    ----------
    feature_names_out_ : ndarray of str
        ``firstorder_mean``, ``firstorder_std``, ..., ``firstorder_p95``, ...

    Notes
    -----
    Every feature is 0 for a slice without brain; the standard deviation, skewness
    and kurtosis are 0 for a constant brain (a single pixel). Entropy is in bits.
    Skewness and kurtosis are the biased (population) moment ratios, as in
    ``scipy.stats.skew`` and ``scipy.stats.kurtosis``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.full((2, 32, 32), 30.0, dtype=np.float32)
    >>> features = FirstOrderFeatures(percentiles=(50, 95)).fit(X)
    >>> features.transform(X).shape
    (2, 12)
    >>> list(features.get_feature_names_out()[-4:])
    ['firstorder_p50', 'firstorder_p95', 'firstorder_entropy', 'firstorder_uniformity']
    """

    _constraints = {"percentiles": ("floats", 0, 100), "n_bins": ("int", 2, 1024)}

    def __init__(self, percentiles=(5, 25, 50, 75, 95, 99), *, n_bins=21):
        self.percentiles = percentiles
        self.n_bins = n_bins

    def _prepare(self) -> None:
        check_unique(
            [number_label(value) for value in self.percentiles],
            "percentiles",
            type(self).__name__,
            self.percentiles,
        )

    def _names(self) -> list[str]:
        moments = ["mean", "std", "skewness", "kurtosis", "min", "max", "range", "iqr"]
        percentiles = [f"p{number_label(value)}" for value in self.percentiles]
        return [f"firstorder_{name}" for name in [*moments, *percentiles, "entropy", "uniformity"]]

    def _features(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        n_percentiles = len(self.percentiles)
        # Sorted first, in the image's own precision (a float32 sort takes half the
        # time of a float64 one, and widening keeps the order): numpy's vectorised sort
        # and then percentiles of sorted values take about half the time of
        # percentiles' partitions of the unsorted ones, for the same values.
        values = np.sort(image[mask]).astype(np.float64)
        if values.size == 0:
            return np.zeros(10 + n_percentiles)
        mean = values.mean()
        deviation = values - mean
        squared = deviation * deviation
        variance = squared.mean()
        if variance > 1e-12:
            skewness = (squared * deviation).mean() / variance**1.5
            kurtosis = (squared * squared).mean() / variance**2 - 3.0
        else:
            skewness = kurtosis = 0.0
        wanted = np.concatenate([np.asarray(self.percentiles, dtype=np.float64), _QUARTILES])
        quantiles = np.percentile(values, wanted)
        minimum, maximum = values[0], values[-1]

        low, high = TISSUE_HU
        scale = self.n_bins / (high - low)
        bins = np.clip(((values - low) * scale).astype(np.intp), 0, self.n_bins - 1)
        probabilities = np.bincount(bins, minlength=self.n_bins) / values.size
        nonzero = probabilities[probabilities > 0]
        entropy = -np.sum(nonzero * np.log2(nonzero))
        uniformity = np.sum(probabilities * probabilities)
        statistics = [
            mean,
            np.sqrt(variance),
            skewness,
            kurtosis,
            minimum,
            maximum,
            maximum - minimum,
            quantiles[-1] - quantiles[-2],
            *quantiles[:n_percentiles],
            entropy,
            uniformity,
        ]
        return np.asarray(statistics, dtype=np.float64)


class HounsfieldBandFeatures(SliceFeatures):
    """Fractions of the brain in bands of Hounsfield units, and the amount of blood.

    For each band, the fraction of the brain mask's pixels in ``[low, high)``
    (``huband_<name>_<low>_<high>``, e.g. ``huband_blood_50_90``). Then three sizes
    that do not depend on how much brain the slice shows: the pixels of the brain in
    ``blood_band`` as a fraction of the image (``huband_blood_image_fraction``) and of
    the head, everything denser than -200 HU (``huband_blood_head_fraction``), and the
    brain's own fraction of the image (``huband_brain_image_fraction``).

    Parameters
    ----------
    bands : sequence of (str, float, float), default=DEFAULT_BANDS
        ``(name, low, high)`` in Hounsfield units with ``low < high``; names are
        lowercase words (letters, digits, underscores) and unique. Bands may overlap
        or leave gaps. The default: csf 0-15, parenchyma 15-45, borderline 45-50,
        blood 50-90, dense 90-100.
    blood_band : (float, float), default=(50, 90)
        ``[low, high)`` of fresh blood for the three size features.

    Attributes
    ----------
    feature_names_out_ : ndarray of str
        One name per band, then the three size features.

    Notes
    -----
    The brain mask holds -5 to 100 HU only (``TISSUE_HU``), so bands outside that range
    are always 0. On grey exports mapped back with ``scans.to_hounsfield`` only the
    export window's range is known (CT-ICH: -20 to 100 HU), which covers the default
    bands. Every feature is 0 for a slice without brain.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.full((1, 32, 32), 70.0, dtype=np.float32)
    >>> features = HounsfieldBandFeatures(bands=(("blood", 50, 90),)).fit(X)
    >>> features.transform(X).tolist()
    [[1.0, 1.0, 1.0, 1.0]]
    >>> list(features.get_feature_names_out())  # doctest: +NORMALIZE_WHITESPACE
    ['huband_blood_50_90', 'huband_blood_image_fraction', 'huband_blood_head_fraction',
     'huband_brain_image_fraction']
    """

    def __init__(self, bands=DEFAULT_BANDS, *, blood_band=BLOOD_BAND):
        self.bands = bands
        self.blood_band = blood_band

    def _prepare(self) -> None:
        owner = type(self).__name__
        _check_bands(self.bands, "bands", owner)
        check_band(self.blood_band, "blood_band", owner)

    def _names(self) -> list[str]:
        names = [
            f"huband_{name}_{number_label(low)}_{number_label(high)}"
            for name, low, high in self.bands
        ]
        return names + [
            "huband_blood_image_fraction",
            "huband_blood_head_fraction",
            "huband_brain_image_fraction",
        ]

    def _features(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        values = image[mask]
        n_brain = values.size
        lows = np.array([band[1] for band in self.bands] + [self.blood_band[0]], np.float64)
        highs = np.array([band[2] for band in self.bands] + [self.blood_band[1]], np.float64)
        # Count pixels below every band edge with one sort of the edges: for n pixels
        # and k bands this is O(n log k) instead of k passes over the brain.
        edges = np.unique(np.concatenate([lows, highs]))
        positions = np.searchsorted(edges, values, side="right")
        below = np.concatenate([[0], np.cumsum(np.bincount(positions, minlength=edges.size + 1))])
        # below[i + 1] = pixels < edges[i] (side="right" puts a pixel equal to an edge
        # above it).
        counts = below[np.searchsorted(edges, highs) + 1] - below[np.searchsorted(edges, lows) + 1]
        n_blood = counts[-1]
        fractions = counts[:-1] / max(n_brain, 1)
        n_head = max(int(np.count_nonzero(image > _HEAD_HU)), 1)
        sizes = [n_blood / image.size, n_blood / n_head, n_brain / image.size]
        return np.concatenate([fractions, sizes]).astype(np.float64)


def _check_bands(bands, name: str, owner: str) -> None:
    """Check a non-empty sequence of ``(name, low, high)`` bands with unique word names."""
    if isinstance(bands, str | bytes) or not isinstance(bands, Sequence):
        raise TypeError(
            f"The '{name}' parameter of {owner} must be a sequence of (name, low, high) "
            f"bands. Got {bands!r}."
        )
    if len(bands) == 0:
        raise ValueError(f"The '{name}' parameter of {owner} must not be empty.")
    for band in bands:
        if (
            isinstance(band, str | bytes)
            or not isinstance(band, Sequence)
            or len(band) != 3
            or not isinstance(band[0], str)
        ):
            raise TypeError(
                f"Each band in the '{name}' parameter of {owner} must be a (name, low, high) "
                f"triple such as ('blood', 50, 90). Got {band!r}."
            )
        if not (band[0].isidentifier() and band[0] == band[0].lower()):
            raise ValueError(
                f"Each band name in the '{name}' parameter of {owner} must be a lowercase "
                f"word (letters, digits, underscores), as it goes into feature names. "
                f"Got {band[0]!r}."
            )
        subject = f"Band {band[0]!r} in the '{name}' parameter of {owner}"
        check_band(tuple(band[1:]), name, owner, subject)
    check_unique([band[0] for band in bands], name, owner, bands, what="band names")
