"""How fast does each CNN head classify a slice? Keras against ONNX Runtime, one run.

For every head (untrained weights: speed does not depend on them), at 224x224x3:
median latency of one slice (batch 1) over ``--repeats`` calls after a warm-up, and
throughput with batches of ``--batch-size``, through the Keras model call (torch
backend, ``model(x, training=False)``) and through ONNX Runtime on the exported model
(CPU provider, ``--threads`` intra-op threads). The seed paper's targets per slice:
MobileNet 12 ms, ResNet50 28 ms, VGG16 45 ms. Results print as Markdown.

Run from the repository root (a few minutes on 2 cores)::

    .venv/bin/python benchmarks/inference_bench.py
    .venv/bin/python benchmarks/inference_bench.py --heads mobilenet resnet50 --repeats 30
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from ichkit.deep.backbones import HEADS, build_classifier  # noqa: E402
from ichkit.deep.export import export_onnx  # noqa: E402
from ichkit.deep.inference import OnnxClassifier  # noqa: E402

TARGETS_MS = {"mobilenet": 12.0, "resnet50": 28.0, "vgg16": 45.0}


def _median_ms(call, image: np.ndarray, repeats: int) -> float:
    call(image)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(image)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _throughput(call, batch: np.ndarray, rounds: int = 3) -> float:
    call(batch)
    start = time.perf_counter()
    for _ in range(rounds):
        call(batch)
    return rounds * len(batch) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", nargs="+", default=list(HEADS))
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    arguments = parser.parse_args()

    import torch

    torch.set_num_threads(arguments.threads)
    rng = np.random.default_rng(0)
    shape = (arguments.size, arguments.size, 3)
    one = rng.random((1, *shape), dtype=np.float32)
    batch = rng.random((arguments.batch_size, *shape), dtype=np.float32)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in arguments.heads:
            model = build_classifier(name, shape)

            def keras_call(images, model=model):
                return keras.ops.convert_to_numpy(model(images, training=False))

            onnx = OnnxClassifier(
                export_onnx(model, Path(folder) / f"{name}.onnx", input_shape=shape),
                n_threads=arguments.threads,
            )
            keras_ms = _median_ms(keras_call, one, arguments.repeats)
            onnx_ms = _median_ms(onnx.predict_proba, one, arguments.repeats)
            rows.append(
                (
                    name,
                    keras_ms,
                    onnx_ms,
                    _throughput(keras_call, batch),
                    _throughput(onnx.predict_proba, batch),
                    TARGETS_MS.get(name),
                )
            )
            print(f"{name}: done", flush=True)
    print(
        f"\n{arguments.size}x{arguments.size}, batch 1 median of {arguments.repeats} calls, "
        f"throughput with batches of {arguments.batch_size}, {arguments.threads} threads, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}\n"
    )
    print("| head | Keras ms/slice | ONNX Runtime ms/slice | Keras / ORT | Keras slices/s | "
          "ORT slices/s | target ms | met (ORT) |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, keras_ms, onnx_ms, keras_rate, onnx_rate, target in rows:
        met = "" if target is None else ("yes" if onnx_ms <= target else "no")
        print(
            f"| {name} | {keras_ms:.1f} | {onnx_ms:.1f} | {keras_ms / onnx_ms:.1f}x | "
            f"{keras_rate:.1f} | {onnx_rate:.1f} | {target or ''} | {met} |"
        )


if __name__ == "__main__":
    main()
