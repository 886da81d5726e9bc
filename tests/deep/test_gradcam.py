"""Grad-CAM: closed-form cases, a trained CNN that must point at the lesion, overlays, errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from ichkit.deep.gradcam import grad_cam, overlay, save_overlay
from ichkit.scans.phantom import make_phantom_scan
from ichkit.scans.windowing import Window

SIZE = 64


def _linear_model(kernel, bias=0.0, size=8):
    """features = the input itself, then the classifier top; Grad-CAM has a closed form.

    The logit is ``mean_ij(x_ij) @ kernel + bias``, so its gradient with respect to the
    features is ``kernel / size**2`` everywhere and the map is ``ReLU(x @ kernel)``.
    """
    kernel = np.asarray(kernel, dtype=np.float32).reshape(3, -1)
    inputs = keras.Input((size, size, 3), name="image")
    features = keras.layers.Activation("linear", name="features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(features)
    dropped = keras.layers.Dropout(0.5, name="dropout")(pooled)
    dense = keras.layers.Dense(kernel.shape[1], activation="sigmoid", name="hemorrhage")
    model = keras.Model(inputs, dense(dropped))
    dense.set_weights([kernel, np.full(kernel.shape[1], bias, dtype=np.float32)])
    return model


def _expected_map(images, weights):
    maps = np.maximum(images @ np.asarray(weights, dtype=np.float32), 0.0)
    return maps / maps.max(axis=(1, 2), keepdims=True)


def _tiny_cnn(input_size=SIZE, n_outputs=1):
    """Three convolution blocks (8-16 filters), then the classifier top of deep.backbones."""
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = inputs
    for block, filters in enumerate((8, 16, 16), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=0.9)(x)
        x = keras.layers.Activation("relu", name="features" if block == 3 else None)(x)
        if block < 3:
            x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.1, name="dropout")(x)
    outputs = keras.layers.Dense(n_outputs, activation="sigmoid", name="hemorrhage")(x)
    return keras.Model(inputs, outputs, name="tiny_cnn")


def _lesion_slices(seeds, random_state):
    """Brain-windowed phantom slices, each with a painted blood-density disc and without.

    The phantom's normal heads (``subtypes=()``) give the anatomy, skull included. On
    each slice above the skull base a disc of 3-5 pixels' radius and 65-85 HU (fresh
    blood) is drawn into the parenchyma; the same slice without it is the negative.
    Returns images (n, 64, 64, 3) in [0, 1], labels and the disc masks.
    """
    rng = np.random.default_rng(random_state)
    brain = Window(40, 80)
    rows, columns = np.mgrid[:SIZE, :SIZE]
    images, labels, masks = [], [], []
    for seed in seeds:
        scan = make_phantom_scan(seed, size=SIZE, n_slices=12, subtypes=())
        for hounsfield in scan.hu[4:]:
            parenchyma = ndimage.binary_erosion((hounsfield > 15) & (hounsfield < 50), iterations=3)
            candidates = np.argwhere(parenchyma)
            if len(candidates) == 0:
                continue
            row, column = candidates[rng.integers(len(candidates))]
            radius = rng.uniform(3, 5)
            distance = np.hypot(rows - row, columns - column)
            coverage = np.clip(radius + 0.5 - distance, 0.0, 1.0)
            blood = rng.uniform(65, 85) + rng.normal(0, 4, hounsfield.shape)
            with_lesion = hounsfield * (1 - coverage) + coverage * blood
            images += [brain(with_lesion), brain(hounsfield)]
            labels += [1, 0]
            masks += [distance <= radius, np.zeros_like(parenchyma)]
    images = np.repeat(np.stack(images)[..., np.newaxis], 3, axis=-1).astype(np.float32)
    return images, np.array(labels), np.stack(masks)


@pytest.fixture(scope="module")
def trained():
    """A tiny CNN trained (15 seeded epochs, about 3 s) on 10 phantom heads; 3 held-out heads."""
    train_images, train_labels, _ = _lesion_slices(range(100, 110), random_state=0)
    test_images, test_labels, test_masks = _lesion_slices(range(3), random_state=1)
    keras.utils.set_random_seed(0)
    model = _tiny_cnn()
    model.compile(keras.optimizers.Adam(0.01), "binary_crossentropy")
    model.fit(train_images, train_labels, epochs=15, batch_size=32, verbose=0)
    return model, test_images, test_labels, test_masks


def test_trained_cnn_heatmap_highlights_the_lesion(trained):
    model, images, labels, masks = trained
    probabilities = model.predict(images, verbose=0)[:, 0]
    # The CNN must have learnt the lesion for its maps to mean anything (measured 0.95;
    # 0.83 to 0.99 over six training seeds).
    assert roc_auc_score(labels, probabilities) > 0.75

    positive = labels == 1
    heatmaps = grad_cam(model, images[positive])
    lesions = masks[positive]
    inside = np.array(
        [heatmap[mask].mean() for heatmap, mask in zip(heatmaps, lesions, strict=True)]
    )
    outside = np.array(
        [heatmap[~mask].mean() for heatmap, mask in zip(heatmaps, lesions, strict=True)]
    )
    # Measured: 0.80 inside against 0.04 outside on average, higher inside on every slice.
    assert inside.mean() > 3 * outside.mean()
    assert np.mean(inside > outside) >= 0.9
    # The hottest pixel lies within 2 pixels of the lesion on most slices (measured 21 of 22).
    distances = [
        ndimage.distance_transform_edt(~mask)[np.unravel_index(heatmap.argmax(), heatmap.shape)]
        for heatmap, mask in zip(heatmaps, lesions, strict=True)
    ]
    assert np.mean(np.array(distances) <= 2) >= 0.8


def test_heatmaps_are_in_unit_range_at_input_size(trained):
    model, images, _, _ = trained
    heatmaps = grad_cam(model, images[:6])
    assert heatmaps.shape == (6, SIZE, SIZE)
    assert heatmaps.dtype == np.float32
    assert heatmaps.min() >= 0.0 and heatmaps.max() <= 1.0
    peaks = heatmaps.max(axis=(1, 2))
    assert np.all((peaks == 0) | np.isclose(peaks, 1.0))


def test_closed_form_linear_model():
    weights = [1.0, -1.0, 0.5]
    images = np.random.default_rng(0).random((3, 8, 8, 3), dtype=np.float32)
    heatmaps = grad_cam(_linear_model(weights), images)
    np.testing.assert_allclose(heatmaps, _expected_map(images, weights), atol=1e-5)


def test_saturated_sigmoid_still_gives_a_map():
    # A bias of 50 puts the sigmoid at exactly 1.0 in float32, where its gradient is 0;
    # Grad-CAM differentiates the logit, as Selvaraju et al. use the pre-softmax score.
    weights = [1.0, -1.0, 0.5]
    model = _linear_model(weights, bias=50.0)
    images = np.random.default_rng(1).random((2, 8, 8, 3), dtype=np.float32)
    assert np.all(model.predict(images, verbose=0) == 1.0)
    np.testing.assert_allclose(grad_cam(model, images), _expected_map(images, weights), atol=1e-5)


def test_output_index_selects_the_column():
    weights = np.array([1.0, -1.0, 0.5], dtype=np.float32)
    model = _linear_model(np.stack([weights, -weights], axis=1))
    images = np.random.default_rng(2).random((2, 8, 8, 3), dtype=np.float32)
    np.testing.assert_allclose(
        grad_cam(model, images, output_index=1), _expected_map(images, -weights), atol=1e-5
    )


def test_map_without_positive_evidence_stays_zero():
    # All weights negative on non-negative features: ReLU leaves nothing, and nothing is
    # divided by zero.
    images = np.random.default_rng(3).random((2, 8, 8, 3), dtype=np.float32)
    heatmaps = grad_cam(_linear_model([-1.0, -1.0, -1.0]), images)
    assert np.all(heatmaps == 0.0)


def test_frozen_model_gets_gradients():
    model = _linear_model([1.0, -1.0, 0.5])
    model.trainable = False
    images = np.random.default_rng(4).random((1, 8, 8, 3), dtype=np.float32)
    assert grad_cam(model, images).max() == pytest.approx(1.0)


def test_unknown_layer_lists_four_dimensional_layers():
    model = _tiny_cnn(input_size=32)
    four_dimensional = [layer.name for layer in model.layers if len(layer.output.shape) == 4]
    with pytest.raises(ValueError, match=r"Got 'feature'\. Did you mean 'features'\?") as error:
        grad_cam(model, np.zeros((1, 32, 32, 3)), layer_name="feature")
    assert f"Layers with a 4-D output: {four_dimensional}." in str(error.value)
    assert "model.summary() or [layer.name for layer in model.layers]" in str(error.value)


def test_long_layer_lists_are_cut_to_the_deepest():
    inputs = keras.Input((8, 8, 3), name="image")
    x = inputs
    for index in range(30):
        x = keras.layers.Activation("relu", name=f"relu_{index}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    model = keras.Model(inputs, keras.layers.Dense(1, name="hemorrhage")(x))
    with pytest.raises(ValueError, match=r"\(the last 20 of 31\): \['relu_10', .*'relu_29'\]"):
        grad_cam(model, np.zeros((1, 8, 8, 3)), layer_name="missing")


def test_layer_without_feature_map_is_refused():
    model = _tiny_cnn(input_size=32)
    with pytest.raises(ValueError, match="layer 'pool' of model 'tiny_cnn' has none"):
        grad_cam(model, np.zeros((1, 32, 32, 3)), layer_name="pool")


def test_layer_bypassed_by_a_skip_connection_is_refused():
    inputs = keras.Input((16, 16, 3))
    first = keras.layers.Conv2D(4, 3, padding="same", name="first")(inputs)
    second = keras.layers.Conv2D(4, 3, padding="same", name="second")(first)
    added = keras.layers.Add(name="features")([first, second])
    pooled = keras.layers.GlobalAveragePooling2D(name="pool")(added)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(pooled))
    images = np.zeros((1, 16, 16, 3), dtype=np.float32)
    assert grad_cam(model, images).shape == (1, 16, 16)
    with pytest.raises(ValueError, match="skip connection bypasses it"):
        grad_cam(model, images, layer_name="second")


@pytest.mark.parametrize(
    ("output_index", "error", "message"),
    [
        (1, ValueError, r"in \[0, 1\) for model 'tiny_cnn'.*Got 1"),
        (-1, ValueError, r"Got -1"),
        (0.0, TypeError, r"must be an int.*Got 0\.0 of type float"),
    ],
)
def test_bad_output_index(output_index, error, message):
    with pytest.raises(error, match=message):
        grad_cam(_tiny_cnn(input_size=32), np.zeros((1, 32, 32, 3)), output_index=output_index)


def test_images_need_a_batch_axis_and_the_input_size():
    model = _tiny_cnn(input_size=32)
    with pytest.raises(ValueError, match=r"images\[np\.newaxis\]"):
        grad_cam(model, np.zeros((32, 32, 3)))
    with pytest.raises(ValueError, match=r"\(n, 32, 32, 3\)\. Got shape \(1, 16, 16, 3\)"):
        grad_cam(model, np.zeros((1, 16, 16, 3)))


def test_overlay_blends_jet_over_the_slice():
    image = np.full((4, 4), 0.5, dtype=np.float32)
    heatmap = np.zeros((4, 4), dtype=np.float32)
    heatmap[0, 0], heatmap[1, 1] = 1.0, 0.5
    assert np.all(overlay(image, heatmap, alpha=0.0) == 128)
    jet = overlay(image, heatmap, alpha=1.0)
    assert jet.shape == (4, 4, 3) and jet.dtype == np.uint8
    # matplotlib's jet: 0 -> (0, 0, 0.5), 0.5 -> (0.490, 1, 0.478), 1 -> (0.5, 0, 0).
    assert jet[3, 3].tolist() == [0, 0, 128]
    assert jet[1, 1].tolist() == [125, 255, 122]
    assert jet[0, 0].tolist() == [128, 0, 0]
    # 0.6 * 0.2 + 0.4 * (0.5, 0, 0) = (0.32, 0.12, 0.12).
    blended = overlay(np.full((4, 4), 0.2), heatmap)
    assert blended[0, 0].tolist() == [82, 31, 31]


def test_overlay_accepts_uint8_and_three_windows():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    heatmap = np.zeros((5, 6), dtype=np.float32)
    np.testing.assert_array_equal(overlay(rgb, heatmap, alpha=0.0), rgb)
    assert overlay(rgb.astype(np.float32) / 255, heatmap).shape == (5, 6, 3)


def test_overlay_errors():
    with pytest.raises(ValueError, match=r"image's shape \(4, 4\)\. Got \(8, 8\)"):
        overlay(np.zeros((4, 4)), np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"\[0, 1\]\. Got values in \[-1000\.0, 80\.0\]"):
        overlay(np.array([[-1000.0, 80.0]]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="'heatmap' parameter of overlay must hold values"):
        overlay(np.zeros((1, 2)), np.array([[0.0, 2.0]]))
    with pytest.raises(ValueError, match="'alpha' parameter"):
        overlay(np.zeros((1, 2)), np.zeros((1, 2)), alpha=1.5)


def test_save_overlay_writes_the_png(tmp_path):
    image = np.random.default_rng(0).random((6, 5), dtype=np.float32)
    heatmap = np.random.default_rng(1).random((6, 5), dtype=np.float32)
    path = save_overlay(tmp_path / "overlay.png", image, heatmap, alpha=0.3)
    with Image.open(path) as saved:
        np.testing.assert_array_equal(np.asarray(saved), overlay(image, heatmap, alpha=0.3))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        save_overlay(tmp_path / "missing" / "overlay.png", image, heatmap)
    with pytest.raises(ValueError, match=r"must end in '\.png'"):
        save_overlay(tmp_path / "overlay.jpg", image, heatmap)
