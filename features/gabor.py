"""Gabor filter bank responses inside the brain, by FFT convolution.

Each slice is windowed (brain window 40/80 by default, to ``[0, 1]``), the brain's
mean subtracted and everything outside the brain mask set to 0, so that the skull's
edge does not ring through the filters. Only the brain's bounding box is
transformed (everything outside it is 0), once, zero-padded so that the convolution
is linear, not circular; each kernel (scikit-image's ``gabor_kernel``) multiplies its
transform. The magnitude of each complex response gives its mean and standard
deviation over the brain.

The kernels have a round envelope, so each is the outer product of a column and a
row (exactly, to rounding; checked on the bank's first use), and so is its transform:
two short 1-D transforms per kernel and box size instead of a full 2-D one, which is
what lets every slice use its own box. At 512x512 the box is about a third of the
slice (CT-ICH), and the bank went from 11.3 to 5.1 ms a slice on one core of a loaded
machine (3.5 ms on an idle one), features unchanged to float32 rounding (tested
against the whole slice's convolution).

Low frequencies need not be read at every pixel: a kernel's envelope has standard
deviation ``sigma = 0.56 / frequency`` pixels (bandwidth 1 octave), and its response
magnitude changes little from one pixel to the next. The response is read on every
``stride``-th row and column, with ``stride`` the largest power of two up to
``pi * sigma / 4``, and at most 4: 4 for frequencies up to 0.11, 2 up to 0.22, 1
above. Those samples are exact, not interpolated: the product of the spectra is
folded (its aliases summed) to the coarse grid before one small inverse FFT. A brain
with fewer than ``MIN_SAMPLES`` pixels on the coarse grid is read at a finer stride.
On 40 CT-ICH slices at 256x256 the defaults' 24 features stay within 4% of
full-resolution reading (median 0.2%; correlation over slices at least 0.999), at
half its cost.

Speed, measured at 256x256 on one core (CT-ICH slices, defaults: 3 frequencies x 4
orientations, brain mask excluded), before the box and the separable kernels: about
4 ms per slice (4.1 to 5.4 ms over runs on a shared 2-core machine), against about
2.9 s per slice with scikit-image's
``filters.gabor`` on the same windowed image and kernels (spatial convolution with
``scipy.ndimage``, one call per filter): some 700 times slower (675 to 800 over
runs). At full resolution, without the coarse grid, the FFT bank takes about 10 ms.
``benchmarks/features_bench.py`` prints both figures. The kernels' 1-D transforms
are kept for the last ``_CACHED_BOXES`` box sizes per process (a few kB each).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from ichkit.features._base import SliceFeatures
from ichkit.features.brain import bounding_box
from ichkit.scans.validation import check_distinct, number_label
from ichkit.scans.windowing import Window

__all__ = ["GaborFeatures", "MIN_SAMPLES"]

#: A brain sampled on a coarse grid must keep at least this many pixels there.
MIN_SAMPLES = 128
#: Kernel transforms are kept for this many padded box sizes (and banks) per process.
_CACHED_BOXES = 256
#: Separated kernels are kept for this many banks per process.
_CACHED_BANKS = 4
#: ``gabor_kernel``'s envelope standard deviation times frequency, for bandwidth 1.
_SIGMA_TIMES_FREQUENCY = math.sqrt(math.log(2) / 2) * 3 / math.pi


class GaborFeatures(SliceFeatures):
    """Mean and standard deviation of Gabor response magnitudes over the brain.

    Parameters
    ----------
    frequencies : sequence of float, default=(0.05, 0.1, 0.2)
        Spatial frequencies in cycles per pixel, each in [0.02, 0.5]. The defaults
        have periods of 20, 10 and 5 pixels.
    orientations : sequence of float, default=(0, 45, 90, 135)
        Kernel orientations ``theta`` of ``gabor_kernel``, in degrees, each in
        [0, 180]. Orientation 0 oscillates along the rows, so it answers vertical
        stripes (intensity that changes from column to column); 90 answers
        horizontal stripes.
    window_center : float, default=40
        Center of the window in Hounsfield units (brain window).
    window_width : float, default=80
        Width of the window in Hounsfield units, at least 1.

    Attributes
    ----------
    kernels_ : list of ndarray of complex
        The kernels, frequency by frequency, orientation by orientation.
    strides_ : list of int
        The sampling stride of each kernel's response (see the module's docstring).
    feature_names_out_ : ndarray of str
        ``gabor_mean_f<frequency>_o<orientation>`` and
        ``gabor_std_f<frequency>_o<orientation>``, with ``.`` written ``p``
        (``gabor_mean_f0p05_o45``).

    Notes
    -----
    Responses are in window units (the brain window's 80 HU span 1). An empty brain
    gives all zeros.

    Examples
    --------
    >>> import numpy as np
    >>> slices = np.random.default_rng(0).normal(40, 10, size=(2, 64, 64))
    >>> extractor = GaborFeatures(frequencies=(0.1,), orientations=(0, 90)).fit(slices)
    >>> extractor.transform(slices).shape
    (2, 4)
    >>> extractor.get_feature_names_out().tolist()
    ['gabor_mean_f0p1_o0', 'gabor_mean_f0p1_o90', 'gabor_std_f0p1_o0', 'gabor_std_f0p1_o90']
    """

    _constraints = {
        "frequencies": ("floats", 0.02, 0.5),
        "orientations": ("floats", 0, 180),
        "window_center": ("float", None, None),
        "window_width": ("float", 1, None),
    }

    def __init__(
        self,
        frequencies=(0.05, 0.1, 0.2),
        orientations=(0, 45, 90, 135),
        *,
        window_center=40.0,
        window_width=80.0,
    ):
        self.frequencies = frequencies
        self.orientations = orientations
        self.window_center = window_center
        self.window_width = window_width

    def _prepare(self) -> None:
        check_distinct(self, "frequencies")
        check_distinct(self, "orientations")
        self.kernels_ = _kernels(*self._bank())
        self.strides_ = [
            _stride(float(frequency)) for frequency in self.frequencies for _ in self.orientations
        ]

    def _bank(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Frequencies and orientations as hashable floats, the kernel cache's key."""
        return tuple(map(float, self.frequencies)), tuple(map(float, self.orientations))

    def _names(self) -> list[str]:
        pairs = [
            f"f{number_label(frequency)}_o{number_label(orientation)}"
            for frequency in self.frequencies
            for orientation in self.orientations
        ]
        return [f"gabor_mean_{pair}" for pair in pairs] + [f"gabor_std_{pair}" for pair in pairs]

    def _features(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import scipy.fft

        n_kernels = len(self.kernels_)
        values = np.zeros((2, n_kernels))
        if not mask.any():
            return values.ravel()
        # The box starts on the coarsest grid, so that every stride reads the rows and
        # columns it would read on the whole slice.
        step = max(self.strides_)
        box = tuple(
            slice(edges.start - edges.start % step, edges.stop) for edges in bounding_box(mask)
        )
        mask = mask[box]
        windowed = Window(self.window_center, self.window_width)(image[box])
        windowed = windowed.astype(np.float32, copy=False)
        windowed -= windowed[mask].mean()
        windowed[~mask] = 0
        padded_shape, reach = _padding(*self._bank(), mask.shape)
        factors = _kernel_spectra(*self._bank(), padded_shape, reach)
        spectrum = scipy.fft.fft2(windowed, s=padded_shape)
        grids = {}
        for index, ((column_spectrum, row_spectrum), stride) in enumerate(
            zip(factors, self.strides_, strict=True)
        ):
            while stride > 1 and _grid(mask, stride, grids).sum() < MIN_SAMPLES:
                stride //= 2
            product = spectrum * column_spectrum[:, np.newaxis]
            product *= row_spectrum
            if stride > 1:
                rows, columns = padded_shape[0] // stride, padded_shape[1] // stride
                product = product.reshape(stride, rows, stride, columns).sum(axis=(0, 2))
            response = scipy.fft.ifft2(product, overwrite_x=True)
            grid = _grid(mask, stride, grids)
            magnitude = np.abs(response[: grid.shape[0], : grid.shape[1]][grid])
            # The folded inverse transform is stride**2 times the response.
            magnitude = magnitude.astype(np.float64) / stride**2
            values[:, index] = magnitude.mean(), magnitude.std()
        return values.ravel()


def _kernels(frequencies: tuple[float, ...], orientations: tuple[float, ...]) -> list:
    """scikit-image's Gabor kernels, frequency by frequency, orientation by orientation."""
    from skimage.filters import gabor_kernel

    return [
        gabor_kernel(frequency, theta=math.radians(orientation))
        for frequency in frequencies
        for orientation in orientations
    ]


@functools.lru_cache(maxsize=_CACHED_BANKS)
def _separated_kernels(
    frequencies: tuple[float, ...], orientations: tuple[float, ...]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each kernel as a column and a row whose outer product it is.

    ``gabor_kernel`` with one bandwidth has a round Gaussian envelope on a
    rectangular grid, exp(-(x**2 + y**2) / 2 sigma**2) exp(2 pi i f (x cos t + y sin t)),
    which is a function of x times a function of y: the kernel's centre column times
    its centre row over the centre tap.
    """
    separated = []
    for kernel in _kernels(frequencies, orientations):
        center_row, center_column = kernel.shape[0] // 2, kernel.shape[1] // 2
        column = kernel[:, center_column]
        row = kernel[center_row, :] / kernel[center_row, center_column]
        tolerance = 1e-9 * np.abs(kernel).max()
        if not np.allclose(np.outer(column, row), kernel, rtol=0, atol=tolerance):
            raise ValueError("A Gabor kernel with an elongated envelope is not separable.")
        separated.append((column, row))
    return separated


def _padding(
    frequencies: tuple[float, ...], orientations: tuple[float, ...], shape: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Padded transform shape for a box of ``shape``, and the kernels' reach per axis.

    Linear convolution needs half a kernel of zeros after the box, and every stride
    must divide the padded size. Taps farther from the centre than the box is long
    never join two of its pixels, so kernels are cut to that reach.
    """
    import scipy.fft

    separated = _separated_kernels(frequencies, orientations)
    reach = tuple(
        min(max(len(factors[axis]) // 2 for factors in separated), shape[axis] - 1)
        for axis in (0, 1)
    )
    step = max(_stride(frequency) for frequency in frequencies)
    padded_shape = tuple(
        step * scipy.fft.next_fast_len(-(-(size + extra) // step))
        for size, extra in zip(shape, reach, strict=True)
    )
    return padded_shape, reach


@functools.lru_cache(maxsize=_CACHED_BOXES)
def _kernel_spectra(
    frequencies: tuple[float, ...],
    orientations: tuple[float, ...],
    padded_shape: tuple[int, int],
    reach: tuple[int, int],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each kernel's transform at ``padded_shape`` as the transforms of its column and
    row (their outer product is the 2-D transform), taps cut to ``reach``.

    Cached per process, so that joblib workers keep them from one task to the next
    and no estimator carries them through pickling.
    """
    import scipy.fft

    spectra = []
    for separated in _separated_kernels(frequencies, orientations):
        factors = []
        for factor, axis_reach, length in zip(separated, reach, padded_shape, strict=True):
            center = len(factor) // 2
            cut = min(center, axis_reach)
            # Tap 0 at pixel 0, negative offsets wrapped: a 'same' convolution.
            placed = np.zeros(length, dtype=np.complex128)
            placed[np.arange(-cut, cut + 1) % length] = factor[center - cut : center + cut + 1]
            transform = scipy.fft.fft(placed).astype(np.complex64)
            transform.flags.writeable = False
            factors.append(transform)
        spectra.append(tuple(factors))
    return spectra


def _stride(frequency: float) -> int:
    """Sampling stride of a kernel's response: a power of two up to pi * sigma / 4."""
    sigma = _SIGMA_TIMES_FREQUENCY / frequency
    return 2 ** int(math.floor(math.log2(min(max(math.pi * sigma / 4, 1.0), 4.0))))


def _grid(mask: np.ndarray, stride: int, grids: dict) -> np.ndarray:
    """``mask`` on every ``stride``-th row and column, cached in ``grids``."""
    if stride not in grids:
        grids[stride] = mask[::stride, ::stride]
    return grids[stride]
