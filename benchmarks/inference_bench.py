"""How fast does each CNN head classify a slice, in float32 and int8, on each engine?

For every head, in one run:

1. **Train** it from scratch on two thirds of the patients of ``--data`` (CT-ICH when
   ``../shared/data/ct-ich-dev`` is there, else a phantom data set written for the
   run), at ``--train-size`` px, ``--epochs`` passes with the run's recipe, so that
   the AUC comparison below is on a model that has learnt (speed does not depend on
   the weights; the int8 error does: a head near chance ranks slices by noise that
   int8 rounding reorders).
2. **Export** it to ONNX (``ichkit.deep.export.export_onnx``) and quantize it statically
   to int8 (``quantize_static_int8``: QDQ, per-channel weights, calibrated on training
   patients' slices only).
3. **AUC drop**: float32 (ONNX Runtime) against int8 on every installed engine (ONNX
   Runtime, OpenVINO) on held-out patients' slices, at the size the head was trained
   at (``compare_engines``); an int8 engine counts only if the drop is under 0.005.
4. **Latency** at ``--size`` (224, the seed paper's): the same weights built at that
   size, batch 1, median of ``--repeats`` calls, through Keras (torch backend), ONNX
   Runtime float32 and int8 on each engine; and throughput at the best of
   ``--batch-sizes``. Every engine gets ``--threads`` intra-op threads (default: one
   per core).

The seed paper's targets per slice: MobileNet 12 ms, ResNet50 28 ms, VGG16 45 ms.
Prints Markdown, or with ``--json`` one JSON object per head (keys ``head``,
``keras_ms``, ``ort_fp32_ms``, ``int8_ms``, ``int8_engine``, ``auc_drop``, and more).

Run from the repository root (about 20 minutes on 2 cores, most of it training)::

    .venv/bin/python benchmarks/inference_bench.py
    .venv/bin/python benchmarks/inference_bench.py --json --heads mobilenet resnet50 vgg16
    .venv/bin/python benchmarks/inference_bench.py --data path/to/your/data  # any layout
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from ichkit.deep.backbones import HEADS, build_classifier  # noqa: E402
from ichkit.deep.data import SliceBatches, prepare_images  # noqa: E402
from ichkit.deep.export import (  # noqa: E402
    calibration_subset,
    compare_engines,
    export_onnx,
    quantize_static_int8,
)
from ichkit.deep.inference import OnnxClassifier, median_latency_ms  # noqa: E402
from ichkit.deep.training import train_classifier  # noqa: E402
from ichkit.experiments.config import DEFAULT_CONFIG  # noqa: E402
from ichkit.experiments.families.cnn import training_recipe  # noqa: E402
from ichkit.scans.transforms import RandomAugment  # noqa: E402

TARGETS_MS = {"mobilenet": 12.0, "resnet50": 28.0, "vgg16": 45.0}
DEFAULT_DATA = "../shared/data/ct-ich-dev"
PHANTOM_SCANS = 40
#: Training slices prepared at the latency size: they calibrate the int8 model built at
#: that size, batch 1 reads the first, throughput batches of up to 32 the rest.
N_LATENCY_SLICES = 32


def load_data(path: str, folder: Path):
    """The data set to train and score on, and what it is: ``path``, or when that is
    absent a phantom data set of ``PHANTOM_SCANS`` patients written under ``folder``."""
    from ichkit import scans
    from ichkit.scans.phantom import write_phantom

    if Path(path).is_dir():
        return scans.load(path), path
    phantom = write_phantom(folder / "phantom", PHANTOM_SCANS, size=160, n_slices=24)
    return scans.load(phantom), f"phantom ({PHANTOM_SCANS} scans; {path} not found)"


def held_out_patients(labels, groups, share: float = 1 / 3, seed: int = 0) -> np.ndarray:
    """A mask of the slices of about ``share`` of the patients, positives and negatives
    alike (a patient is positive if any slice is)."""
    rng = np.random.default_rng(seed)
    patients = np.unique(groups)
    positive = np.array([labels[groups == p].max() > 0 for p in patients])
    chosen = []
    for kind in (True, False):
        members = rng.permutation(patients[positive == kind])
        chosen += list(members[: max(1, round(share * len(members)))])
    return np.isin(groups, chosen)


def throughput(predict, images: np.ndarray, batch_sizes) -> tuple[float, int]:
    """The best slices per second over ``batch_sizes``, and the batch size that gave it."""
    best = (0.0, 1)
    for size in batch_sizes:
        batch = images[np.arange(size) % len(images)]
        predict(batch)
        start, rounds = time.perf_counter(), max(1, 32 // size)
        for _ in range(rounds):
            predict(batch)
        best = max(best, (rounds * size / (time.perf_counter() - start), size))
    return best


def bench_head(name, dataset, rows, images, labels, held_out, args, folder: Path) -> dict:
    """Train, export, quantize and time one head; its row of the results."""
    small, large = args.train_size, args.size
    train = ~held_out
    model = build_classifier(name, images[small].shape[1:], seed=0)
    batches = SliceBatches(dataset, rows[train], size=small, augment=RandomAugment(random_state=0),
                           shuffle=True, cache=True)  # fmt: skip
    start = time.perf_counter()
    recipe = training_recipe(DEFAULT_CONFIG["deep"], args.epochs, name)  # the run's recipe
    train_classifier(model, batches, recipe=recipe, verbose=0)
    train_s = time.perf_counter() - start
    weights = folder / f"{name}.weights.h5"
    model.save_weights(weights)

    def exported(size, keras_model, calibration_images):
        shape = (size, size, keras_model.input_shape[-1])
        float_path = export_onnx(keras_model, folder / f"{name}_{size}.onnx", input_shape=shape)
        int8_path = quantize_static_int8(
            float_path, folder / f"{name}_{size}.int8.onnx", calibration_images
        )
        return float_path, int8_path

    # AUC drop on held-out patients, at the size the head was trained at
    calibration = calibration_subset(np.flatnonzero(train))
    float_path, int8_path = exported(small, model, images[small][calibration])
    results = compare_engines(float_path, int8_path, images[small][held_out],
                              labels[held_out], n_threads=args.threads)  # fmt: skip
    # latency at the seed paper's size: the same weights, built at that size
    model = build_classifier(name, (large, large, images[large].shape[-1]), weights=weights)
    float_path, int8_path = exported(large, model, images[large])
    one = images[large][:1]

    def keras_call(batch):
        return keras.ops.convert_to_numpy(model(batch, training=False))

    row = {"head": name, "keras_ms": median_latency_ms(keras_call, one, args.repeats)}
    engines = {}
    for result in results:
        classifier = OnnxClassifier(
            float_path if result.precision == "float32" else int8_path,
            engine=result.engine, n_threads=args.threads,
        )  # fmt: skip
        ms = median_latency_ms(classifier.predict_proba, one, args.repeats)
        rate, batch = throughput(classifier.predict_proba, images[large], args.batch_sizes)
        engines[f"{result.engine}_{result.precision}"] = {
            "ms": ms, "slices_per_s": rate, "best_batch": batch,
            "auc": result.auc, "auc_drop": result.auc_drop, "kept": result.kept,
        }  # fmt: skip
    reference = engines["onnxruntime_float32"]
    int8 = {key: value for key, value in engines.items() if key.endswith("_int8")}
    kept = {key: value for key, value in int8.items() if value["kept"]}
    chosen = min(kept or int8, key=lambda key: int8[key]["ms"])
    row.update(
        ort_fp32_ms=reference["ms"],
        int8_ms=int8[chosen]["ms"],
        int8_engine=chosen.removesuffix("_int8"),
        auc_drop=int8[chosen]["auc_drop"],
        int8_kept=bool(kept),
        float_auc=reference["auc"],
        engines=engines,
        train_seconds=train_s,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", nargs="+", default=list(HEADS))
    parser.add_argument("--size", type=int, default=224, help="latency input size")
    parser.add_argument("--train-size", type=int, default=64, help="training and AUC size")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--data", default=DEFAULT_DATA, help="a data set to train and score on")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", action="store_true", help="one JSON object per head")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        dataset, source = load_data(args.data, Path(folder))
        labelled = np.flatnonzero(np.isfinite(dataset.labels))
        labels = dataset.labels[labelled].astype(int)
        groups = np.asarray(dataset.groups)[labelled]
        held_out = held_out_patients(labels, groups)
        # At the latency size, training slices only: they calibrate that model too.
        latency_rows = labelled[~held_out][:: max(1, (~held_out).sum() // N_LATENCY_SLICES)]
        images = {
            args.train_size: prepare_images(dataset, labelled, size=args.train_size),
            args.size: prepare_images(dataset, latency_rows[:N_LATENCY_SLICES], size=args.size),
        }
        for name in args.heads:
            rows.append(
                bench_head(name, dataset, labelled, images, labels, held_out, args, Path(folder))
            )
            print(f"{name}: done", file=sys.stderr, flush=True)
    context = {
        "data": source, "train_patients": int(np.unique(groups[~held_out]).size),
        "held_out_patients": int(np.unique(groups[held_out]).size),
        "held_out_slices": int(held_out.sum()), "threads": args.threads,
        "cpus": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2),
    }  # fmt: skip
    if args.json:
        for row in rows:
            print(json.dumps({**row, **context}))
        return
    print(
        f"\n{args.size}x{args.size}, batch 1 median of {args.repeats} calls, {args.threads} "
        f"threads; AUC on {context['held_out_slices']} held-out slices of "
        f"{context['held_out_patients']} patients ({source}) at {args.train_size} px, after "
        f"{args.epochs} epochs on {context['train_patients']} patients; load average "
        f"{context['load_average']}\n"
    )
    print("| head | Keras ms | ORT fp32 ms | int8 ms (engine) | fp32 / int8 | int8 slices/s "
          "(batch) | float AUC | int8 AUC drop | target ms |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        int8 = row["engines"][f"{row['int8_engine']}_int8"]
        print(
            f"| {row['head']} | {row['keras_ms']:.1f} | {row['ort_fp32_ms']:.1f} | "
            f"{row['int8_ms']:.1f} ({row['int8_engine']}) | "
            f"{row['ort_fp32_ms'] / row['int8_ms']:.1f}x | {int8['slices_per_s']:.0f} "
            f"({int8['best_batch']}) | {row['float_auc']:.3f} | {row['auc_drop']:+.4f} | "
            f"{TARGETS_MS.get(row['head'], '')} |"
        )
    print("\nEvery engine: | head | engine | ms | slices/s (batch) | AUC drop | kept |")
    for row in rows:
        for key, value in row["engines"].items():
            print(
                f"| {row['head']} | {key} | {value['ms']:.1f} | {value['slices_per_s']:.0f} "
                f"({value['best_batch']}) | {value['auc_drop']:+.4f} | {value['kept']} |"
            )


if __name__ == "__main__":
    main()
