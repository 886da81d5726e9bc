"""Does an LSTM over the CNN's slice logits gain with more patients? A learning curve on
phantom data sets of growing size.

ct-ich-dev has 16 training patients a fold, and there the LSTM and GRU gain 0.005 AUC or
less on their CNN. This script asks what size a gain needs, on data the project makes
itself: for each training size N it draws N phantom scans (ordered, all five subtypes),
trains the small CNN as ``ichkit run`` does (the inner CNN on 80% of the scans, the
recipe's cosine schedule, 2.5-D input, flips at test time), then the LSTM on that CNN's
logits of its training scans, stopped early on the other 20%, exactly as
``experiments.families.sequence`` does. Both are scored on one fixed test set of other
phantom scans, at slice level and at scan level (a scan's score: its highest slice).

Phantom hemorrhages span several neighbouring slices, as real ones do, so the curve
shows what the sequence model can add where it has the data to learn it. It says
nothing about real scans' AUC levels.

Run from the repository root (37 minutes on 2 cores, 19 of them for 256 scans)::

    .venv/bin/python benchmarks/sequence_learning_curve.py --sizes 16 32 64 128 256
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
from deep_recipe_ablation import ArrayBatches  # noqa: E402 - the sibling benchmark
from sklearn.metrics import roc_auc_score  # noqa: E402

from ichkit.deep.backbones import build_classifier  # noqa: E402
from ichkit.deep.data import prepare_slices  # noqa: E402
from ichkit.deep.sequence import (  # noqa: E402
    build_sequence_model,
    fit_sequence_model,
    pad_scans,
    predict_scans,
    predict_slices,
)
from ichkit.deep.training import TrainingRecipe, denormals_flushed, train_classifier  # noqa: E402
from ichkit.ensemble import probability_logits  # noqa: E402
from ichkit.scans._slice import SliceImage  # noqa: E402
from ichkit.scans.phantom import make_phantom_scans  # noqa: E402


def phantom_slices(n_scans: int, seed: int, size: int, neighbors: int):
    """Prepared slices (three-window stacks, 2.5-D), labels, scan ids and slice order."""
    images, labels, scan_ids, order = [], [], [], []
    for scan_id, scan in enumerate(make_phantom_scans(n_scans, seed=seed)):
        planes = [SliceImage(plane.astype(np.float32), hounsfield=True) for plane in scan.hu]
        images.append(prepare_slices(planes, size=size, neighbors=neighbors))
        labels.append(scan.slice_labels)
        scan_ids.append(np.full(len(planes), scan_id))
        order.append(np.arange(len(planes)))
    return tuple(np.concatenate(part) for part in (images, labels, scan_ids, order))


def logits(model, images) -> np.ndarray:
    """The CNN's slice logits, averaged over the image and its mirror (the run's flips)."""
    with denormals_flushed():
        views = [model.predict(view, verbose=0) for view in (images, images[:, :, ::-1])]
    return probability_logits(np.mean(views, axis=0)).astype(np.float32)


def scan_auc(slice_probability, labels, scan_ids) -> float:
    scans = np.unique(scan_ids)
    score = [slice_probability[scan_ids == s].max() for s in scans]
    truth = [labels[scan_ids == s].max() for s in scans]
    return roc_auc_score(truth, score)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--test-scans", type=int, default=64)
    parser.add_argument("--size", type=int, default=128, help="CNN input side, pixels")
    parser.add_argument("--neighbors", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()

    test_images, test_y, test_scans, test_order = phantom_slices(
        args.test_scans, 2, args.size, args.neighbors
    )
    print("training scans | slice AUC: CNN, LSTM | scan AUC: CNN, LSTM | seconds")
    for n_scans in args.sizes:
        start = time.time()
        images, y, scan_ids, order = phantom_slices(n_scans, 1, args.size, args.neighbors)
        validation = np.isin(scan_ids, np.arange(n_scans)[-max(1, n_scans // 5) :])
        cnn = build_classifier("smallcnn", images.shape[1:], seed=0)
        train_classifier(cnn, ArrayBatches(images[~validation], y[~validation], 16, 0),
                         recipe=TrainingRecipe(args.epochs), seed=0, verbose=0)  # fmt: skip
        batches = {
            part: pad_scans(logits(cnn, images[rows]), scan_ids[rows], order[rows], y[rows])
            for part, rows in (("train", ~validation), ("validation", validation))
        }
        lstm = build_sequence_model("lstm", 1, units=16, residual=True, seed=0)
        fit_sequence_model(
            lstm, batches["train"], validation=batches["validation"],
            epochs=50, batch_size=4, learning_rate=1e-2, seed=0, patience=8,
        )  # fmt: skip
        test_logits = logits(cnn, test_images)
        test = pad_scans(test_logits, test_scans, test_order, test_y)
        cnn_probability = 1 / (1 + np.exp(-test_logits[:, 0]))
        lstm_probability = predict_slices(lstm, test)
        lstm_scans = predict_scans(lstm, test)
        print(
            f"{n_scans} | {roc_auc_score(test_y, cnn_probability):.3f}, "
            f"{roc_auc_score(test_y, lstm_probability):.3f} | "
            f"{scan_auc(cnn_probability, test_y, test_scans):.3f}, "
            f"{roc_auc_score(test.scan_labels(), lstm_scans):.3f} | {time.time() - start:.0f}",
            flush=True,
        )
    print(f"test: {args.test_scans} phantom scans, {len(test_y)} slices, "
          f"{int(test_y.sum())} positive; {vars(args)}")  # fmt: skip


if __name__ == "__main__":
    main()
