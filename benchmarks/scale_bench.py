"""Feature extraction at scale on a local Dask cluster: peak memory and throughput.

Writes a phantom of the largest size once (``--data``), then extracts its features
through ``ichkit.experiments.parallel.compute_backend("dask")`` into a memory-mapped file,
each measurement in a fresh process: over 2,000 and 20,000 slices with 2 workers
(peak memory), and with 1 and 2 workers (throughput). From those it projects the
wall time for the RSNA 2019 set (752,803 slices) on 1, 8 and 64 workers::

    python benchmarks/scale_bench.py --data runs/scale-phantom

Peak memory is each process's maximum resident set (``VmHWM``): the driver's, and
the workers' summed. The results go to stdout as JSON and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RSNA_SLICES = 752_803
SLICES_PER_SCAN = 24


def _peak_rss_mb() -> float:
    """This process's peak resident set: VmHWM, which (unlike getrusage's maxrss,
    kept across exec on Linux) starts afresh in a new program."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status: this benchmark needs Linux")


def measure(data: Path, n_slices: int, n_workers: int, features: dict) -> dict:
    """One measurement, in this process: extraction of the first ``n_slices`` slices."""
    from ichkit import scans
    from ichkit.experiments.parallel import compute_backend
    from ichkit.features.extraction import extract_features

    dataset = scans.load(data, verify=False).subset(range(n_slices))
    with (
        compute_backend("dask", n_workers=n_workers) as client,
        tempfile.TemporaryDirectory() as tmp,
    ):
        start = time.perf_counter()
        frame, skipped = extract_features(dataset, features, n_jobs=-1, progress=False,
                                          out=Path(tmp) / "features.npy")  # fmt: skip
        seconds = time.perf_counter() - start
        assert len(frame) == n_slices and not skipped
        workers = client.run(_peak_rss_mb)
    driver = _peak_rss_mb()
    return {
        "slices": n_slices,
        "workers": n_workers,
        "seconds": seconds,
        "slices_per_s": n_slices / seconds,
        "driver_peak_mb": driver,
        "workers_peak_mb": sum(workers.values()),
        "total_peak_mb": driver + sum(workers.values()),
    }


def _measure_in_new_process(data: Path, n_slices: int, n_workers: int, features: dict) -> dict:
    command = [sys.executable, __file__, "--data", str(data), "--measure",
               f"{n_slices}:{n_workers}", "--features", json.dumps(features)]  # fmt: skip
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def _phantom(data: Path, n_slices: int) -> None:
    """A phantom of at least ``n_slices`` 128-pixel PNG slices, written once."""
    from ichkit.scans.phantom import write_phantom

    if not (data / "labels.csv").is_file():
        write_phantom(data, math.ceil(n_slices / SLICES_PER_SCAN), seed=0, size=128,
                      n_slices=SLICES_PER_SCAN)  # fmt: skip


def project(one_worker: float, two_workers: float) -> list[dict]:
    """RSNA wall time from the measured rates: each doubling of workers keeps the
    efficiency measured from 1 to 2 workers (``efficiency ** log2(workers)``), a
    pessimistic bound where that efficiency came from workers sharing two cores;
    and the linear bound (every worker as fast as one alone)."""
    efficiency = min(1.0, two_workers / (2 * one_worker))
    rows = []
    for workers in (1, 8, 64):
        rate = one_worker * workers * efficiency ** math.log2(workers)
        rows.append({"workers": workers, "efficiency": efficiency ** math.log2(workers),
                     "hours": RSNA_SLICES / rate / 3600,
                     "hours_if_linear": RSNA_SLICES / (one_worker * workers) / 3600})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="phantom folder (made once)")
    parser.add_argument("--sizes", default="2000,20000", help="slice counts for memory")
    parser.add_argument("--features", default='{"size": 128}', help="feature config, JSON")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # "slices:workers", internal
    arguments = parser.parse_args()
    features = json.loads(arguments.features)
    if arguments.measure:
        n_slices, n_workers = map(int, arguments.measure.split(":"))
        print(json.dumps(measure(arguments.data, n_slices, n_workers, features)))
        return

    sizes = [int(size) for size in arguments.sizes.split(",")]
    _phantom(arguments.data, max(sizes))
    runs = [_measure_in_new_process(arguments.data, n, 2, features) for n in sizes]
    runs.append(_measure_in_new_process(arguments.data, max(sizes), 1, features))
    small, large, single = runs[0], runs[-2], runs[-1]
    projection = project(single["slices_per_s"], large["slices_per_s"])
    result = {
        "features": features,
        "runs": runs,
        "memory_ratio": large["total_peak_mb"] / small["total_peak_mb"],
        "rsna_projection": projection,
    }
    print(json.dumps(result, indent=2))
    print("\n| slices | workers | seconds | slices/s | driver peak MB | workers peak MB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for run in runs:
        print(f"| {run['slices']} | {run['workers']} | {run['seconds']:.1f} | "
              f"{run['slices_per_s']:.1f} | {run['driver_peak_mb']:.0f} | "
              f"{run['workers_peak_mb']:.0f} |")  # fmt: skip
    print(f"\npeak memory (driver + workers), {sizes[-1]} vs {sizes[0]} slices: "
          f"x{result['memory_ratio']:.2f}")  # fmt: skip
    for row in projection:
        print(
            f"RSNA ({RSNA_SLICES} slices) on {row['workers']} workers: {row['hours']:.1f} h "
            f"(efficiency {row['efficiency']:.2f}); {row['hours_if_linear']:.2f} h if linear"
        )


if __name__ == "__main__":
    main()
