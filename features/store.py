"""Slice features and embeddings on disk in Parquet chunks, keyed by content and config.

A data set's slices are described in chunks of consecutive rows. Each chunk's
features go to one Parquet file (a row per slice: its content digest, then one
float32 column per feature), named by the digest of the config and of the chunk's
slices. A second run of the same data finds every chunk and computes nothing; a
changed file or config changes the name and is computed again.

Why not ``joblib.Memory`` per slice (ichkit's cache before issue 7): it writes a folder
per slice, about 750,000 for RSNA, and its lookups cost a file system call each.
A chunk file holds hundreds of slices and is read in one call, by pandas/pyarrow.
On a cluster the store must be on a file system that every worker sees.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["FeatureStore", "slice_digest"]


def slice_digest(path: str | os.PathLike[str], frame=None) -> str:
    """Content digest of a slice's file (and frame): what a store's chunks are keyed on.

    Raises ``ScanReadError`` when the file cannot be read.
    """
    from ichkit.scans.errors import ScanReadError

    try:
        content = Path(path).read_bytes()
    except OSError as error:
        raise ScanReadError(path, f"cannot read ({error.strerror or error})") from error
    return hashlib.blake2b(content + str(frame).encode(), digest_size=16).hexdigest()


class FeatureStore:
    """A folder of Parquet chunks for one feature config (``key``).

    Parameters
    ----------
    root : path
        The store's folder (``<cache>/features``); created when a chunk is written.
    key : str
        Everything the features depend on besides the slices (config and version).
    """

    def __init__(self, root: str | os.PathLike[str], key: str):
        self.key = key
        self.folder = Path(root) / hashlib.sha256(key.encode()).hexdigest()[:16]

    def chunk_path(self, digests: list[str]) -> Path:
        """Where the chunk of these slices (content digests, in order) is kept."""
        joined = "\n".join(digests).encode()
        return self.folder / f"{hashlib.blake2b(joined, digest_size=16).hexdigest()}.parquet"

    def read(self, path: Path) -> np.ndarray:
        """A chunk's features, (n_slices, n_features) float32, rows in stored order."""
        table = pd.read_parquet(path)
        return table.drop(columns="digest").to_numpy(dtype=np.float32)

    def write(self, path: Path, digests: list[str], values: np.ndarray, names: list[str]) -> None:
        """Write a chunk atomically (a temporary file, then renamed into place)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        frame = pd.DataFrame(np.asarray(values, dtype=np.float32), columns=names)
        frame.insert(0, "digest", digests)
        handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        os.close(handle)
        try:
            frame.to_parquet(temporary, index=False)
            os.replace(temporary, path)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
