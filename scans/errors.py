"""Errors raised by the scan readers and data set loaders."""

from __future__ import annotations

__all__ = ["ScanReadError", "DatasetError"]


class ScanReadError(ValueError):
    """A file could not be read as a slice; ``path`` and ``reason`` say which and why.

    Loaders catch it, list the file among ``ScanDataset.skipped`` and go on with the
    rest, unless ``strict=True``.
    """

    def __init__(self, path: object, reason: str, hint: str | None = None):
        self.path = str(path)
        self.reason = reason
        self.hint = hint
        message = f"Cannot read '{self.path}': {reason}."
        if hint:
            message += f" {hint}"
        super().__init__(message)


class DatasetError(ValueError):
    """A data set as a whole cannot be used: empty, one class only, labels that do not match."""
