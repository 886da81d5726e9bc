"""``ichkit serve``: explains itself without a run, refuses a folder that is not one,
answers on loopback when given one, and sets its limits for slow and idle clients."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from ichkit.cli import main


def test_without_a_run_it_says_how_to_make_one(capsys):
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "ichkit run quick" in err and "ichkit serve" in err


def test_a_folder_that_is_no_run_is_a_message(tmp_path, capsys):
    assert main(["serve", str(tmp_path)]) == 2
    assert "is not a finished run folder" in capsys.readouterr().err


def test_serves_the_run_on_loopback(run_dir):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "ichkit", "serve", str(run_dir), "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, models = time.monotonic() + 120, None
        while models is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/models") as response:
                    models = json.loads(response.read())
            except OSError:
                time.sleep(0.5)
        assert models is not None, server.stdout.read() if server.poll() is not None else ""
        assert {m["name"] for m in models["models"]} == {"logreg", "smallcnn", "lstm", "voting"}
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert f"http://127.0.0.1:{port}/" in output and "not a medical device" in output


def test_server_limits_for_slow_and_idle_clients_are_set(app):
    from ichkit.webapp.app import CHANNEL_TIMEOUT_S, CONNECTION_LIMIT, make_server

    server = make_server(app, port=0)
    try:
        settings = server.adj
        assert settings.channel_timeout == CHANNEL_TIMEOUT_S == 30
        assert settings.connection_limit == CONNECTION_LIMIT == 400
        assert settings.cleanup_interval == 5 and settings.asyncore_use_poll
    finally:
        server.close()
    server = make_server(app, port=0, channel_timeout=3, connection_limit=20)
    try:
        assert (server.adj.channel_timeout, server.adj.connection_limit) == (3, 20)
        assert server.adj.cleanup_interval == 1
    finally:
        server.close()
    with pytest.raises(ValueError, match="'channel_timeout' parameter of make_server"):
        make_server(app, port=0, channel_timeout=0)


def test_serve_flags_reach_the_server(monkeypatch):
    import ichkit.webapp

    calls = []
    monkeypatch.setattr(ichkit.webapp, "serve", lambda run_dir, **kw: calls.append(kw))
    assert main(["serve", "runs/x", "--channel-timeout", "10", "--connection-limit", "50"]) == 0
    assert main(["serve", "runs/x"]) == 0
    assert calls[0]["channel_timeout"] == 10 and calls[0]["connection_limit"] == 50
    assert "channel_timeout" not in calls[1]  # serve()'s own defaults apply
