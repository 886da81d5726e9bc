"""Slice transforms: crop to the head, resize, intensity scaling, 2.5-D stacks, augmentation.

Every transform is a small typed callable in the style of MONAI: settings go to
``__init__`` (and are checked there, so a bad setting fails before the first image),
the work happens in ``__call__(image)``. They take 2-D arrays ``(height, width)`` or
channel-last arrays ``(height, width, channels)`` and chain with ``Compose``::

    pipeline = Compose([Window(40, 80), CropToHead(), Resize(224)])
    image = pipeline(hounsfield_units)

``prepare_slice`` is that usual pipeline for one ``SliceImage``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from scipy import ndimage

from ichkit.scans._slice import SliceImage
from ichkit.scans.validation import as_generator, check_bool, check_int, check_real
from ichkit.scans.windowing import Window, WindowStack, get_window

__all__ = [
    "Transform",
    "Compose",
    "CropToHead",
    "Resize",
    "ScaleIntensity",
    "NormalizeIntensity",
    "NeighborSlices",
    "RandomAugment",
    "prepare_slice",
]

#: Hounsfield units below this are air when cropping images in Hounsfield units.
AIR_THRESHOLD_HU = -500.0


@runtime_checkable
class Transform(Protocol):
    """Anything that maps an array to an array."""

    def __call__(self, image: np.ndarray) -> np.ndarray: ...


class Compose:
    """Apply transforms one after the other.

    Parameters
    ----------
    transforms : sequence of callables
        Each takes the previous one's output.

    Examples
    --------
    >>> import numpy as np
    >>> pipeline = Compose([ScaleIntensity(), Resize(4)])
    >>> pipeline(np.arange(64.0).reshape(8, 8)).shape
    (4, 4)
    """

    def __init__(self, transforms: Sequence[Callable[[np.ndarray], np.ndarray]]):
        transforms = list(transforms)
        for position, transform in enumerate(transforms):
            if not callable(transform):
                raise TypeError(
                    "Every item of the 'transforms' parameter of Compose must be callable. "
                    f"Got {transform!r} of type {type(transform).__name__} at position "
                    f"{position}."
                )
        self.transforms = transforms

    def __call__(self, image: np.ndarray) -> np.ndarray:
        for transform in self.transforms:
            image = transform(image)
        return image

    def __len__(self) -> int:
        return len(self.transforms)

    def __getitem__(self, position: int) -> Callable[[np.ndarray], np.ndarray]:
        return self.transforms[position]

    def __repr__(self) -> str:
        inner = ", ".join(repr(transform) for transform in self.transforms)
        return f"Compose([{inner}])"


class CropToHead:
    """Crop to the bounding box of the head, dropping the empty background.

    The head is found as the pixels brighter than an air threshold, after a morphological
    opening (a square of side 2% of the image side) that removes thin structures such as
    the scanner table, the headrest's rim and specks of noise. The box covers the largest
    connected region and every region at least a tenth of its size: in a narrow window
    fat is as black as air, so a skull-base slice falls apart into face, skull and neck,
    and all of them are kept. Cropping before resizing lets the head fill the network's
    input; on real data it added about 0.04 AUC.

    Parameters
    ----------
    margin : int, default=8
        Background pixels kept on every side of the box (where the image has them).
    threshold : float or None, default=None
        Pixels above it may be head. None chooses from the image's own values: -500 HU
        when the image looks like Hounsfield units (its minimum is below -200; air is
        -1000 HU, fat -100 HU), else 10% of the way from its minimum to its maximum,
        which suits windowed ``[0, 1]`` images and 8/16-bit grey values alike.
    square : bool, default=False
        Grow the shorter side of the box to make it square (padding with the image's
        minimum where the image is too small), so that a later square ``Resize`` keeps
        the head's aspect ratio.

    Notes
    -----
    The box is most reliable on Hounsfield units, where fat and skin are clearly above
    air and the head is one region: to crop a windowed image, pass the Hounsfield units
    as ``reference`` (``prepare_slice`` does). A channel-last image is cropped by a box
    found on the mean of its channels. When no head is found (a blank slice) the whole
    image is returned unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((64, 64))
    >>> image[20:40, 10:30] = 1.0
    >>> CropToHead(margin=2)(image).shape
    (24, 24)
    """

    #: Regions at least this fraction of the largest one count as head.
    min_region_fraction = 0.1
    #: Half the side of the opening square, as a fraction of the shorter image side.
    opening_fraction = 0.01

    def __init__(self, margin: int = 8, *, threshold: float | None = None, square: bool = False):
        check_int(margin, "margin", "CropToHead", minimum=0)
        if threshold is not None:
            check_real(threshold, "threshold", "CropToHead")
        check_bool(square, "square", "CropToHead")
        self.margin = margin
        self.threshold = threshold
        self.square = square

    def __repr__(self) -> str:
        return f"CropToHead(margin={self.margin}, threshold={self.threshold}, square={self.square})"

    def box(self, image: np.ndarray) -> tuple[int, int, int, int] | None:
        """The head's box ``(top, bottom, left, right)`` with margin, end-exclusive.

        Returns None when no head is found. The box may reach outside the image only
        when ``square`` is True.
        """
        image = _check_image(image, "CropToHead")
        reference = image.mean(axis=-1) if image.ndim == 3 else image
        reference = reference.astype(np.float64)
        if np.isnan(reference).all():
            return None
        reference = np.nan_to_num(reference, nan=np.nanmin(reference))
        mask = reference > self._threshold_for(reference)
        side = 2 * max(1, round(self.opening_fraction * min(reference.shape))) + 1
        # A square opening as two separable filters: ~10x faster than a disc at 512x512.
        opened = ndimage.maximum_filter(ndimage.minimum_filter(mask, size=side), size=side)
        if opened.any():
            mask = opened
        labelled, n_regions = ndimage.label(mask)
        if n_regions == 0:
            return None
        sizes = np.bincount(labelled.ravel())
        sizes[0] = 0
        head_regions = np.flatnonzero(sizes >= self.min_region_fraction * sizes.max())
        rows, columns = np.nonzero(np.isin(labelled, head_regions))
        height, width = reference.shape
        top = max(int(rows.min()) - self.margin, 0)
        bottom = min(int(rows.max()) + 1 + self.margin, height)
        left = max(int(columns.min()) - self.margin, 0)
        right = min(int(columns.max()) + 1 + self.margin, width)
        if self.square:
            top, bottom, left, right = _grow_to_square(top, bottom, left, right, height, width)
        return top, bottom, left, right

    def __call__(self, image: np.ndarray, *, reference: np.ndarray | None = None) -> np.ndarray:
        """Crop ``image`` (``(height, width)`` or ``(height, width, channels)``) to the head.

        Parameters
        ----------
        image : ndarray
            The image to crop.
        reference : ndarray or None, default=None
            An image of the same height and width to find the head on, such as the
            Hounsfield units of a windowed ``image``. None finds it on ``image``.
        """
        image = _check_image(image, "CropToHead")
        if reference is not None:
            reference = _check_image(reference, "CropToHead")
            if reference.shape[:2] != image.shape[:2]:
                raise ValueError(
                    "The 'reference' of CropToHead must have the image's height and width. "
                    f"Got {reference.shape[:2]} for an image of {image.shape[:2]}."
                )
        box = self.box(image if reference is None else reference)
        if box is None:
            return image
        return _crop_to_box(image, box)

    def _threshold_for(self, reference: np.ndarray) -> float:
        if self.threshold is not None:
            return float(self.threshold)
        low, high = float(reference.min()), float(reference.max())
        if low < -200:
            return AIR_THRESHOLD_HU
        return low + 0.1 * (high - low)


class Resize:
    """Resize to ``size`` with anti-aliasing (scikit-image), keeping channels.

    Parameters
    ----------
    size : int or (height, width), default=224
        Output height and width; an int gives a square.
    order : int, default=1
        Spline order of the interpolation (0 nearest, 1 bilinear, 3 bicubic).

    Notes
    -----
    Output is float32. Values stay within the input's range (bilinear interpolation
    and Gaussian anti-aliasing only average neighbours).
    """

    def __init__(self, size: int | tuple[int, int] = 224, *, order: int = 1):
        self.size = _check_size(size, "Resize")
        check_int(order, "order", "Resize", minimum=0)
        if order > 5:
            raise ValueError(f"The 'order' parameter of Resize must be in [0, 5]. Got {order}.")
        self.order = order

    def __repr__(self) -> str:
        return f"Resize(size={self.size}, order={self.order})"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        from skimage.transform import resize

        image = _check_image(image, "Resize").astype(np.float32, copy=False)
        anti_aliasing = self.order > 0 and _is_shrinking(image.shape[:2], self.size)

        def resize_plane(plane: np.ndarray) -> np.ndarray:
            resized = resize(
                plane,
                self.size,
                order=self.order,
                mode="edge",
                anti_aliasing=anti_aliasing,
                preserve_range=True,
            )
            return resized.astype(np.float32, copy=False)

        if image.ndim == 2:
            return resize_plane(image)
        # Channel by channel: scikit-image's 3-D path is several times slower.
        return np.stack(
            [resize_plane(image[..., channel]) for channel in range(image.shape[2])], -1
        )


class ScaleIntensity:
    """Scale intensities linearly so that the image's minimum and maximum become ``[0, 1]``.

    Parameters
    ----------
    channel_wise : bool, default=False
        Scale every channel of a channel-last image by its own minimum and maximum.

    Notes
    -----
    A constant image (or channel) becomes zeros. Output is float32.
    """

    def __init__(self, *, channel_wise: bool = False):
        check_bool(channel_wise, "channel_wise", "ScaleIntensity")
        self.channel_wise = channel_wise

    def __repr__(self) -> str:
        return f"ScaleIntensity(channel_wise={self.channel_wise})"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = _check_image(image, "ScaleIntensity").astype(np.float32, copy=False)
        axis = (0, 1) if self.channel_wise and image.ndim == 3 else None
        low = np.min(image, axis=axis, keepdims=True)
        span = np.max(image, axis=axis, keepdims=True) - low
        scaled = (image - low) / np.where(span > 0, span, 1)
        return scaled.astype(np.float32, copy=False)


class NormalizeIntensity:
    """Shift and scale intensities to zero mean and unit variance.

    Parameters
    ----------
    mean, std : float, sequence of float or None, default=None
        Fixed statistics (one per channel allowed, e.g. ImageNet's). None uses the
        image's own mean and standard deviation.
    channel_wise : bool, default=False
        With the image's own statistics, compute them per channel.

    Notes
    -----
    A constant image (or channel) becomes zeros. Output is float32.
    """

    def __init__(
        self,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        *,
        channel_wise: bool = False,
    ):
        if (mean is None) != (std is None):
            raise ValueError(
                "The 'mean' and 'std' parameters of NormalizeIntensity must be given "
                f"together or not at all. Got mean={mean!r}, std={std!r}."
            )
        if std is not None and np.any(np.asarray(std, dtype=float) <= 0):
            raise ValueError(f"The 'std' parameter of NormalizeIntensity must be > 0. Got {std!r}.")
        check_bool(channel_wise, "channel_wise", "NormalizeIntensity")
        self.mean = mean
        self.std = std
        self.channel_wise = channel_wise

    def __repr__(self) -> str:
        return (
            f"NormalizeIntensity(mean={self.mean!r}, std={self.std!r}, "
            f"channel_wise={self.channel_wise})"
        )

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = _check_image(image, "NormalizeIntensity").astype(np.float32, copy=False)
        if self.mean is not None:
            mean = np.asarray(self.mean, dtype=np.float32)
            std = np.asarray(self.std, dtype=np.float32)
            return ((image - mean) / std).astype(np.float32, copy=False)
        axis = (0, 1) if self.channel_wise and image.ndim == 3 else None
        mean = np.mean(image, axis=axis, keepdims=True)
        std = np.std(image, axis=axis, keepdims=True)
        normalised = (image - mean) / np.where(std > 0, std, 1)
        return normalised.astype(np.float32, copy=False)


class NeighborSlices:
    """Give every slice of a scan its neighbours as channels: the common 2.5-D input.

    Parameters
    ----------
    n_neighbors : int, default=1
        Slices taken on each side; the output has ``2 * n_neighbors + 1`` channels
        per input channel, ordered from ``i - n_neighbors`` to ``i + n_neighbors``
        (the slice itself is in the middle).

    Notes
    -----
    The stack must be in slice order (``ScanDataset.iter_scans`` gives it). Edge
    slices repeat the first or last slice in place of the missing neighbours. A
    channel-last stack ``(n_slices, height, width, channels)`` gives
    ``(n_slices, height, width, channels * (2 * n_neighbors + 1))``, grouped by
    neighbour.

    Examples
    --------
    >>> import numpy as np
    >>> stack = np.arange(3.0)[:, None, None] * np.ones((3, 2, 2))
    >>> NeighborSlices(1)(stack)[0, 0, 0].tolist()
    [0.0, 0.0, 1.0]
    """

    def __init__(self, n_neighbors: int = 1):
        check_int(n_neighbors, "n_neighbors", "NeighborSlices", minimum=0)
        self.n_neighbors = n_neighbors

    def __repr__(self) -> str:
        return f"NeighborSlices(n_neighbors={self.n_neighbors})"

    def __call__(self, stack: np.ndarray) -> np.ndarray:
        """Map ``(n_slices, height, width[, channels])`` to slices with neighbour channels."""
        stack = np.asarray(stack)
        if stack.ndim not in (3, 4) or stack.shape[0] == 0:
            raise ValueError(
                "NeighborSlices needs a scan's stack of shape (n_slices, height, width) or "
                f"(n_slices, height, width, channels) with n_slices >= 1. Got shape "
                f"{stack.shape}."
            )
        n_slices = stack.shape[0]
        offsets = np.arange(-self.n_neighbors, self.n_neighbors + 1)
        neighbors = np.clip(np.arange(n_slices)[:, np.newaxis] + offsets, 0, n_slices - 1)
        gathered = stack[neighbors]  # (n_slices, n_offsets, height, width[, channels])
        gathered = np.moveaxis(gathered, 1, 3)  # (n_slices, height, width, n_offsets[, ...])
        return gathered.reshape(*stack.shape[:3], -1)


class RandomAugment:
    """Random rotation, zoom and horizontal flip, seeded and reproducible.

    The augmentation of the seed paper. One affine interpolation (scipy) applies the
    rotation about the image centre and the zoom together; uncovered corners are
    filled with the image's minimum (air), channel by channel, not with 0, which in
    Hounsfield units would be soft tissue.

    Parameters
    ----------
    rotation_degrees : float, default=15
        Angles are drawn uniformly from ``[-rotation_degrees, rotation_degrees]``.
    zoom : float, default=0.1
        Zoom factors are drawn uniformly from ``[1 - zoom, 1 + zoom]``; above 1
        enlarges. Must be in ``[0, 1)``.
    horizontal_flip : bool, default=True
        Flip left-right (the width axis) with probability 0.5.
    random_state : int, Generator or None, default=None
        Seed of the transform's own generator: two transforms made with the same int
        give the same sequence of outputs.

    Notes
    -----
    Output has the input's shape and dtype (integer images are rounded).

    Examples
    --------
    >>> import numpy as np
    >>> augment = RandomAugment(random_state=0)
    >>> augment(np.zeros((8, 8), dtype=np.float32)).shape
    (8, 8)
    """

    def __init__(
        self,
        rotation_degrees: float = 15,
        zoom: float = 0.1,
        horizontal_flip: bool = True,
        random_state: int | np.random.Generator | None = None,
    ):
        check_real(rotation_degrees, "rotation_degrees", "RandomAugment")
        if rotation_degrees < 0:
            raise ValueError(
                "The 'rotation_degrees' parameter of RandomAugment must be >= 0. "
                f"Got {rotation_degrees!r}."
            )
        check_real(zoom, "zoom", "RandomAugment")
        if not 0 <= zoom < 1:
            raise ValueError(
                f"The 'zoom' parameter of RandomAugment must be in [0, 1). Got {zoom!r}."
            )
        check_bool(horizontal_flip, "horizontal_flip", "RandomAugment")
        self.rotation_degrees = rotation_degrees
        self.zoom = zoom
        self.horizontal_flip = horizontal_flip
        self.random_state = random_state
        self.random_generator_ = as_generator(random_state, "RandomAugment")

    def __repr__(self) -> str:
        return (
            f"RandomAugment(rotation_degrees={self.rotation_degrees}, zoom={self.zoom}, "
            f"horizontal_flip={self.horizontal_flip}, random_state={self.random_state!r})"
        )

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Augment one image ``(height, width)`` or ``(height, width, channels)``."""
        image = _check_image(image, "RandomAugment")
        angle = self.random_generator_.uniform(-self.rotation_degrees, self.rotation_degrees)
        factor = self.random_generator_.uniform(1 - self.zoom, 1 + self.zoom)
        flip = self.horizontal_flip and bool(self.random_generator_.random() < 0.5)
        return _augment(image, angle, factor, flip)

    def augment_batch(self, images: np.ndarray) -> np.ndarray:
        """Augment every image of a batch ``(n_images, height, width[, channels])``.

        Each image gets its own draw, in order, so the result equals calling the
        transform on the images one by one.
        """
        images = np.asarray(images)
        if images.ndim not in (3, 4):
            raise ValueError(
                "RandomAugment.augment_batch needs a batch of shape (n_images, height, "
                f"width) or (n_images, height, width, channels). Got shape {images.shape}."
            )
        output = np.empty_like(images)
        for position in range(images.shape[0]):
            output[position] = self(images[position])
        return output


def prepare_slice(
    image: SliceImage | np.ndarray,
    *,
    size: int | tuple[int, int] = 224,
    window: str | tuple[float, float] | Window | WindowStack | Literal["stack"] = "brain",
    crop: bool = True,
) -> np.ndarray:
    """The usual pipeline for one slice: window, crop to the head, resize.

    Parameters
    ----------
    image : SliceImage or ndarray
        The slice; a plain array holds Hounsfield units.
    size : int or (height, width), default=224
        Output size.
    window : str, (center, width), Window, WindowStack or "stack", default="brain"
        A preset name or pair (one channel, see ``get_window``), or ``"stack"`` for
        the brain/subdural/bone ``WindowStack`` (three channels).
    crop : bool, default=True
        Crop to the head before resizing.

    Returns
    -------
    ndarray of float32
        ``(height, width)`` in ``[0, 1]`` for one window, ``(height, width, 3)`` for
        a stack.

    Examples
    --------
    >>> import numpy as np
    >>> prepare_slice(np.full((64, 64), -1000.0), size=32, window="stack").shape
    (32, 32, 3)
    """
    check_bool(crop, "crop", "prepare_slice")
    if isinstance(window, WindowStack):
        windowing = window
    elif isinstance(window, str) and window.strip().lower() == "stack":
        windowing = WindowStack()
    else:
        windowing = get_window(window)
    if not isinstance(image, SliceImage):
        image = SliceImage(_check_image(image, "prepare_slice"), hounsfield=True)
    prepared = windowing(image)
    if crop:
        # The head is found on the Hounsfield units where there are some: in a narrow
        # window fat is as dark as air and the head falls apart.
        prepared = CropToHead()(prepared, reference=image.pixels if image.hounsfield else None)
    return Resize(size)(prepared)


# --- helpers -----------------------------------------------------------------------------


def _augment(image: np.ndarray, angle: float, factor: float, flip: bool) -> np.ndarray:
    """Rotate by ``angle`` degrees and zoom by ``factor`` about the centre, then flip."""
    radians = np.deg2rad(angle)
    cosine, sine = np.cos(radians), np.sin(radians)
    # affine_transform maps output coordinates to input ones: the inverse of the motion.
    matrix = np.array([[cosine, sine], [-sine, cosine]]) / factor
    centre = (np.array(image.shape[:2], dtype=float) - 1) / 2
    offset = centre - matrix @ centre
    working = image.astype(np.float64)
    channels = working[..., np.newaxis] if image.ndim == 2 else working
    moved = np.empty_like(channels)
    for channel in range(channels.shape[-1]):
        plane = channels[..., channel]
        fill = float(np.nanmin(plane)) if plane.size else 0.0
        moved[..., channel] = ndimage.affine_transform(
            plane, matrix, offset=offset, order=1, mode="constant", cval=fill
        )
    if image.ndim == 2:
        moved = moved[..., 0]
    if flip:
        moved = moved[:, ::-1]
    if np.issubdtype(image.dtype, np.integer):
        limits = np.iinfo(image.dtype)
        moved = np.clip(np.round(moved), limits.min, limits.max)
    return np.ascontiguousarray(moved.astype(image.dtype, copy=False))


def _crop_to_box(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Cut ``box`` out of ``image``, padding with each channel's minimum outside it."""
    top, bottom, left, right = box
    height, width = image.shape[:2]
    inside = image[max(top, 0) : min(bottom, height), max(left, 0) : min(right, width)]
    padding = [
        (max(-top, 0), max(bottom - height, 0)),
        (max(-left, 0), max(right - width, 0)),
    ]
    if not any(before or after for before, after in padding):
        return inside
    fill = np.nanmin(image, axis=(0, 1))
    if image.ndim == 2:
        return np.pad(inside, padding, mode="constant", constant_values=fill)
    channels = [
        np.pad(inside[..., channel], padding, mode="constant", constant_values=value)
        for channel, value in enumerate(fill)
    ]
    return np.stack(channels, axis=-1)


def _grow_to_square(
    top: int, bottom: int, left: int, right: int, height: int, width: int
) -> tuple[int, int, int, int]:
    """Grow the shorter side of a box evenly, shifting it inside the image where it fits."""
    side = max(bottom - top, right - left)

    def grow(start: int, stop: int, limit: int) -> tuple[int, int]:
        extra = side - (stop - start)
        start -= extra // 2
        stop = start + side
        if side <= limit:  # shift back inside the image; else pad both sides
            shift = max(0, -start) - max(0, stop - limit)
            start, stop = start + shift, stop + shift
        return start, stop

    top, bottom = grow(top, bottom, height)
    left, right = grow(left, right, width)
    return top, bottom, left, right


def _is_shrinking(shape: tuple[int, ...], size: tuple[int, int]) -> bool:
    return shape[0] > size[0] or shape[1] > size[1]


def _check_image(image: object, owner: str) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim not in (2, 3) or 0 in array.shape:
        raise ValueError(
            f"{owner} needs a 2-D image (height, width) or a channel-last image "
            f"(height, width, channels). Got shape {array.shape}."
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise TypeError(f"{owner} needs numeric pixels. Got an array of dtype {array.dtype}.")
    return array


def _check_size(size: object, owner: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, numbers.Integral) else size
    if (
        not isinstance(pair, Sequence | np.ndarray)
        or len(pair) != 2
        or not all(
            isinstance(value, numbers.Integral) and not isinstance(value, bool) and value > 0
            for value in pair
        )
    ):
        raise ValueError(
            f"The 'size' parameter of {owner} must be an int > 0 or a (height, width) pair "
            f"of them. Got {size!r}."
        )
    return int(pair[0]), int(pair[1])
