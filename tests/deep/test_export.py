"""ONNX export, ONNX Runtime inference, int8 quantization and the keep-int8 rule."""

from __future__ import annotations

import keras
import numpy as np
import onnx
import pytest

from ichkit.deep.export import export_onnx, keep_quantized_if_close, quantize_dynamic_int8
from ichkit.deep.inference import OnnxClassifier

SIZE = 32
#: ONNX Runtime against Keras' predict, float32 (measured differences: up to 1e-7).
FLOAT_TOLERANCE = 1e-5
#: int8 weights against float (measured differences: up to 6e-4 on this model; 2e-3 on
#: smallcnn, 2e-2 on an untrained 64-pixel ResNet50 from deep.backbones).
INT8_TOLERANCE = 1e-2


def _tiny_classifier():
    """Two convolution blocks and the classifier top of deep.backbones, two outputs."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization(name="batchnorm")(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    outputs = keras.layers.Dense(
        2,
        activation="sigmoid",
        bias_initializer=keras.initializers.Constant([-0.5, 0.5]),
        name="hemorrhage",
    )(x)
    model = keras.Model(inputs, outputs, name="tiny_classifier")
    # Non-default BatchNormalization statistics, so the export must carry them.
    batchnorm = model.get_layer("batchnorm")
    gamma, beta, mean, variance = batchnorm.get_weights()
    batchnorm.set_weights([gamma * 1.5, beta + 0.1, mean + 0.2, variance * 2.0])
    return model


@pytest.fixture(scope="module")
def model():
    return _tiny_classifier()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((5, SIZE, SIZE, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    assert export_onnx(model, path, input_shape=(SIZE, SIZE, 3)) == path
    return path


@pytest.fixture(scope="module")
def quantized(exported):
    return quantize_dynamic_int8(exported, exported.with_name("tiny.int8.onnx"))


def test_onnx_matches_keras_for_several_images_and_one(model, images, exported):
    expected = model.predict(images, verbose=0)[:, 0]
    classifier = OnnxClassifier(exported)
    probabilities = classifier.predict_proba(images)
    assert probabilities.shape == (5,) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities, expected, atol=FLOAT_TOLERANCE, rtol=0)
    # The batch dimension is dynamic: one image runs on the same file.
    np.testing.assert_allclose(
        classifier.predict_proba(images[:1]), expected[:1], atol=FLOAT_TOLERANCE, rtol=0
    )
    # Different images get different outputs, so the comparison above has teeth.
    assert np.ptp(expected) > 1e-3


def test_exported_graph_is_introspected(exported):
    classifier = OnnxClassifier(exported, n_threads=1)
    assert classifier.input_name == "image"
    assert classifier.input_shape == (None, SIZE, SIZE, 3)
    assert classifier.output_name == "hemorrhage"
    assert classifier.providers == ["CPUExecutionProvider"]
    assert classifier.metadata["ichkit.model_name"] == "tiny_classifier"
    graph = onnx.load(str(exported)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert graph.output[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_int8_model_runs_close_to_float(model, images, exported, quantized):
    initializers = onnx.load(str(quantized)).graph.initializer
    assert any(tensor.data_type == onnx.TensorProto.INT8 for tensor in initializers)
    float_probabilities = OnnxClassifier(exported).predict_proba(images)
    int8_probabilities = OnnxClassifier(quantized).predict_proba(images)
    assert int8_probabilities.shape == (5,)
    np.testing.assert_allclose(int8_probabilities, float_probabilities, atol=INT8_TOLERANCE, rtol=0)
    # Dynamic quantization scales activations over the whole batch, so one image alone
    # gets a slightly different int8 result (measured 3e-6): compare it with float too.
    np.testing.assert_allclose(
        OnnxClassifier(quantized).predict_proba(images[:1]),
        float_probabilities[:1],
        atol=INT8_TOLERANCE,
        rtol=0,
    )


# 20 negatives below 20 positives: AUC 1. Each positive moved below k negatives
# costs k / 400 of AUC.
_NEGATIVES = np.linspace(0.01, 0.40, 20)
_POSITIVES = np.linspace(0.60, 0.99, 20)
_LABELS = np.r_[np.zeros(20), np.ones(20)]
_FLOAT = np.r_[_NEGATIVES, _POSITIVES]


def _int8_with_positive_at(score):
    probabilities = _FLOAT.copy()
    probabilities[20] = score
    return probabilities


@pytest.mark.parametrize(
    ("p_int8", "max_auc_drop", "keep"),
    [
        (_FLOAT, 0.005, True),  # identical
        (_FLOAT * 0.9, 0.005, True),  # rescaled, same ranking
        (_int8_with_positive_at(0.395), 0.005, True),  # one pair swapped: drop 0.0025
        (_int8_with_positive_at(0.35), 0.005, False),  # three pairs: drop 0.0075
        (_int8_with_positive_at(0.35), 0.01, True),  # the same, looser rule
        (_int8_with_positive_at(0.35), 0.0075, False),  # a drop equal to the limit is too much
    ],
)
def test_keep_quantized_if_close_decisions(p_int8, max_auc_drop, keep):
    assert keep_quantized_if_close(_LABELS, _FLOAT, p_int8, max_auc_drop) is keep


def test_int8_that_ranks_better_is_kept():
    worse_float = _int8_with_positive_at(0.35)
    assert keep_quantized_if_close(_LABELS, worse_float, _FLOAT)


@pytest.mark.parametrize(
    ("y", "p_int8", "max_auc_drop", "message"),
    [
        (np.ones(40), _FLOAT, 0.005, "both present"),
        (_LABELS[:-1], _FLOAT, 0.005, "same length"),
        (_LABELS, _FLOAT[:-1], 0.005, "same length"),
        (_LABELS, np.r_[_FLOAT[:-1], np.nan], 0.005, "finite probabilities"),
        (_LABELS, _FLOAT, -0.01, "finite float >= 0"),
    ],
)
def test_keep_quantized_if_close_errors(y, p_int8, max_auc_drop, message):
    with pytest.raises(ValueError, match=message):
        keep_quantized_if_close(y, _FLOAT, p_int8, max_auc_drop)


def test_missing_onnx_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"'.*missing\.onnx'.*does not exist.*export_onnx"):
        OnnxClassifier(tmp_path / "missing.onnx")
    with pytest.raises(FileNotFoundError, match=r"\(it is a folder\)"):
        OnnxClassifier(tmp_path)


def test_file_that_is_not_onnx_is_refused(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="Cannot load '.*model.onnx' as an ONNX model"):
        OnnxClassifier(path)


def test_bad_session_settings(exported):
    with pytest.raises(ValueError, match=r"providers available.*Got \['NoSuchProvider'\]"):
        OnnxClassifier(exported, providers=["NoSuchProvider"])
    with pytest.raises(ValueError, match=r"'n_threads'.*Got 0"):
        OnnxClassifier(exported, n_threads=0)


def test_images_of_the_wrong_shape(exported):
    classifier = OnnxClassifier(exported)
    with pytest.raises(ValueError, match=r"shape \(n, 32, 32, 3\).*Got \(32, 32, 3\)"):
        classifier.predict_proba(np.zeros((SIZE, SIZE, 3)))
    with pytest.raises(ValueError, match=r"Got \(2, 64, 64, 3\)"):
        classifier.predict_proba(np.zeros((2, 64, 64, 3)))


def test_export_errors(model, tmp_path):
    with pytest.raises(ValueError, match=r"match the input of model 'tiny_classifier'"):
        export_onnx(model, tmp_path / "model.onnx", input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="tuple of positive ints"):
        export_onnx(model, tmp_path / "model.onnx", input_shape=(SIZE, SIZE, 0))
    with pytest.raises(FileNotFoundError, match="folder .* does not exist"):
        export_onnx(model, tmp_path / "missing" / "model.onnx", input_shape=(SIZE, SIZE, 3))


def test_quantize_errors(exported, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist. Export the model first"):
        quantize_dynamic_int8(tmp_path / "missing.onnx", tmp_path / "out.onnx")
    with pytest.raises(ValueError, match="must differ from 'onnx_path'"):
        quantize_dynamic_int8(exported, exported)
