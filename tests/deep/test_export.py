"""ONNX export, BatchNorm folding, ONNX Runtime and OpenVINO inference, int8 quantization
(dynamic and static), the keep-int8 rule and the engine comparison."""

from __future__ import annotations

import keras
import numpy as np
import onnx
import pytest
from scipy import stats

from ichkit.deep.export import (
    EngineResult,
    compare_engines,
    export_onnx,
    fastest_kept,
    fold_batchnorm,
    keep_quantized_if_close,
    quantize_dynamic_int8,
    quantize_static_int8,
)
from ichkit.deep.inference import OnnxClassifier, available_engines, median_latency_ms

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


@pytest.fixture(scope="module")
def static_quantized(exported):
    calibration = np.random.default_rng(1).random((16, SIZE, SIZE, 3), dtype=np.float32)
    return quantize_static_int8(exported, exported.with_name("tiny.qdq.onnx"), calibration)


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
    with pytest.raises(ValueError, match="quantize_static_int8 must differ"):
        quantize_static_int8(exported, exported, np.zeros((1, SIZE, SIZE, 3)))
    with pytest.raises(ValueError, match="non-empty .* training slices"):
        quantize_static_int8(exported, tmp_path / "out.onnx", np.zeros((0, SIZE, SIZE, 3)))


# --- BatchNormalization folding --------------------------------------------------------


def _depthwise_classifier():
    """A depthwise and a regular convolution, each followed by BatchNormalization, and one
    BatchNormalization after a pooling (not foldable) and one after a convolution that
    feeds two layers (not foldable either)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", use_bias=False)(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(8, 1, name="shared")(x)
    y = keras.layers.BatchNormalization()(x)
    x = keras.layers.Add()([x, y])
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.BatchNormalization(name="after_pool")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name="hemorrhage")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(2)
    for layer in model.layers:  # statistics far from the initial ones
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights([gamma * rng.uniform(0.5, 2, gamma.shape), beta + 0.3,
                               mean + rng.normal(0, 0.5, mean.shape), variance * 3])  # fmt: skip
    return model


@pytest.mark.parametrize("build", [_tiny_classifier, _depthwise_classifier])
def test_fold_batchnorm_computes_the_same_function(build, images):
    model = build()
    folded = fold_batchnorm(model)
    expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(folded.predict(images, verbose=0), expected, atol=1e-5, rtol=0)
    remaining = [layer.name for layer in folded.layers
                 if isinstance(layer, keras.layers.BatchNormalization)]  # fmt: skip
    if build is _tiny_classifier:
        assert remaining == []
    else:  # the one after pooling, and the one whose convolution also feeds the Add
        assert len(remaining) == 2 and "after_pool" in remaining
    # the original is left alone
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)


def test_a_model_without_batchnorm_is_returned_as_it_is():
    inputs = keras.Input((SIZE, SIZE, 3))
    outputs = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(inputs))
    model = keras.Model(inputs, outputs)
    assert fold_batchnorm(model) is model


def test_the_export_holds_no_batchnorm_arithmetic(exported):
    """The tiny model's normalization is folded: Keras on torch would otherwise export it
    as a Sub, Mul and Add after the convolution."""
    operations = {node.op_type for node in onnx.load(str(exported)).graph.node}
    assert "Conv" in operations and not {"Sub", "BatchNormalization"} & operations


# --- static int8 and the engines --------------------------------------------------------


def test_static_int8_is_close_to_float_and_independent_of_the_batch(exported, static_quantized,
                                                                     images):  # fmt: skip
    graph = onnx.load(str(static_quantized)).graph
    operations = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= operations  # QDQ format
    # per-channel weights: the convolution's weight scale has one value per output channel
    scales = {tensor.name: tensor for tensor in graph.initializer}
    weight_scales = [scales[node.input[1]] for node in graph.node
                     if node.op_type == "DequantizeLinear" and node.input[1] in scales
                     and len(scales[node.input[1]].dims) == 1]  # fmt: skip
    assert any(tensor.dims[0] == 16 for tensor in weight_scales)
    float_probabilities = OnnxClassifier(exported).predict_proba(images)
    int8 = OnnxClassifier(static_quantized)
    probabilities = int8.predict_proba(images)
    np.testing.assert_allclose(probabilities, float_probabilities, atol=INT8_TOLERANCE, rtol=0)
    # fixed activation scales: one image alone gets exactly its result in the batch
    np.testing.assert_allclose(int8.predict_proba(images[1:2]), probabilities[1:2], atol=1e-6)


def test_static_int8_keeps_what_follows_the_last_convolution_in_float(tmp_path, images):
    """A confident classifier's probabilities lie near 0 and 1; through a uint8 output
    (256 levels) they would tie, and its ranking would be lost."""
    model = _tiny_classifier()
    dense = model.get_layer("hemorrhage")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 20.0, bias - 5.0])  # probabilities of about 3e-4
    path = export_onnx(model, tmp_path / "confident.onnx", input_shape=(SIZE, SIZE, 3))
    rng = np.random.default_rng(2)
    calibration = rng.random((16, SIZE, SIZE, 3), dtype=np.float32)
    int8_path = quantize_static_int8(path, tmp_path / "confident.qdq.onnx", calibration)
    graph = onnx.load(str(int8_path)).graph
    producers = {output: node for node in graph.node for output in node.output}
    assert producers[graph.output[0].name].op_type == "Sigmoid"
    matmul = next(node for node in graph.node if node.op_type in ("MatMul", "Gemm"))
    assert all(producers.get(name) is None or producers[name].op_type != "DequantizeLinear"
               for name in matmul.input[1:])  # fmt: skip
    test_images = rng.random((40, SIZE, SIZE, 3), dtype=np.float32)
    reference = OnnxClassifier(path).predict_proba(test_images)
    probabilities = OnnxClassifier(int8_path).predict_proba(test_images)
    assert reference.max() < 1 / 255  # all below the first step of a uint8 output
    assert len(np.unique(probabilities)) == len(np.unique(reference)) == len(test_images)
    assert stats.spearmanr(probabilities, reference).statistic > 0.9


@pytest.mark.skipif("openvino" not in available_engines(), reason="OpenVINO not installed")
@pytest.mark.parametrize("model_file", ["exported", "static_quantized"])
def test_openvino_runs_the_same_file(model_file, request, images):
    path = request.getfixturevalue(model_file)
    reference = OnnxClassifier(path).predict_outputs(images)
    classifier = OnnxClassifier(path, engine="openvino", n_threads=1)
    assert classifier.engine == "openvino" and classifier.providers == ["openvino"]
    assert classifier.input_shape == (None, SIZE, SIZE, 3)
    assert "engine='openvino'" in repr(classifier)
    # bfloat16 where the CPU has it: agreement to the second decimal
    np.testing.assert_allclose(classifier.predict_outputs(images), reference, atol=2e-2)
    assert classifier.predict_proba(images[:1]).shape == (1,)


def test_unknown_engine_is_refused(exported):
    with pytest.raises(ValueError, match=r"'engine'.*\('onnxruntime', 'openvino'\).*'tensorrt'"):
        OnnxClassifier(exported, engine="tensorrt")


def test_compare_engines_measures_the_float_reference_then_int8(exported, static_quantized):
    rng = np.random.default_rng(3)
    images = rng.random((12, SIZE, SIZE, 3), dtype=np.float32)
    labels = np.r_[np.zeros(6), np.ones(6)]
    results = compare_engines(exported, static_quantized, images, labels,
                              engines=("onnxruntime",), repeats=2)  # fmt: skip
    assert [(r.engine, r.precision) for r in results] == [
        ("onnxruntime", "float32"), ("onnxruntime", "int8")]  # fmt: skip
    reference, int8 = results
    assert reference.kept and reference.auc_drop == 0 and reference.latency_ms > 0
    assert int8.path == static_quantized
    assert int8.kept == keep_quantized_if_close(
        labels, OnnxClassifier(exported).predict_proba(images),
        OnnxClassifier(static_quantized).predict_proba(images))  # fmt: skip


def test_compare_engines_reuses_latencies_measured_before(exported, static_quantized):
    images = np.random.default_rng(4).random((6, SIZE, SIZE, 3), dtype=np.float32)
    known = {("onnxruntime", "float32"): 5.0, ("onnxruntime", "int8"): 1.5}
    results = compare_engines(exported, static_quantized, images, np.r_[0, 0, 0, 1, 1, 1],
                              engines=("onnxruntime",), latencies=known)  # fmt: skip
    assert [r.latency_ms for r in results] == [5.0, 1.5]


def test_fastest_kept_skips_what_the_rule_refused(exported):
    def result(engine, precision, ms, kept):
        return EngineResult(engine, precision, exported, ms, 0.9, 0.0, kept)

    reference = result("onnxruntime", "float32", 10.0, True)
    slow_int8 = result("onnxruntime", "int8", 6.0, True)
    fast_but_worse = result("openvino", "int8", 3.0, False)
    assert fastest_kept([reference, slow_int8, fast_but_worse]) is slow_int8
    assert fastest_kept([reference, result("openvino", "int8", 12.0, True)]) is reference
    with pytest.raises(ValueError, match="at least one kept"):
        fastest_kept([fast_but_worse])


def test_median_latency_counts_calls():
    calls = []
    assert median_latency_ms(calls.append, np.zeros(1), repeats=3) >= 0
    assert len(calls) == 5  # two warm-up calls, then the timed ones
    with pytest.raises(ValueError, match="repeats >= 1"):
        median_latency_ms(calls.append, np.zeros(1), repeats=0)
