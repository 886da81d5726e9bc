"""Every image extractor behaves as a scikit-learn transformer: clone, params, Pipeline,
GridSearchCV with patient groups; names match the output; features finite on phantoms."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ichkit.features.union import FAMILIES, HandcraftedFeatures, make_family
from ichkit.scans import SUBTYPES
from ichkit.scans.phantom import make_phantom_scan


@pytest.fixture(scope="module")
def phantom_slices():
    """Slices of a normal scan and of one scan per subtype, with labels and patients."""
    images, labels, groups = [], [], []
    for seed, subtypes in enumerate([(), *[(name,) for name in SUBTYPES]]):
        scan = make_phantom_scan(seed, size=64, n_slices=12, subtypes=subtypes)
        images.append(scan.hu)
        labels.append(scan.slice_labels)
        groups += [f"p{seed}"] * len(scan.hu)
    return np.concatenate(images), np.concatenate(labels), np.asarray(groups)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_contract(name, phantom_slices):
    X, y, groups = phantom_slices
    extractor = make_family(name)
    copy = clone(extractor)
    assert copy.get_params() == extractor.get_params()
    features = extractor.fit(X).transform(X)
    names = extractor.get_feature_names_out()
    assert features.shape == (len(X), len(names)) and len(set(names)) == len(names)
    assert all(str(n).startswith(name if name != "intensity" else "firstorder")
               or name == "bands" for n in names)  # fmt: skip
    assert np.isfinite(features).all(), f"{name} gave non-finite features on a phantom subtype"


def test_combined_extractor_in_a_grouped_grid_search(phantom_slices):
    X, y, groups = phantom_slices
    pipeline = Pipeline(
        [
            ("features", HandcraftedFeatures(families=("intensity", "bands"))),
            ("scale", StandardScaler()),
            ("model", LogisticRegression(max_iter=2000)),
        ]
    )
    search = GridSearchCV(pipeline, {"model__C": [0.1, 1.0]}, cv=GroupKFold(3), scoring="roc_auc")
    search.fit(X, y, groups=groups)
    assert search.predict_proba(X[:3]).shape == (3, 2)
    pipeline.set_params(features__families=("shape",))
    assert pipeline.get_params()["features__families"] == ("shape",)


def test_combined_names_concatenate_the_families(phantom_slices):
    X = phantom_slices[0][:4]
    combined = HandcraftedFeatures(families=("intensity", "shape")).fit(X)
    parts = [make_family(name).fit(X).get_feature_names_out() for name in ("intensity", "shape")]
    assert list(combined.get_feature_names_out()) == [*parts[0], *parts[1]]
    np.testing.assert_allclose(
        combined.transform(X),
        np.hstack([make_family(n).fit(X).transform(X) for n in ("intensity", "shape")]),
    )


def test_bad_input_and_bad_names():
    with pytest.raises(ValueError, match="Did you mean 'glcm'"):
        make_family("glmc")
    with pytest.raises(ValueError, match=r"shape \(n_slices, height, width\)"):
        HandcraftedFeatures().fit(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="names families that are not in 'families'"):
        HandcraftedFeatures(families=("bands",), params={"glcm": {}}).fit(np.zeros((1, 8, 8)))


def test_family_selector_keeps_the_chosen_families():
    import pandas as pd

    from ichkit.features.union import FamilySelector

    X = pd.DataFrame([[1.0, 2.0, 3.0]], columns=["firstorder_mean", "hog_0", "shape_area"])
    assert list(FamilySelector(("intensity", "shape")).fit_transform(X).columns) == [
        "firstorder_mean",
        "shape_area",
    ]
    assert FamilySelector().fit(X).columns_ == list(X.columns)
    with pytest.raises(ValueError, match="Did you mean 'glcm'"):
        FamilySelector(("glmc",)).fit(X)
    with pytest.raises(TypeError, match="needs a DataFrame"):
        FamilySelector().fit(X.to_numpy())
