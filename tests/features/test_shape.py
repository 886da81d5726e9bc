"""Hyperdense regions of the brain: number, size, shape, place and asymmetry."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.measure import label, regionprops
from sklearn.base import clone

from ichkit import scans
from ichkit.features.brain import brain_mask
from ichkit.features.shape import HyperdenseShapeFeatures
from ichkit.scans.phantom import make_phantom_scan

NAMES = [
    "shape_n_regions",
    "shape_total_area",
    "shape_largest_area",
    "shape_largest_eccentricity",
    "shape_largest_solidity",
    "shape_largest_extent",
    "shape_largest_skull_proximity",
    "shape_nearest_skull_proximity",
    "shape_regions_mean_hu",
    "shape_asymmetry_mean_hu",
    "shape_asymmetry_blood",
    "shape_asymmetry_area",
    "shape_mirror_difference_hu",
]


def _head(size=128, lesion=None):
    """A disc of 35 HU brain in a 1000 HU skull on air, with an optional 70 HU lesion.

    ``lens``: against the inner table on the right (epidural); ``crescent``: a thin
    rim along the inner table on the left (subdural); ``blob``: a disc at the centre;
    ``side``: a disc halfway to the left inner table.
    """
    rows, columns = np.mgrid[:size, :size]
    centre = size / 2
    radius = np.hypot(rows - centre, columns - centre)
    image = np.full((size, size), -1000.0, np.float32)
    image[radius < 0.45 * size] = 1000.0
    inside = radius < 0.40 * size
    image[inside] = 35.0
    if lesion == "lens":
        lens = np.hypot(rows - centre, columns - (centre + 0.52 * size)) < 0.2 * size
        image[inside & lens] = 70.0
    elif lesion == "crescent":
        image[inside & (radius > 0.33 * size) & (columns < centre - 0.1 * size)] = 70.0
    elif lesion == "blob":
        image[radius < 0.07 * size] = 70.0
    elif lesion == "side":
        image[np.hypot(rows - centre, columns - (centre - 0.2 * size)) < 0.07 * size] = 70.0
    return image


def _features(*images, **params):
    X = np.stack(images)
    extractor = HyperdenseShapeFeatures(**params).fit(X)
    names = extractor.get_feature_names_out()
    return [dict(zip(names, row, strict=True)) for row in extractor.transform(X)]


def test_a_lens_against_the_skull_is_one_region_touching_it():
    (lens,) = _features(_head(lesion="lens"))
    assert lens["shape_n_regions"] == 1
    assert lens["shape_largest_skull_proximity"] == 1.0
    assert lens["shape_nearest_skull_proximity"] == 1.0
    assert lens["shape_regions_mean_hu"] == 70.0
    assert 0.01 < lens["shape_largest_area"] == lens["shape_total_area"] < 0.1
    assert lens["shape_largest_eccentricity"] > 0.8  # long along the skull, thin across
    assert lens["shape_largest_solidity"] > 0.85


def test_a_central_blob_is_one_region_far_from_the_skull():
    (blob,) = _features(_head(lesion="blob"))
    assert blob["shape_n_regions"] == 1
    assert blob["shape_largest_skull_proximity"] < 0.3
    assert blob["shape_largest_eccentricity"] < 0.2
    assert blob["shape_largest_solidity"] > 0.9
    assert 0.75 < blob["shape_largest_extent"] < 0.9  # a disc: pi / 4 and a little more
    # A blob at the centre is symmetric.
    assert blob["shape_asymmetry_blood"] < 1e-3 and blob["shape_mirror_difference_hu"] < 0.5


def test_a_crescent_is_less_solid_than_a_lens():
    lens, crescent = _features(_head(lesion="lens"), _head(lesion="crescent"))
    assert crescent["shape_n_regions"] == 1
    assert crescent["shape_largest_skull_proximity"] == 1.0
    assert crescent["shape_largest_solidity"] < 0.6 < lens["shape_largest_solidity"]


def test_asymmetry_grows_with_a_one_sided_lesion():
    normal, side, lens = _features(_head(), _head(lesion="side"), _head(lesion="lens"))
    for name in ("shape_asymmetry_mean_hu", "shape_asymmetry_blood", "shape_mirror_difference_hu"):
        assert normal[name] == 0.0
        assert side[name] > 0.5 * side[name] > 0.0
        assert lens[name] > 0.0
    # About 35 HU more on the lesion's pixels, once on each side of the mirror.
    area = side["shape_total_area"]
    assert side["shape_mirror_difference_hu"] == pytest.approx(2 * 35.0 * area, rel=0.1)
    assert side["shape_asymmetry_blood"] == pytest.approx(2 * area, rel=0.1)


def test_a_normal_head_has_no_region_and_all_zeros():
    (normal,) = _features(_head())
    assert not any(normal.values())


def test_small_regions_and_specks_are_dropped():
    image = _head()
    image[60:63, 40:43] = 70.0  # a 3 x 3 square: 9 pixels
    image[80, 30:90] = 70.0  # a one-pixel line, gone after the opening
    pixel = 1 / image.size
    (opened,) = _features(image)
    assert opened["shape_n_regions"] == 1  # the square, opened to a 5-pixel cross
    assert opened["shape_total_area"] * brain_mask(image).sum() == pytest.approx(5)
    (unopened,) = _features(image, opening_radius=0, min_area_fraction=10 * pixel)
    assert unopened["shape_n_regions"] == 1  # the line only
    assert unopened["shape_largest_eccentricity"] > 0.99
    (both,) = _features(image, opening_radius=0, min_area_fraction=9 * pixel)
    assert both["shape_n_regions"] == 2
    (neither,) = _features(image, min_area_fraction=6 * pixel)
    assert neither["shape_n_regions"] == 0


def test_region_shape_matches_regionprops():
    rows, columns = np.mgrid[:128, :128]
    image = _head()
    tilted = ((rows - 64) * 0.8 + (columns - 60) * 0.6) ** 2 / 20**2 + (
        (columns - 60) * 0.8 - (rows - 64) * 0.6
    ) ** 2 / 8**2 < 1
    image[tilted] = 70.0
    (features,) = _features(image)
    (region,) = regionprops(label(tilted))
    assert features["shape_largest_eccentricity"] == pytest.approx(region.eccentricity)
    assert features["shape_largest_extent"] == pytest.approx(region.extent)
    # Hull of the pixels' squares rather than of their centres: a little lower.
    assert region.solidity - 0.06 < features["shape_largest_solidity"] <= region.solidity


def _edge_cases():
    one_pixel = np.full((4, 4), -1000.0, np.float32)
    one_pixel[1, 2] = 70.0
    corner = np.full((32, 32), -1000.0, np.float32)
    corner[:20, 12:] = 70.0
    stripes = np.indices((64, 64)).sum(axis=0) // 3 % 2 == 1
    rng = np.random.default_rng(3)
    return {
        "air": np.full((32, 32), -1000.0, np.float32),
        "bone": np.full((32, 32), 1500.0, np.float32),
        "one_pixel_blood_brain": one_pixel,
        "all_blood_no_skull": np.full((32, 32), 70.0, np.float32),
        "blood_on_the_image_border": corner,
        "noise": rng.uniform(-1100, 1500, (64, 64)).astype(np.float32),
        "checkerboard": np.where(stripes, 70.0, 30.0).astype(np.float32),
    }


@pytest.mark.parametrize("case", list(_edge_cases()))
def test_every_feature_is_finite_on_edge_cases(case):
    image = _edge_cases()[case]
    for params in ({}, {"min_area_fraction": 0.0, "opening_radius": 0}):
        (features,) = _features(image, **params)
        assert list(features) == NAMES
        assert np.isfinite(list(features.values())).all()
        if case in ("air", "bone"):
            assert not any(features.values())


def test_a_whole_image_of_blood_is_one_region_touching_the_edge():
    (features,) = _features(_edge_cases()["all_blood_no_skull"])
    assert features["shape_n_regions"] == 1 and features["shape_largest_area"] == 1.0
    assert features["shape_largest_solidity"] == 1.0 and features["shape_largest_extent"] == 1.0
    assert features["shape_largest_skull_proximity"] == 1.0
    (one_pixel,) = _features(_edge_cases()["one_pixel_blood_brain"], opening_radius=0)
    assert one_pixel["shape_n_regions"] == 1 and one_pixel["shape_largest_solidity"] == 1.0


def test_holes_in_the_brain_do_not_count_as_its_edge():
    image = _head(lesion="blob")
    image[60:68, 52:54] = 1200.0  # a calcification next to the blob
    (features,) = _features(image)
    assert brain_mask(image)[60:68, 51].sum() == 0  # the mask has a hole there
    assert features["shape_largest_skull_proximity"] < 0.3


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        (
            {"band": (90, 50)},
            ValueError,
            r"The 'band' parameter of HyperdenseShapeFeatures must be a \(low, high\) pair of "
            r"finite Hounsfield units with low < high\. Got \(90, 50\)\.",
        ),
        ({"band": (50,)}, TypeError, r"'band' parameter of HyperdenseShapeFeatures must be a"),
        (
            {"min_area_fraction": 1.5},
            ValueError,
            r"The 'min_area_fraction' parameter of HyperdenseShapeFeatures must be a float in "
            r"\[0, 1\]\. Got 1\.5\.",
        ),
        (
            {"min_area_fraction": "small"},
            TypeError,
            "The 'min_area_fraction' parameter of HyperdenseShapeFeatures must be a float in "
            r"\[0, 1\]\. Got 'small' of type str\.",
        ),
        (
            {"opening_radius": 11},
            ValueError,
            r"The 'opening_radius' parameter of HyperdenseShapeFeatures must be an int in "
            r"\[0, 10\]\. Got 11\.",
        ),
    ],
)
def test_bad_parameters_raise_at_fit(params, error, message):
    with pytest.raises(error, match=message):
        HyperdenseShapeFeatures(**params).fit(_head(32)[np.newaxis])


def test_clone_and_set_params_round_trip():
    extractor = HyperdenseShapeFeatures(band=(55, 85), min_area_fraction=0.001)
    twin = clone(extractor)
    assert (
        twin.get_params()
        == extractor.get_params()
        == {
            "band": (55, 85),
            "min_area_fraction": 0.001,
            "opening_radius": 1,
        }
    )
    twin.set_params(opening_radius=0, band=(45, 95))
    assert clone(twin).get_params() == {
        "band": (45, 95),
        "min_area_fraction": 0.001,
        "opening_radius": 0,
    }
    X = np.stack([_head(64), _head(64, lesion="lens")])
    assert twin.fit(X).transform(X).shape == (2, len(NAMES))


@pytest.mark.parametrize("subtype", scans.SUBTYPES)
def test_finite_on_every_phantom_subtype(subtype):
    scan = make_phantom_scan(5, size=64, n_slices=8, subtypes=(subtype,))
    assert np.isfinite(HyperdenseShapeFeatures().fit_transform(scan.hu)).all()


def test_phantom_intraparenchymal_hematoma_makes_a_region_its_normal_twin_lacks():
    extractor = HyperdenseShapeFeatures()
    n_regions = NAMES.index("shape_n_regions")
    with_lesion, without_lesion = [], []
    for seed in range(4):
        scan = make_phantom_scan(seed, size=64, n_slices=12, subtypes=("intraparenchymal",))
        normal = make_phantom_scan(seed, size=64, n_slices=12, subtypes=())
        on_lesion = scan.slice_labels.astype(bool)
        with_lesion.append(extractor.fit_transform(scan.hu)[on_lesion, n_regions])
        without_lesion.append(extractor.fit_transform(normal.hu)[on_lesion, n_regions])
    assert not np.concatenate(without_lesion).any()
    assert np.concatenate(with_lesion).mean() > 0.5


def test_finite_on_real_ct_ich_slices(shared_data):
    # Every 30th brain-window JPEG; CT-ICH exports with window 40/120.
    paths = sorted((shared_data / "ct-ich-dev" / "Patients_CT").glob("*/brain/*.jpg"))[::30]
    resize = scans.Resize(256)
    X = np.stack(
        [
            resize(scans.to_hounsfield(scans.read_image(path), grey_window=(40.0, 120.0)))
            for path in paths[:20]
        ]
    )
    values = HyperdenseShapeFeatures().fit_transform(X)
    assert values.shape == (20, len(NAMES))
    assert np.isfinite(values).all()
