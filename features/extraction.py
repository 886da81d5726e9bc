"""Handcrafted features of a whole data set: parallel, streamed, stored by content.

Each slice is read, brought to Hounsfield units (``scans.to_hounsfield``), resized
and described by ``HandcraftedFeatures``. Slices are processed in chunks by joblib
workers (local processes, or a Dask cluster inside
``ichkit.experiments.parallel.compute_backend("dask")``) and written into one preallocated
array as they arrive, in memory or a NumPy memory map (``out=``), so memory holds
neither the images nor, with ``out``, the features. With a cache folder each chunk is
kept in a ``FeatureStore`` (Parquet, keyed by the slices' content digests and the
feature config): a second run, or a run killed half-way, reuses what was computed,
and a changed file or config is recomputed.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from ichkit.features.store import FeatureStore, slice_digest
from ichkit.scans._slice import SliceImage
from ichkit.scans.dataset import ScanDataset, Skipped, read_row
from ichkit.scans.errors import ScanReadError

__all__ = [
    "DEFAULT_FEATURE_CONFIG",
    "resolve_feature_config",
    "extract_features",
    "slice_features",
    "build_extractor",
    "default_cache_dir",
]

#: Bump when a feature's computation changes, so cached values are not reused.
FEATURES_VERSION = 1

DEFAULT_FEATURE_CONFIG = {
    "size": 256,
    "grey_window": [40.0, 80.0],
    "families": ["intensity", "bands", "glcm", "lbp", "hog", "gabor", "shape"],
    "params": {},
}


def default_cache_dir() -> Path:
    """``$ICHKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/ichkit``, else ``~/.cache/ichkit``."""
    if os.environ.get("ICHKIT_CACHE_DIR"):
        return Path(os.environ["ICHKIT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ichkit"


def resolve_feature_config(config: dict | None = None) -> dict:
    """``config`` over ``DEFAULT_FEATURE_CONFIG``; unknown keys are an error."""
    resolved = copy.deepcopy(DEFAULT_FEATURE_CONFIG)
    unknown = set(config or {}) - set(resolved)
    if unknown:
        raise ValueError(
            f"Unknown feature config keys: {', '.join(sorted(unknown))}. Allowed: "
            f"{', '.join(resolved)}."
        )
    resolved.update(copy.deepcopy(config or {}))
    return resolved


def extract_features(
    dataset: ScanDataset,
    config: dict | None = None,
    *,
    cache_dir: str | Path | None = None,
    n_jobs: int = 1,
    chunk_size: int = 64,
    strict: bool = False,
    progress: bool = True,
    out: str | Path | None = None,
) -> tuple[pd.DataFrame, list[Skipped]]:
    """Features of every slice of ``dataset``.

    Parameters
    ----------
    dataset : ScanDataset
    config : dict, default=None
        ``size`` (slices are resized to size x size), ``grey_window`` (the window
        assumed for grey images that do not carry theirs), ``families`` and
        ``params`` of ``HandcraftedFeatures``; see ``DEFAULT_FEATURE_CONFIG``.
    cache_dir : path, default=None
        Where the ``FeatureStore`` keeps features (``<cache_dir>/features``); None
        computes everything.
    n_jobs : int, default=1
        joblib workers (-1: all cores, or every worker of a Dask cluster).
    chunk_size : int, default=64
        Slices per task and per stored chunk.
    strict : bool, default=False
        Raise on the first unreadable slice instead of skipping it.
    progress : bool, default=True
        Show a progress bar (tqdm).
    out : path, default=None
        A ``.npy`` file to hold the features as a memory map, so that memory does not
        grow with the number of slices; the returned frame reads from it. None: in memory.

    Returns
    -------
    features : DataFrame
        One row per readable slice, indexed by its position in ``dataset.table``,
        one float32 column per feature name.
    skipped : list of Skipped
        Slices that could not be read, with the reason.
    """
    from tqdm.auto import tqdm

    config = resolve_feature_config(config)
    names = _feature_names(config)
    key = json.dumps({"version": FEATURES_VERSION, **config}, sort_keys=True)
    store = FeatureStore(Path(cache_dir) / "features", key) if cache_dir else None
    columns = [
        "path",
        "format",
        "frame",
        *[c for c in ("window_center", "window_width") if c in dataset.table],
    ]
    records = dataset.table[columns].to_dict("records")
    chunks = [
        range(start, min(start + chunk_size, len(records)))
        for start in range(0, len(records), chunk_size)
    ]
    shape = (len(records), len(names))
    if out is None:
        values = np.empty(shape, dtype=np.float32)
    else:
        values = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=shape)
    skipped: list[Skipped] = []
    tasks = (
        delayed(_chunk_features)([records[i] for i in chunk], config, names, store, strict)
        for chunk in chunks
    )
    results = Parallel(n_jobs=n_jobs, return_as="generator")(tasks)
    bar = tqdm(total=len(records), desc="features", unit="slice", disable=not progress or None)
    for chunk, (chunk_values, chunk_skipped) in zip(chunks, results, strict=True):
        values[chunk.start : chunk.stop] = chunk_values
        skipped += chunk_skipped
        bar.update(len(chunk))
    bar.close()
    readable = ~np.isnan(values).all(axis=1)
    if readable.all():  # no copy: a memory map stays one
        return pd.DataFrame(values, columns=names, copy=False), skipped
    frame = pd.DataFrame(values[readable], columns=names, index=np.flatnonzero(readable))
    return frame, skipped


def _feature_names(config: dict) -> list[str]:
    extractor = build_extractor(config)
    return list(extractor.get_feature_names_out())


def build_extractor(config: dict):
    """A ``HandcraftedFeatures`` fitted for a resolved feature ``config``."""
    from ichkit.features.union import HandcraftedFeatures

    size = config["size"]
    blank = np.full((1, size, size), -1000.0, dtype=np.float32)
    return HandcraftedFeatures(config["families"], config["params"]).fit(blank)


def _chunk_features(
    records: list[dict], config: dict, names: list[str], store: FeatureStore | None, strict: bool
) -> tuple[np.ndarray, list[Skipped]]:
    """Features of a chunk of slices, from the store when it has the chunk; unreadable
    slices give a row of NaN and a Skipped (and the chunk is then not stored)."""
    path = None
    if store is not None:
        try:
            digests = [slice_digest(record["path"], record["frame"]) for record in records]
        except ScanReadError:
            digests = None  # a file cannot even be read: compute, report, do not store
        if digests is not None:
            path = store.chunk_path(digests)
            if path.is_file():
                return store.read(path), []
    extractor = build_extractor(config)
    values = np.full((len(records), len(names)), np.nan, dtype=np.float32)
    skipped = []
    for position, record in enumerate(records):
        try:
            values[position] = slice_features(read_row(record), config, extractor=extractor)
        except ScanReadError as error:
            if strict:
                raise
            skipped.append(Skipped(error.path, error.reason))
    if path is not None and not skipped:
        store.write(path, digests, values, names)
    return values, skipped


def slice_features(image: SliceImage, config: dict | None = None, *, extractor=None) -> np.ndarray:
    """The features of one slice already read, as ``extract_features`` computes them
    for a data set row (for a slice that is in no data set, such as an upload).

    ``extractor`` is a fitted ``HandcraftedFeatures`` for ``config``, to reuse one
    across slices; None builds it.
    """
    from ichkit.scans.transforms import Resize
    from ichkit.scans.windowing import to_hounsfield

    config = resolve_feature_config(config)
    extractor = extractor or build_extractor(config)
    hounsfield = to_hounsfield(image, grey_window=tuple(config["grey_window"]))
    resized = Resize(config["size"])(hounsfield)
    return extractor.transform_slice(resized).astype(np.float32)


def time_features(dataset: ScanDataset, config: dict | None = None, *, n_slices: int = 8) -> float:
    """Milliseconds per slice to read, prepare and describe a slice, without the cache.

    Part of a classical model's inference time: a model on features costs the
    features too. Measured on up to ``n_slices`` evenly spaced slices, one core.
    """
    import time

    config = resolve_feature_config(config)
    extractor = build_extractor(config)
    positions = np.linspace(0, len(dataset) - 1, min(n_slices, len(dataset))).astype(int)
    records = dataset.table.iloc[positions].to_dict("records")
    start = time.perf_counter()
    for record in records:
        slice_features(read_row(record), config, extractor=extractor)
    return (time.perf_counter() - start) * 1000 / len(records)
