"""Self-supervised (SimCLR) pretraining: its two views, its loss, and what it trains."""

import keras
import numpy as np

from ichkit.deep.backbones import build_classifier
from ichkit.deep.pretraining import ContrastiveViews, nt_xent_loss, pretrain_contrastive


class Slices(keras.utils.PyDataset):
    """Two batches of 6 random 32 px slices with labels, as SliceBatches serves them."""

    def __init__(self):
        super().__init__()
        self.images = np.random.default_rng(0).random((12, 32, 32, 3)).astype("float32")

    def __len__(self):
        return 2

    def __getitem__(self, batch):
        return self.images[batch * 6 : (batch + 1) * 6], np.zeros(6, dtype="float32")


def test_views_are_two_augmented_copies_of_each_batch():
    views, targets = ContrastiveViews(Slices(), seed=0)[1]
    assert views.shape == (12, 32, 32, 3) and targets.shape == (12,)
    assert views.min() >= 0 and views.max() <= 1
    assert not np.allclose(views[:6], views[6:])  # two different augmentations
    again, _ = ContrastiveViews(Slices(), seed=0)[1]
    np.testing.assert_array_equal(views, again)  # seeded


def test_loss_is_low_when_each_view_matches_only_its_partner():
    loss = nt_xent_loss(temperature=0.2)
    basis = np.eye(4, 8, dtype="float32")  # four orthogonal projections
    matched = np.concatenate([basis, basis])  # view i and view i + 4 identical
    shuffled = np.concatenate([basis, basis[[1, 2, 3, 0]]])  # each partner is another
    dummy = np.zeros(8, dtype="float32")
    low = float(np.mean(keras.ops.convert_to_numpy(loss(dummy, matched))))
    high = float(np.mean(keras.ops.convert_to_numpy(loss(dummy, shuffled))))
    # partner at similarity 1 / 0.2 = 5, the six others at 0 (orthogonal):
    np.testing.assert_allclose(low, np.log(1 + 6 * np.exp(-5)), rtol=1e-4)
    # partner at 0, one other at 5 and five at 0:
    np.testing.assert_allclose(high, np.log(np.exp(5) + 6), rtol=1e-4)


def test_pretraining_changes_the_backbone_and_leaves_the_classifier_top():
    model = build_classifier("smallcnn", (32, 32, 3), seed=0)
    conv = model.get_layer("block1_conv").get_weights()[0].copy()
    top = model.get_layer("hemorrhage").get_weights()[0].copy()
    losses = pretrain_contrastive(model, Slices(), epochs=2, seed=0)
    assert len(losses) == 2 and np.isfinite(losses).all()
    assert not np.allclose(model.get_layer("block1_conv").get_weights()[0], conv)
    np.testing.assert_array_equal(model.get_layer("hemorrhage").get_weights()[0], top)
    assert [layer.name for layer in model.layers][-1] == "hemorrhage"  # no projection left
