"""Export a Keras classifier to ONNX, quantize it to int8, and decide whether int8 is kept.

The web app and the CPU profiles run the exported file with ONNX Runtime or OpenVINO
(``ichkit.deep.inference.OnnxClassifier``), so serving needs neither Keras nor torch.
Static int8 quantization (``quantize_static_int8``: weights *and* activations in int8,
calibrated on training slices) is what lets the CPU's int8 instructions (AVX-512 VNNI,
AMX) run the convolutions; dynamic quantization (``quantize_dynamic_int8``) stores only
the weights as int8. An int8 model is kept only when it costs less than
``max_auc_drop`` of AUC on held-out slices (``keep_quantized_if_close``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import numbers
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

__all__ = [
    "CALIBRATION_SLICES",
    "EngineResult",
    "calibration_subset",
    "compare_engines",
    "export_onnx",
    "fastest_kept",
    "fold_batchnorm",
    "keep_quantized_if_close",
    "quantize_dynamic_int8",
    "quantize_static_int8",
]

#: Training slices that calibrate an int8 model's scales, evenly spaced over the
#: training part (ONNX Runtime's guidance: a few hundred; more only costs time).
CALIBRATION_SLICES = 128


# Name of the batch dimension in exported models.
_BATCH_DIMENSION = "batch"

# Keras' torch export sets these filters in a block that ends before the export runs;
# they are noise for a model made of standard layers.
_EXPORT_NOISE = (
    r".*might cause the trace to be incorrect.*",
    r".*legacy TorchScript-based ONNX export.*",
    r".*The feature will be removed.*",
    r".*Constant folding - Only steps=1 can be constant folded.*",
)
# ONNX Runtime's quantizer logs this on the root logger, with the tensor's type spelt out
# over a dozen lines, for integer tensors (shapes, pads) that are never quantized.
_QUANTIZE_NOISE = "unsupported type to quantize"


def export_onnx(model: keras.Model, path: str | Path, *, input_shape: tuple[int, ...]) -> Path:
    """Export a Keras model to an ONNX file with a dynamic batch dimension.

    The route is Keras 3's own ``model.export(path, format="onnx")``, given an input
    signature whose batch dimension is ``None``. On the torch backend (ichkit's
    default) Keras then runs torch's TorchScript-based exporter,
    ``torch.onnx.export(..., dynamo=False, dynamic_axes=...)``: Keras takes the newer
    ``torch.export`` route only when every dimension is fixed. On the
    tensorflow backend Keras uses ``tf2onnx`` and on jax ``jax2onnx``, which must
    then be installed.

    Each BatchNormalization that follows a convolution is first folded into it
    (``fold_batchnorm``): Keras on torch exports BatchNormalization as three element-wise
    operations that neither ONNX Runtime nor the int8 quantizer fuse with the
    convolution, so unfolded they cost a pass over every feature map each, and in
    int8 a dequantize and requantize around each.

    The graph's output is renamed after the model's output layer (``"hemorrhage"``
    for ichkit's classifiers) and its first dimension is named ``"batch"``; the
    input keeps the name of the Keras input (``"image"``). The model's name is
    stored in the ONNX metadata as ``ichkit.model_name``.

    Parameters
    ----------
    model : keras.Model
        A model with one float32 input and one output of shape (n, n_outputs),
        such as ``ichkit.deep.backbones.build_classifier(...)``. Dropout is off and
        BatchNormalization uses its moving statistics in the export.
    path : str or Path
        The ONNX file to write (conventionally ``*.onnx``); its folder must exist.
    input_shape : tuple of int
        Shape of one input without the batch axis, e.g. ``(224, 224, 3)``. Must
        agree with the model's input where that is fixed.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        If the model does not have one input and one output or ``input_shape``
        does not match its input.
    FileNotFoundError
        If the folder of ``path`` does not exist.
    RuntimeError
        If the exported graph came out with a fixed batch size.

    Notes
    -----
    torch 2.9 and later deprecate the TorchScript-based exporter (their
    DeprecationWarning is silenced here, together with tracer warnings about
    Python ints in Keras' shape code). Should it be removed, calling
    ``torch.onnx.export(model, (sample,), dynamo=True, input_names=["image"],
    dynamic_shapes=(({0: torch.export.Dim("batch")},),))`` on the Keras model (a
    ``torch.nn.Module`` on this backend) also gives a dynamic batch; it needs the
    ``onnxscript`` package. The export is checked by ``tests/deep/test_export.py``
    against ``model.predict``.
    """
    import keras

    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"Cannot export model '{model.name}' to '{path}': folder '{path.parent}' does "
            "not exist. Create it first (Path.mkdir(parents=True))."
        )
    input_shape = _check_input_shape(model, input_shape)
    input_name = model.inputs[0].name
    model = fold_batchnorm(model)
    signature = [
        keras.InputSpec(shape=(None, *input_shape), dtype="float32", name=input_name),
    ]
    with warnings.catch_warnings():
        for message in _EXPORT_NOISE:
            warnings.filterwarnings("ignore", message=message)
        model.export(str(path), format="onnx", input_signature=signature, verbose=False)
    _name_graph(path, model)
    return path


def fold_batchnorm(model: keras.Model) -> keras.Model:
    """A copy of ``model`` with each BatchNormalization after a convolution folded into it.

    In inference a BatchNormalization is a per-channel scale and shift, so a Conv2D or
    DepthwiseConv2D whose only consumer it is can absorb it: kernel times
    ``gamma / sqrt(variance + epsilon)``, bias shifted to match. The copy computes the
    same function (to float rounding) with fewer operations. Layers that do not fit
    the pattern (a normalization after anything else, or a convolution feeding several
    layers) are copied unchanged. ``model`` itself is not modified.

    Parameters
    ----------
    model : keras.Model
        A functional model with channels-last convolutions, such as
        ``ichkit.deep.backbones.build_classifier(...)``.

    Returns
    -------
    keras.Model
        The folded copy, or ``model`` itself when nothing could be folded.
    """
    import keras

    convolutions = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
    folded = {}  # convolution name -> the BatchNormalization it absorbs
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization) or layer.axis not in (-1, 3):
            continue
        if len(layer._inbound_nodes) != 1 or len(layer._inbound_nodes[0].parent_nodes) != 1:
            continue
        source = layer._inbound_nodes[0].parent_nodes[0].operation
        if isinstance(source, convolutions) and len(source._outbound_nodes) == 1:
            folded[source.name] = layer
    if not folded:
        return model
    absorbed = {norm.name for norm in folded.values()}

    class FoldedNormalization(keras.layers.Layer):
        """Where a BatchNormalization was folded into the convolution before it: passes
        its input through (it takes the normalization's call arguments)."""

        def call(self, inputs, training=None, mask=None):
            return inputs

    def clone(layer):
        if layer.name in absorbed:
            return FoldedNormalization(name=layer.name)
        config = layer.get_config()
        if layer.name in folded:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=clone)
    for layer in copy.layers:
        original = model.get_layer(layer.name)
        if layer.name in absorbed:
            continue
        if layer.name not in folded:
            layer.set_weights(original.get_weights())
            continue
        norm = folded[layer.name]
        kernel = keras.ops.convert_to_numpy(original.kernel).astype(np.float64)
        bias = (keras.ops.convert_to_numpy(original.bias).astype(np.float64)
                if original.use_bias else 0.0)  # fmt: skip
        depthwise = isinstance(original, keras.layers.DepthwiseConv2D)  # kernel (h, w, in, k)
        channels = kernel.shape[2] * kernel.shape[3] if depthwise else kernel.shape[3]
        gamma = _weight_or(norm.gamma, 1.0, channels)
        beta = _weight_or(norm.beta, 0.0, channels)
        mean = keras.ops.convert_to_numpy(norm.moving_mean).astype(np.float64)
        variance = keras.ops.convert_to_numpy(norm.moving_variance).astype(np.float64)
        scale = gamma / np.sqrt(variance + norm.epsilon)
        layer.set_weights([
            (kernel * (scale.reshape(kernel.shape[2:]) if depthwise else scale)).astype(
                np.float32),
            ((bias - mean) * scale + beta).astype(np.float32),
        ])  # fmt: skip
    return copy


def _weight_or(variable, default: float, channels: int) -> np.ndarray:
    """A BatchNormalization's gamma or beta, or its constant where it has none."""
    import keras

    if variable is None:
        return np.full(channels, default)
    return keras.ops.convert_to_numpy(variable).astype(np.float64)


def _check_input_shape(model, input_shape) -> tuple[int, ...]:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"export_onnx needs a model with one input and one output; model '{model.name}' "
            f"has {len(model.inputs)} and {len(model.outputs)}."
        )
    expected = tuple(model.inputs[0].shape[1:])
    if (
        isinstance(input_shape, str | bytes)
        or not hasattr(input_shape, "__len__")
        or not all(
            isinstance(size, numbers.Integral) and not isinstance(size, bool) and size > 0
            for size in input_shape
        )
    ):
        raise ValueError(
            "The 'input_shape' parameter of export_onnx must be a tuple of positive ints, "
            f"the shape of one input without the batch axis, e.g. (224, 224, 3). "
            f"Got {input_shape!r}."
        )
    input_shape = tuple(int(size) for size in input_shape)
    if len(input_shape) != len(expected) or any(
        want is not None and want != got for want, got in zip(expected, input_shape, strict=True)
    ):
        shown = ", ".join("None" if size is None else str(size) for size in expected)
        raise ValueError(
            f"The 'input_shape' parameter of export_onnx must match the input of model "
            f"'{model.name}', ({shown}) without the batch axis. Got {input_shape}."
        )
    return input_shape


def _name_graph(path: Path, model) -> None:
    """Name the output and its batch dimension, record the model's name, check the graph."""
    import onnx

    onnx_model = onnx.load(str(path))
    graph = onnx_model.graph
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    if not batch.dim_param:
        raise RuntimeError(
            f"The ONNX export of model '{model.name}' to '{path}' has a fixed batch size "
            f"({batch.dim_value}); a dynamic one was requested. This happens when the "
            "Keras/torch versions change the export route; see export_onnx's docstring."
        )
    old_name = graph.output[0].name
    new_name = _output_layer_name(model)
    taken = {name for node in graph.node for name in (*node.input, *node.output)}
    taken |= {tensor.name for tensor in (*graph.input, *graph.initializer)}
    if new_name and new_name != old_name and new_name not in taken:
        for node in graph.node:
            node.output[:] = [new_name if name == old_name else name for name in node.output]
            node.input[:] = [new_name if name == old_name else name for name in node.input]
        graph.output[0].name = new_name
    output_batch = graph.output[0].type.tensor_type.shape.dim[0]
    output_batch.Clear()
    output_batch.dim_param = _BATCH_DIMENSION
    batch.Clear()
    batch.dim_param = _BATCH_DIMENSION
    entry = onnx_model.metadata_props.add()
    entry.key, entry.value = "ichkit.model_name", model.name
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, str(path))


def _output_layer_name(model) -> str | None:
    last = model.layers[-1]
    try:
        return last.name if last.output is model.outputs[0] else None
    except (AttributeError, ValueError):
        return None


def quantize_dynamic_int8(onnx_path: str | Path, out_path: str | Path) -> Path:
    """Quantize an ONNX model's weights to int8 with ONNX Runtime's dynamic quantization.

    The model is first pre-processed as ONNX Runtime recommends (shape inference and
    graph optimization, ``onnxruntime.quantization.shape_inference.quant_pre_process``),
    then ``onnxruntime.quantization.quantize_dynamic`` stores the weights of Conv,
    MatMul and Gemm nodes as int8 (``QuantType.QInt8``); activations are quantized
    on the fly at run time, with one scale for the whole input batch, so an image's
    int8 probability shifts slightly (a few millionths on the test model) with the
    other images of its batch.
    Check the result with ``keep_quantized_if_close``.

    Parameters
    ----------
    onnx_path : str or Path
        A float ONNX model, such as one written by ``export_onnx``.
    out_path : str or Path
        Where to write the int8 model; its folder must exist and it must differ
        from ``onnx_path``.

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    FileNotFoundError
        If ``onnx_path`` or the folder of ``out_path`` does not exist.
    ValueError
        If ``out_path`` is ``onnx_path``.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    onnx_path, out_path = _check_quantize_paths(onnx_path, out_path, "quantize_dynamic_int8")
    with tempfile.TemporaryDirectory() as folder, _quiet_quantizer():
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(onnx_path), str(prepared))
        quantize_dynamic(str(prepared), str(out_path), weight_type=QuantType.QInt8)
    return out_path


def calibration_subset(rows: Sequence) -> Sequence:
    """Up to ``CALIBRATION_SLICES`` of ``rows`` (training slices, any sliceable
    sequence: array, ``pandas.Index``), evenly spaced: what ``ichkit run`` and the
    benchmark calibrate int8 models on."""
    step = max(1, len(rows) // CALIBRATION_SLICES)
    return rows[::step][:CALIBRATION_SLICES]


def quantize_static_int8(
    onnx_path: str | Path,
    out_path: str | Path,
    calibration_images: np.ndarray,
    *,
    batch_size: int = 8,
) -> Path:
    """Quantize weights and activations to int8 (QDQ), calibrated on the images given.

    ONNX Runtime's ``quantize_static`` in QDQ format: every convolution gets int8
    weights with one scale per output channel and uint8 activations with scales fixed
    from ``calibration_images`` (min/max over them). The uint8-activation, int8-weight
    pair is the one x86 int8 instructions (AVX-512 VNNI, AMX) multiply directly, in
    ONNX Runtime and in OpenVINO, which reads the same QDQ file. Unlike
    ``quantize_dynamic_int8`` the scales do not depend on the batch, so an image's
    probability is the same alone or in a batch.

    What follows the last convolution (pooling, the classifier, the sigmoid) stays in
    float32: a few thousand multiply-adds, and it keeps the output's resolution. A
    uint8 probability has 256 levels, so scores closer than 1/255 tie (a confident
    model's near 0 and 1, or a weak model's all near one value): a VGG16 trained from
    scratch on CT-ICH at learning rate 1e-3, AUC 0.885 in float32, every probability
    within 3e-5 of 0.5, ranked held-out slices at chance (AUC 0.500) with its whole
    graph in int8.

    Calibrate on training slices only (the calibration sees the images' intensities,
    so test slices would leak into the model), prepared exactly as the model's input.

    Parameters
    ----------
    onnx_path : str or Path
        A float ONNX model, such as one written by ``export_onnx``.
    out_path : str or Path
        Where to write the int8 model; its folder must exist and it must differ
        from ``onnx_path``.
    calibration_images : array-like of shape (n, height, width, channels)
        Model inputs (float in [0, 1]); a few dozen to a few hundred slices of both
        classes suffice.
    batch_size : int, default=8
        Images per calibration batch (memory only; the scales do not depend on it).

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    FileNotFoundError
        If ``onnx_path`` or the folder of ``out_path`` does not exist.
    ValueError
        If ``out_path`` is ``onnx_path`` or there are no calibration images.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    onnx_path, out_path = _check_quantize_paths(onnx_path, out_path, "quantize_static_int8")
    images = np.asarray(calibration_images, dtype=np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(
            "The 'calibration_images' parameter of quantize_static_int8 must be a non-empty "
            f"(n, height, width, channels) array of training slices. Got shape {images.shape}."
        )
    input_name = _input_name(onnx_path)

    class _Batches(CalibrationDataReader):
        def __init__(self):
            self._starts = iter(range(0, len(images), batch_size))

        def get_next(self):
            start = next(self._starts, None)
            return None if start is None else {input_name: images[start : start + batch_size]}

    with tempfile.TemporaryDirectory() as folder, _quiet_quantizer():
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(onnx_path), str(prepared))
        quantize_static(
            str(prepared),
            str(out_path),
            _Batches(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=_after_last_convolution(prepared),
        )
    return out_path


def _after_last_convolution(onnx_path: Path) -> list[str]:
    """Names of the nodes after the graph's last Conv (ONNX keeps nodes in topological
    order), named first where the exporter left them unnamed."""
    import onnx

    model = onnx.load(str(onnx_path))
    nodes = model.graph.node
    convolutions = [index for index, node in enumerate(nodes) if node.op_type == "Conv"]
    if not convolutions:
        return []
    if any(not node.name for node in nodes):
        for index, node in enumerate(nodes):
            node.name = node.name or f"{node.op_type}_{index}"
        onnx.save(model, str(onnx_path))
    return [node.name for node in nodes[convolutions[-1] + 1 :]]


def _input_name(onnx_path: Path) -> str:
    import onnx

    return onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name


def _check_quantize_paths(onnx_path, out_path, caller: str) -> tuple[Path, Path]:
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(
            f"Cannot quantize '{onnx_path}': the file does not exist. Export the model "
            "first with export_onnx(model, path, input_shape=...)."
        )
    if not out_path.parent.is_dir():
        raise FileNotFoundError(
            f"Cannot write the int8 model to '{out_path}': folder '{out_path.parent}' does "
            "not exist. Create it first (Path.mkdir(parents=True))."
        )
    if out_path.resolve() == onnx_path.resolve():
        raise ValueError(
            f"The 'out_path' parameter of {caller} must differ from "
            f"'onnx_path'; both are '{onnx_path}'. Write the int8 model beside the float "
            "one, e.g. 'model.int8.onnx'."
        )
    return onnx_path, out_path


@contextlib.contextmanager
def _quiet_quantizer():
    """Drop the quantizer's log lines about integer tensors it rightly leaves alone."""

    def keep(record: logging.LogRecord) -> bool:
        return _QUANTIZE_NOISE not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def keep_quantized_if_close(
    y: np.ndarray,
    p_float: np.ndarray,
    p_int8: np.ndarray,
    max_auc_drop: float = 0.005,
) -> bool:
    """Whether the int8 model is kept: its AUC is less than ``max_auc_drop`` below float's.

    Parameters
    ----------
    y : array-like of shape (n,)
        Binary labels (0/1) of a validation set; both classes must occur.
    p_float : array-like of shape (n,)
        Probabilities of the float model on that set.
    p_int8 : array-like of shape (n,)
        Probabilities of the int8 model on the same slices, in the same order.
    max_auc_drop : float, default=0.005
        Largest tolerated loss of ROC AUC (exclusive). An int8 model that scores
        higher than the float one is kept.

    Returns
    -------
    bool
        ``AUC(y, p_float) - AUC(y, p_int8) < max_auc_drop``.

    Raises
    ------
    ValueError
        If the lengths differ, ``y`` is not binary with both classes, a probability
        is not finite or ``max_auc_drop`` is negative.

    Examples
    --------
    >>> y = [0, 0, 1, 1]
    >>> keep_quantized_if_close(y, [0.1, 0.2, 0.8, 0.9], [0.1, 0.25, 0.7, 0.9])
    True
    >>> keep_quantized_if_close(y, [0.1, 0.2, 0.8, 0.9], [0.1, 0.85, 0.7, 0.9])
    False
    """
    from sklearn.metrics import roc_auc_score

    if (
        isinstance(max_auc_drop, bool)
        or not isinstance(max_auc_drop, numbers.Real)
        or not 0 <= max_auc_drop < np.inf
    ):
        raise ValueError(
            "The 'max_auc_drop' parameter of keep_quantized_if_close must be a finite "
            f"float >= 0. Got {max_auc_drop!r}."
        )
    y = np.asarray(y)
    arrays = {"p_float": np.asarray(p_float), "p_int8": np.asarray(p_int8)}
    for name, values in {"y": y, **arrays}.items():
        if values.ndim != 1 or len(values) != len(y):
            raise ValueError(
                f"The 'y', 'p_float' and 'p_int8' parameters of keep_quantized_if_close "
                f"must be 1-D arrays of the same length. Got '{name}' of shape {values.shape} "
                f"with y of shape {y.shape}."
            )
    if not set(np.unique(y).tolist()) == {0, 1}:
        raise ValueError(
            "The 'y' parameter of keep_quantized_if_close must hold binary labels 0 and 1, "
            f"both present (AUC is undefined otherwise). Got values {np.unique(y)[:10]}. "
            "Use a validation set with positive and negative slices."
        )
    for name, values in arrays.items():
        if not np.issubdtype(values.dtype, np.number) or not np.all(np.isfinite(values)):
            raise ValueError(
                f"The '{name}' parameter of keep_quantized_if_close must hold finite "
                "probabilities. Got non-finite or non-numeric values."
            )
    drop = roc_auc_score(y, arrays["p_float"]) - roc_auc_score(y, arrays["p_int8"])
    return bool(drop < max_auc_drop)


@dataclasses.dataclass(frozen=True)
class EngineResult:
    """One way of running a classifier, measured by ``compare_engines``.

    Attributes
    ----------
    engine : str
        ``"onnxruntime"`` or ``"openvino"``.
    precision : str
        ``"float32"`` (the exported file) or ``"int8"`` (its quantized version).
    path : Path
        The ONNX file run.
    latency_ms : float
        Median batch-1 latency (``median_latency_ms``).
    auc : float
        Slice AUC on the held-out images (first output, any hemorrhage).
    auc_drop : float
        The float32 ONNX Runtime AUC minus this one (0 for the reference).
    kept : bool
        Whether ``keep_quantized_if_close`` keeps it (always True for the reference).
    """

    engine: str
    precision: str
    path: Path
    latency_ms: float
    auc: float
    auc_drop: float
    kept: bool


def compare_engines(
    float_path: str | Path,
    int8_path: str | Path,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    engines: tuple[str, ...] | None = None,
    n_threads: int | None = None,
    repeats: int = 15,
    max_auc_drop: float = 0.005,
    latencies: dict[tuple[str, str], float] | None = None,
) -> list[EngineResult]:
    """Measure the float32 model on ONNX Runtime and the int8 model on every engine.

    Each is scored on the same held-out ``images`` (AUC of the first output) and timed
    on one of them (batch 1, median of ``repeats`` calls); int8 on an engine is kept
    when ``keep_quantized_if_close`` says its AUC is within ``max_auc_drop`` of the
    float32 reference. ``fastest_kept`` then picks what serves.

    Parameters
    ----------
    float_path, int8_path : str or Path
        The export (``export_onnx``) and its int8 version (``quantize_static_int8``).
    images : ndarray of shape (n, height, width, channels)
        Slices of patients the model and the int8 calibration never saw.
    labels : array-like of shape (n,)
        0/1 any-hemorrhage label of each slice; both classes must occur.
    engines : tuple of str, default=None
        The engines to try with int8; None is every installed one
        (``ichkit.deep.inference.available_engines()``).
    n_threads : int, default=None
        Intra-op threads of every engine; None is one per core.
    repeats : int, default=15
    max_auc_drop : float, default=0.005
    latencies : dict, default=None
        Batch-1 latencies already measured for this architecture on this machine, by
        ``(engine, precision)``: those given are used instead of timing again. Latency
        depends on the architecture and the machine, not on the weights, and timing
        noise must not make two runs of one config on one machine choose differently
        (their predictions, hence their tables, would differ).

    Returns
    -------
    list of EngineResult
        The float32 ONNX Runtime reference first, then int8 on each engine.
    """
    from sklearn.metrics import roc_auc_score

    from ichkit.deep.inference import OnnxClassifier, available_engines, median_latency_ms

    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels)
    runs = [("onnxruntime", "float32", Path(float_path))]
    runs += [(name, "int8", Path(int8_path)) for name in engines or available_engines()]
    results, reference, latencies = [], None, latencies or {}
    for engine, precision, path in runs:
        classifier = OnnxClassifier(path, engine=engine, n_threads=n_threads)
        probability = np.concatenate([classifier.predict_proba(images[start : start + 32])
                                      for start in range(0, len(images), 32)])  # fmt: skip
        auc = float(roc_auc_score(labels, probability))
        if reference is None:
            reference, reference_auc = probability, auc
        kept = precision == "float32" or keep_quantized_if_close(
            labels, reference, probability, max_auc_drop
        )
        latency = latencies.get((engine, precision))
        if latency is None:
            latency = median_latency_ms(classifier.predict_proba, images[:1], repeats)
        results.append(EngineResult(
            engine, precision, path, latency_ms=latency,
            auc=auc, auc_drop=reference_auc - auc, kept=kept,
        ))  # fmt: skip
    return results


def fastest_kept(results: list[EngineResult]) -> EngineResult:
    """The fastest of ``results`` that is kept: the model and engine that serve."""
    kept = [result for result in results if result.kept]
    if not kept:
        raise ValueError("fastest_kept needs at least one kept result (the float32 reference).")
    return min(kept, key=lambda result: result.latency_ms)
