"""Every CNN head builds, predicts, trains a step; weights options fail clearly."""

import keras
import numpy as np
import pytest

from ichkit.deep.backbones import HEADS, build_classifier


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((4, 64, 64, 3), dtype=np.float32)


@pytest.mark.parametrize("name", list(HEADS))
def test_head_builds_predicts_and_trains_a_step(name, images):
    model = build_classifier(name, (64, 64, 3))
    probabilities = model.predict(images, verbose=0)
    assert probabilities.shape == (4, 1) and np.isfinite(probabilities).all()
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert len(model.get_layer("features").output.shape) == 4
    model.compile(optimizer="adam", loss="binary_crossentropy")
    loss = model.train_on_batch(images, np.array([0, 1, 0, 1], np.float32))
    assert np.isfinite(loss)
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = {layer.momentum for layer in norms}
    assert momenta <= {0.9}


def test_subtype_outputs():
    assert build_classifier("smallcnn", (32, 32, 3), n_outputs=6).output_shape == (None, 6)


def test_weights_from_a_path_round_trip(tmp_path, images):
    model = build_classifier("smallcnn", (64, 64, 3))
    path = tmp_path / "smallcnn.weights.h5"
    model.save_weights(path)
    again = build_classifier("smallcnn", (64, 64, 3), weights=path)
    np.testing.assert_allclose(again.predict(images, verbose=0), model.predict(images, verbose=0))


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.weights.h5' for the 'vgg16'"):
        build_classifier("vgg16", (64, 64, 3), weights=tmp_path / "nowhere.weights.h5")


def test_imagenet_without_network_says_what_to_do(monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr("keras.src.utils.file_utils.get_file", offline)
    with pytest.raises(ValueError, match=r"could not be loaded .*weights=None"):
        build_classifier("mobilenet", (64, 64, 3), weights="imagenet")


@pytest.mark.parametrize("shape", [(1, 1, 3), (64, 64, 1)])
def test_too_small_or_grey_input_is_refused(shape):
    with pytest.raises(ValueError, match=r"height and width >= 32"):
        build_classifier("smallcnn", shape)


def test_unknown_head():
    with pytest.raises(ValueError, match="Did you mean 'resnet50'"):
        build_classifier("resnet5")
