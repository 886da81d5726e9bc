"""Streaming batches from a data set, and training with early stopping on AUC."""

import numpy as np
import pytest

import ichkit.deep.data
from ichkit import scans
from ichkit.deep.backbones import build_classifier
from ichkit.deep.data import SliceBatches, prepare_images
from ichkit.deep.training import balanced_class_weight, train_classifier
from ichkit.scans.phantom import write_phantom


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return scans.load(
        write_phantom(tmp_path_factory.mktemp("d") / "ph", 4, seed=3, size=64, n_slices=8)
    )


def test_batches_are_prepared_three_channel_slices(phantom):
    batches = SliceBatches(phantom, np.arange(10), size=32, batch_size=4)
    assert len(batches) == 3
    images, labels = batches[2]
    assert images.shape == (2, 32, 32, 3) and labels.shape == (2,)
    assert images.min() >= 0 and images.max() <= 1
    grey = prepare_images(phantom, [0, 1], size=32, window="brain")
    assert grey.shape == (2, 32, 32, 3) and np.array_equal(grey[..., 0], grey[..., 2])


def test_shuffling_is_seeded_and_augmentation_applies(phantom):
    first = SliceBatches(phantom, np.arange(12), size=32, batch_size=12, shuffle=True, seed=1)
    second = SliceBatches(phantom, np.arange(12), size=32, batch_size=12, shuffle=True, seed=1)
    np.testing.assert_array_equal(first[0][1], second[0][1])
    augmented = SliceBatches(phantom, np.arange(4), size=32, batch_size=4,
                             augment=scans.RandomAugment(random_state=0))  # fmt: skip
    plain = SliceBatches(phantom, np.arange(4), size=32, batch_size=4)
    assert not np.allclose(augmented[0][0], plain[0][0])


def test_balanced_class_weight():
    assert balanced_class_weight([0, 0, 0, 1]) == {0: 4 / 6, 1: 2.0}


def test_training_runs_keeps_the_best_epoch_and_checkpoints(phantom, tmp_path):
    train = SliceBatches(phantom, np.arange(0, 24), size=32, batch_size=8, shuffle=True)
    validation = SliceBatches(phantom, np.arange(24, 32), size=32, batch_size=8)
    model = build_classifier("smallcnn", (32, 32, 3))
    checkpoint = tmp_path / "best.weights.h5"
    history = train_classifier(model, train, validation, epochs=3, warmup_epochs=1, patience=1,
                               checkpoint=checkpoint, verbose=0)  # fmt: skip
    assert "val_auc" in history.history and 1 <= len(history.history["loss"]) <= 3
    assert checkpoint.is_file() and list(tmp_path.iterdir()) == [checkpoint]
    predictions = model.predict(validation, verbose=0)
    assert np.isfinite(predictions).all()
    # The file holds the model as training left it (best epoch restored): what a
    # resumed run loads must predict exactly what the first run predicted.
    reloaded = build_classifier("smallcnn", (32, 32, 3), weights=checkpoint)
    np.testing.assert_allclose(reloaded.predict(validation, verbose=0), predictions, atol=1e-6)
    with pytest.raises(ValueError, match="Unknown optimizer 'sgd'"):
        train_classifier(model, train, validation, optimizer="sgd")


def test_cached_batches_equal_streamed_ones_and_skip_rereading(phantom, monkeypatch):

    expected = SliceBatches(phantom, np.arange(8), size=32, batch_size=4)[1][0]
    cached = SliceBatches(phantom, np.arange(8), size=32, batch_size=4, cache=True)
    np.testing.assert_array_equal(cached[1][0], expected)
    reads = []
    original = ichkit.deep.data.prepare_images
    monkeypatch.setattr(
        ichkit.deep.data, "prepare_images", lambda *a, **k: reads.append(1) or original(*a, **k)
    )
    np.testing.assert_array_equal(cached[1][0], expected)
    assert reads == []  # served from memory the second time
