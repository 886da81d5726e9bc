"""Streaming batches from a data set (2.5-D, flipped), and the small-data training recipe."""

import numpy as np
import pytest

import ichkit.deep.data
from ichkit import scans
from ichkit.deep.backbones import build_classifier
from ichkit.deep.data import SliceBatches, prepare_images, prepare_slices
from ichkit.deep.training import (
    TrainingRecipe,
    balanced_class_weight,
    choose_epochs,
    cosine_schedule,
    train_classifier,
)
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


def test_training_runs_the_whole_budget_records_validation_auc_and_checkpoints(phantom, tmp_path):
    train = SliceBatches(phantom, np.arange(0, 24), size=32, batch_size=8, shuffle=True)
    validation = SliceBatches(phantom, np.arange(24, 32), size=32, batch_size=8)
    model = build_classifier("smallcnn", (32, 32, 3))
    checkpoint = tmp_path / "final.weights.h5"
    aucs = train_classifier(model, train, validation, recipe=TrainingRecipe(3),
                            checkpoint=checkpoint, verbose=0)  # fmt: skip
    assert len(aucs) == 3  # no early stop: every epoch of the budget ran
    assert checkpoint.is_file() and list(tmp_path.iterdir()) == [checkpoint]
    predictions = model.predict(validation, verbose=0)
    assert np.isfinite(predictions).all()
    # The file holds the model as training left it: what a resumed run loads must
    # predict exactly what the first run predicted.
    reloaded = build_classifier("smallcnn", (32, 32, 3), weights=checkpoint)
    np.testing.assert_allclose(reloaded.predict(validation, verbose=0), predictions, atol=1e-6)
    assert train_classifier(build_classifier("smallcnn", (32, 32, 3)), train,
                            recipe=TrainingRecipe(1, mixup=0.4), verbose=0) == []  # fmt: skip
    with pytest.raises(ValueError, match="Unknown optimizer 'sgd'"):
        TrainingRecipe(optimizer="sgd")


def test_cosine_schedule_warms_up_then_decays_to_zero():
    schedule = cosine_schedule(1e-3, 100, warmup_fraction=0.1)
    rates = [float(schedule(step)) for step in (0, 5, 10, 55, 100)]
    assert rates[0] == 0 and rates[1] == pytest.approx(5e-4)
    assert rates[2] == pytest.approx(1e-3) and rates[3] == pytest.approx(5e-4, rel=1e-3)
    assert rates[4] == pytest.approx(0, abs=1e-9)


def test_choose_epochs_takes_the_best_smoothed_candidate_and_prefers_longer_on_ties():
    curve = [0.5, 0.6, 0.9, 0.92, 0.7, 0.72]
    assert choose_epochs(curve, [2, 4, 6]) == 4
    assert choose_epochs([0.8] * 6, [3, 6]) == 6
    assert choose_epochs([float("nan")] * 4, [2, 4]) == 4  # one-class validation
    with pytest.raises(ValueError, match="No candidate"):
        choose_epochs([0.5], [3])


def test_neighbour_channels_follow_scan_order_and_flip_mirrors(phantom):
    table = phantom.table
    scan = table[table["scan_id"] == table["scan_id"].iloc[0]].sort_values("slice_index")
    rows = scan.index.to_numpy()
    stacked = SliceBatches(phantom, rows[:3], size=32, batch_size=3, neighbors=1)[0][0]
    single = SliceBatches(phantom, rows[:4], size=32, batch_size=4)[0][0]
    assert stacked.shape == (3, 32, 32, 9)
    np.testing.assert_array_equal(stacked[1, ..., :3], single[0])  # slice below
    np.testing.assert_array_equal(stacked[1, ..., 3:6], single[1])  # the slice itself
    np.testing.assert_array_equal(stacked[1, ..., 6:], single[2])  # slice above
    np.testing.assert_array_equal(stacked[0, ..., :3], single[0])  # edge repeats itself
    flipped = SliceBatches(phantom, rows[:3], size=32, batch_size=3, neighbors=1, flip=True)
    np.testing.assert_array_equal(flipped[0][0], stacked[:, :, ::-1])
    # Serving prepares an ordered upload of the scan the same way.
    served = prepare_slices([phantom.read(int(r)) for r in rows], size=32, neighbors=1)
    np.testing.assert_allclose(served[:3], stacked, atol=1e-6)


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
