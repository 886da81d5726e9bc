"""The Flask app: an upload page and a JSON API over the models of one finished run.

Routes: ``GET /`` (the page), ``POST /`` (the page with a verdict), ``GET /api/models``,
``POST /api/predict`` (form field ``file``; optional ``model`` and ``heatmaps``). Every
upload is saved into its own temporary folder, read by content (``ichkit.webapp.uploads``) and
removed when the request ends. Bad input gets a 4xx with a message, never a trace.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from ichkit.webapp.served_run import ServedRun
from ichkit.webapp.uploads import UploadError, UploadLimits, read_upload

__all__ = ["DISCLAIMER", "create_app", "serve"]

log = logging.getLogger(__name__)

DISCLAIMER = (
    "Research software, not a medical device: not for diagnosis or treatment decisions. "
    "Its models were trained and measured on the data of one run; read their verdicts "
    "with the run's report."
)
_MAX_HEATMAPS = 8


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
        chosen = request.form.get("model") or None
        if chosen is not None and chosen not in served.models:
            raise UploadError(
                400, f"Unknown model '{chosen}'. This run serves: {', '.join(served.models)}."
            )
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="ichkit-upload-", dir=upload_dir) as folder:
            path = Path(folder).resolve() / "upload"
            storage.save(path)
            upload = read_upload(path, filename, limits)
            read_ms = (time.perf_counter() - start) * 1000
        name = chosen or served.defaults[upload.kind]
        answer = served.predict(name, upload, heatmaps=heatmaps)
        answer["timing_ms"]["read"] = read_ms
        answer["timing_ms"]["total"] = (time.perf_counter() - start) * 1000
        answer["disclaimer"] = DISCLAIMER
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


def _heatmap_count(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        message = f"'heatmaps' must be an integer 0-{_MAX_HEATMAPS}, got {value!r}."
        raise UploadError(400, message) from None
    if not 0 <= count <= _MAX_HEATMAPS:
        raise UploadError(400, f"'heatmaps' must be between 0 and {_MAX_HEATMAPS}, got {count}.")
    return count


def serve(
    run_dir: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_upload_mb: float = 200,
    threads: int = 8,
    onnx: bool = True,
) -> None:
    """Serve the models of run folder ``run_dir`` with waitress until interrupted
    (``ichkit serve``). Listens on loopback unless ``host`` says otherwise."""
    import sys
    import threading

    import waitress

    served = ServedRun(run_dir, onnx=onnx)
    app = create_app(served, max_upload_mb=max_upload_mb)
    threading.Thread(target=served.warm_up, name="warm-up", daemon=True).start()
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"Warning: listening on {host}, not only this machine.", file=sys.stderr)
    print(
        f"Serving {len(served.models)} models of '{run_dir}' ({', '.join(served.models)}) "
        f"at http://{host}:{port}/\n{DISCLAIMER}",
        flush=True,
    )
    waitress.serve(app, host=host, port=port, threads=threads)
