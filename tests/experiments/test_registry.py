"""The registry: every model name resolves to its family and builds; a user's own model,
registered from outside the package, runs through ``ichkit run`` and ``ichkit serve``'s
prediction path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml

from ichkit.experiments import registry
from ichkit.experiments.families import FAMILIES
from ichkit.experiments.registry import (
    MODELS,
    build_model,
    family_of,
    list_models,
    register_model,
    resolve,
)

os.environ.setdefault("KERAS_BACKEND", "torch")


@pytest.fixture
def clean_registry(monkeypatch):
    """Registrations made by a test end with it."""
    monkeypatch.setattr(registry, "MODELS", dict(MODELS))
    return registry.MODELS


@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_builds(name):
    family = family_of(name)
    if family.name in ("cnn", "sequence"):
        pytest.importorskip("keras")
    if family.name == "cnn":
        model = build_model(name, input_shape=(32, 32, 3))
        output = model.predict(np.zeros((1, 32, 32, 3), dtype="float32"), verbose=0)
        assert output.shape == (1, 1) and np.isfinite(output).all()
    elif family.name == "sequence":
        assert build_model(name, embedding_dim=4, units=2).count_params() > 0
    else:
        rng = np.random.default_rng(0)
        X = pd.DataFrame(rng.normal(size=(40, 3)), columns=["a", "b", "c"])
        y = (X["a"] > 0).astype(int).to_numpy()
        probability = (
            build_model(name, random_state=0).fit(X.clip(0, 1), y).predict_proba(X.clip(0, 1))
        )
        assert probability.shape == (40, 2) and np.isfinite(probability).all()


def test_every_name_has_a_known_family():
    assert {resolve(name).family for name in list_models()} <= set(FAMILIES)
    assert list_models(family="cnn") == ["smallcnn", "mobilenet", "mobilenetv2", "resnet50",
                                         "vgg16"]  # fmt: skip


def test_unknown_model_suggests_a_name():
    with pytest.raises(ValueError, match="Did you mean 'xgboost'.*ichkit list-models"):
        resolve("xgbost")


def test_register_model_checks_its_arguments(clean_registry):
    with pytest.raises(ValueError, match="Unknown model family 'clasical'.*'classical'"):
        register_model("mine", "clasical", "pkg.module:make")
    with pytest.raises(ValueError, match="already registered"):
        register_model("svm", "classical", "pkg.module:make")
    with pytest.raises(ValueError, match="lower-case letters"):
        register_model("My Model", "classical", "pkg.module:make")
    with pytest.raises(TypeError, match="'module:function' string"):
        register_model("mine", "classical", "no_colon")
    register_model("svm", "classical", "ichkit.classical.models:make_logreg", overwrite=True)
    assert clean_registry["svm"].builder.endswith("make_logreg")


def test_register_a_cnn_head_from_a_backbone_function(clean_registry):
    keras = pytest.importorskip("keras")

    def tiny_backbone(inputs, weights):
        return keras.layers.Conv2D(4, 3, strides=4, name="tiny_conv")(inputs)

    register_model("tinyhead", "cnn", tiny_backbone)
    model = build_model("tinyhead", input_shape=(32, 32, 3))
    assert model.name == "tinyhead"
    assert [layer.name for layer in model.layers][-4:] == ["features", "pool", "dropout",
                                                           "hemorrhage"]  # fmt: skip


#: A user's package, outside ichkit: a Gaussian naive Bayes classifier, and the
#: entry-point function that registers it.
TOY_MODULE = textwrap.dedent(
    """
    from sklearn.naive_bayes import GaussianNB
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler


    def make_toy_bayes():
        return Pipeline([("scale", StandardScaler()), ("model", GaussianNB())])


    def register():
        from ichkit.experiments.registry import register_model

        register_model("toybayes", "classical", "toy_models:make_toy_bayes", overwrite=True)
    """
)

TINY_RUN = {
    "features": {"families": ["intensity", "bands"], "size": 32},
    "tuning": {"inner_folds": 2},
    "bootstrap": 20,
    "n_jobs": 1,
}


def _user_package(folder):
    """``toy_models.py`` and an installed-looking distribution whose ``ichkit.plugins``
    entry point registers its model (what ``pip install`` of the user's package does)."""
    folder.mkdir()
    (folder / "toy_models.py").write_text(TOY_MODULE)
    info = folder / "toy_models-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-models\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ichkit.plugins]\ntoy = toy_models:register\n")
    return folder


def test_register_model_from_outside_runs_and_serves(tmp_path, monkeypatch):
    from ichkit.scans.phantom import write_phantom
    from ichkit.webapp import ServedRun
    from ichkit.webapp.uploads import read_upload

    user = _user_package(tmp_path / "user")
    phantom = write_phantom(tmp_path / "phantom", 6, seed=3, size=32, n_slices=6)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_RUN))
    out = tmp_path / "run"
    environment = {**os.environ, "PYTHONPATH": str(user), "ICHKIT_CACHE_DIR": str(tmp_path / "c")}
    command = [sys.executable, "-m", "ichkit", "run", str(config), "--data", str(phantom),
               "--out", str(out), "--models", "toybayes,logreg"]  # fmt: skip
    finished = subprocess.run(command, env=environment, capture_output=True, text=True,
                              cwd=tmp_path, timeout=600)  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-2000:]
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["model"]) == {"toybayes", "logreg"}
    assert (out / "models" / "toybayes__fold0.joblib").is_file()
    assert "toybayes" in (out / "comparison.md").read_text()

    # The web app's prediction path, in a process where the plugin is found the same way.
    monkeypatch.syspath_prepend(str(user))
    monkeypatch.setattr(registry, "MODELS", dict(MODELS))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    served = ServedRun(out, onnx=False)
    assert "toybayes" in served.models
    image = next(phantom.rglob("*.png"))
    folder = tmp_path / "upload"
    folder.mkdir()
    shutil.copy(image, folder / "slice.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        answer = served.predict("toybayes", read_upload(folder / "slice.png", "slice.png"),
                                heatmaps=0)  # fmt: skip
    assert answer["model"] == "toybayes" and answer["family"] == "classical"
    assert 0.0 <= answer["probability"] <= 1.0
    assert answer["engine"] == "scikit-learn on handcrafted features"
