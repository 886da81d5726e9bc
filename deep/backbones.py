"""CNN heads for slice classification: MobileNet (v1, v2), ResNet50, VGG16, a small CNN.

Every head is a Keras Functional model with the same top: the backbone's last
feature map goes through a layer named ``"features"`` (what Grad-CAM reads), then
``GlobalAveragePooling2D`` (``"pool"``, the slice embedding for sequence models),
``Dropout`` (``"dropout"``) and a sigmoid ``Dense`` (``"hemorrhage"``: any
hemorrhage, optionally followed by the five subtypes). Inputs are (H, W, 3) in
[0, 1]: a three-window stack or a grey slice repeated; each head scales them the
way its ImageNet weights expect, so ``weights="imagenet"`` works where the files are
available. A 2.5-D input (a slice with its neighbours) has 3 channels per slice,
(H, W, 3 * (2 * neighbors + 1)); it trains from scratch or from this project's weights.

BatchNormalization momentum is 0.9: with about ten steps an epoch on a
few hundred slices, Keras' default 0.99 barely moves the moving statistics (pooled
out-of-fold AUC fell from 0.90 to 0.56 on real data with it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import keras
from keras import layers

from ichkit.scans.validation import unknown_name_message

__all__ = [
    "HEADS",
    "MIN_INPUT_SIZE",
    "build_classifier",
    "mobilenet",
    "mobilenetv2",
    "resnet50",
    "small_cnn",
    "vgg16",
]

#: Smallest input side each head accepts (five 2x downsamplings need 32 pixels).
MIN_INPUT_SIZE = 32
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def small_cnn(inputs, weights):
    """Four convolution blocks (16-128 filters): trains in minutes on a CPU."""
    if weights is not None:
        raise ValueError("The small CNN has no pretrained weights; use weights=None or a path.")
    x = inputs
    for block, filters in enumerate((16, 32, 64, 128), start=1):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{block}_conv")(x)
        x = layers.BatchNormalization(name=f"block{block}_bn")(x)
        x = layers.Activation("relu", name=f"block{block}_relu")(x)
        if block < 4:
            x = layers.MaxPooling2D(name=f"block{block}_pool")(x)
    return x


def mobilenet(inputs, weights):
    x = layers.Rescaling(2.0, offset=-1.0, name="scale_to_unit_range")(inputs)
    model = keras.applications.MobileNet(include_top=False, weights=weights, input_tensor=x)
    return model.output


def mobilenetv2(inputs, weights):
    x = layers.Rescaling(2.0, offset=-1.0, name="scale_to_unit_range")(inputs)
    model = keras.applications.MobileNetV2(include_top=False, weights=weights, input_tensor=x)
    return model.output


def resnet50(inputs, weights):
    x = CaffePreprocess(name="caffe_preprocess")(inputs)
    model = keras.applications.ResNet50(include_top=False, weights=weights, input_tensor=x)
    return model.output


def vgg16(inputs, weights):
    x = CaffePreprocess(name="caffe_preprocess")(inputs)
    model = keras.applications.VGG16(include_top=False, weights=weights, input_tensor=x)
    return model.output


#: The built-in heads by name. A backbone is ``backbone(inputs, weights) -> feature map``
#: (``weights``: None or "imagenet"); ``build_classifier(backbone=...)`` takes any such
#: function, e.g. one a user registered (``ichkit.experiments.registry.register_model``).
HEADS = {
    "smallcnn": small_cnn,
    "mobilenet": mobilenet,
    "mobilenetv2": mobilenetv2,
    "resnet50": resnet50,
    "vgg16": vgg16,
}


@keras.saving.register_keras_serializable(package="ichkit")
class CaffePreprocess(layers.Layer):
    """[0, 1] RGB to the 'caffe' input of ResNet50 and VGG16: BGR, 0-255, mean removed."""

    def call(self, inputs):
        # A 2.5-D input is several RGB stacks side by side: each is reversed alike.
        bgr = keras.ops.flip(inputs, axis=-1) * 255.0
        mean = _CAFFE_MEAN_BGR * (inputs.shape[-1] // 3)
        return bgr - keras.ops.convert_to_tensor(mean, dtype=inputs.dtype)


def build_classifier(
    name: str,
    input_shape: tuple[int, int, int] = (224, 224, 3),
    *,
    n_outputs: int = 1,
    weights: str | Path | None = None,
    backbone: Callable | None = None,
    dropout: float = 0.3,
    batchnorm_momentum: float = 0.9,
    seed: int | None = None,
) -> keras.Model:
    """Build a slice classifier: backbone, ``features``, pooling, dropout, sigmoid.

    Parameters
    ----------
    name : str
        The model's name; without ``backbone``, one of the built-in heads
        ('smallcnn', 'mobilenet', 'mobilenetv2', 'resnet50', 'vgg16').
    input_shape : (height, width, channels), default=(224, 224, 3)
        224 as in the seed paper; smaller (64-128) for CPU profiles. ``channels`` is 3,
        or a multiple of 3 for 2.5-D input (no ImageNet weights then).
    n_outputs : int, default=1
        1 for any hemorrhage; 6 for any hemorrhage and the five subtypes.
    weights : None, "imagenet" or path, default=None
        None trains from scratch (offline default). "imagenet" loads Keras'
        ImageNet weights (needs the network or the files in ``~/.keras/models``).
        A path loads weights saved from a model of the same head and shape.
    backbone : callable, default=None
        ``backbone(inputs, weights) -> feature map``: a head of your own; None uses the
        built-in head called ``name``.
    dropout : float, default=0.3
    batchnorm_momentum : float, default=0.9
    seed : int, default=None
        Seeds Keras, numpy, torch and Python (``keras.utils.set_random_seed``) before
        the weights are initialised, so the same seed builds the same model; None
        leaves the global state alone.

    Returns
    -------
    keras.Model

    Raises
    ------
    ValueError
        Unknown head, input too small or not three channels, ImageNet weights that
        cannot be loaded.
    FileNotFoundError
        A weights path that does not exist.
    """
    if backbone is None:
        if name not in HEADS:
            raise ValueError(unknown_name_message("model", name, HEADS))
        backbone = HEADS[name]
    height, width, channels = input_shape
    if channels % 3 or not channels or min(height, width) < MIN_INPUT_SIZE:
        raise ValueError(
            f"The input_shape of a '{name}' classifier must be (height, width, 3) (or 3 "
            f"channels per slice of a 2.5-D input) with height and width >= {MIN_INPUT_SIZE}. "
            f"Got {input_shape}. Resize slices (scans.Resize) and stack windows or repeat "
            "the grey channel to get 3 channels."
        )
    if weights == "imagenet" and channels != 3:
        raise ValueError(
            f"ImageNet weights take 3 channels; the '{name}' classifier's input has "
            f"{channels} (a 2.5-D input). Use weights=None, a weights path, or neighbors=0."
        )
    path = None
    if weights not in (None, "imagenet"):
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"Weights file '{path}' for the '{name}' classifier does not exist."
            )
    if seed is not None:
        keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=input_shape, name="image")
    try:
        features = backbone(inputs, "imagenet" if weights == "imagenet" else None)
    except Exception as error:  # noqa: BLE001 - download and file errors vary by backend
        if weights != "imagenet":
            raise
        raise ValueError(
            f"ImageNet weights for '{name}' could not be loaded ({error}). They are downloaded "
            "on first use and kept in ~/.keras/models; without network access put the file "
            "there, or use weights=None (train from scratch) or a weights path."
        ) from error
    x = layers.Activation("linear", name="features")(features)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(n_outputs, activation="sigmoid", name="hemorrhage")(x)
    model = keras.Model(inputs, outputs, name=name)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = batchnorm_momentum
    if path is not None:
        model.load_weights(path)
    return model
