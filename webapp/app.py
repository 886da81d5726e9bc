"""The Flask app: an upload page and a JSON API over the models of one finished run.

Routes: ``GET /`` (the page), ``POST /`` (the page with a verdict), ``GET /api/models``,
``POST /api/predict`` (form field ``file``; optional ``model``, ``heatmaps`` and
``target``, the output Grad-CAM explains). Every
upload is saved into its own temporary folder, read by content (``ichkit.webapp.uploads``) and
removed when the request ends, with anything the readers cached about it. Bad input gets a
4xx with a message that names the file as the client called it, never a server path or a
trace. ``serve`` runs the app under waitress with timeouts for slow and idle clients.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import time
from pathlib import Path

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ichkit.scans.validation import check_int
from ichkit.webapp.served_run import ServedRun
from ichkit.webapp.uploads import UploadError, UploadLimits, read_upload, without_server_paths

__all__ = [
    "CHANNEL_TIMEOUT_S",
    "CONNECTION_LIMIT",
    "DISCLAIMER",
    "create_app",
    "make_server",
    "serve",
]

log = logging.getLogger(__name__)

DISCLAIMER = (
    "Research software, not a medical device: not for diagnosis or treatment decisions. "
    "Its models were trained and measured on the data of one run; read their verdicts "
    "with the run's report."
)
_MAX_HEATMAPS = 8
#: Seconds a connection with no request in progress may stay silent before waitress
#: closes it: idle keep-alive sockets and clients that stop mid-request are recycled
#: within a minute, while a slow link still has 30 s to send its next bytes. A request
#: being answered is never cut (waitress times out only channels without one).
CHANNEL_TIMEOUT_S = 30
#: Connections held open at once. Waitress reads requests in its event loop and hands
#: only complete ones to its threads, so a slow client costs a connection, not a
#: thread: 400 leaves room for the 200 concurrent requests and 100 slow clients of the
#: load figure in the README, stays under the usual 1024 open-file limit with room for
#: the files requests open, and bounds the in-memory request buffers (at most 512 KB
#: each; larger bodies spool to disk) at about 200 MB. Beyond it, new connections wait
#: in the listen backlog rather than being refused.
CONNECTION_LIMIT = 400


def create_app(
    run: str | Path | ServedRun,
    *,
    max_upload_mb: float = 200,
    limits: UploadLimits | None = None,
    upload_dir: str | Path | None = None,
) -> Flask:
    """A Flask app serving the models of ``run`` (a run folder or a loaded ``ServedRun``).

    Parameters
    ----------
    run : path or ServedRun
        The folder ``ichkit run`` wrote.
    max_upload_mb : float, default=200
        Largest request accepted (Flask's ``MAX_CONTENT_LENGTH``); larger get a 413.
    limits : UploadLimits, default=None
        What an upload may hold once read (pixels, slices, unzipped bytes).
    upload_dir : path, default=None
        Where the per-request temporary folders go (the system's temporary folder).
    """
    served = run if isinstance(run, ServedRun) else ServedRun(run)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 1024 * 1024)
    app.extensions["ichkit"] = served
    limits = limits or UploadLimits()

    def predict_upload() -> dict:
        """Read the request's upload and predict; raises UploadError for bad input."""
        storage = request.files.get("file")
        if storage is None and len(request.files) == 1:
            storage = next(iter(request.files.values()))
        if storage is None:
            raise UploadError(400, "No file uploaded: send it as the form field 'file'.")
        filename = Path(storage.filename or "upload").name[:200] or "upload"
        heatmaps = _heatmap_count(request.form.get("heatmaps", "3"))
        target = request.form.get("target") or "any"
        chosen = request.form.get("model") or None
        if chosen is not None and chosen not in served.models:
            raise UploadError(
                400, f"Unknown model '{chosen}'. This run serves: {', '.join(served.models)}."
            )
        start = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory(prefix="ichkit-upload-", dir=upload_dir) as folder:
                try:
                    answer = predict_saved(
                        storage, Path(folder), filename, chosen, heatmaps, target
                    )
                except UploadError as error:
                    public = without_server_paths(str(error), folder, filename)
                    raise UploadError(error.status, public) from None
                for key in ("notes", "skipped"):
                    if key in answer:
                        answer[key] = [
                            without_server_paths(text, folder, filename) for text in answer[key]
                        ]
        finally:
            _release_request_memory()
        answer["timing_ms"]["total"] = (time.perf_counter() - start) * 1000
        answer["disclaimer"] = DISCLAIMER
        return answer

    def predict_saved(storage, folder: Path, filename: str, chosen, heatmaps: int,
                      target: str) -> dict:  # fmt: skip
        """Save the upload into ``folder``, read it and predict."""
        start = time.perf_counter()
        path = folder.resolve() / "upload"
        storage.save(path)
        upload = read_upload(path, filename, limits)
        read_ms = (time.perf_counter() - start) * 1000
        name = chosen or served.defaults[upload.kind]
        answer = served.predict(name, upload, heatmaps=heatmaps, heatmap_target=target)
        answer["timing_ms"]["read"] = read_ms
        return answer

    def page(answer=None, error=None, status=200):
        html = render_template(
            "index.html",
            run=served.describe(),
            answer=answer,
            error=error,
            disclaimer=DISCLAIMER,
            chosen=request.form.get("model", ""),
        )
        return html, status

    @app.get("/")
    def index():
        return page()

    @app.post("/")
    def index_predict():
        try:
            return page(answer=predict_upload())
        except UploadError as error:
            return page(error=str(error), status=error.status)

    @app.get("/api/models")
    def api_models():
        return jsonify(served.describe())

    @app.post("/api/predict")
    def api_predict():
        try:
            return jsonify(predict_upload())
        except UploadError as error:
            return jsonify(error=str(error), status=error.status), error.status

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error):
        limit = app.config["MAX_CONTENT_LENGTH"] / 1024 / 1024
        message = (
            f"Upload larger than {limit:g} MB, the server's limit (ichkit serve --max-upload-mb)."
        )
        return _error_answer(message, 413)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return _error_answer(error.description or error.name, error.code or 500)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("Unexpected error on %s", request.path)
        return _error_answer("Internal error while answering; the server log has details.", 500)

    def _error_answer(message: str, status: int):
        if request.path.startswith("/api/"):
            return jsonify(error=message, status=status), status
        return page(error=message, status=status)

    return app


def _release_request_memory() -> None:
    """Let go of what a request read: the volume the NIfTI reader cached (read from the
    request's temporary folder, gone once it ends, so no cache may outlive it), and the
    freed memory the C allocator would otherwise keep for the thread.

    Why ``malloc_trim`` by hand: glibc gives each waitress thread its own arena, and a
    scan's slices (about 1 MB each) are freed back into it, not to the system; across
    eight threads that kept about 100 MB per thread after large volumes (measured by
    ``tests/webapp/test_memory.py``). Python has no call for it; it is skipped where the
    C library has none (musl, macOS).
    """
    from ichkit.scans import nifti

    clear_volume_cache = getattr(nifti, "clear_volume_cache", None)
    if clear_volume_cache is not None:
        clear_volume_cache()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none."""
    import ctypes

    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return None


def _heatmap_count(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        message = f"'heatmaps' must be an integer 0-{_MAX_HEATMAPS}, got {value!r}."
        raise UploadError(400, message) from None
    if not 0 <= count <= _MAX_HEATMAPS:
        raise UploadError(400, f"'heatmaps' must be between 0 and {_MAX_HEATMAPS}, got {count}.")
    return count


def make_server(
    app: Flask,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    threads: int = 8,
    channel_timeout: int = CHANNEL_TIMEOUT_S,
    connection_limit: int = CONNECTION_LIMIT,
):
    """A waitress server for ``app`` with deliberate limits for slow and idle clients.

    Parameters
    ----------
    app : Flask
        The app ``create_app`` made.
    host : str, default="127.0.0.1"
        Address to listen on.
    port : int, default=8000
        Port to listen on; 0 picks a free one (``server.effective_port``).
    threads : int, default=8
        Requests answered at once; more wait in waitress's queue.
    channel_timeout : int, default=CHANNEL_TIMEOUT_S (30)
        Seconds a connection with no request in progress may stay silent before it is
        closed. Checked every ``min(5, channel_timeout // 2)`` seconds (at least 1), so
        an idle socket is closed within ``channel_timeout`` + 5 s.
    connection_limit : int, default=CONNECTION_LIMIT (400)
        Connections held open at once; beyond it new ones wait in the listen backlog.
        Sockets are watched with ``poll``, not ``select``, so more than 1024 work.

    Returns
    -------
    waitress.server.BaseWSGIServer
        Call ``run()`` to serve, ``close()`` to stop.
    """
    from waitress import create_server

    for name, value in (
        ("threads", threads),
        ("channel_timeout", channel_timeout),
        ("connection_limit", connection_limit),
    ):
        check_int(value, name, "make_server", minimum=1)
    return create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        channel_timeout=channel_timeout,
        cleanup_interval=max(1, min(5, channel_timeout // 2)),
        connection_limit=connection_limit,
        asyncore_use_poll=True,
    )


def serve(
    run_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_upload_mb: float = 200,
    threads: int = 8,
    onnx: bool = True,
    channel_timeout: int = CHANNEL_TIMEOUT_S,
    connection_limit: int = CONNECTION_LIMIT,
) -> None:
    """Serve the models of run folder ``run_dir`` with waitress until interrupted
    (``ichkit serve``). Listens on loopback unless ``host`` says otherwise.

    Idle and slow clients: a connection silent for ``channel_timeout`` seconds with no
    request in progress is closed, and at most ``connection_limit`` connections are
    held (see ``make_server``). Waitress reads requests in its event loop, so clients
    that send slowly hold a connection but never one of the ``threads`` answering.
    A client trickling a byte every few seconds is not cut off: on an open network,
    put a reverse proxy with request deadlines in front.
    """
    import sys
    import threading

    logging.basicConfig()  # waitress reports its queue and connection warnings by logging
    served = ServedRun(run_dir, onnx=onnx)
    app = create_app(served, max_upload_mb=max_upload_mb)
    server = make_server(
        app,
        host=host,
        port=port,
        threads=threads,
        channel_timeout=channel_timeout,
        connection_limit=connection_limit,
    )
    threading.Thread(target=served.warm_up, name="warm-up", daemon=True).start()
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"Warning: listening on {host}, not only this machine.", file=sys.stderr)
    print(
        f"Serving {len(served.models)} models of '{run_dir}' ({', '.join(served.models)}) "
        f"at http://{host}:{port}/ (idle connections closed after {channel_timeout} s, "
        f"at most {connection_limit} at once)\n{DISCLAIMER}",
        flush=True,
    )
    try:
        server.run()
    finally:
        server.close()
