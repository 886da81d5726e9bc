"""A small load test on loopback: 50 concurrent prediction requests, no errors.

``benchmarks/webapp_load.py`` measures the latencies on a real run."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart


def _predict(url: str, content: bytes, name: str) -> tuple[int, dict]:
    import io

    boundary, body = encode_multipart(
        {"file": FileStorage(io.BytesIO(content), filename=name), "model": "smallcnn"}
    )
    request = urllib.request.Request(
        url + "/api/predict",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status, json.loads(response.read())


def test_fifty_concurrent_predictions_all_succeed(live_server, hemorrhage_slice):
    content = hemorrhage_slice.read_bytes()
    with ThreadPoolExecutor(max_workers=50) as pool:
        futures = [
            pool.submit(_predict, live_server, content, hemorrhage_slice.name) for _ in range(50)
        ]
        results = [future.result() for future in futures]
    assert [status for status, _ in results] == [200] * 50
    probabilities = {round(answer["probability"], 6) for _, answer in results}
    assert len(probabilities) == 1  # concurrent requests do not disturb each other
