"""Latency of the web app under concurrent prediction requests, on loopback only.

Serves RUN_DIR with waitress in this process (or targets ``--url``, which must be a
loopback address), sends ``--requests`` uploads of one file, ``--concurrency`` at a
time, and prints the median and 95th-percentile latency and the errors::

    python benchmarks/webapp_load.py runs/demo/run --image runs/demo/phantom/head_ct/012.png
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def predict(url: str, content: bytes, name: str, fields: dict) -> tuple[int, float]:
    """One POST /api/predict; returns (HTTP status, seconds)."""
    boundary, body = encode_multipart(
        {"file": FileStorage(io.BytesIO(content), filename=name), **fields}
    )
    request = urllib.request.Request(
        url + "/api/predict",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    return status, time.perf_counter() - start


def run_load(url: str, image: Path, n_requests: int, concurrency: int, fields: dict) -> dict:
    content = image.read_bytes()
    predict(url, content, image.name, fields)  # warm: models loaded, ONNX exported
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        futures = [
            pool.submit(predict, url, content, image.name, fields) for _ in range(n_requests)
        ]
        results = [future.result() for future in futures]
    wall = time.perf_counter() - start
    latencies = sorted(seconds * 1000 for _, seconds in results)
    return {
        "requests": n_requests,
        "concurrency": concurrency,
        "errors": sum(status != 200 for status, _ in results),
        "median_ms": statistics.median(latencies),
        "p95_ms": latencies[max(0, round(0.95 * len(latencies)) - 1)],
        "max_ms": latencies[-1],
        "wall_s": wall,
        "requests_per_s": n_requests / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", help="run folder to serve in this process")
    parser.add_argument("--url", help="an already running server on loopback instead")
    parser.add_argument("--image", required=True, type=Path, help="file to upload")
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--model", default="", help="model to ask for (the run's default)")
    parser.add_argument("--heatmaps", type=int, default=3, help="Grad-CAM maps per answer")
    parser.add_argument("--threads", type=int, default=8, help="waitress threads")
    arguments = parser.parse_args()
    fields = {"model": arguments.model, "heatmaps": str(arguments.heatmaps)}

    server = None
    if arguments.url:
        if urllib.parse.urlparse(arguments.url).hostname not in _LOOPBACK:
            parser.error("--url must be a loopback address (127.0.0.1, localhost, ::1)")
        url = arguments.url.rstrip("/")
    elif arguments.run_dir:
        from waitress import create_server

        from ichkit.webapp import create_app

        server = create_server(
            create_app(arguments.run_dir), host="127.0.0.1", port=0, threads=arguments.threads
        )
        threading.Thread(target=server.run, daemon=True).start()
        url = f"http://127.0.0.1:{server.effective_port}"
    else:
        parser.error("give RUN_DIR or --url")
    try:
        result = run_load(url, arguments.image, arguments.requests, arguments.concurrency, fields)
    finally:
        if server is not None:
            server.close()
    print(
        json.dumps(
            {
                **result,
                "model": arguments.model or "default",
                "heatmaps": arguments.heatmaps,
                "threads": arguments.threads,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
