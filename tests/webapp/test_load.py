"""Small load tests on loopback: 50 concurrent prediction requests without errors, valid
requests answered while 100 slow clients hold connections, idle sockets closed.

``benchmarks/webapp_load.py`` measures the latencies on a real run."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from werkzeug.datastructures import FileStorage
from werkzeug.test import encode_multipart

#: Seconds within which each valid request must be answered while slow clients hold
#: connections (one such request takes well under a second on the tiny test run).
VALID_REQUEST_BOUND_S = 30


def _predict(url: str, content: bytes, name: str) -> tuple[int, dict]:
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


@pytest.fixture
def serve_app(app):
    """Start ``app`` behind ``make_server`` (the settings ``ichkit serve`` uses) on a free
    loopback port; yields a function of the server's settings that returns its URL."""
    from ichkit.webapp.app import make_server

    servers = []

    def start(**settings) -> str:
        server = make_server(app, host="127.0.0.1", port=0, **settings)
        threading.Thread(target=server.run, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.effective_port}"

    yield start
    for server in servers:
        server.close()


def _slow_clients(url: str, n_clients: int, stop: threading.Event) -> list[socket.socket]:
    """``n_clients`` connections that start a request and then send its headers one byte
    every half second (half of them) or nothing at all (the other half)."""
    port = int(url.rsplit(":", 1)[1])
    request = b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n"
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(n_clients)]
    for sock in sockets:
        sock.sendall(request[:10])

    def trickle() -> None:
        position = 10
        while not stop.wait(0.5) and position < len(request):
            for sock in sockets[::2]:
                try:
                    sock.sendall(request[position : position + 1])
                except OSError:
                    pass
            position += 1

    threading.Thread(target=trickle, daemon=True).start()
    return sockets


def test_valid_requests_are_answered_while_100_slow_clients_are_connected(
    serve_app, hemorrhage_slice
):
    url = serve_app()
    stop = threading.Event()
    sockets = _slow_clients(url, 100, stop)
    try:
        time.sleep(1)  # the slow clients hold their connections first
        content = hemorrhage_slice.read_bytes()

        def timed_predict(_) -> tuple[int, float]:
            start = time.perf_counter()
            status, _ = _predict(url, content, hemorrhage_slice.name)
            return status, time.perf_counter() - start

        with ThreadPoolExecutor(max_workers=10) as pool:
            results = list(pool.map(timed_predict, range(20)))
    finally:
        stop.set()
        for sock in sockets:
            sock.close()
    assert [status for status, _ in results] == [200] * 20
    assert max(seconds for _, seconds in results) < VALID_REQUEST_BOUND_S


def test_idle_connections_are_closed_after_the_channel_timeout(serve_app):
    url = serve_app(channel_timeout=2)
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=15) as idle:
        start = time.perf_counter()
        idle.sendall(b"GET /api/models HTTP/1.1\r\n")  # a request that never ends
        assert idle.recv(1024) == b""  # closed by the server, not answered
        closed_after = time.perf_counter() - start
    assert 2 <= closed_after < 2 + 5  # the timeout, plus at most one cleanup interval
