"""Texture extractors: GLCM, LBP, HOG and Gabor."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from skimage.feature import local_binary_pattern
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ichkit.features.gabor import GaborFeatures
from ichkit.features.glcm import PROPERTIES, GLCMFeatures
from ichkit.features.hog import HOGFeatures
from ichkit.features.lbp import LBPFeatures
from ichkit.scans import SUBTYPES
from ichkit.scans.phantom import make_phantom_scan

# Default parameters throughout; 64x64 slices keep the tests fast.
EXTRACTORS = {
    "glcm": GLCMFeatures,
    "lbp": LBPFeatures,
    "hog": HOGFeatures,
    "gabor": GaborFeatures,
}
SIZE = 64


def brain_slice(value: float = 40.0, size: int = SIZE) -> np.ndarray:
    """A slice of soft tissue only: ``brain_mask`` falls back to the whole slice."""
    return np.full((size, size), value, dtype=np.float32)


@pytest.fixture(scope="module")
def phantom_slices() -> np.ndarray:
    """A middle slice of a normal phantom and two slices with the bleed per subtype."""
    stacks = []
    for seed, subtypes in enumerate([(), *[(name,) for name in SUBTYPES]]):
        scan = make_phantom_scan(seed, n_slices=6, size=SIZE, subtypes=subtypes)
        labelled = np.flatnonzero(scan.slice_labels) if subtypes else np.array([3])
        stacks.append(scan.hu[labelled[:2]])
    return np.concatenate(stacks)


# --------------------------------------------------------------------------- every family


@pytest.mark.parametrize("name", EXTRACTORS)
def test_names_are_unique_prefixed_and_match_width(name, phantom_slices):
    extractor = EXTRACTORS[name]().fit(phantom_slices[:1])
    names = extractor.get_feature_names_out()
    features = extractor.transform(phantom_slices[:2])
    assert features.shape == (2, len(names)) == (2, len(extractor._names()))
    assert len(set(names)) == len(names)
    assert all(feature.startswith(f"{name}_") for feature in names)
    assert all(feature.replace("_", "").isalnum() for feature in names)


@pytest.mark.parametrize(
    ("extractor", "expected"),
    [
        (GLCMFeatures(distances=(1,), angles=(22.5,)), "glcm_contrast_d1_a22p5"),
        (LBPFeatures(radii=(1.5,), n_points=12), "lbp_r1p5_uniform0"),
        (GaborFeatures(frequencies=(0.05,), orientations=(30,)), "gabor_mean_f0p05_o30"),
    ],
)
def test_names_of_fractional_parameters_have_no_dots(extractor, expected):
    names = extractor.fit(brain_slice()[np.newaxis]).get_feature_names_out()
    assert names[0] == expected


@pytest.mark.parametrize("name", EXTRACTORS)
def test_finite_on_every_phantom_subtype(name, phantom_slices):
    features = EXTRACTORS[name]().fit(phantom_slices).transform(phantom_slices)
    assert np.isfinite(features).all()
    assert np.ptp(features, axis=0).max() > 0


EDGE_SLICES = {
    "air": np.full((SIZE, SIZE), -1000.0),
    "bone": np.full((SIZE, SIZE), 1500.0),
    "flat_brain": brain_slice(),
    "tiny": np.full((8, 8), 40.0),
}


@pytest.mark.parametrize("name", EXTRACTORS)
@pytest.mark.parametrize("edge", EDGE_SLICES)
def test_finite_on_edge_slices(name, edge):
    X = EDGE_SLICES[edge][np.newaxis]
    features = EXTRACTORS[name]().fit(X).transform(X)
    assert features.shape == (1, len(EXTRACTORS[name]().fit(X).get_feature_names_out()))
    assert np.isfinite(features).all()


@pytest.mark.parametrize("name", EXTRACTORS)
@pytest.mark.parametrize("brain", ["empty", "one_pixel", "one_row"])
def test_finite_on_edge_masks(name, brain):
    rng = np.random.default_rng(0)
    image = rng.normal(40, 10, size=(SIZE, SIZE)).astype(np.float32)
    mask = np.zeros(image.shape, dtype=bool)
    if brain == "one_pixel":
        mask[30, 30] = True
    elif brain == "one_row":
        mask[30, 10:50] = True
    extractor = EXTRACTORS[name]().fit(image[np.newaxis])
    features = extractor._features(image, mask)
    assert features.shape == (len(extractor.get_feature_names_out()),)
    assert np.isfinite(features).all()
    if brain == "empty":
        assert not features.any()


@pytest.mark.parametrize("name", EXTRACTORS)
def test_clone_set_params_and_pipeline(name, phantom_slices):
    extractor = EXTRACTORS[name]()
    copy = clone(extractor)
    assert copy.get_params() == extractor.get_params()
    key, value = next(iter(extractor.get_params().items()))
    assert copy.set_params(**{key: value}).get_params()[key] == value
    labels = np.arange(len(phantom_slices)) % 2
    model = Pipeline(
        [
            ("texture", EXTRACTORS[name]()),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(max_iter=200)),
        ]
    ).fit(phantom_slices, labels)
    assert model.predict(phantom_slices).shape == labels.shape
    assert model[:-1].get_feature_names_out()[0].startswith(name)


@pytest.mark.parametrize("name", EXTRACTORS)
def test_pickle_round_trip_gives_the_same_features(name, phantom_slices):
    extractor = EXTRACTORS[name]().fit(phantom_slices)
    expected = extractor.transform(phantom_slices[:2])
    restored = pickle.loads(pickle.dumps(extractor))
    np.testing.assert_allclose(restored.transform(phantom_slices[:2]), expected)


# --------------------------------------------------------------------------- parameter errors

PARAMETER_ERRORS = [
    (
        GLCMFeatures(levels=2),
        ValueError,
        r"The 'levels' parameter of GLCMFeatures must be an int in \[3, 256\]\. Got 2\.",
    ),
    (
        GLCMFeatures(distances=1),
        TypeError,
        r"The 'distances' parameter of GLCMFeatures must be a sequence of ints\. Got 1\.",
    ),
    (
        GLCMFeatures(distances=(1, 2, 1)),
        ValueError,
        r"The 'distances' parameter of GLCMFeatures must not repeat values, since each "
        r"names a feature; 1 repeated\. Got \(1, 2, 1\)\.",
    ),
    (
        GLCMFeatures(window_width=0),
        ValueError,
        r"The 'window_width' parameter of GLCMFeatures must be a float >= 1\. Got 0\.",
    ),
    (
        LBPFeatures(n_points=2),
        ValueError,
        r"The 'n_points' parameter of LBPFeatures must be an int in \[4, 24\]\. Got 2\.",
    ),
    (
        LBPFeatures(radii=()),
        ValueError,
        r"The 'radii' parameter of LBPFeatures must not be empty\.",
    ),
    (
        LBPFeatures(radii=(1, 1.0)),
        ValueError,
        r"The 'radii' parameter of LBPFeatures must not repeat values",
    ),
    (
        HOGFeatures(size=32, pixels_per_cell=16, cells_per_block=3),
        ValueError,
        r"HOGFeatures needs at least one block of cells: size // pixels_per_cell "
        r"\(32 // 16 = 2 cells\) must be >= cells_per_block\. Got cells_per_block=3\.",
    ),
    (
        HOGFeatures(orientations=9.0),
        TypeError,
        r"The 'orientations' parameter of HOGFeatures must be an int in \[2, 36\]\. "
        r"Got 9\.0 of type float\.",
    ),
    (
        GaborFeatures(frequencies=(0.1, 0.9)),
        ValueError,
        r"The 'frequencies' parameter of GaborFeatures must be a float in \[0\.02, 0\.5\]\. "
        r"Got 0\.9\.",
    ),
    (
        GaborFeatures(orientations="0"),
        TypeError,
        r"The 'orientations' parameter of GaborFeatures must be a sequence of floats\.",
    ),
]


@pytest.mark.parametrize(("extractor", "error", "message"), PARAMETER_ERRORS)
def test_parameter_errors_name_parameter_rule_and_value(extractor, error, message):
    with pytest.raises(error, match=message):
        extractor.fit(brain_slice()[np.newaxis])


def test_bad_input_says_how_to_fix_it():
    with pytest.raises(ValueError, match=r"GLCMFeatures needs a stack of 2-D slices"):
        GLCMFeatures().fit(brain_slice())


# --------------------------------------------------------------------------- behaviour


def test_glcm_contrast_is_higher_for_noise_than_for_a_flat_region():
    rng = np.random.default_rng(0)
    noise = rng.normal(45, 15, size=(SIZE, SIZE)).clip(0, 95)
    X = np.stack([brain_slice(), noise])
    extractor = GLCMFeatures().fit(X)
    table = dict(zip(extractor.get_feature_names_out(), extractor.transform(X).T, strict=True))
    flat, noisy = table["glcm_contrast_d1_a0"]
    assert flat == 0 < noisy
    assert table["glcm_contrast_d1_mean"][1] > 0
    assert table["glcm_homogeneity_d1_a0"][0] == 1 > table["glcm_homogeneity_d1_a0"][1]


def test_glcm_matches_scikit_image_on_the_brain_levels():
    from skimage.feature import graycomatrix, graycoprops

    rng = np.random.default_rng(4)
    image = rng.uniform(-20, 120, size=(40, 40)).astype(np.float32)
    mask = np.zeros(image.shape, dtype=bool)
    mask[5:35, 8:30] = True
    extractor = GLCMFeatures(distances=(1, 3), levels=16).fit(image[np.newaxis])
    # Brain levels 1..15 over 0-100 HU, outside 0; pairs with level 0 dropped.
    levels = 1 + np.minimum(np.floor(np.clip(image / 100, 0, 1) * 15), 14)
    quantised = np.where(mask, levels, 0).astype(np.uint8)
    matrix = graycomatrix(quantised, [1, 3], np.deg2rad([0, 45, 90, 135]), 16, symmetric=True)
    expected = np.stack([graycoprops(matrix[1:, 1:], prop) for prop in PROPERTIES])
    features = extractor._features(image, mask).reshape(len(PROPERTIES), 2, 5)
    np.testing.assert_allclose(features[:, :, :4], expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(features[:, :, 4], expected.mean(axis=2), rtol=1e-10)


def test_glcm_ignores_pixels_outside_the_brain():
    rng = np.random.default_rng(1)
    image = rng.normal(40, 10, size=(SIZE, SIZE)).astype(np.float32)
    mask = np.zeros(image.shape, dtype=bool)
    mask[16:48, 16:48] = True
    changed = image.copy()
    changed[~mask] = rng.normal(1000, 500, size=(~mask).sum())
    extractor = GLCMFeatures().fit(image[np.newaxis])
    np.testing.assert_allclose(extractor._features(image, mask), extractor._features(changed, mask))


def test_lbp_histograms_sum_to_one_per_radius(phantom_slices):
    extractor = LBPFeatures().fit(phantom_slices)
    histograms = extractor.transform(phantom_slices).reshape(len(phantom_slices), 3, -1)
    np.testing.assert_allclose(histograms.sum(axis=2), 1.0)
    assert (histograms >= 0).all()


@pytest.mark.filterwarnings("ignore:Applying `local_binary_pattern` to floating-point")
@pytest.mark.parametrize(("radius", "n_points"), [(1, 8), (2, 8), (1.5, 12), (3, 24)])
def test_lbp_matches_scikit_image_uniform_codes(radius, n_points):
    # Spread-out continuous values: no near-ties, where the tie tolerance differs.
    image = np.random.default_rng(2).uniform(-1000, 1000, size=(40, 40))
    extractor = LBPFeatures(radii=(radius,), n_points=n_points).fit(image[np.newaxis])
    codes = local_binary_pattern(image, n_points, radius, method="uniform")
    expected = np.bincount(codes.astype(int).ravel(), minlength=n_points + 2) / codes.size
    everywhere = np.ones(image.shape, dtype=bool)
    np.testing.assert_allclose(extractor._features(image, everywhere), expected)


def test_lbp_flat_brain_is_all_uniform_with_every_neighbour_equal():
    # Interpolated neighbours equal to the centre count as not below it.
    extractor = LBPFeatures().fit(brain_slice()[np.newaxis])
    table = dict(
        zip(
            extractor.get_feature_names_out(),
            extractor.transform(brain_slice(37.3)[np.newaxis])[0],
            strict=True,
        )
    )
    assert table["lbp_r1_uniform8"] == pytest.approx(1.0, abs=0.1)
    assert table["lbp_r1_nonuniform"] == 0


@pytest.mark.parametrize(("orientation", "axis"), [(0, 1), (90, 0)])
def test_gabor_response_is_highest_for_stripes_of_its_orientation(orientation, axis):
    # Orientation 0 oscillates along the rows: vertical stripes, changing along columns.
    position = np.arange(SIZE, dtype=np.float32)
    stripes = 40 + 20 * np.cos(2 * np.pi * 0.1 * position)
    image = np.broadcast_to(stripes if axis == 1 else stripes[:, np.newaxis], (SIZE, SIZE))
    extractor = GaborFeatures(frequencies=(0.1,)).fit(image[np.newaxis])
    features = extractor.transform(image[np.newaxis])[0]
    means = features[: len(extractor.orientations)]
    assert extractor.orientations[int(np.argmax(means))] == orientation
    assert means.max() > 5 * np.sort(means)[-2]


def test_gabor_matches_scikit_image_gabor_at_full_resolution():
    from skimage.filters import gabor

    rng = np.random.default_rng(3)
    image = rng.normal(40, 10, size=(48, 48)).astype(np.float32)
    mask = np.zeros(image.shape, dtype=bool)
    mask[8:40, 10:42] = True
    extractor = GaborFeatures(frequencies=(0.2, 0.4), orientations=(0, 60)).fit(image[np.newaxis])
    extractor.strides_ = [1] * len(extractor.strides_)
    windowed = np.clip(image / 80, 0, 1)
    windowed = np.where(mask, windowed - windowed[mask].mean(), 0)
    expected = []
    for frequency in (0.2, 0.4):
        for orientation in (0, 60):
            real, imaginary = gabor(
                windowed, frequency, theta=np.deg2rad(orientation), mode="constant"
            )
            magnitude = np.hypot(real, imaginary)[mask]
            expected.append((magnitude.mean(), magnitude.std()))
    expected = np.asarray(expected).T.ravel()
    np.testing.assert_allclose(extractor._features(image, mask), expected, rtol=1e-4)


def test_gabor_reads_the_whole_slice_response_on_its_stride_grid():
    # The brain's box starts off the stride grid; the features must still be those of
    # the whole slice's convolution read on every stride-th row and column of the slice.
    from scipy.signal import fftconvolve
    from skimage.filters import gabor_kernel

    rng = np.random.default_rng(5)
    image = rng.normal(40, 10, size=(96, 96)).astype(np.float32)
    mask = np.zeros(image.shape, dtype=bool)
    mask[13:83, 7:90] = True
    extractor = GaborFeatures(frequencies=(0.05, 0.2), orientations=(0, 45)).fit(image[None])
    assert sorted(set(extractor.strides_)) == [2, 4]
    windowed = np.clip(image / 80, 0, 1)
    windowed = np.where(mask, windowed - windowed[mask].mean(), 0)
    expected = []
    for frequency, stride in ((0.05, 4), (0.2, 2)):
        for orientation in (0, 45):
            kernel = gabor_kernel(frequency, theta=np.deg2rad(orientation))
            response = np.abs(fftconvolve(windowed, kernel, mode="same"))
            magnitude = response[::stride, ::stride][mask[::stride, ::stride]]
            expected.append((magnitude.mean(), magnitude.std()))
    expected = np.asarray(expected).T.ravel()
    np.testing.assert_allclose(extractor._features(image, mask), expected, rtol=1e-4)


def test_gabor_strided_sampling_stays_close_to_full_resolution(phantom_slices):
    strided = GaborFeatures().fit(phantom_slices)
    full = GaborFeatures().fit(phantom_slices)
    full.strides_ = [1] * len(full.strides_)
    image = phantom_slices[2]
    from ichkit.features.brain import brain_mask

    mask = brain_mask(image)
    np.testing.assert_allclose(
        strided._features(image, mask), full._features(image, mask), rtol=0.15
    )


def test_hog_length_does_not_depend_on_input_size():
    widths = {
        size: HOGFeatures()
        .fit(brain_slice(size=size)[np.newaxis])
        .transform(brain_slice(size=size)[np.newaxis] + np.eye(size)[np.newaxis] * 30)
        for size in (40, 64, 100)
    }
    assert {features.shape for features in widths.values()} == {(1, 324)}
    assert all(features.any() for features in widths.values())


@pytest.mark.parametrize("shape", [(512, 512), (300, 420), (40, 50), (64, 64)])
def test_hog_resize_gives_scikit_image_resize_values(shape):
    from skimage.feature import hog
    from skimage.transform import resize

    from ichkit.scans.windowing import Window

    rng = np.random.default_rng(0)
    image = rng.normal(40, 15, size=shape).astype(np.float32)
    mask = np.ones(shape, dtype=bool)
    mask[: shape[0] // 5] = False
    windowed = Window(40, 80)(image)
    windowed[~mask] = 0
    shrinking = shape[0] > 64 or shape[1] > 64
    small = resize(
        windowed, (64, 64), order=1, mode="edge", anti_aliasing=shrinking, preserve_range=True
    )
    expected = hog(small, orientations=9, pixels_per_cell=(16, 16), cells_per_block=(2, 2))
    features = HOGFeatures().fit(image[np.newaxis])._features(image, mask)
    np.testing.assert_allclose(features, expected, atol=1e-5)


def test_hog_names_follow_scikit_image_layout():
    extractor = HOGFeatures(size=32, pixels_per_cell=8, cells_per_block=2, orientations=4)
    names = extractor.fit(brain_slice(size=32)[np.newaxis]).get_feature_names_out()
    assert len(names) == 3 * 3 * 2 * 2 * 4
    assert names[0] == "hog_block0_0_cell0_0_o0"
    assert names[4] == "hog_block0_0_cell0_1_o0"
    assert names[-1] == "hog_block2_2_cell1_1_o3"
