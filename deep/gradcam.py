"""Grad-CAM heatmaps: where in a slice a classifier found its evidence.

Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017, arXiv:1610.02391) weighs each channel of a
convolutional feature map by the spatial mean of the gradient of the class score
with respect to that channel, sums the weighted channels, keeps the positive part
and upsamples it to the input size.

Gradients are backend-specific in Keras 3; everything here is backend-agnostic
(``keras.ops``) except ``_gradient``, which differentiates a scalar function with
torch, TensorFlow or JAX.
"""

from __future__ import annotations

import difflib
import numbers
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

__all__ = ["grad_cam", "overlay", "save_overlay"]

_N_COLORS = 256
# Layer names shown when layer_name is wrong.
_N_LISTED_LAYERS = 20


def grad_cam(
    model: keras.Model,
    images: np.ndarray,
    *,
    layer_name: str = "features",
    output_index: int = 0,
) -> np.ndarray:
    """Grad-CAM heatmaps of a Keras classifier, in [0, 1] at the input's size.

    Implements Selvaraju et al. (2017): with ``A`` the feature map of ``layer_name``
    (channels ``k``) and ``y`` the score of output ``output_index``, the channel weights
    are ``alpha_k = mean over (i, j) of dy / dA_k[i, j]``, the map is
    ``ReLU(sum_k alpha_k A_k)``, upsampled bilinearly to the input's height and width
    and divided by its maximum, per image. A map with no positive evidence stays
    all zero.

    As in the paper, the score is taken before the output activation: when the model
    ends in a ``Dense`` layer (ichkit's classifiers end in a sigmoid ``Dense`` named
    ``"hemorrhage"``) its logit is differentiated, so confident predictions, whose
    sigmoid saturates at 1.0 in float32, still get a map. Otherwise the model's
    output itself is used.

    Parameters
    ----------
    model : keras.Model
        A Functional model with one output of shape (n, n_outputs).
    images : array-like of shape (n, height, width, channels)
        Model inputs, float32 in [0, 1] for ichkit's classifiers. One image needs a
        batch axis: ``images[np.newaxis]``.
    layer_name : str, default="features"
        The layer whose 4-D output (n, h, w, c) is explained. ichkit's classifiers
        name their last feature map ``"features"``. List the names with
        ``model.summary()`` or ``[layer.name for layer in model.layers]``; an earlier
        layer gives a finer but noisier map. Everything after the layer must depend
        on its output alone (true of ``"features"`` and of a block's output, not of a
        layer bypassed by a skip connection).
    output_index : int, default=0
        Column of the model's output to explain: 0 is "any hemorrhage" in ichkit's
        classifiers, 1 to 5 the subtypes of a six-output model.

    Returns
    -------
    ndarray of shape (n, height, width), float32
        Heatmaps in [0, 1]; the maximum of each map is 1 unless the map is all zero.

    Raises
    ------
    ValueError
        If ``layer_name`` is not a layer of the model (the message lists the layers
        with a 4-D output), its output is not 4-D or is bypassed by a skip
        connection, ``output_index`` is out of range or ``images`` is not 4-D.
    TypeError
        If ``output_index`` is not an int.

    Notes
    -----
    The heatmap shows where the evidence for the score lies, at the resolution of
    the layer (7 x 7 for a 224-pixel MobileNet): a coarse guide for a reader, not a
    segmentation.

    Examples
    --------
    >>> import keras
    >>> import numpy as np
    >>> inputs = keras.Input((32, 32, 3), name="image")
    >>> x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="features")(inputs)
    >>> x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    >>> outputs = keras.layers.Dense(1, activation="sigmoid", name="hemorrhage")(x)
    >>> model = keras.Model(inputs, outputs)
    >>> [layer.name for layer in model.layers]
    ['image', 'features', 'pool', 'hemorrhage']
    >>> heatmaps = grad_cam(model, np.random.default_rng(0).random((2, 32, 32, 3)))
    >>> heatmaps.shape, bool(heatmaps.min() >= 0), bool(heatmaps.max() <= 1)
    ((2, 32, 32), True, True)
    """
    import keras

    images = _check_images(images, model)
    target = _get_layer(model, layer_name)
    _check_output_index(model, output_index)
    feature_model, head, dense = _split_model(model, target)

    # As numpy, so that the backbone's autograd graph is dropped before the gradient step.
    features = keras.ops.convert_to_numpy(
        feature_model(keras.ops.convert_to_tensor(images), training=False)
    ).astype(np.float32, copy=False)

    def score(feature_map):
        outputs = head(feature_map, training=False)
        if dense is not None:
            # The logits of the final Dense layer, before its activation.
            outputs = keras.ops.matmul(outputs, dense.kernel)
            if dense.use_bias:
                outputs = outputs + dense.bias
        # The sum over images: each image's score depends only on its own features.
        return keras.ops.sum(outputs[:, output_index])

    gradients = np.asarray(
        _gradient(score, keras.ops.convert_to_tensor(features)), dtype=np.float32
    )

    channel_weights = gradients.mean(axis=(1, 2))
    maps = np.maximum(np.einsum("nhwc,nc->nhw", features, channel_weights), 0.0)
    height, width = images.shape[1:3]
    resized = keras.ops.image.resize(
        keras.ops.convert_to_tensor(maps[..., np.newaxis]),
        (height, width),
        interpolation="bilinear",
        data_format="channels_last",
    )
    heatmaps = np.maximum(keras.ops.convert_to_numpy(resized)[..., 0], 0.0)
    peaks = heatmaps.max(axis=(1, 2), keepdims=True)
    heatmaps = np.divide(heatmaps, peaks, out=np.zeros_like(heatmaps), where=peaks > 0)
    return np.clip(heatmaps, 0.0, 1.0).astype(np.float32, copy=False)


def _gradient(function, value):
    """Gradient of the scalar ``function(value)`` with respect to ``value``, as a numpy array.

    The only backend-specific code of Grad-CAM; each backend is imported in its branch.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        value = value.detach().requires_grad_(True)
        with torch.enable_grad():
            (gradient,) = torch.autograd.grad(function(value), value)
        return gradient.detach().cpu().numpy()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(value)
            total = function(value)
        return tape.gradient(total, value).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(function)(value))
    raise ValueError(
        f"grad_cam supports the torch, tensorflow and jax Keras backends. Got "
        f"KERAS_BACKEND={backend!r}; set KERAS_BACKEND to one of them before importing keras."
    )


def _check_images(images, model) -> np.ndarray:
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(
            "The 'images' parameter of grad_cam must have shape (n, height, width, channels). "
            f"Got shape {images.shape}. Add a batch axis to a single image: images[np.newaxis]."
        )
    expected = tuple(model.inputs[0].shape[1:]) if len(model.inputs) == 1 else ()
    if len(expected) == 3:
        pairs = zip(expected, images.shape[1:], strict=True)
        if any(want is not None and want != got for want, got in pairs):
            raise ValueError(
                f"The 'images' parameter of grad_cam must match the input of model "
                f"'{model.name}', (n, {', '.join(str(size) for size in expected)}). Got shape "
                f"{images.shape}. Resize the slices (scans.Resize) to the model's input size."
            )
    return images


def _get_layer(model, layer_name: str):
    names = [layer.name for layer in model.layers]
    if layer_name not in names:
        candidates = _four_dimensional_layers(model)
        close = difflib.get_close_matches(str(layer_name), candidates, n=1)
        suggestion = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"The 'layer_name' parameter of grad_cam must name a layer of model "
            f"'{model.name}' with a 4-D output (n, h, w, c). Got {layer_name!r}.{suggestion} "
            f"{_describe_layers(candidates)} Use model.summary() or "
            "[layer.name for layer in model.layers] to list all layer names."
        )
    layer = model.get_layer(layer_name)
    if _output_rank(layer) != 4:
        raise ValueError(
            f"The 'layer_name' parameter of grad_cam must name a layer with a 4-D output "
            f"(n, h, w, c); layer {layer_name!r} of model '{model.name}' has none. "
            f"{_describe_layers(_four_dimensional_layers(model))}"
        )
    return layer


def _describe_layers(names: list[str]) -> str:
    """List the layer names, or the deepest of them: a ResNet50 has about 170 4-D layers."""
    if len(names) <= _N_LISTED_LAYERS:
        return f"Layers with a 4-D output: {names}."
    return (
        f"Layers with a 4-D output (the last {_N_LISTED_LAYERS} of {len(names)}): "
        f"{names[-_N_LISTED_LAYERS:]}."
    )


def _output_rank(layer) -> int | None:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):
        # Layers called more than once have no single output.
        return None


def _four_dimensional_layers(model) -> list[str]:
    return [layer.name for layer in model.layers if _output_rank(layer) == 4]


def _check_output_index(model, output_index: int) -> None:
    if len(model.outputs) != 1:
        raise ValueError(
            f"grad_cam needs a model with one output; model '{model.name}' has "
            f"{len(model.outputs)}. Build a model with the output to explain: "
            "keras.Model(model.inputs, model.outputs[i])."
        )
    n_outputs = model.outputs[0].shape[-1]
    if isinstance(output_index, bool) or not isinstance(output_index, numbers.Integral):
        raise TypeError(
            f"The 'output_index' parameter of grad_cam must be an int in [0, {n_outputs}). "
            f"Got {output_index!r} of type {type(output_index).__name__}."
        )
    if not 0 <= output_index < n_outputs:
        raise ValueError(
            f"The 'output_index' parameter of grad_cam must be an int in [0, {n_outputs}) "
            f"for model '{model.name}', which has {n_outputs} output column(s). "
            f"Got {output_index!r}."
        )


def _split_model(model, target):
    """The model up to ``target``, the rest of it, and the final Dense layer (or None)."""
    import keras

    last = model.layers[-1]
    dense = None
    if (
        isinstance(last, keras.layers.Dense)
        and getattr(last, "quantization_mode", None) is None
        and _is_output(last, model)
    ):
        dense = last
    head_output = dense.input if dense is not None else model.outputs[0]
    feature_model = keras.Model(model.inputs, target.output)
    try:
        head = keras.Model(target.output, head_output)
    except ValueError as error:
        raise ValueError(
            f"Grad-CAM cannot use layer {target.name!r} of model '{model.name}': the layers "
            f"after it also read earlier layers (a skip connection bypasses it), so the "
            f"output is not a function of its feature map alone ({error}). Choose the "
            "output of a block instead, such as 'features'."
        ) from error
    return feature_model, head, dense


def _is_output(layer, model) -> bool:
    try:
        return layer.output is model.outputs[0]
    except (AttributeError, ValueError):
        return False


def overlay(
    image: np.ndarray,
    heatmap: np.ndarray,
    alpha: float = 0.4,
    *,
    colormap: str = "jet",
) -> np.ndarray:
    """Blend a colour-mapped heatmap over a slice, for display.

    Parameters
    ----------
    image : ndarray of shape (height, width), (height, width, 1) or (height, width, 3)
        The slice: float in [0, 1] (a model input) or uint8. A grey image is repeated
        to RGB; a three-window stack is shown as its RGB channels.
    heatmap : ndarray of shape (height, width)
        A Grad-CAM map in [0, 1], such as one row of ``grad_cam``'s result.
    alpha : float, default=0.4
        Weight of the heatmap: 0 shows the slice only, 1 the heatmap only.
    colormap : str, default="jet"
        A name of ``matplotlib.colormaps``.

    Returns
    -------
    ndarray of shape (height, width, 3), uint8
        ``(1 - alpha) * image + alpha * colormap(heatmap)``, in RGB.

    Raises
    ------
    ValueError
        If the shapes differ, values are outside [0, 1], ``alpha`` is not in [0, 1] or
        the colormap is unknown.

    Examples
    --------
    >>> import numpy as np
    >>> image = np.zeros((4, 4), dtype=np.float32)
    >>> heatmap = np.zeros((4, 4), dtype=np.float32)
    >>> heatmap[0, 0] = 1.0
    >>> blended = overlay(image, heatmap, alpha=1.0)
    >>> blended.shape, blended.dtype, blended[0, 0].tolist(), blended[3, 3].tolist()
    ((4, 4, 3), dtype('uint8'), [128, 0, 0], [0, 0, 128])
    """
    rgb = _as_rgb(image)
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape != rgb.shape[:2]:
        raise ValueError(
            f"The 'heatmap' parameter of overlay must have the image's shape "
            f"{rgb.shape[:2]}. Got {heatmap.shape}. grad_cam returns maps at the model "
            "input's size: overlay them on the model input, not the original slice."
        )
    if not np.all((heatmap >= 0) & (heatmap <= 1)):
        raise ValueError(
            "The 'heatmap' parameter of overlay must hold values in [0, 1], as grad_cam "
            f"returns. Got values in [{np.nanmin(heatmap)}, {np.nanmax(heatmap)}]."
        )
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise ValueError(
            f"The 'alpha' parameter of overlay must be a float in [0, 1]. Got {alpha!r}."
        )
    colors = _colormap_table(colormap)[np.rint(heatmap * (_N_COLORS - 1)).astype(np.intp)]
    blended = (1.0 - alpha) * rgb + alpha * colors
    return np.clip(np.rint(blended * 255.0), 0, 255).astype(np.uint8)


def save_overlay(
    path: str | Path,
    image: np.ndarray,
    heatmap: np.ndarray,
    alpha: float = 0.4,
    *,
    colormap: str = "jet",
) -> Path:
    """Save ``overlay(image, heatmap, alpha)`` as a PNG file.

    Parameters
    ----------
    path : str or Path
        Where to write; the folder must exist. A ``.png`` suffix is expected.
    image, heatmap, alpha, colormap
        As for ``overlay``.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    ValueError
        If ``path`` does not end in ``.png``, or as ``overlay``.
    FileNotFoundError
        If the folder of ``path`` does not exist.
    """
    from PIL import Image

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"The 'path' parameter of save_overlay must end in '.png'. Got '{path}'.")
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"Cannot save the overlay to '{path}': folder '{path.parent}' does not exist. "
            "Create it first (Path.mkdir(parents=True))."
        )
    Image.fromarray(overlay(image, heatmap, alpha, colormap=colormap)).save(path)
    return path


def _as_rgb(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = np.repeat(image[..., np.newaxis], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            "The 'image' parameter of overlay must have shape (height, width), "
            f"(height, width, 1) or (height, width, 3). Got {image.shape}."
        )
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    image = image.astype(np.float32)
    if not np.all((image >= 0) & (image <= 1)):
        raise ValueError(
            "The 'image' parameter of overlay must be uint8 or float in [0, 1]. Got values "
            f"in [{np.nanmin(image)}, {np.nanmax(image)}]. Window Hounsfield units first "
            "(scans.Window) or pass the model input."
        )
    return image


def _colormap_table(name: str) -> np.ndarray:
    """A (256, 3) float table in [0, 1] for matplotlib's colormap ``name``."""
    import matplotlib

    try:
        colormap = matplotlib.colormaps[name]
    except KeyError as error:
        raise ValueError(
            f"Unknown colormap {name!r} for overlay. See list(matplotlib.colormaps)."
        ) from error
    return colormap(np.linspace(0.0, 1.0, _N_COLORS))[:, :3].astype(np.float32)
