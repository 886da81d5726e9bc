"""Whether a slice looks like head CT: the gate in front of every verdict.

A model answers whatever it is given: a 1x1 PNG, a black square or random noise got
confident "Hemorrhagic" verdicts. ``check_slice`` says why an image is not a head CT
slice (or None when it may be one) and ``check_scan`` whether a scan holds a head. They
refuse what no head CT slice can be, with generous limits, and nothing else: the gate
is not a classifier of anatomy. It works on Hounsfield units (DICOM, NIfTI) and on grey
exports (PNG, JPEG, 8 or 16 bits) alike: no rule depends on the export's window.

The rules, in order (the first that fails is the reason), with their margins on every
real slice of ``../shared/data`` (ct-ich-dev 605 JPEGs, rsna-course-dev 1,200 PNGs,
the four DICOM series) and on the phantom in every format at 32 to 128 pixels:

1. **Extreme aspect ratio**: the longer side is more than ``MAX_ASPECT_RATIO`` (3)
   times the shorter (a 3x9000 PNG). Real slices: at most 1.30 (666x512).
2. **Too small**: a side below ``MIN_SIDE`` (32) pixels, the smallest slice the
   project's phantom draws (a 1x1 PNG). Real slices: 404 to 666 pixels a side.
3. **Non-finite values**: any NaN or infinite pixel. Readers replace what they can
   (NaN voxels of a NIfTI volume become air); what is left is a broken file, and
   every model would turn it into NaN. Real slices: none.
4. **Constant image**: every pixel the same (a black PNG, an all-zero volume, a black
   CMYK JPEG). Real slices: 11 rsna-course-dev PNGs are all black (exported with a
   window that left nothing); no model can say anything about them either.
5. **Hounsfield values outside any CT range** (slices in Hounsfield units only): a
   pixel beyond ``HOUNSFIELD_LIMIT`` (+-65536 HU, beyond 16-bit storage with a unit
   slope: a RescaleSlope of 1000 gets there), or a median outside
   ``HOUNSFIELD_MEDIAN_RANGE`` (-1200 to 3100 HU: a slice is mostly air, fat, water,
   tissue or bone; a RescaleIntercept of +20000 moves it out). Real slices: every
   pixel within -1024 to 3071 HU, medians -1000 to -839 HU.
6. **No image structure**: the correlation of each pixel with its neighbour below and
   with its neighbour to the right are both under ``MIN_NEIGHBOUR_CORRELATION`` (0.3):
   random noise (about 0). CT is smooth at the pixel scale: real slices at least 0.97
   both ways, the 32-pixel phantom's top slices 0.40. One direction under it and the
   other above: scrambled rows or columns.
7. **Scrambled rows**: pixels are stored row after row, and a DICOM read with other
   Rows and Columns than it was stored with (Rows and Columns swapped on a slice that
   is not square) is sheared into stripes. In the pixel stream a pixel is most like
   the one a row further on, so the stream's autocorrelation peaks at the true row
   width; it must not be higher at any lag other than the row width (within a pixel,
   or a multiple of it) by more than ``MAX_OTHER_WIDTH_EXCESS`` (0.01). Real slices:
   at most -0.0005 (always lower); a shear of 2 pixels a row: +0.035.
8. **No head-shaped foreground**: the foreground is what is denser than air (as
   ``CropToHead`` finds it: above -500 HU, or a tenth of the way up a grey image's
   range) on a block-averaged copy about ``ANALYSIS_SIDE`` (256) pixels a side, holes
   filled (so a skull around air, as in a head phantom, counts whole). It must

   - cover at most ``MAX_HEAD_AREA`` (0.95) of the image: a CT slice shows background
     around the head (real slices: at most 0.57);
   - hold an object that is thick, or small but compact: the largest disc inside it
     has a radius of at least ``MIN_HEAD_RADIUS`` (0.03) of the image's shorter side,
     or at least ``MIN_SMALL_HEAD_RADIUS`` (0.01) when that radius is at least
     ``MIN_COMPACTNESS`` (0.5) of the radius of a disc of the object's area (about 0.9
     for a head section, under 0.4 for the band of a headrest). Real head slices: the
     weakest, a 14-pixel vertex section, would still pass limits 1.4 times as strict,
     all others 2.3 times; slices beyond the head, holding only a headrest's or
     table's arcs (16 rsna-course-dev PNGs, the last slice of the Philips phantom
     series), reach at most 0.87 of them.

   ``CropToHead``'s box is not used: it keeps every region a tenth the size of the
   largest, so the box of a vertex slice holds the headrest too, and a box says
   nothing of how thick what it holds is.

A scan (``check_scan``) passes when at least ``MIN_HEAD_SLICE_FRACTION`` (a quarter) of
its slices pass and none has non-finite values: slices above the vertex or below the
skull base are normal parts of a series and are not refused one by one. A scan with
non-finite values is refused whole, since the models read its slices together. Every
real scan and every phantom scan passes.

Cost: about 10 to 20 ms a 512x512 slice (0.5 to 3 ms at 32 to 128 pixels).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
from scipy import ndimage
from skimage.measure import block_reduce

from ichkit.scans._slice import SliceImage
from ichkit.scans.transforms import AIR_THRESHOLD_HU

__all__ = [
    "ANALYSIS_SIDE",
    "HOUNSFIELD_LIMIT",
    "HOUNSFIELD_MEDIAN_RANGE",
    "MAX_ASPECT_RATIO",
    "MAX_HEAD_AREA",
    "MAX_OTHER_WIDTH_EXCESS",
    "MIN_COMPACTNESS",
    "MIN_HEAD_RADIUS",
    "MIN_HEAD_SLICE_FRACTION",
    "MIN_NEIGHBOUR_CORRELATION",
    "MIN_SIDE",
    "MIN_SMALL_HEAD_RADIUS",
    "check_scan",
    "check_slice",
    "check_slices",
]

#: The longest side may be at most this many times the shortest.
MAX_ASPECT_RATIO = 3.0
#: The shortest side a slice may have, in pixels (the phantom's smallest size).
MIN_SIDE = 32
#: No Hounsfield unit of a CT slice lies beyond +-this.
HOUNSFIELD_LIMIT = 65536.0
#: The median Hounsfield unit of a CT slice lies in this range.
HOUNSFIELD_MEDIAN_RANGE = (-1200.0, 3100.0)
#: Neighbouring pixels correlate at least this much, along rows and along columns.
MIN_NEIGHBOUR_CORRELATION = 0.3
#: The head is looked for on a block-averaged copy about this many pixels a side.
ANALYSIS_SIDE = 256
#: A head is an object whose largest inscribed disc has at least this radius, as a
#: fraction of the image's shorter side ...
MIN_HEAD_RADIUS = 0.03
#: ... or at least this radius when the object is compact (a vertex section) ...
MIN_SMALL_HEAD_RADIUS = 0.01
#: ... that is, when that radius is at least this fraction of the radius of a disc of
#: the object's area.
MIN_COMPACTNESS = 0.5
#: The foreground (holes filled) covers at most this fraction of the image: a head CT
#: slice shows background around the head.
MAX_HEAD_AREA = 0.95
#: A scan passes when at least this fraction of its slices pass.
MIN_HEAD_SLICE_FRACTION = 0.25

#: A real slice's pixel stream is at least this much less alike at any lag other than
#: (within a pixel of a multiple of) its row width than at its row width.
MAX_OTHER_WIDTH_EXCESS = 0.01
#: The band of rows searched for the row width holds this many sides' worth of pixels.
_ROW_WIDTH_SPAN = 8
#: Pixels sampled along each axis for the neighbour correlations and the median.
_SAMPLES_PER_AXIS = 256


def check_slice(image: SliceImage) -> str | None:
    """Why ``image`` does not look like a head CT slice, or None when it may be one.

    Parameters
    ----------
    image : SliceImage
        A slice as a reader returns it: Hounsfield units (DICOM, NIfTI) or grey values
        of an export (PNG, JPEG), whose window does not matter here.

    Returns
    -------
    str or None
        A short reason ("constant image", "too small (1x1 pixels; a CT slice is at
        least 32x32)", ...), or None. The rules are in the module docstring.

    Examples
    --------
    >>> import numpy as np
    >>> check_slice(SliceImage(np.zeros((512, 512), dtype=np.float32), hounsfield=False))
    'constant image (every pixel is 0)'
    >>> check_slice(SliceImage(np.zeros((1, 1), dtype=np.float32), hounsfield=False))
    'too small (1x1 pixels; a CT slice is at least 32x32)'
    """
    pixels = np.asarray(image.pixels)
    if pixels.ndim != 2 or pixels.size == 0:
        return f"not a 2-D image (pixel array of shape {pixels.shape})"
    height, width = pixels.shape
    if max(height, width) > MAX_ASPECT_RATIO * min(height, width):
        return (
            f"extreme aspect ratio ({height}x{width} pixels; a CT slice is at most "
            f"{MAX_ASPECT_RATIO:g} times as long as it is wide)"
        )
    if min(height, width) < MIN_SIDE:
        return f"too small ({height}x{width} pixels; a CT slice is at least {MIN_SIDE}x{MIN_SIDE})"
    if not np.issubdtype(pixels.dtype, np.number) or np.iscomplexobj(pixels):
        return f"not real-valued pixels (dtype {pixels.dtype})"
    finite = np.isfinite(pixels)
    if not finite.all():
        n_bad = int(pixels.size - np.count_nonzero(finite))
        return f"non-finite values ({n_bad} of {pixels.size} pixels are NaN or infinite)"
    low, high = float(pixels.min()), float(pixels.max())
    if low == high:
        return f"constant image (every pixel is {low:g})"
    # No float64 copy of the whole slice (512 MB at 8192x8192): each rule samples,
    # averages blocks or takes a band of rows, and works on that in float64.
    if image.hounsfield:
        reason = _hounsfield_reason(pixels, low, high)
        if reason:
            return reason
    reason = _structure_reason(pixels) or _row_width_reason(pixels)
    if reason:
        return reason
    return _head_reason(pixels)


def check_slices(images: Sequence[SliceImage]) -> list[str | None]:
    """``check_slice`` of every image, in order."""
    return [check_slice(image) for image in images]


def check_scan(
    images: Sequence[SliceImage], *, reasons: Sequence[str | None] | None = None
) -> str | None:
    """Why the slices of one scan do not hold a head CT, or None when they may.

    Slices above the vertex or below the skull base (air, a headrest) are normal parts
    of a series: the scan passes when at least ``MIN_HEAD_SLICE_FRACTION`` of its
    slices pass ``check_slice``. Non-finite values on any slice refuse the whole scan:
    models that read the slices together would turn them into NaN.

    Parameters
    ----------
    images : sequence of SliceImage
        The slices of one scan.
    reasons : sequence of (str or None), default=None
        ``check_slices(images)`` when already computed (to check each slice once).

    Returns
    -------
    str or None
        The reason, naming the slices' own reasons with their counts, or None.
    """
    if reasons is None:
        reasons = check_slices(images)
    n_slices = len(reasons)
    if n_slices == 0:
        return "no slices"
    non_finite = [index for index, reason in enumerate(reasons) if _is_non_finite(reason)]
    if non_finite:
        return (
            f"non-finite values on {_count(len(non_finite), 'slice')} of {n_slices} "
            f"(slice {_index_list(non_finite)})"
        )
    n_plausible = sum(reason is None for reason in reasons)
    if n_plausible >= max(1, math.ceil(MIN_HEAD_SLICE_FRACTION * n_slices)):
        return None
    kinds = Counter(_kind(reason) for reason in reasons if reason is not None)
    common = "; ".join(f"{kind}: {count}" for kind, count in kinds.most_common(3))
    if n_plausible == 0:
        return f"none of its {n_slices} slices looks like a head CT slice ({common})"
    return (
        f"only {n_plausible} of its {n_slices} slices look like a head CT slice, fewer "
        f"than {MIN_HEAD_SLICE_FRACTION:.0%} ({common})"
    )


# --- the rules ---------------------------------------------------------------------------


def _hounsfield_reason(values: np.ndarray, low: float, high: float) -> str | None:
    """Rule 5: the values of a slice in Hounsfield units are CT values."""
    median = float(np.median(_sample(values).astype(np.float64)))
    median_low, median_high = HOUNSFIELD_MEDIAN_RANGE
    if max(-low, high) > HOUNSFIELD_LIMIT or not median_low <= median <= median_high:
        return (
            f"Hounsfield values outside any CT range (median {median:.4g} HU, from "
            f"{low:.4g} to {high:.4g} HU; head CT lies within about -1024 to 3071 HU)"
        )
    return None


def _structure_reason(values: np.ndarray) -> str | None:
    """Rule 6: neighbouring pixels are alike, along rows and along columns."""
    along_columns = _neighbour_correlation(values)  # pixel and the one below it
    along_rows = _neighbour_correlation(values.T)  # pixel and the one to its right
    weakest, strongest = sorted((along_columns, along_rows))
    if weakest >= MIN_NEIGHBOUR_CORRELATION:
        return None
    if strongest < MIN_NEIGHBOUR_CORRELATION:
        return (
            f"no image structure (neighbouring pixels are uncorrelated, r = {strongest:.2f}, "
            "as in random noise)"
        )
    lines = "rows" if along_columns < along_rows else "columns"
    return (
        f"scrambled {lines} (neighbouring {lines} are unrelated, r = {weakest:.2f}, while "
        f"neighbouring pixels along them correlate, r = {strongest:.2f}: were the "
        "pixels stored with other Rows and Columns?)"
    )


def _row_width_reason(values: np.ndarray) -> str | None:
    """Rule 7: the image repeats every row, not every so many pixels of some other width.

    Pixels are stored row after row; read with the wrong number of columns, each row
    of the image continues into the next and the head is sheared into stripes. In the
    stored pixel stream a pixel is most like the one a row further on, so the lag at
    which the stream's autocorrelation peaks is the true row width: the claimed width
    (or within a pixel of a multiple of it) for a real slice.
    """
    height, width = values.shape
    side = max(height, width)
    # A band of middle rows (where the head is) long enough to hold lags of two sides.
    n_rows = min(height, max(2, -(-_ROW_WIDTH_SPAN * side // width)))
    start = (height - n_rows) // 2
    stream = values[start : start + n_rows].astype(np.float64).ravel()
    stream -= stream.mean()
    n_values = stream.size
    if not np.any(stream):
        return None
    spectrum = np.fft.rfft(stream, 2 * n_values)  # zero-padded: linear, not circular
    autocorrelation = np.fft.irfft(spectrum * np.conj(spectrum), 2 * n_values)[:n_values]
    autocorrelation /= n_values - np.arange(n_values)  # each lag's mean product
    autocorrelation /= autocorrelation[0]
    lags = np.arange(MIN_SIDE // 2, min(2 * side + 2, n_values // 2))
    offsets = lags % width
    other_widths = lags[(offsets > 1) & (offsets < width - 1)]
    if other_widths.size == 0:
        return None
    best = int(other_widths[np.argmax(autocorrelation[other_widths])])
    if autocorrelation[best] - autocorrelation[width] <= MAX_OTHER_WIDTH_EXCESS:
        return None
    return (
        f"scrambled rows (the pixels repeat every {best}, not every {width}: were they "
        "stored with other Rows and Columns?)"
    )


def _head_reason(values: np.ndarray) -> str | None:
    """Rule 8: a head-shaped object, thick and compact, with background around it."""
    height, width = values.shape
    block = max(1, max(height, width) // ANALYSIS_SIDE)
    # Block means rather than every n-th pixel: a blob stays a blob, and whether a thin
    # line survives does not depend on where the sampling grid falls.
    reduced = block_reduce(
        values[: height - height % block, : width - width % block], block, np.mean
    ).astype(np.float64, copy=False)
    foreground = ndimage.binary_fill_holes(reduced > _foreground_threshold(reduced))
    area = float(foreground.mean())
    if area == 0:
        return "no head-shaped foreground (nothing is denser than air)"
    if area > MAX_HEAD_AREA:
        return (
            f"no head-shaped foreground (foreground covers {area:.0%} of the image; a head "
            "CT slice shows background around the head)"
        )
    regions, _ = ndimage.label(foreground)
    depth = ndimage.distance_transform_edt(foreground)
    scale = block / min(height, width)  # reduced pixels to fractions of the shorter side
    areas = np.bincount(regions.ravel())
    areas[0] = 0
    # A region can hold a disc of radius r only if its area is at least pi r^2: the
    # others (specks, noise) need no closer look.
    candidates = np.flatnonzero(areas >= np.pi * (MIN_SMALL_HEAD_RADIUS / scale) ** 2)
    if candidates.size == 0:
        radii = compactness = np.zeros(1)
    else:
        # Per region: the radius of the largest disc inside it, and that radius over
        # the radius of a disc of the region's area (1 for a disc, about 0.9 for a
        # head, small for a band such as a headrest's arc).
        boxes = ndimage.find_objects(regions)  # per-region boxes: ndimage.maximum over
        depths = np.array(  # the labels took 15 ms a slice, this 1 ms
            [depth[boxes[k - 1]][regions[boxes[k - 1]] == k].max() for k in candidates]
        )
        radii = depths * scale
        compactness = depths / np.sqrt(areas[candidates] / np.pi)
    thick = radii >= MIN_HEAD_RADIUS
    small_but_compact = (radii >= MIN_SMALL_HEAD_RADIUS) & (compactness >= MIN_COMPACTNESS)
    if (thick | small_but_compact).any():
        return None
    thickest = 2 * float(depth.max()) * scale
    return (
        "no head-shaped foreground (only thin or small structures, such as a headrest: "
        f"the thickest is {thickest:.1%} of the image across)"
    )


# --- helpers -----------------------------------------------------------------------------


def _foreground_threshold(reference: np.ndarray) -> float:
    """What is denser than air: ``CropToHead``'s rule for its default threshold, which the
    gate needs as a number to measure the head inside the box."""
    low, high = float(reference.min()), float(reference.max())
    if low < -200:  # air (-1000 HU) is there: Hounsfield units
        return AIR_THRESHOLD_HU
    return low + 0.1 * (high - low)


def _neighbour_correlation(values: np.ndarray) -> float:
    """Pearson correlation of each pixel with the next one down, on a sample of pairs."""
    height, width = values.shape
    row_step = max(1, (height - 1) // _SAMPLES_PER_AXIS)
    column_step = max(1, width // _SAMPLES_PER_AXIS)
    upper = values[: height - 1 : row_step, ::column_step].astype(np.float64).ravel()
    lower = values[1::row_step, ::column_step].astype(np.float64).ravel()
    upper = upper - upper.mean()
    lower = lower - lower.mean()
    # Sums of products, not BLAS dot products: on a busy machine these were 10x faster.
    scale = math.sqrt(float(np.sum(upper * upper)) * float(np.sum(lower * lower)))
    # Flat in one direction (a slice of stripes): neighbours are as alike as can be.
    return float(np.sum(upper * lower)) / scale if scale > 0 else 1.0


def _sample(values: np.ndarray) -> np.ndarray:
    """About ``_SAMPLES_PER_AXIS`` squared pixels on a regular grid."""
    height, width = values.shape
    return values[:: max(1, height // _SAMPLES_PER_AXIS), :: max(1, width // _SAMPLES_PER_AXIS)]


def _is_non_finite(reason: str | None) -> bool:
    return reason is not None and reason.startswith("non-finite")


def _kind(reason: str) -> str:
    """A reason without its figures: 'constant image (every pixel is 0)' -> 'constant image'."""
    return reason.split(" (", 1)[0]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _index_list(indices: list[int], limit: int = 5) -> str:
    shown = ", ".join(str(index) for index in indices[:limit])
    return shown + (f" and {len(indices) - limit} more" if len(indices) > limit else "")
