"""Classical baselines: every model fits and ranks; tuning is grouped; thresholds use validation."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from ichkit.classical.models import PARAM_GRIDS
from ichkit.classical.persistence import load_model, save_model
from ichkit.classical.tuning import choose_threshold, fit_per_subtype, fit_tuned
from ichkit.experiments.registry import build_model, list_models, resolve


def _data(n_patients=24, per_patient=10, seed=0):
    """Slices of patients; half the patients have positive slices shifted in feature 0."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"p{i}" for i in range(n_patients)], per_patient)
    y = np.zeros(len(groups), int)
    for patient in range(0, n_patients, 2):
        y[patient * per_patient : patient * per_patient + 3] = 1
    X = rng.normal(size=(len(y), 6))
    X[:, 0] += 2.0 * y
    names = ["firstorder_mean", "huband_blood", "shape_area", "glcm_a", "lbp_b", "hog_c"]
    return pd.DataFrame(X, columns=names), y, groups


@pytest.mark.parametrize("name", list_models(family="classical"))
def test_every_classical_model_learns(name):
    X, y, groups = _data()
    train = np.isin(groups, np.unique(groups)[:16])
    model = build_model(name, random_state=0, n_jobs=1)
    grid = resolve(name).search_grid()
    if name != "logreg":  # one point of the others' grids keeps the suite fast
        grid = {key: values[-1:] for key, values in grid.items()}
    fitted = fit_tuned(model, grid, X[train], y[train], groups[train])
    probability = fitted.predict_proba(X[~train])
    assert fitted.best_params["families__families"] in PARAM_GRIDS["logreg"]["families__families"]
    assert probability.shape == ((~train).sum(),) and np.isfinite(probability).all()
    assert roc_auc_score(y[~train], probability) > 0.8
    assert 0.0 <= fitted.threshold <= 1.0
    assert set(fitted.best_params) == set(resolve(name).search_grid())


def test_xgboost_weights_the_rare_class():
    X, y, groups = _data()
    fitted = fit_tuned(build_model("xgboost"), {}, X, y, groups)
    expected = (y == 0).sum() / (y == 1).sum()
    assert fitted.estimator.named_steps["model"].get_params()["scale_pos_weight"] == expected


def test_search_folds_keep_patients_together(monkeypatch):
    import ichkit.classical.tuning as tuning

    seen = []
    original = tuning.GridSearchCV

    def recording(*args, cv, **kwargs):
        seen.extend(cv)
        return original(*args, cv=cv, **kwargs)

    monkeypatch.setattr(tuning, "GridSearchCV", recording)
    X, y, groups = _data()
    fit_tuned(build_model("logreg"), PARAM_GRIDS["logreg"], X, y, groups)
    assert seen
    for train, test in seen:
        assert not set(groups[train]) & set(groups[test])


def test_threshold_comes_from_the_validation_part():
    X, y, groups = _data()
    fitted = fit_tuned(build_model("logreg"), {}, X, y, groups, validation=(X[:40], y[:40]))
    probability = fitted.estimator.predict_proba(X[:40])[:, 1]
    assert fitted.threshold == choose_threshold(y[:40], probability)


def test_choose_threshold_maximises_youden():
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    probability = np.array([0.1, 0.2, 0.3, 0.6, 0.5, 0.7, 0.9])
    # J = 3/4 from 0.5 down to the next score, 0.3 (2/3 at 0.7): the gap's midpoint
    assert choose_threshold(y, probability) == pytest.approx(0.4)
    assert choose_threshold(np.zeros(4), np.linspace(0, 1, 4)) == 0.5


def test_per_subtype_models_skip_rare_subtypes():
    X, y, groups = _data()
    labels = pd.DataFrame({"epidural": y, "subdural": (np.arange(len(y)) == 0).astype(int)})
    models = fit_per_subtype(build_model("logreg"), {}, X, labels, groups)
    assert list(models) == ["epidural"]


def test_saved_model_keeps_config_names_and_versions(tmp_path):
    X, y, groups = _data()
    fitted = fit_tuned(build_model("knn"), {}, X, y, groups)
    path = save_model(tmp_path / "m.joblib", fitted, feature_config={"size": 64},
                      feature_names=X.columns)  # fmt: skip
    payload = load_model(path)
    assert payload["feature_config"] == {"size": 64}
    assert payload["feature_names"] == list(X.columns)
    assert "scikit-learn" in payload["versions"]
    np.testing.assert_allclose(payload["model"].predict_proba(X), fitted.predict_proba(X))


def test_registry_builds_deep_models_by_name():
    assert build_model("smallcnn", input_shape=(32, 32, 3)).name == "smallcnn"
    assert build_model("gru", embedding_dim=4, units=2).count_params() > 0


def test_unknown_model_suggests_a_name():
    with pytest.raises(ValueError, match="Did you mean 'xgboost'"):
        build_model("xgbost")


@pytest.mark.parametrize("factory", ["local", "dask"])
def test_xgboost_is_class_balanced_on_either_backend(factory):
    """balance_classes reads the parameter, not the class name, so ``--backend dask``
    trains XGBoost with the same class balancing as the local path."""
    from ichkit.classical.dask_xgboost import make_dask_xgboost
    from ichkit.classical.models import make_xgboost
    from ichkit.classical.tuning import balance_classes

    pipeline = make_xgboost(random_state=0) if factory == "local" else make_dask_xgboost()
    balanced = balance_classes(pipeline, [0, 0, 0, 1])
    assert balanced.named_steps["model"].get_params()["scale_pos_weight"] == pytest.approx(3.0)
