"""First-order statistics and Hounsfield bands of the brain."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.base import clone

from ichkit import scans
from ichkit.features.brain import brain_mask
from ichkit.features.intensity import DEFAULT_BANDS, FirstOrderFeatures, HounsfieldBandFeatures
from ichkit.scans.phantom import make_phantom_scan

EXTRACTORS = [FirstOrderFeatures, HounsfieldBandFeatures]
BLOOD = "huband_blood_50_90"


def _head(size=128, lesion=None, brain=35.0):
    """A disc of brain in a ring of skull on air; a 70 HU lens against the inner table."""
    rows, columns = np.mgrid[:size, :size]
    centre = size / 2
    radius = np.hypot(rows - centre, columns - centre)
    image = np.full((size, size), -1000.0, np.float32)
    image[radius < 0.45 * size] = 1000.0
    inside = radius < 0.40 * size
    image[inside] = brain
    if lesion == "lens":
        lens = np.hypot(rows - centre, columns - (centre + 0.52 * size)) < 0.2 * size
        image[inside & lens] = 70.0
    return image


def _column(extractor, X, name):
    values = extractor.fit(X).transform(X)
    return values[:, list(extractor.get_feature_names_out()).index(name)]


def test_blood_band_fraction_rises_with_a_lens_of_blood():
    X = np.stack([_head(), _head(lesion="lens")])
    extractor = HounsfieldBandFeatures()
    blood = _column(extractor, X, BLOOD)
    assert blood[0] == 0.0
    assert 0.01 < blood[1] < 0.1
    parenchyma = _column(extractor, X, "huband_parenchyma_15_45")
    assert parenchyma[0] == 1.0 and parenchyma[1] == pytest.approx(1.0 - blood[1])
    image_fraction = _column(extractor, X, "huband_blood_image_fraction")
    head_fraction = _column(extractor, X, "huband_blood_head_fraction")
    brain_fraction = _column(extractor, X, "huband_brain_image_fraction")
    assert image_fraction[1] == pytest.approx(blood[1] * brain_fraction[1])
    assert image_fraction[1] < head_fraction[1] < blood[1]


def test_default_bands_tile_the_brain_and_have_half_open_edges():
    image = _head()
    rng = np.random.default_rng(0)
    brain = brain_mask(image)
    image[brain] = rng.uniform(0.0, 100.0, size=brain.sum()).astype(np.float32)
    image.ravel()[np.flatnonzero(brain)[:4]] = [0.0, 50.0, 90.0, 15.0]  # on band edges
    fractions = HounsfieldBandFeatures().fit_transform(image[np.newaxis])[0, : len(DEFAULT_BANDS)]
    assert fractions.sum() == pytest.approx(1.0)

    edges = np.full((4, 4), -1000.0, np.float32)
    edges[1:3, 1:3] = [[50.0, 90.0], [89.99, 49.99]]
    extractor = HounsfieldBandFeatures(bands=(("low", 40, 50), ("blood", 50, 90), ("high", 90, 95)))
    assert extractor.fit_transform(edges[np.newaxis])[0, :3].tolist() == [0.25, 0.5, 0.25]


def test_grey_export_mapped_to_hounsfield_gives_the_same_bands():
    hounsfield = _head(lesion="lens")
    rng = np.random.default_rng(1)
    hounsfield[brain_mask(hounsfield)] += rng.normal(0.0, 6.0, size=brain_mask(hounsfield).sum())
    # An 8-bit export with CT-ICH's window (40/120) and the way back to Hounsfield units.
    grey = np.round(scans.Window(40, 120)(hounsfield) * 255)
    exported = scans.SliceImage(grey, hounsfield=False, max_value=255.0, window=(40.0, 120.0))
    X = np.stack([hounsfield, scans.to_hounsfield(exported)])
    bands = HounsfieldBandFeatures().fit_transform(X)
    assert np.abs(bands[0] - bands[1]).max() < 0.01
    first_order = FirstOrderFeatures().fit_transform(X)
    names = list(FirstOrderFeatures().fit(X).get_feature_names_out())
    for name in ("firstorder_mean", "firstorder_p50", "firstorder_p95"):
        index = names.index(name)
        assert first_order[1, index] == pytest.approx(first_order[0, index], abs=0.5)


def test_first_order_statistics_match_numpy_and_scipy():
    image = _head()
    brain = brain_mask(image)
    rng = np.random.default_rng(2)
    image[brain] = rng.gamma(4.0, 8.0, size=brain.sum()).clip(0, 99).astype(np.float32)
    extractor = FirstOrderFeatures(percentiles=(2.5, 50, 95)).fit(image[np.newaxis])
    values = dict(
        zip(extractor.get_feature_names_out(), extractor.transform(image[None])[0], strict=True)
    )
    pixels = image[brain].astype(np.float64)
    assert values["firstorder_mean"] == pytest.approx(pixels.mean())
    assert values["firstorder_std"] == pytest.approx(pixels.std())
    assert values["firstorder_skewness"] == pytest.approx(stats.skew(pixels))
    assert values["firstorder_kurtosis"] == pytest.approx(stats.kurtosis(pixels))
    assert values["firstorder_p2p5"] == pytest.approx(np.percentile(pixels, 2.5))
    assert values["firstorder_p95"] == pytest.approx(np.percentile(pixels, 95))
    assert values["firstorder_iqr"] == pytest.approx(stats.iqr(pixels))
    assert values["firstorder_range"] == pytest.approx(np.ptp(pixels))
    assert 0.0 < values["firstorder_entropy"] <= np.log2(21)
    assert values["firstorder_skewness"] > 0.3  # a gamma's right tail


def test_a_constant_brain_has_no_spread_and_no_entropy():
    values = FirstOrderFeatures().fit_transform(_head()[np.newaxis])[0]
    names = list(FirstOrderFeatures().fit(_head()[None]).get_feature_names_out())
    named = dict(zip(names, values, strict=True))
    assert named["firstorder_mean"] == pytest.approx(35.0)
    for name in ("std", "skewness", "kurtosis", "range", "iqr", "entropy"):
        assert named[f"firstorder_{name}"] == 0.0
    assert named["firstorder_uniformity"] == 1.0


def _edge_cases():
    air = np.full((32, 32), -1000.0, np.float32)
    one_pixel = np.full((4, 4), -1000.0, np.float32)
    one_pixel[1, 2] = 40.0  # a one-pixel brain (the mask keeps 0.2% of 16 pixels)
    rng = np.random.default_rng(3)
    return {
        "air": air,
        "bone": np.full((32, 32), 1500.0, np.float32),
        "one_pixel_brain": one_pixel,
        "all_blood_no_skull": np.full((32, 32), 70.0, np.float32),
        "noise": rng.uniform(-1100, 1500, (32, 32)).astype(np.float32),
        "skull_without_brain": np.where(_head(32) > 100, 1000.0, -1000.0).astype(np.float32),
    }


@pytest.mark.parametrize("extractor", EXTRACTORS)
@pytest.mark.parametrize("case", list(_edge_cases()))
def test_every_feature_is_finite_on_edge_cases(extractor, case):
    image = _edge_cases()[case]
    values = extractor().fit_transform(image[np.newaxis])
    assert values.shape == (1, len(extractor().fit(image[None]).get_feature_names_out()))
    assert np.isfinite(values).all()
    if case in ("air", "bone", "skull_without_brain"):
        assert not values.any()


def test_one_pixel_brain_has_its_value_everywhere():
    image = _edge_cases()["one_pixel_brain"]
    values = FirstOrderFeatures(percentiles=(5, 95)).fit_transform(image[np.newaxis])[0]
    assert values[:10].tolist() == [40.0, 0, 0, 0, 40.0, 40.0, 0, 0, 40.0, 40.0]


@pytest.mark.parametrize(
    ("extractor", "expected"),
    [
        (
            FirstOrderFeatures(),
            ["firstorder_mean", "firstorder_std", "firstorder_skewness", "firstorder_kurtosis",
             "firstorder_min", "firstorder_max", "firstorder_range", "firstorder_iqr",
             "firstorder_p5", "firstorder_p25", "firstorder_p50", "firstorder_p75",
             "firstorder_p95", "firstorder_p99", "firstorder_entropy", "firstorder_uniformity"],
        ),
        (
            HounsfieldBandFeatures(),
            ["huband_csf_0_15", "huband_parenchyma_15_45", "huband_borderline_45_50",
             "huband_blood_50_90", "huband_dense_90_100", "huband_blood_image_fraction",
             "huband_blood_head_fraction", "huband_brain_image_fraction"],
        ),
        (
            HounsfieldBandFeatures(bands=(("water", -5, 0.5),)),
            ["huband_water_m5_0p5", "huband_blood_image_fraction",
             "huband_blood_head_fraction", "huband_brain_image_fraction"],
        ),
    ],
)  # fmt: skip
def test_feature_names_are_stable_and_match_the_output(extractor, expected):
    X = np.stack([_head(64), _head(64, lesion="lens")])
    names = extractor.fit(X).get_feature_names_out()
    assert list(names) == expected
    assert extractor.transform(X).shape == (2, len(names))


@pytest.mark.parametrize(
    ("extractor", "error", "message"),
    [
        (
            FirstOrderFeatures(percentiles=(5, 101)),
            ValueError,
            r"The 'percentiles' parameter of FirstOrderFeatures must be a float in \[0, 100\]\. "
            r"Got 101\.",
        ),
        (
            FirstOrderFeatures(percentiles=(-1,)),
            ValueError,
            r"'percentiles' parameter of FirstOrderFeatures must be a float in \[0, 100\]",
        ),
        (
            FirstOrderFeatures(percentiles=(50, 50.0)),
            ValueError,
            r"The 'percentiles' parameter of FirstOrderFeatures must not repeat values.*50",
        ),
        (
            FirstOrderFeatures(percentiles=()),
            ValueError,
            "The 'percentiles' parameter of FirstOrderFeatures must not be empty",
        ),
        (
            FirstOrderFeatures(percentiles="50"),
            TypeError,
            "'percentiles' parameter of FirstOrderFeatures must be a sequence of floats",
        ),
        (
            FirstOrderFeatures(n_bins=1),
            ValueError,
            r"The 'n_bins' parameter of FirstOrderFeatures must be an int in \[2, 1024\]\. Got 1",
        ),
        (
            HounsfieldBandFeatures(bands=(("blood", 90, 50),)),
            ValueError,
            r"Band 'blood' in the 'bands' parameter of HounsfieldBandFeatures must be a "
            r"\(low, high\) pair of finite Hounsfield units with low < high\. Got \(90, 50\)\.",
        ),
        (
            HounsfieldBandFeatures(bands=(("blood", 50, 50),)),
            ValueError,
            "with low < high",
        ),
        (
            HounsfieldBandFeatures(bands=(("Fresh blood", 50, 90),)),
            ValueError,
            "must be a lowercase word .* Got 'Fresh blood'",
        ),
        (
            HounsfieldBandFeatures(bands=(("blood", 50, 90), ("blood", 60, 80))),
            ValueError,
            "must not repeat band names.* blood repeated",
        ),
        (
            HounsfieldBandFeatures(bands=((50, 90),)),
            TypeError,
            r"Each band in the 'bands' parameter of HounsfieldBandFeatures must be a "
            r"\(name, low, high\) triple",
        ),
        (
            HounsfieldBandFeatures(bands=()),
            ValueError,
            "The 'bands' parameter of HounsfieldBandFeatures must not be empty",
        ),
        (
            HounsfieldBandFeatures(blood_band=(90, 50)),
            ValueError,
            r"The 'blood_band' parameter of HounsfieldBandFeatures must be a \(low, high\) pair",
        ),
        (
            HounsfieldBandFeatures(blood_band=(50, float("nan"))),
            ValueError,
            "finite Hounsfield units",
        ),
        (
            HounsfieldBandFeatures(blood_band=50),
            TypeError,
            r"'blood_band' parameter of HounsfieldBandFeatures must be a \(low, high\) pair",
        ),
    ],
)
def test_bad_parameters_raise_at_fit(extractor, error, message):
    with pytest.raises(error, match=message):
        extractor.fit(_head(32)[np.newaxis])


@pytest.mark.parametrize(
    ("extractor", "change"),
    [
        (FirstOrderFeatures(), {"percentiles": (10, 90), "n_bins": 8}),
        (HounsfieldBandFeatures(), {"bands": (("blood", 55, 85),), "blood_band": (55, 85)}),
    ],
)
def test_clone_and_set_params_round_trip(extractor, change):
    X = _head(32)[np.newaxis]
    twin = clone(extractor)
    assert twin.get_params() == extractor.get_params()
    twin.set_params(**change)
    assert {name: twin.get_params()[name] for name in change} == change
    assert clone(twin).get_params() == twin.get_params()
    assert twin.fit(X).transform(X).shape[1] == len(twin.get_feature_names_out())
    assert len(twin.get_feature_names_out()) != len(extractor.fit(X).get_feature_names_out())


def test_phantom_epidural_raises_the_blood_band_on_its_slices():
    # The same seed with subtypes=() is the same head without the lesion. At 64 pixels
    # the brain mask's 2-pixel margin from bone drops most of a thin epidural, so the
    # effect is small: equal or higher on every lesion slice, higher overall.
    extractor = HounsfieldBandFeatures(bands=(("blood", 50, 90),))
    with_lesion, without_lesion = [], []
    for seed in range(4):
        lesion = make_phantom_scan(seed, size=64, n_slices=12, subtypes=("epidural",))
        normal = make_phantom_scan(seed, size=64, n_slices=12, subtypes=())
        on_lesion = lesion.slice_labels.astype(bool)
        with_lesion.append(extractor.fit_transform(lesion.hu)[on_lesion, 0])
        without_lesion.append(extractor.fit_transform(normal.hu)[on_lesion, 0])
    with_lesion, without_lesion = np.concatenate(with_lesion), np.concatenate(without_lesion)
    assert (with_lesion >= without_lesion).all()
    assert with_lesion.mean() > without_lesion.mean()


@pytest.mark.parametrize("subtype", scans.SUBTYPES)
def test_finite_on_every_phantom_subtype(subtype):
    scan = make_phantom_scan(5, size=64, n_slices=8, subtypes=(subtype,))
    for extractor in EXTRACTORS:
        assert np.isfinite(extractor().fit_transform(scan.hu)).all()


def test_real_ct_ich_positive_slices_hold_more_blood_band(shared_data):
    # Mid-scan slices (40% to 80% of the way from the skull base): below, the brain
    # mask takes in face and skull-base soft tissue in the blood band, and vertex
    # slices are dense from partial volume with bone, so over all 605 slices the
    # band alone ranks negatives higher (AUC about 0.39).
    dataset = scans.load(shared_data / "ct-ich-dev")
    table = dataset.table
    position = table.groupby("scan_id")["slice_index"].transform(
        lambda order: (order - order.min()) / max(order.max() - order.min(), 1)
    )
    middle = ((position >= 0.4) & (position <= 0.8)).to_numpy()
    labels = table["label"].to_numpy()
    picked = []
    for label in (1, 0):
        rows = np.flatnonzero(middle & (labels == label))
        picked.extend(rows[np.linspace(0, len(rows) - 1, 10).astype(int)])
    resize = scans.Resize(256)
    X = np.stack([resize(scans.to_hounsfield(dataset.read(int(row)))) for row in picked])
    y = labels[picked]
    for extractor in EXTRACTORS:
        assert np.isfinite(extractor().fit_transform(X)).all()
    blood = _column(HounsfieldBandFeatures(), X, BLOOD)
    assert blood[y == 1].mean() > blood[y == 0].mean()
