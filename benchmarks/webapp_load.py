"""Latency of the web app under concurrent prediction requests, on loopback only.

Serves RUN_DIR with waitress in this process, with the settings ``ichkit serve`` uses
(or targets ``--url``, which must be a loopback address), sends ``--requests`` uploads
of one file, ``--concurrency`` at a time (all at once by default), and prints the
median and 95th-percentile latency, requests per second and the errors (5xx counted
apart)::

    python benchmarks/webapp_load.py runs/demo/run --image runs/demo/phantom/head_ct/012.png
    python benchmarks/webapp_load.py --url http://127.0.0.1:8000 --image IMG --requests 200

``--slow-clients N`` first opens N connections that start a request and never finish
it: half send its headers one byte every ``--slow-interval`` seconds, half send nothing
more. They stay connected while the valid requests are measured; the answer says how
many of them the server had closed by the end (idle ones after its channel timeout).
"""

from __future__ import annotations

import argparse
import io
import json
import select
import socket
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


def run_load(url: str, image: Path, n_requests: int, concurrency: int | None, fields: dict) -> dict:
    """Send ``n_requests`` uploads of ``image``, ``concurrency`` at a time (all at once
    when None), after one warm-up request; returns the latencies and errors."""
    content = image.read_bytes()
    predict(url, content, image.name, fields)  # warm: models loaded, ONNX exported
    concurrency = concurrency or n_requests
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
        "errors_5xx": sum(status >= 500 for status, _ in results),
        "median_ms": statistics.median(latencies),
        "p95_ms": latencies[max(0, round(0.95 * len(latencies)) - 1)],
        "max_ms": latencies[-1],
        "wall_s": wall,
        "requests_per_s": n_requests / wall,
    }


class SlowClients:
    """``n_clients`` connections to ``url`` that start a request and never finish it.

    Even-numbered clients send the request's headers one byte every ``interval``
    seconds (a slow-loris client); odd-numbered ones send the first bytes and then
    nothing (an idle one). ``closed_by_server()`` counts those the server has closed.
    """

    _REQUEST = (
        b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow-client\r\n"
        b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 1000000\r\n"
    )

    def __init__(self, url: str, n_clients: int, interval: float = 1.0):
        parsed = urllib.parse.urlparse(url)
        self.address = (parsed.hostname, parsed.port)
        self.n_clients = n_clients
        self.interval = interval
        self.sockets: list[socket.socket] = []
        self._stop = threading.Event()
        self._closed: set[int] = set()

    def __enter__(self) -> SlowClients:
        for _ in range(self.n_clients):
            connection = socket.create_connection(self.address, timeout=10)
            connection.sendall(self._REQUEST[:12])
            self.sockets.append(connection)
        threading.Thread(target=self._trickle, name="slow-clients", daemon=True).start()
        return self

    def _trickle(self) -> None:
        # After the request's own headers, more header lines: a request that never ends.
        stream = self._REQUEST + b"X-Slow: 1\r\n" * 100_000
        position = 12
        while not self._stop.wait(self.interval) and position < len(stream):
            byte = stream[position : position + 1]
            for index, connection in enumerate(self.sockets[::2]):
                if 2 * index in self._closed:
                    continue
                try:
                    connection.sendall(byte)
                except OSError:
                    self._closed.add(2 * index)
            position += 1

    def closed_by_server(self) -> int:
        """How many of the connections the server has closed so far."""
        for index, connection in enumerate(self.sockets):
            if index in self._closed:
                continue
            readable, _, _ = select.select([connection], [], [], 0)
            if readable:
                try:
                    if connection.recv(4096) == b"":
                        self._closed.add(index)
                except OSError:
                    self._closed.add(index)
        return len(self._closed)

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        for connection in self.sockets:
            connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", help="run folder to serve in this process")
    parser.add_argument("--url", help="an already running server on loopback instead")
    parser.add_argument("--image", required=True, type=Path, help="file to upload")
    parser.add_argument("--requests", type=int, default=50, help="valid requests sent")
    parser.add_argument(
        "--concurrency", type=int, help="requests in flight at once (default: all of them)"
    )
    parser.add_argument("--model", default="", help="model to ask for (the run's default)")
    parser.add_argument("--heatmaps", type=int, default=3, help="Grad-CAM maps per answer")
    parser.add_argument("--threads", type=int, default=8, help="waitress threads")
    parser.add_argument(
        "--slow-clients", type=int, default=0, help="connections that never finish a request"
    )
    parser.add_argument(
        "--slow-interval", type=float, default=1.0, help="seconds between a slow client's bytes"
    )
    parser.add_argument("--channel-timeout", type=int, help="waitress's, when serving RUN_DIR")
    parser.add_argument("--connection-limit", type=int, help="waitress's, when serving RUN_DIR")
    arguments = parser.parse_args()
    fields = {"model": arguments.model, "heatmaps": str(arguments.heatmaps)}

    server = None
    if arguments.url:
        if urllib.parse.urlparse(arguments.url).hostname not in _LOOPBACK:
            parser.error("--url must be a loopback address (127.0.0.1, localhost, ::1)")
        url = arguments.url.rstrip("/")
    elif arguments.run_dir:
        from ichkit.webapp import create_app
        from ichkit.webapp.app import make_server

        limits = {
            name: value
            for name in ("channel_timeout", "connection_limit")
            if (value := getattr(arguments, name)) is not None
        }
        server = make_server(
            create_app(arguments.run_dir),
            host="127.0.0.1",
            port=0,
            threads=arguments.threads,
            **limits,
        )
        threading.Thread(target=server.run, daemon=True).start()
        url = f"http://127.0.0.1:{server.effective_port}"
    else:
        parser.error("give RUN_DIR or --url")
    slow = {}
    try:
        with SlowClients(url, arguments.slow_clients, arguments.slow_interval) as clients:
            result = run_load(
                url, arguments.image, arguments.requests, arguments.concurrency, fields
            )
            if arguments.slow_clients:
                slow = {
                    "slow_clients": arguments.slow_clients,
                    "slow_clients_closed_by_server": clients.closed_by_server(),
                }
    finally:
        if server is not None:
            server.close()
    print(
        json.dumps(
            {
                **result,
                **slow,
                "model": arguments.model or "default",
                "heatmaps": arguments.heatmaps,
                "threads": arguments.threads if server is not None else "the server's",
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
