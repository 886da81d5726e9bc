"""Export a Keras classifier to ONNX, quantize it to int8, and decide whether int8 is kept.

The web app and the CPU profiles run the exported file with ONNX Runtime
(``ichkit.deep.inference.OnnxClassifier``), so serving needs neither Keras nor torch. Dynamic
int8 quantization stores the weights as int8 (about four times smaller) and is kept
only when it costs less than ``max_auc_drop`` of AUC on a validation set
(``keep_quantized_if_close``).
"""

from __future__ import annotations

import contextlib
import logging
import numbers
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

__all__ = ["export_onnx", "keep_quantized_if_close", "quantize_dynamic_int8"]

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
    signature = [
        keras.InputSpec(shape=(None, *input_shape), dtype="float32", name=input_name),
    ]
    with warnings.catch_warnings():
        for message in _EXPORT_NOISE:
            warnings.filterwarnings("ignore", message=message)
        model.export(str(path), format="onnx", input_signature=signature, verbose=False)
    _name_graph(path, model)
    return path


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
            f"The 'out_path' parameter of quantize_dynamic_int8 must differ from "
            f"'onnx_path'; both are '{onnx_path}'. Write the int8 model beside the float "
            "one, e.g. 'model.int8.onnx'."
        )
    with tempfile.TemporaryDirectory() as folder, _quiet_quantizer():
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(onnx_path), str(prepared))
        quantize_dynamic(str(prepared), str(out_path), weight_type=QuantType.QInt8)
    return out_path


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
