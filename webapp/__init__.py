"""The web app: upload a head CT slice or scan, get the verdict, probability and Grad-CAM.

``ichkit serve RUN_DIR`` serves the models of a finished ``ichkit run``; ``create_app``
builds the Flask app for tests or another WSGI server. Research software, not a
medical device.
"""

from ichkit.webapp.app import (
    CHANNEL_TIMEOUT_S,
    CONNECTION_LIMIT,
    DISCLAIMER,
    create_app,
    make_server,
    serve,
)
from ichkit.webapp.served_run import ServedModel, ServedRun
from ichkit.webapp.uploads import (
    Upload,
    UploadError,
    UploadLimits,
    read_upload,
    without_server_paths,
)

__all__ = [
    "CHANNEL_TIMEOUT_S",
    "CONNECTION_LIMIT",
    "DISCLAIMER",
    "ServedModel",
    "ServedRun",
    "Upload",
    "UploadError",
    "UploadLimits",
    "create_app",
    "make_server",
    "read_upload",
    "serve",
    "without_server_paths",
]
