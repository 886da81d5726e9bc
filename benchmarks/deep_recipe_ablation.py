"""One switch of the small-CNN recipe at a time, on the folds of ``ichkit run --cv K``.

A quick way to measure a choice before it goes into ``ichkit.deep``: slices are prepared
once (window, crop to the head, resize) and kept in memory, the folds are the run's
(``scans.grouped_kfold`` with the same seed), and each fold's CNN trains on all of its
training slices with ``ichkit.deep.training``'s warm-up and cosine schedule, then
predicts its test patients. It has no inner validation and no thresholds: it measures
AUC only. ``--seeds N`` averages N CNNs a fold. Phantom pretraining
(``--pretrain-phantom N``) first trains the CNN on N phantom scans rendered like the real
input (half as the three-window stack, half as a grey export in a random brain window),
never on the real data. Self-supervised pretraining (``--pretrain-contrastive EPOCHS``)
first trains each fold's CNN with ``ichkit.deep.pretraining.pretrain_contrastive`` on
that fold's training slices only (no labels, no test slices). Prints the fold AUCs,
their mean, and the pooled AUC with a 95% bootstrap-over-patients interval.

Run from the repository root, one at a time (each a few minutes on 2 cores)::

    .venv/bin/python benchmarks/deep_recipe_ablation.py ../shared/data/ct-ich-dev --epochs 10
    .venv/bin/python benchmarks/deep_recipe_ablation.py ../shared/data/ct-ich-dev --neighbors 0
    .venv/bin/python benchmarks/deep_recipe_ablation.py ../shared/data/ct-ich-dev --brain-mask
    .venv/bin/python benchmarks/deep_recipe_ablation.py ../shared/data/ct-ich-dev --seeds 3
    .venv/bin/python benchmarks/deep_recipe_ablation.py ../shared/data/ct-ich-dev \\
        --pretrain-phantom 300
"""

from __future__ import annotations

import argparse
import math
import os
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from ichkit import scans  # noqa: E402
from ichkit.deep.backbones import build_classifier  # noqa: E402
from ichkit.deep.data import neighbour_rows, prepare_slices  # noqa: E402
from ichkit.deep.pretraining import pretrain_contrastive  # noqa: E402
from ichkit.deep.training import (  # noqa: E402
    TrainingRecipe,
    balanced_class_weight,
    denormals_flushed,
    train_classifier,
)
from ichkit.experiments.statistics import bootstrap_ci  # noqa: E402
from ichkit.scans.transforms import RandomAugment  # noqa: E402


class ArrayBatches(keras.utils.PyDataset):
    """Shuffled, augmented batches of an in-memory array."""

    def __init__(self, images, labels, batch_size: int, seed: int, augment: bool = True):
        super().__init__()
        self.images, self.labels, self.batch_size = images, labels.astype(np.float32), batch_size
        self.rng = np.random.default_rng(seed)
        self.augment = RandomAugment(random_state=seed) if augment else None
        self.order = self.rng.permutation(len(labels))

    def __len__(self):
        return math.ceil(len(self.labels) / self.batch_size)

    def __getitem__(self, batch):
        chosen = self.order[batch * self.batch_size : (batch + 1) * self.batch_size]
        images = self.images[chosen]
        return (self.augment.augment_batch(images) if self.augment else images), self.labels[chosen]

    def on_epoch_end(self):
        self.order = self.rng.permutation(len(self.labels))


def five_block_cnn(inputs, weights):
    """The small CNN with a fifth block (128 filters) after a fourth pooling: it sees
    about 63 pixels around each point of its last map where the small CNN sees 31."""
    from keras import layers

    x = inputs
    for block, filters in enumerate((16, 32, 64, 128, 128), start=1):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        if block < 5:
            x = layers.MaxPooling2D()(x)
    return x


def auc_or_nan(truth, probability) -> float:
    """ROC AUC, NaN on one class (a bootstrap resample that ``bootstrap_ci`` skips)."""
    return roc_auc_score(truth, probability) if np.unique(truth).size == 2 else np.nan


def brain_only(image):
    """The slice with everything outside ``features.brain_mask`` set to its minimum
    (skull, scalp and face gone, as the handcrafted features see it)."""
    import dataclasses

    from ichkit.features.brain import brain_mask
    from ichkit.scans.windowing import to_hounsfield

    mask = brain_mask(to_hounsfield(image))
    pixels = np.where(mask, image.pixels, image.pixels.min()).astype(image.pixels.dtype)
    return dataclasses.replace(image, pixels=pixels)


def prepared(dataset, size: int, neighbors: int, mask: bool = False) -> np.ndarray:
    """Every slice prepared as ``SliceBatches`` prepares it, neighbours included."""
    table = dataset.table
    read = (lambda i: brain_only(dataset.read(i))) if mask else dataset.read
    # one slice at a time, so that the raw slices are never all in memory together
    slices = np.concatenate([prepare_slices([read(i)], size=size) for i in range(len(table))])
    position = {row: k for k, row in enumerate(table.index)}
    stacks = neighbour_rows(table, table.index.to_numpy(), neighbors)
    order = np.vectorize(position.get)(stacks)
    return np.concatenate([slices[order[:, k]] for k in range(order.shape[1])], axis=-1)


def phantom_weights(n_scans: int, size: int, neighbors: int, epochs: int, path: str) -> str:
    """A small CNN trained on ``n_scans`` phantom scans (seeds 0..n-1), saved to ``path``."""
    from ichkit.scans._slice import SliceImage
    from ichkit.scans.phantom import make_phantom_scan

    rng = np.random.default_rng(0)
    images, labels = [], []
    for seed in range(n_scans):
        scan = make_phantom_scan(seed, n_slices=24, size=160)
        window = "stack" if seed % 2 == 0 else (rng.uniform(30, 50), rng.uniform(80, 150))
        planes = [SliceImage(plane.astype(np.float32), hounsfield=True) for plane in scan.hu]
        images.append(prepare_slices(planes, size=size, window=window, neighbors=neighbors))
        labels.append(np.asarray(scan.slice_labels, dtype=float))
    images, labels = np.concatenate(images), np.concatenate(labels)
    model = build_classifier("smallcnn", images.shape[1:], seed=0)
    batches = ArrayBatches(images, labels, 32, 0)
    model.compile(TrainingRecipe(epochs).make_optimizer(epochs * len(batches)),
                  "binary_crossentropy")  # fmt: skip
    with denormals_flushed():
        model.fit(batches, epochs=epochs, class_weight=balanced_class_weight(labels), verbose=2)
    model.save_weights(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data")
    parser.add_argument("--cv", type=int, default=5)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--neighbors", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=1, help="average this many CNNs a fold")
    parser.add_argument("--mixup", type=float, default=0.0, help="mixup's Beta parameter")
    parser.add_argument("--no-tta", action="store_true")
    parser.add_argument("--five-blocks", action="store_true", help="a fifth block (wider view)")
    parser.add_argument("--brain-mask", action="store_true", help="blank all but the brain")
    parser.add_argument("--pretrain-phantom", type=int, default=0, metavar="N_SCANS")
    parser.add_argument("--pretrain-epochs", type=int, default=5)
    parser.add_argument("--pretrain-contrastive", type=int, default=0, metavar="EPOCHS",
                        help="SimCLR on each fold's training slices first")  # fmt: skip
    args = parser.parse_args()

    dataset = scans.load(args.data)
    table = dataset.table[dataset.table["label"].notna()]
    images = prepared(dataset, args.size, args.neighbors, args.brain_mask)[
        [dataset.table.index.get_loc(row) for row in table.index]
    ]
    y, patients = table["label"].astype(int).to_numpy(), table["patient_id"].to_numpy()
    weights = None
    if args.pretrain_phantom:
        weights = phantom_weights(
            args.pretrain_phantom, args.size, args.neighbors, args.pretrain_epochs,
            "phantom-pretrained.weights.h5",
        )  # fmt: skip
    recipe = TrainingRecipe(args.epochs, mixup=args.mixup)
    aucs, pooled, start = [], np.zeros(len(y)), time.time()
    for fold, (train, test) in enumerate(scans.grouped_kfold(patients, y, args.cv, random_state=0)):
        probability = np.zeros(len(test))
        for seed in range(args.seeds):  # the CNNs of several seeds, averaged
            model = build_classifier(
                "smallcnn", images.shape[1:], seed=fold + 1000 * seed, weights=weights,
                backbone=five_block_cnn if args.five_blocks else None,
            )  # fmt: skip
            if args.pretrain_contrastive:  # the fold's training slices only, unlabelled
                unlabelled = ArrayBatches(images[train], y[train], 32, fold, augment=False)
                pretrain_contrastive(model, unlabelled, epochs=args.pretrain_contrastive,
                                     seed=fold + 1000 * seed)  # fmt: skip
            train_classifier(model, ArrayBatches(images[train], y[train], 16, fold + 1000 * seed),
                             recipe=recipe, seed=fold + 1000 * seed, verbose=0)  # fmt: skip
            with denormals_flushed():
                views = [images[test]] if args.no_tta else [images[test], images[test][:, :, ::-1]]
                probability += (
                    np.mean([model.predict(view, verbose=0)[:, 0] for view in views], axis=0)
                    / args.seeds
                )
        pooled[test] = probability
        aucs.append(roc_auc_score(y[test], probability))
        print(f"fold {fold}: AUC {aucs[-1]:.3f} ({time.time() - start:.0f} s)", flush=True)
    low, high = bootstrap_ci(y, pooled, patients, auc_or_nan, random_state=0)
    print(f"{vars(args)}\nfold mean {np.mean(aucs):.3f} (sd {np.std(aucs, ddof=1):.3f}); "
          f"pooled {roc_auc_score(y, pooled):.3f} ({low:.3f}-{high:.3f}); "
          f"n = {len(np.unique(patients))} patients, {len(y)} slices, {y.sum()} positive; "
          f"{time.time() - start:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
