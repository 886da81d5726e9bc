"""A synthetic head CT with all five hemorrhage subtypes: the toolkit's built-in data set.

``make_phantom_scan`` draws one head: air, scalp, a skull of cortical bone with
diploe, grey and white matter with sulci, cerebrospinal fluid (CSF) in the
sulci, fissures, basal cisterns and ventricles, the falx and tentorium, deep
grey nuclei, the brainstem and cerebellum, bone and air of the skull base,
calcifications (pineal, choroid plexus) and beam hardening near the skull base.
Hemorrhages are drawn as 3-D shapes in that head, so that each spans a run of
neighbouring slices. Every boundary is drawn with the fraction of the pixel it
covers (partial volume), then blurred by a point-spread function and given
correlated Gaussian noise.

The random streams for the anatomy, the lesions and the noise are separate, so
the same ``random_state`` with ``subtypes=()`` gives the same head without its
hemorrhages: a paired normal twin, handy for tests and for difference maps.

Coordinates: slice 0 is at the skull base and the last slice at the vertex; in
each slice, row 0 is anterior and rows grow toward the back of the head (the
patient lies supine, so "dependent" means larger row numbers).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ichkit.scans.dataset import SUBTYPES
from ichkit.scans.validation import check_int, unknown_name_message

__all__ = [
    "FIELD_OF_VIEW_MM",
    "CRANIAL_HEIGHT_MM",
    "MIN_LABEL_PIXELS",
    "PhantomScan",
    "make_phantom_scan",
    "make_phantom_scans",
]

#: Width of the square field of view, in millimetres; pixel spacing is this over ``size``.
FIELD_OF_VIEW_MM = 240.0
#: Height covered from the skull base to the vertex; slice spacing is this over ``n_slices``.
CRANIAL_HEIGHT_MM = 120.0
#: A subtype counts on a slice when its mask there has at least this many pixels.
#: Smaller specks are removed from the mask (the blood stays in the image), as a
#: reader would not annotate them.
MIN_LABEL_PIXELS = 3

_MIN_SIZE = 32
_MIN_SLICES = 6
# The plan of a data set (which scans are normal, which subtypes go where) uses its own
# stream, far from the spawn keys 0, 1, ... that the scans get.
_PLAN_SPAWN_KEY = 2**31 - 1
_N_HARMONICS = 8


@dataclass(frozen=True, eq=False)
class PhantomScan:
    """One synthetic head CT volume with its hemorrhage masks and slice labels.

    Parameters
    ----------
    hu : ndarray of shape (n_slices, size, size), float32
        Hounsfield units; slice 0 at the skull base, the last at the vertex.
    mask : ndarray of shape (n_slices, size, size), uint8
        0 where there is no hemorrhage, ``k`` where subtype ``SUBTYPES[k - 1]`` is.
    slice_subtypes : ndarray of shape (n_slices, 5), int64
        1 where a subtype has at least ``MIN_LABEL_PIXELS`` pixels on a slice, in
        ``SUBTYPES`` order. The mask holds no pixels on slices labelled 0.
    spacing_mm : tuple of float
        Pixel spacing along rows and columns and the slice spacing, in millimetres.
    subtypes : tuple of str
        The subtypes placed in this scan, in ``SUBTYPES`` order (empty for a normal scan).
    """

    hu: np.ndarray
    mask: np.ndarray
    slice_subtypes: np.ndarray
    spacing_mm: tuple[float, float, float]
    subtypes: tuple[str, ...]

    @property
    def slice_labels(self) -> np.ndarray:
        """Any-hemorrhage label of each slice, 0/1, shape (n_slices,)."""
        return self.slice_subtypes.max(axis=1)

    @property
    def n_slices(self) -> int:
        """Number of slices."""
        return int(self.hu.shape[0])


def make_phantom_scan(
    random_state: int | np.random.Generator | np.random.SeedSequence | None = None,
    *,
    n_slices: int = 24,
    size: int = 128,
    subtypes: Iterable[str] | None = None,
) -> PhantomScan:
    """Draw one synthetic head CT, normal or with hemorrhages.

    Parameters
    ----------
    random_state : int, Generator, SeedSequence or None, default=None
        Seed of the draw; the same value gives the same scan. Anatomy, lesions and
        noise come from separate streams, so the same seed with ``subtypes=()``
        gives the same head without its hemorrhages.
    n_slices : int, default=24
        Number of axial slices from the skull base to the vertex (at least 6).
    size : int, default=128
        Rows and columns of each slice (at least 32).
    subtypes : iterable of str or None, default=None
        Subtypes to place, from ``SUBTYPES``. ``None`` draws them: half of the scans
        are normal, the others hold one or two subtypes. ``()`` gives a normal scan.

    Returns
    -------
    PhantomScan
        Hounsfield units, masks, slice labels, spacing and the subtypes placed.

    Raises
    ------
    ValueError
        If ``n_slices`` or ``size`` is too small or a subtype name is unknown.
    TypeError
        If ``subtypes`` is a single string instead of a collection of names.

    Examples
    --------
    >>> scan = make_phantom_scan(0, n_slices=12, size=64, subtypes=("subdural",))
    >>> scan.hu.shape, scan.subtypes
    ((12, 64, 64), ('subdural',))
    >>> bool(scan.slice_subtypes[:, 1].any())
    True
    """
    _check_geometry("make_phantom_scan", n_slices=n_slices, size=size)
    wanted = None if subtypes is None else _check_subtypes(subtypes)
    generator = np.random.default_rng(random_state)
    root = np.random.SeedSequence(generator.integers(0, 2**32, size=4))
    choice_rng, anatomy_rng, lesion_rng, noise_rng = (
        np.random.default_rng(child) for child in root.spawn(4)
    )
    if wanted is None:
        wanted = _draw_subtypes(choice_rng)

    head = _build_head(anatomy_rng, n_slices, size)
    mask = np.zeros(head.shape, dtype=np.uint8)
    for name in wanted:
        _place_lesion(lesion_rng, head, name, mask)
    hu = _finish(noise_rng, head)

    slice_subtypes = np.zeros((n_slices, len(SUBTYPES)), dtype=np.int64)
    for code in range(1, len(SUBTYPES) + 1):
        present = mask == code
        counted = present.sum(axis=(1, 2)) >= MIN_LABEL_PIXELS
        mask[present & ~counted[:, None, None]] = 0
        slice_subtypes[:, code - 1] = counted
    return PhantomScan(
        hu=hu,
        mask=mask,
        slice_subtypes=slice_subtypes,
        spacing_mm=(head.pixel_mm, head.pixel_mm, head.slice_mm),
        subtypes=tuple(name for name in SUBTYPES if name in wanted),
    )


def make_phantom_scans(
    n_scans: int = 8,
    *,
    seed: int | None = 0,
    size: int = 128,
    n_slices: int = 24,
) -> list[PhantomScan]:
    """Draw a data set of phantom scans, one per patient, with every subtype present.

    Scan ``i`` is drawn from child ``i`` of ``numpy.random.SeedSequence(seed)``. About
    half of the scans are normal; the others hold one or two subtypes, cycling through
    the five subtypes so that five or more scans contain every subtype.

    Parameters
    ----------
    n_scans : int, default=8
        Number of scans (patients).
    seed : int or None, default=0
        Seed of the data set; the same seed gives the same scans.
    size : int, default=128
        Rows and columns of each slice.
    n_slices : int, default=24
        Slices per scan.

    Returns
    -------
    list of PhantomScan

    Raises
    ------
    ValueError
        If ``n_scans`` is below 1 or the geometry is too small.
    """
    check_int(n_scans, "n_scans", "make_phantom_scans", minimum=1)
    _check_geometry("make_phantom_scans", n_slices=n_slices, size=size)
    root = np.random.SeedSequence(seed)
    plan = _subtype_plan(int(n_scans), root)
    return [
        make_phantom_scan(child, n_slices=n_slices, size=size, subtypes=subtypes)
        for child, subtypes in zip(root.spawn(int(n_scans)), plan, strict=True)
    ]


# --------------------------------------------------------------------------- checks


def _check_geometry(owner: str, *, n_slices: int, size: int) -> None:
    check_int(n_slices, "n_slices", owner, minimum=_MIN_SLICES)
    check_int(size, "size", owner, minimum=_MIN_SIZE)


def _check_subtypes(subtypes: Iterable[str]) -> tuple[str, ...]:
    if isinstance(subtypes, str):
        raise TypeError(
            "The 'subtypes' parameter of make_phantom_scan must be a collection of subtype "
            f"names, not a single string. Got {subtypes!r}; use ({subtypes!r},)."
        )
    names = tuple(subtypes)
    for name in names:
        if name not in SUBTYPES:
            raise ValueError(
                unknown_name_message("subtype", name, SUBTYPES)
                + " (the 'subtypes' parameter of make_phantom_scan)"
            )
    return tuple(name for name in SUBTYPES if name in names)


def _draw_subtypes(rng: np.random.Generator) -> tuple[str, ...]:
    if rng.random() < 0.5:
        return ()
    n_subtypes = 2 if rng.random() < 0.35 else 1
    chosen = rng.choice(len(SUBTYPES), size=n_subtypes, replace=False)
    return tuple(SUBTYPES[index] for index in sorted(chosen))


def _subtype_plan(n_scans: int, root: np.random.SeedSequence) -> list[tuple[str, ...]]:
    """Which scans are normal and which subtypes the others hold, every subtype used."""
    stream = np.random.SeedSequence(root.entropy, spawn_key=(_PLAN_SPAWN_KEY,))
    rng = np.random.default_rng(stream)
    n_positive = n_scans - n_scans // 2
    positive = sorted(rng.choice(n_scans, size=n_positive, replace=False).tolist())
    counts = [2 if rng.random() < 0.35 else 1 for _ in positive]
    # Upgrade scans to two subtypes until the cycle reaches every subtype (when it can).
    for index in range(len(counts)):
        if sum(counts) >= min(len(SUBTYPES), 2 * n_positive):
            break
        counts[index] = 2
    order = rng.permutation(len(SUBTYPES)).tolist()
    plan: list[tuple[str, ...]] = [() for _ in range(n_scans)]
    position = 0
    for scan_index, count in zip(positive, counts, strict=True):
        codes = [order[(position + offset) % len(SUBTYPES)] for offset in range(count)]
        position += count
        plan[scan_index] = tuple(SUBTYPES[code] for code in sorted(codes))
    return plan


# --------------------------------------------------------------------------- anatomy


@dataclass
class _Head:
    """The drawn head: geometry the lesions need and the images painted so far."""

    shape: tuple[int, int, int]
    pixel_mm: float
    slice_mm: float
    level: np.ndarray  # anatomical level of each slice, 0 = skull base, 1 = vertex; (n, 1, 1)
    z_mm: np.ndarray  # (n, 1, 1)
    y_image: np.ndarray  # row coordinate in mm, (1, size, 1)
    centre_y: float
    lateral: np.ndarray  # head frame, lateral, mm
    posterior: np.ndarray  # head frame, posterior positive, mm
    rho: np.ndarray
    theta: np.ndarray
    r_inner: np.ndarray  # radius of the inner table along theta
    depth: np.ndarray  # distance inside the inner table, mm (negative in bone)
    scale: float
    atrophy: float
    white: float
    grey: float
    csf: float
    sulcus_distance: np.ndarray
    sulcus_depth: np.ndarray
    csf_rim: float
    # Signed distances in mm (positive inside) to CSF spaces that blood can fill.
    cisterns: np.ndarray
    sylvian_fissures: tuple[np.ndarray, np.ndarray]
    ventricles: tuple[np.ndarray, np.ndarray]  # lateral ventricles, left then right
    texture: np.ndarray  # smooth unit-variance field, for tissue and clot texture
    outside: np.ndarray  # air, scalp and skull
    brain: np.ndarray  # everything inside the inner table
    inner_fraction: np.ndarray  # fraction of each pixel inside the inner table
    artefact: np.ndarray  # beam hardening, added last


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _blood(rng: np.random.Generator, low: float = 50.0, high: float = 86.0) -> float:
    """Density of an acute clot: 50-86 HU, more often in the lower half."""
    return low + (high - low) * float(rng.beta(1.6, 2.2))


def _soft(signed_mm: np.ndarray, pixel_mm: float) -> np.ndarray:
    """Fraction of a pixel inside a boundary at ``signed_mm`` (positive inside)."""
    return np.clip(0.5 + signed_mm / np.float32(pixel_mm), 0.0, 1.0)


def _paint(image: np.ndarray, alpha: np.ndarray, value, where=slice(None)) -> None:
    """Blend ``value`` into ``image[where]`` with the pixel fractions ``alpha``."""
    region = image[where]
    region += alpha * (value - region)


def _levels(level: np.ndarray, low: float, high: float) -> slice:
    """The run of slices whose anatomical level lies in [low, high] (levels increase)."""
    flat = level.ravel()
    inside = np.flatnonzero((flat >= low) & (flat <= high))
    if inside.size == 0:
        return slice(0, 0)
    return slice(int(inside[0]), int(inside[-1]) + 1)


def _bump(level: np.ndarray, low: float, high: float) -> np.ndarray:
    """A smooth 0..1 bump of the level, 1 in the middle of [low, high], 0 outside."""
    position = np.clip((level - low) / (high - low), 0.0, 1.0)
    return np.sin(np.pi * position) ** 2


def _segment_distance(lateral, posterior, start, end) -> np.ndarray:
    """Distance in mm from each point to the segment ``start``-``end``."""
    (start_x, start_y), (end_x, end_y) = start, end
    delta_x, delta_y = end_x - start_x, end_y - start_y
    along = np.clip(
        ((lateral - start_x) * delta_x + (posterior - start_y) * delta_y)
        / (delta_x * delta_x + delta_y * delta_y),
        0.0,
        1.0,
    )
    return np.hypot(lateral - (start_x + along * delta_x), posterior - (start_y + along * delta_y))


def _ellipse(lateral, posterior, centre, semi_axes, angle=0.0) -> np.ndarray:
    """Approximate signed distance (mm, positive inside) to a rotated ellipse."""
    cosine, sine = np.cos(angle), np.sin(angle)
    delta_x, delta_y = lateral - centre[0], posterior - centre[1]
    first = (cosine * delta_x + sine * delta_y) / semi_axes[0]
    second = (-sine * delta_x + cosine * delta_y) / semi_axes[1]
    return (1.0 - np.sqrt(first * first + second * second)) * min(semi_axes)


def _smooth_angular_field(rng, basis, level, *, harmonics, level_frequencies, amplitude):
    """A smooth random function of angle (periodic) and level, about ``amplitude`` in size.

    ``basis`` holds cos(k theta) and sin(k theta) for k = 1..8. Coefficients of each
    harmonic are themselves smooth functions of the level, so the pattern drifts
    from slice to slice.
    """
    cosines, sines = basis
    field = np.zeros(cosines[0].shape, dtype=np.float32)
    frequencies = np.arange(level_frequencies + 1)
    for order in harmonics:
        weights = rng.standard_normal((2, frequencies.size)) * amplitude / np.sqrt(order)
        phases = rng.uniform(0.0, 2 * np.pi, (2, frequencies.size))
        waves = np.cos(
            np.pi * frequencies[None, :, None, None, None] * level + phases[..., None, None, None]
        )
        coefficients = np.sum(weights[..., None, None, None] * waves, axis=1).astype(np.float32)
        field += coefficients[0] * cosines[order - 1] + coefficients[1] * sines[order - 1]
    return field


def _build_head(rng: np.random.Generator, n_slices: int, size: int) -> _Head:
    pixel_mm = FIELD_OF_VIEW_MM / size
    slice_mm = CRANIAL_HEIGHT_MM / n_slices
    position = np.linspace(0.0, 1.0, n_slices, dtype=np.float32)[:, None, None]
    # Per-scan coverage: where the first and last slice fall in the head.
    level = (_uniform(rng, -0.04, 0.04) + position * _uniform(rng, 0.95, 1.04)).astype(np.float32)
    z_mm = (np.arange(n_slices, dtype=np.float32) * np.float32(slice_mm))[:, None, None]
    coordinates = (np.arange(size, dtype=np.float32) - (size - 1) / 2) * np.float32(pixel_mm)
    x_image = coordinates[None, None, :]
    y_image = coordinates[None, :, None]

    # Head size, position, rotation and a small tilt that moves the centre with level.
    half_width = _uniform(rng, 68.0, 79.0)
    half_length = half_width * _uniform(rng, 1.16, 1.30)
    scale = half_width / 74.0
    centre_x, centre_y = _uniform(rng, -6.0, 6.0), _uniform(rng, -6.0, 6.0)
    tilt_x, tilt_y = _uniform(rng, -5.0, 5.0), _uniform(rng, -5.0, 5.0)
    angle = np.deg2rad(_uniform(rng, -8.0, 8.0))
    delta_x = x_image - (centre_x + tilt_x * (level - 0.5))
    delta_y = y_image - (centre_y + tilt_y * (level - 0.5))
    lateral = (np.cos(angle) * delta_x + np.sin(angle) * delta_y).astype(np.float32)
    posterior = (-np.sin(angle) * delta_x + np.cos(angle) * delta_y).astype(np.float32)
    rho = np.maximum(np.hypot(lateral, posterior), np.float32(1e-3))
    theta = np.arctan2(posterior, lateral)
    basis = _angular_basis(lateral / rho, posterior / rho)
    cosine, sine = basis[0][0], basis[1][0]

    # Cross-section grows from the base to mid-head, then shrinks toward the vertex.
    profile = np.sqrt(np.clip(1.0 - ((level - 0.40) / 0.66) ** 2, 0.02, 1.0))
    semi_lateral, semi_posterior = half_width * profile, half_length * profile
    ellipse = (
        semi_lateral
        * semi_posterior
        / np.sqrt((semi_posterior * cosine) ** 2 + (semi_lateral * sine) ** 2)
    )
    shape_field = _smooth_angular_field(
        rng, basis, level, harmonics=(2, 3, 4), level_frequencies=1, amplitude=0.012
    )
    r_outer = ellipse * (1.0 + _uniform(rng, 0.01, 0.04) * sine + shape_field)

    scalp = _uniform(rng, 4.0, 7.0) + 6.0 * cosine**6 * _bump(level, 0.12, 0.6)  # temporalis
    r_skull = r_outer - scalp
    frontal_sinus = _uniform(rng, 3.0, 10.0) * np.maximum(-sine, 0) ** 12 * _bump(level, 0.1, 0.34)
    thickness_field = _smooth_angular_field(
        rng, basis, level, harmonics=(2, 3, 4, 5, 6), level_frequencies=2, amplitude=0.08
    )
    skull = (
        _uniform(rng, 5.0, 7.0) * (1.0 + thickness_field)
        + 4.0 * np.clip((0.25 - level) / 0.25, 0.0, 1.0)
        + 2.5 * np.maximum(sine, 0) ** 10  # internal occipital protuberance
        - 1.5 * cosine**4 * _bump(level, 0.15, 0.55)  # thin temporal squama
        + frontal_sinus
    )
    skull = np.maximum(skull, 2.5)
    r_inner = r_skull - skull
    depth = r_inner - rho

    # Tissue densities of this scan (contrast and calibration vary per scan).
    offset = _uniform(rng, -4.0, 4.0)
    white = _uniform(rng, 22.0, 30.0) + offset
    grey = min(white + _uniform(rng, 9.0, 16.0), 45.0 + offset)
    csf = _uniform(rng, 1.0, 12.0) + offset
    atrophy = float(rng.beta(1.5, 3.0))

    # Air, scalp with its fat layer, and the skull with diploe and the frontal sinus.
    outside = np.full(depth.shape, -1000.0, dtype=np.float32)
    _paint(outside, _soft(r_outer - rho, pixel_mm), _uniform(rng, 30.0, 50.0) + offset)
    fat_half = 0.12 * scalp
    _paint(
        outside,
        _soft(fat_half - np.abs(rho - (r_outer - 0.55 * scalp)), pixel_mm),
        _uniform(rng, -60.0, 0.0),
    )
    within = np.clip((rho - r_inner) / skull, 0.0, 1.0)
    diploe_field = _smooth_angular_field(
        rng, basis, level, harmonics=(3, 5, 7, 8), level_frequencies=4, amplitude=0.25
    )
    bone = _uniform(rng, 1250.0, 1600.0) - _uniform(rng, 350.0, 750.0) * np.exp(
        -(((within - 0.5) / 0.2) ** 2)
    ) * np.clip(1.0 + diploe_field, 0.3, 1.7)
    sinus_air = _soft(np.minimum(within - 0.3, 0.75 - within) * skull, pixel_mm) * np.clip(
        (frontal_sinus - 3.0) / 2.0, 0.0, 1.0
    )
    bone = bone + sinus_air * (-900.0 - bone)
    _paint(outside, _soft(r_skull - rho, pixel_mm), bone)

    texture = _smooth_noise(rng, depth.shape, sigma_px=5.0 / pixel_mm)
    brain = white + 1.5 * texture
    head = _Head(
        shape=depth.shape,
        pixel_mm=pixel_mm,
        slice_mm=slice_mm,
        level=level,
        z_mm=z_mm,
        y_image=y_image,
        centre_y=centre_y,
        lateral=lateral,
        posterior=posterior,
        rho=rho,
        theta=theta,
        r_inner=r_inner,
        depth=depth,
        scale=scale,
        atrophy=atrophy,
        white=white,
        grey=grey,
        csf=csf,
        sulcus_distance=np.empty(0),
        sulcus_depth=np.empty(0),
        csf_rim=0.0,
        cisterns=np.full(depth.shape, -1e3, dtype=np.float32),
        sylvian_fissures=(np.empty(0), np.empty(0)),
        ventricles=(np.empty(0), np.empty(0)),
        texture=texture,
        outside=outside,
        brain=brain,
        inner_fraction=_soft(depth, pixel_mm),
        artefact=np.zeros(depth.shape, dtype=np.float32),
    )
    _paint_deep_structures(rng, head)
    _paint_cortex(rng, head, basis)
    _paint_csf_spaces(rng, head)
    _paint_dura_and_calcifications(rng, head)
    _paint_vessels_and_plexus(rng, head)
    _paint_skull_base(rng, head)
    return head


def _angular_basis(cosine: np.ndarray, sine: np.ndarray):
    """cos(k theta), sin(k theta) for k = 1..8 by the angle-addition recurrence."""
    cosines, sines = [cosine], [sine]
    for _ in range(_N_HARMONICS - 1):
        last_cosine, last_sine = cosines[-1], sines[-1]
        cosines.append(last_cosine * cosine - last_sine * sine)
        sines.append(last_sine * cosine + last_cosine * sine)
    return cosines, sines


def _smooth_noise(rng, shape, sigma_px: float) -> np.ndarray:
    """Gaussian noise smoothed in-plane and rescaled to unit standard deviation."""
    noise = rng.standard_normal(shape, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, sigma=(0.0, sigma_px, sigma_px), mode="nearest")
    return noise / max(float(noise.std()), 1e-6)


def _paint_deep_structures(rng, head: _Head) -> None:
    """Basal ganglia, thalami, brainstem and cerebellum."""
    pixel, scale, level = head.pixel_mm, head.scale, head.level
    grey_deep = head.grey - _uniform(rng, 1.0, 4.0)
    band = _levels(level, 0.33, 0.57)
    if band.stop > band.start:
        lateral, posterior = head.lateral[band], head.posterior[band]
        presence = _bump(level[band], 0.31, 0.59) ** 0.5
        for side in (-1.0, 1.0):
            lentiform = _ellipse(
                lateral,
                posterior,
                (side * 19 * scale, -2 * scale),
                (6 * scale, 13 * scale),
                side * 0.35,
            )
            thalamus = _ellipse(
                lateral, posterior, (side * 9 * scale, 11 * scale), (7 * scale, 9 * scale)
            )
            signed = np.maximum(lentiform, thalamus) - 15.0 * (1.0 - presence)
            _paint(head.brain, _soft(signed, pixel), grey_deep, band)

    # Posterior fossa: cerebellum (with folia) behind the petrous ridges.
    band = _levels(level, -1.0, 0.27)
    if band.stop > band.start:
        lateral, posterior = head.lateral[band], head.posterior[band]
        half_breadth = 0.85 * 74 * scale
        ridge = -8 * scale + 36 * scale * np.abs(lateral) / half_breadth
        fade = np.clip((0.27 - level[band]) / 0.05, 0.0, 1.0)
        folia = 2.5 * np.cos(2 * np.pi * np.hypot(lateral, posterior - 30 * scale) / 3.5)
        value = 0.5 * (head.grey + head.white) + 2.0 + folia
        _paint(head.brain, _soft(posterior - ridge, pixel) * fade, value, band)

    band = _levels(level, -1.0, 0.42)
    if band.stop > band.start:
        lateral, posterior, lv = head.lateral[band], head.posterior[band], level[band]
        radius = (11.0 + 2.0 * lv) * scale
        centre = (9.0 + 6.0 * lv) * scale
        stem = radius - np.hypot(lateral, posterior - centre)
        _paint(head.brain, _soft(np.where(lv <= 0.4, stem, -1e3), pixel), head.white + 3.0, band)


def _paint_cortex(rng, head: _Head, basis) -> None:
    """Grey-matter ribbon folded around sulci that wander from slice to slice."""
    pixel, level = head.pixel_mm, head.level
    n_gyri = int(rng.integers(24, 34))
    phase = _smooth_angular_field(
        rng, basis, level, harmonics=(1, 2, 3, 4, 5, 6), level_frequencies=6, amplitude=1.6
    )
    twist = _smooth_angular_field(
        rng, basis, level, harmonics=(1, 2, 3, 4), level_frequencies=3, amplitude=0.12
    )
    depth = head.depth
    psi = n_gyri * head.theta + phase + twist * np.maximum(depth, 0)
    turns = np.round(psi / (2 * np.pi))
    wrapped = psi - 2 * np.pi * turns
    distance = np.abs(wrapped) * np.maximum(head.rho, 1.0) / n_gyri
    depths = _uniform(rng, 6.0, 11.0) * rng.uniform(0.3, 1.4, size=n_gyri).astype(np.float32)
    sulcus_depth = depths[turns.astype(np.int64) % n_gyri] * np.clip(
        head.r_inner / (60.0 * head.scale), 0.4, 1.0
    )
    cortex = _uniform(rng, 2.5, 3.5)
    half_width = _uniform(rng, 0.45, 0.8) * (1.0 + 1.6 * head.atrophy)
    ribbon = np.maximum(
        cortex - depth,
        np.minimum(half_width + cortex - distance, sulcus_depth + cortex - depth),
    )
    _paint(head.brain, _soft(ribbon, pixel), head.grey + 1.0 * head.texture)
    head.sulcus_distance = distance
    head.sulcus_depth = sulcus_depth
    head.csf_rim = _uniform(rng, 0.3, 1.0) * (1.0 + 2.0 * head.atrophy)
    sulci = np.maximum(
        head.csf_rim - depth, np.minimum(half_width - distance, sulcus_depth - depth)
    )
    _paint(head.brain, _soft(sulci, pixel), head.csf)


def _lateral_ventricle(lateral, posterior, level, side, scale, size_factor) -> np.ndarray:
    """Signed distance to one lateral ventricle: frontal horn, body, atrium, occipital horn."""
    outward = side * lateral / scale
    backward = posterior / scale
    presence = np.sqrt(np.clip(1.0 - ((level - 0.535) / 0.175) ** 2, 0.0, 1.0))
    upper = np.clip((level - 0.5) / 0.2, 0.0, 1.0)  # bodies only, closer together, near the top
    lower = np.clip((0.6 - level) / 0.12, 0.0, 1.0)  # atria and occipital horns lower down
    centre_line = (4.0 + 0.014 * (backward + 6.0) ** 2) * (1.0 - 0.35 * upper)
    width = (
        size_factor
        * presence
        * (
            5.0 * np.exp(-(((backward + 18.0) / 9.0) ** 2)) * (1.0 - 0.6 * upper)
            + 2.6
            + 6.0 * np.exp(-(((backward - 27.0) / 8.0) ** 2)) * lower
        )
    )
    front, back = -30.0 + 8.0 * upper, 40.0 - 14.0 * upper - 6.0 * (1.0 - lower)
    signed = np.minimum(
        width - np.abs(outward - centre_line), np.minimum(backward - front, back - backward)
    )
    signed = np.minimum(signed, outward - 1.2)  # septum pellucidum
    signed = np.where(presence > 0.05, signed, -1e3)
    return (signed * scale).astype(np.float32)


def _paint_csf_spaces(rng, head: _Head) -> None:
    """Ventricles, cisterns, the Sylvian and interhemispheric fissures."""
    pixel, scale, level, lateral, posterior = (
        head.pixel_mm,
        head.scale,
        head.level,
        head.lateral,
        head.posterior,
    )
    grow = 1.0 + 1.0 * head.atrophy
    size_factor = _uniform(rng, 0.8, 1.15) * grow
    asymmetry = _uniform(rng, 0.85, 1.15)
    lateral_ventricles = []
    for side, factor in ((-1.0, asymmetry), (1.0, 1.0 / asymmetry)):
        signed = _lateral_ventricle(lateral, posterior, level, side, scale, size_factor * factor)
        lateral_ventricles.append(signed)
        _paint(head.brain, _soft(signed, pixel), head.csf)
    head.ventricles = tuple(lateral_ventricles)

    csf = np.full(head.shape, -1e3, dtype=np.float32)
    band = _levels(level, 0.29, 0.47)  # third ventricle
    csf[band] = np.minimum(
        1.2 * grow * scale - np.abs(lateral[band]), 10 * scale - np.abs(posterior[band] - 2 * scale)
    )
    band = _levels(level, 0.05, 0.22)  # fourth ventricle behind the pons
    if band.stop > band.start:
        centre = (9.0 + 6.0 * level[band]) * scale + 13.5 * scale
        csf[band] = _ellipse(
            lateral[band], posterior[band] - centre, (0, 0), (6 * scale * grow, 3 * scale * grow)
        )
    _paint(head.brain, _soft(csf, pixel), head.csf)

    cisterns = np.full(head.shape, -1e3, dtype=np.float32)
    band = _levels(level, 0.17, 0.33)  # suprasellar cistern, a five-pointed star
    if band.stop > band.start:
        delta_x, delta_y = lateral[band], posterior[band] + 10 * scale
        star = (
            9.0
            * scale
            * (1.0 + 0.3 * head.atrophy)
            * (1.0 + 0.22 * np.cos(5 * np.arctan2(delta_y, delta_x) + np.pi / 2))
        )
        cisterns[band] = star - np.hypot(delta_x, delta_y)
    band = _levels(level, 0.0, 0.40)  # ambient and prepontine cisterns around the brainstem
    if band.stop > band.start:
        lv = level[band]
        radius = (11.0 + 2.0 * lv) * scale
        around = np.arctan2(posterior[band] - (9.0 + 6.0 * lv) * scale, lateral[band])
        # Wider beside the midbrain (the ambient wings) than in front and behind.
        ring = (0.9 + 1.4 * head.atrophy) * scale * (1.0 + 0.45 * np.cos(2 * around))
        distance = np.hypot(lateral[band], posterior[band] - (9.0 + 6.0 * lv) * scale)
        signed = ring - np.abs(distance - radius - ring)
        front_only = (lv < 0.17) & (posterior[band] > (9.0 + 6.0 * lv) * scale)
        cisterns[band] = np.maximum(cisterns[band], np.where(front_only, -1e3, signed))
    head.cisterns = cisterns
    _paint(head.brain, _soft(cisterns, pixel), head.csf)

    sylvian = []
    band = _levels(level, 0.22, 0.5)
    half_width = (0.8 + 1.6 * head.atrophy) * scale
    for side in (-1.0, 1.0):
        signed = np.full(head.shape, -1e3, dtype=np.float32)
        if band.stop > band.start:
            presence = _bump(level[band], 0.2, 0.52) ** 0.3
            distance = _segment_distance(
                lateral[band],
                posterior[band],
                (side * 33 * scale, -2 * scale),
                (side * 110 * scale, -16 * scale),
            )
            signed[band] = half_width - distance - 10.0 * (1.0 - presence)
        sylvian.append(signed)
        _paint(head.brain, _soft(signed, pixel), head.csf)
    head.sylvian_fissures = (sylvian[0], sylvian[1])

    # Interhemispheric fissure where the falx runs (see _falx_extent).
    fissure = (0.8 + 1.8 * head.atrophy) - np.abs(lateral)
    _paint(head.brain, _soft(np.minimum(fissure, _falx_extent(head)), pixel), head.csf)


def _falx_extent(head: _Head) -> np.ndarray:
    """Signed distance along the midline to where the falx is (whole length near the top)."""
    scale, posterior, level = head.scale, head.posterior, head.level
    gap_front = np.where(
        level > 0.5,
        1e3,
        np.where(level > 0.28, -(posterior + 24 * scale), -(posterior + 26 * scale)),
    )
    gap_back = np.where(level > 0.5, 1e3, np.where(level > 0.28, posterior - 30 * scale, -1e3))
    return np.maximum(gap_front, gap_back).astype(np.float32)


def _paint_dura_and_calcifications(rng, head: _Head) -> None:
    """Falx and tentorium (mildly hyperdense) and calcified pineal and choroid plexus."""
    pixel, scale, level, lateral, posterior = (
        head.pixel_mm,
        head.scale,
        head.level,
        head.lateral,
        head.posterior,
    )
    dura = _uniform(rng, 55.0, 95.0)
    falx = np.minimum(_uniform(rng, 0.45, 0.8) - np.abs(lateral), _falx_extent(head))
    _paint(head.brain, _soft(falx, pixel), dura)
    band = _levels(level, 0.14, 0.34)
    if band.stop > band.start:
        lv = level[band]
        apex_y = (48.0 - 30.0 * (lv - 0.14)) * scale
        signed = np.full(lateral[band].shape, -1e3, dtype=np.float32)
        for side in (-1.0, 1.0):
            distance = _segment_distance(
                lateral[band],
                posterior[band] - apex_y,
                (0.0, 0.0),
                (side * 30 * scale, -34 * scale),
            )
            signed = np.maximum(signed, 0.5 - distance)
        _paint(head.brain, _soft(signed - 5.0 * (1.0 - _bump(lv, 0.12, 0.36)), pixel), dura, band)

    spots = []
    if rng.random() < 0.65:  # pineal gland
        spots.append(((0.0, 17 * scale), _uniform(rng, 0.4, 0.46), _uniform(rng, 1.5, 3.5)))
    if rng.random() < 0.5:  # choroid plexus in the atria
        for side in (-1.0, 1.0):
            if rng.random() < 0.85:
                spots.append(
                    (
                        (side * 22 * scale, 27 * scale),
                        _uniform(rng, 0.44, 0.5),
                        _uniform(rng, 1.5, 3.0),
                    )
                )
    if rng.random() < 0.15:  # basal ganglia
        side = float(rng.choice((-1.0, 1.0)))
        spots.append(
            ((side * 19 * scale, -2 * scale), _uniform(rng, 0.38, 0.5), _uniform(rng, 1.0, 2.5))
        )
    for (spot_x, spot_y), spot_level, radius in spots:
        spot_z = _level_to_z(head, spot_level)
        distance = np.sqrt(
            (lateral - spot_x) ** 2 + (posterior - spot_y) ** 2 + (head.z_mm - spot_z) ** 2
        )
        _paint(head.brain, _soft(radius - distance, pixel), _uniform(rng, 150.0, 450.0))


def _paint_vessels_and_plexus(rng, head: _Head) -> None:
    """Dural venous sinuses and choroid plexus: normal structures as dense as thin blood."""
    pixel, scale, level, lateral, posterior, depth = (
        head.pixel_mm,
        head.scale,
        head.level,
        head.lateral,
        head.posterior,
        head.depth,
    )
    sinus = _uniform(rng, 42.0, 68.0)
    band = _levels(level, 0.3, 2.0)  # superior sagittal sinus, a triangle at both ends of the falx
    if band.stop > band.start:
        width, height = _uniform(rng, 3.0, 5.0) * scale, _uniform(rng, 5.0, 8.0) * scale
        signed = np.minimum(
            width * (1.0 - depth[band] / height) - np.abs(lateral[band]), height - depth[band]
        )
        _paint(head.brain, _soft(signed, pixel), sinus, band)
    band = _levels(level, 0.1, 0.3)  # transverse sinuses along the back of the skull
    if band.stop > band.start:
        off_midline = (
            np.abs(np.angle(np.exp(1j * (head.theta[band] - np.pi / 2)))) * head.r_inner[band]
        )
        thickness = _uniform(rng, 3.0, 5.0) * scale * _bump(level[band], 0.08, 0.32) ** 0.5
        signed = np.minimum(
            thickness - depth[band], np.minimum(off_midline - 12 * scale, 70 * scale - off_midline)
        )
        _paint(head.brain, _soft(signed, pixel), sinus, band)
    plexus = _uniform(rng, 35.0, 55.0)
    plexus_z = _level_to_z(head, _uniform(rng, 0.45, 0.52))
    for side in (-1.0, 1.0):
        radius = _uniform(rng, 2.5, 4.5) * scale
        distance = np.sqrt(
            (lateral - side * 23 * scale) ** 2
            + (posterior - 28 * scale) ** 2
            + ((head.z_mm - plexus_z) / 1.5) ** 2
        )
        inside_ventricle = np.maximum(head.ventricles[0], head.ventricles[1]) + 1.0
        _paint(head.brain, _soft(np.minimum(radius - distance, inside_ventricle), pixel), plexus)


def _paint_skull_base(rng, head: _Head) -> None:
    """Petrous ridges, clivus and sphenoid sinus, and beam hardening between them."""
    pixel, scale, level = head.pixel_mm, head.scale, head.level
    band = _levels(level, -1.0, 0.36)
    if band.stop == band.start:
        return
    lateral, posterior, lv = head.lateral[band], head.posterior[band], level[band]
    bone = _uniform(rng, 700.0, 1200.0)
    low = np.clip((0.22 - lv) / 0.22, 0.0, 1.0)
    apices = []
    for side in (-1.0, 1.0):
        # A wedge from the mastoid (back and out) to the apex beside the clivus.
        apex = (side * 12 * scale, -7 * scale)
        start = (side * 60 * scale, 28 * scale)
        apices.append(apex)
        distance = _segment_distance(lateral, posterior, start, apex)
        along = np.clip(np.hypot(lateral - apex[0], posterior - apex[1]) / (55 * scale), 0.0, 1.0)
        width = (1.0 + (1.5 + 3.5 * low) * along) * scale
        _paint(head.brain, _soft(np.where(lv < 0.23, width - distance, -1e3), pixel), bone, band)
    base = lv < 0.15
    _paint(
        head.brain,
        _soft(
            np.where(
                base, _ellipse(lateral, posterior, (0, -2 * scale), (7 * scale, 6 * scale)), -1e3
            ),
            pixel,
        ),
        bone,
        band,
    )
    sphenoid = lv < 0.07
    _paint(
        head.brain,
        _soft(
            np.where(
                sphenoid,
                _ellipse(lateral, posterior, (0, -25 * scale), (13 * scale, 10 * scale)),
                -1e3,
            ),
            pixel,
        ),
        bone,
        band,
    )
    _paint(
        head.brain,
        _soft(
            np.where(
                sphenoid,
                _ellipse(lateral, posterior, (0, -25 * scale), (10 * scale, 7 * scale)),
                -1e3,
            ),
            pixel,
        ),
        -950.0,
        band,
    )

    # Beam hardening: brighter brain beside dense bone, a dark band between the petrous
    # bones and streaks from their apices; strongest at the lowest slices.
    strength = np.clip((0.36 - lv) / 0.2, 0.0, 1.0)
    depth = np.maximum(head.depth[band], 0.0)
    artefact = _uniform(rng, 3.0, 20.0) * np.exp(-depth / 6.0)
    artefact -= _uniform(rng, 4.0, 18.0) * np.exp(
        -(((posterior - 2 * scale) / 5.0) ** 2) - (lateral / 25.0) ** 2
    )
    streak = _uniform(rng, 2.0, 10.0)
    for apex_x, apex_y in apices:
        angle = np.arctan2(posterior - apex_y, lateral - apex_x)
        distance = np.hypot(lateral - apex_x, posterior - apex_y)
        artefact += (
            streak * np.cos(7 * angle + _uniform(rng, 0, 2 * np.pi)) * np.exp(-distance / 30.0)
        )
    head.artefact[band] = artefact * strength


# --------------------------------------------------------------------------- lesions


def _place_lesion(rng, head: _Head, name: str, mask: np.ndarray) -> None:
    """Draw one lesion of subtype ``name``, paint it into the brain and record its mask."""
    draw = _LESIONS[name]
    code = SUBTYPES.index(name) + 1
    # Pixels straddling the inner table are mostly bone after partial volume: not blood.
    # Pixels of an earlier lesion keep their subtype, so every subtype placed stays labelled.
    inside = (head.depth > 0.5 * head.pixel_mm) & (mask == 0)
    best = None
    # Retry (growing) when a draw leaves too few pixels to be labelled on any slice.
    for attempt in range(12):
        signed, blood = draw(rng, head, 1.0 + 0.12 * attempt)
        hard = (signed > 0.0) & inside
        count = int(hard.sum(axis=(1, 2)).max())
        if best is None or count > best[0]:
            best = (count, signed, blood, hard)
        if count >= 2 * MIN_LABEL_PIXELS:
            break
    _, signed, blood, hard = best
    if name == "intraparenchymal" and rng.random() < 0.7:  # hypodense edema rim
        rim = _uniform(rng, 1.5, 6.0)
        _paint(
            head.brain, _soft(signed + rim, head.pixel_mm), head.white - _uniform(rng, 5.0, 11.0)
        )
    value = blood + _uniform(rng, 1.0, 4.0) * head.texture
    _paint(head.brain, _soft(signed, head.pixel_mm), value)
    mask[hard] = code


def _level_to_z(head: _Head, level: float) -> float:
    return float(np.interp(level, head.level.ravel(), head.z_mm.ravel()))


def _arc(head: _Head, centre_angle: float) -> np.ndarray:
    """Arc length in mm along the inner table from the angle ``centre_angle``."""
    difference = np.angle(np.exp(1j * (head.theta - centre_angle))).astype(np.float32)
    return np.abs(difference) * head.r_inner


def _convexity_angle(rng) -> float:
    # Anything but straight ahead or straight back (angles in the head frame, +y posterior).
    side = float(rng.choice((0.0, np.pi)))
    return side + _uniform(rng, -1.2, 1.2) * (1.0 if side == 0.0 else -1.0)


def _epidural(rng, head: _Head, grow: float):
    """Biconvex lens between the inner table and the dura."""
    angle = _convexity_angle(rng)
    z_centre = _level_to_z(head, _uniform(rng, 0.35, 0.8))
    half_height = _uniform(rng, 8.0, 25.0) * grow
    half_arc = _uniform(rng, 15.0, 40.0) * grow
    thickness = min(_log_uniform(rng, 3.0, 18.0) * grow, 0.6 * half_arc)
    extent = (_arc(head, angle) / half_arc) ** 2 + ((head.z_mm - z_centre) / half_height) ** 2
    lens = thickness * np.sign(1.0 - extent) * np.sqrt(np.abs(1.0 - extent))
    return lens - head.depth, _blood(rng)


def _subdural(rng, head: _Head, grow: float):
    """Crescent along the inner table, long in extent, concave toward the brain."""
    angle = _convexity_angle(rng)
    z_centre = _level_to_z(head, _uniform(rng, 0.35, 0.75))
    half_height = _uniform(rng, 20.0, 45.0) * grow
    half_arc = _uniform(rng, 45.0, 110.0) * grow
    thickness = _log_uniform(rng, 2.0, 13.0) * grow
    extent = (_arc(head, angle) / half_arc) ** 2 + ((head.z_mm - z_centre) / half_height) ** 2
    crescent = thickness * (1.0 - extent**3)
    return crescent - head.depth, _blood(rng)


def _subarachnoid(rng, head: _Head, grow: float):
    """Blood in the sulci of a convexity, in the basal cisterns or in a Sylvian fissure."""
    pixel = head.pixel_mm
    kind = rng.choice(("sulcal", "cisternal", "sylvian"), p=(0.5, 0.3, 0.2))
    if kind == "sulcal":
        angle = _convexity_angle(rng)
        z_centre = _level_to_z(head, _uniform(rng, 0.45, 0.85))
        half_height = _uniform(rng, 10.0, 30.0) * grow
        half_arc = _uniform(rng, 20.0, 60.0) * grow
        # Blood widens the sulci it fills; never thinner than about half a pixel.
        half_width = max(_uniform(rng, 0.8, 1.6) * grow, 0.65 * pixel)
        in_sulci = np.minimum(
            half_width - head.sulcus_distance, head.sulcus_depth + 1.0 - head.depth
        )
        region = np.minimum(
            half_arc - _arc(head, angle), half_height - np.abs(head.z_mm - z_centre)
        )
        signed = np.minimum(in_sulci, region)
    elif kind == "cisternal":
        widen = max(0.0, 0.5 * pixel - 1.0) + 0.4 * grow
        signed = head.cisterns + widen
        for fissure in head.sylvian_fissures:
            signed = np.maximum(
                signed, np.minimum(fissure + widen, 28.0 * head.scale - np.abs(head.lateral))
            )
    else:
        side = int(rng.integers(2))
        signed = head.sylvian_fissures[side] + max(0.0, 0.5 * pixel - 0.8) + 0.4 * grow
    return signed.astype(np.float32), _blood(rng, 58.0)


def _intraparenchymal(rng, head: _Head, grow: float):
    """Irregular clot in the deep grey nuclei or in a lobe, away from the ventricles."""
    scale = head.scale
    near_ventricles = np.maximum(head.ventricles[0], head.ventricles[1]) > -1.0
    signed = np.full(head.shape, -1e3, dtype=np.float32)
    for _ in range(20):
        radius = _log_uniform(rng, 3.0, 18.0) * grow
        if rng.random() < 0.5:  # hypertensive: basal ganglia or thalamus
            side = float(rng.choice((-1.0, 1.0)))
            centre = (side * _uniform(rng, 12.0, 24.0) * scale, _uniform(rng, -8.0, 14.0) * scale)
            level = _uniform(rng, 0.37, 0.55)
        else:  # lobar: a few mm to a few cm under the cortex
            level = _uniform(rng, 0.35, 0.82)
            angle = _uniform(rng, -np.pi, np.pi)
            nearest = int(np.argmin(np.abs(head.level.ravel() - level)))
            ray = (np.abs(np.angle(np.exp(1j * (head.theta[nearest] - angle)))) < 0.08) & (
                head.depth[nearest] > 0
            )
            reach = float(head.rho[nearest][ray].max()) if ray.any() else 30.0
            distance = max(reach - radius - _uniform(rng, 6.0, 25.0), 5.0)
            centre = (distance * np.cos(angle), distance * np.sin(angle))
        z_centre = _level_to_z(head, level)
        semi = np.array([1.0, _uniform(rng, 0.6, 1.0), _uniform(rng, 0.6, 1.2)]) * radius
        band = np.flatnonzero(np.abs(head.z_mm.ravel() - z_centre) < 1.5 * semi[2] + head.slice_mm)
        if band.size == 0:
            continue
        band = slice(int(band[0]), int(band[-1]) + 1)
        turn = _uniform(rng, 0, np.pi)
        delta_x, delta_y = head.lateral[band] - centre[0], head.posterior[band] - centre[1]
        along_first = (np.cos(turn) * delta_x + np.sin(turn) * delta_y) / semi[0]
        along_second = (-np.sin(turn) * delta_x + np.cos(turn) * delta_y) / semi[1]
        along_height = (head.z_mm[band] - z_centre) / semi[2]
        azimuth = np.arctan2(along_second, along_first)
        rough = np.zeros(along_first.shape, dtype=np.float32)
        for order in range(2, 6):  # lobulated outline that changes from slice to slice
            rough += _uniform(rng, 0.0, 0.12) * np.cos(
                order * azimuth + _uniform(rng, 0, 2 * np.pi) + along_height * _uniform(rng, -1, 1)
            )
        signed = np.full(head.shape, -1e3, dtype=np.float32)
        signed[band] = radius * (
            1.0
            + rough
            - np.sqrt(
                along_first * along_first
                + along_second * along_second
                + along_height * along_height
            )
        )
        signed = np.minimum(signed, head.depth - 4.0)
        blob = signed > 0
        n_blob = int(blob.sum())
        if n_blob and (blob & near_ventricles).sum() <= 0.05 * n_blob:
            break
    return signed, _blood(rng)


def _intraventricular(rng, head: _Head, grow: float):
    """Blood layering in the dependent (posterior) part of one or both lateral ventricles."""
    left, right = head.ventricles
    choice = int(rng.integers(3))
    ventricle = left if choice == 0 else right if choice == 1 else np.maximum(left, right)
    present = np.flatnonzero((ventricle > 0).sum(axis=(1, 2)) > 0)
    if present.size == 0:
        return np.full(head.shape, -1e3, dtype=np.float32), 70.0
    length = int(rng.integers(2, max(3, present.size + 1)))
    start = int(rng.integers(present[0], max(present[0] + 1, present[-1] - length + 2)))
    run = np.zeros((head.shape[0], 1, 1), dtype=bool)
    run[start : start + length] = True
    if rng.random() < 0.2:
        level = -1e3  # a cast filling the whole ventricle
    else:
        level = head.centre_y + (_uniform(rng, 6.0, 26.0) - 6.0 * (grow - 1.0)) * head.scale
    signed = np.minimum(ventricle, head.y_image - level)
    signed = np.where(run, signed, -1e3)
    return signed.astype(np.float32), _blood(rng)


_LESIONS = {
    "epidural": _epidural,
    "subdural": _subdural,
    "subarachnoid": _subarachnoid,
    "intraparenchymal": _intraparenchymal,
    "intraventricular": _intraventricular,
}


# --------------------------------------------------------------------------- image formation


def _finish(rng, head: _Head) -> np.ndarray:
    """Composite, blur by the point-spread function and add correlated noise."""
    brain = head.brain + head.artefact
    hu = head.outside + head.inner_fraction * (brain - head.outside)
    # Point-spread function of the scanner, in mm (partial volume itself comes from _soft).
    sigma_px = _uniform(rng, 0.3, 0.6) / head.pixel_mm
    hu = ndimage.gaussian_filter(hu, sigma=(0.0, sigma_px, sigma_px), mode="nearest")
    noise = _smooth_noise(rng, head.shape, sigma_px=0.6)
    # Noisier at the skull base (photon starvation) and toward the centre of the head.
    base = np.clip((0.35 - head.level) / 0.3, 0.0, 1.0)
    centre = np.clip(1.0 - head.rho / np.maximum(head.r_inner, 1.0), 0.0, 1.0)
    hu += _uniform(rng, 3.0, 10.0) * (1.0 + 0.5 * base) * (0.85 + 0.3 * centre) * noise
    return np.clip(hu, -1024.0, 3071.0).astype(np.float32)
