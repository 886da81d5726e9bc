"""What every model family shares: the fold it is given, what it returns, and the
interface of a fitted fold loaded for serving."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

__all__ = ["FoldData", "FoldFit", "FoldModel", "ModelFamily", "ServingContext"]


@dataclass
class FoldData:
    """One fold of a run, as every family receives it.

    ``rows`` are the run's labelled slices (a slice of ``dataset.table``); ``train``,
    ``validation`` (None under cross-validation: a family holds out training patients
    itself) and ``test`` are positions into ``rows``. ``features`` are the handcrafted
    features of ``rows`` (None when no classical model runs). ``members`` are the
    models an ensemble combines. ``target`` is what the fold predicts
    (``ichkit.experiments.targets``): its labels are ``rows["label"]``.
    """

    fold: int
    dataset: Any
    rows: pd.DataFrame
    train: np.ndarray
    validation: np.ndarray | None
    test: np.ndarray
    features: pd.DataFrame | None = None
    members: list[str] = field(default_factory=list)
    target: str = "any"

    @property
    def labels(self) -> np.ndarray:
        return self.rows["label"].astype(int).to_numpy()

    @property
    def groups(self) -> np.ndarray:
        return self.rows["patient_id"].to_numpy()

    def index(self, part: np.ndarray | None):
        """Data set row labels of positions ``part`` (None stays None)."""
        return None if part is None else self.rows.index[part]


@dataclass
class FoldFit:
    """A model's results on one fold: its test probabilities, time per slice, and its
    held-out training-part predictions.

    ``held_out`` is indexed by data set row, with columns ``probability`` and
    ``for_threshold`` (True where the rows may choose the thresholds: predictions of a
    model that did not fit them; the others serve stacking only). The runner chooses
    the thresholds from them (``ichkit.experiments.thresholds``), so every family's
    are chosen by one rule.
    """

    probability: np.ndarray
    ms_per_slice: float
    held_out: pd.DataFrame


def held_out_frame(index, probability, for_threshold: bool) -> pd.DataFrame:
    """``FoldFit.held_out`` for rows ``index``."""
    return pd.DataFrame(
        {"probability": np.asarray(probability, dtype=float), "for_threshold": for_threshold},
        index=pd.Index(index, name="row"),
    )


class FoldModel(Protocol):
    """A fitted fold loaded for serving."""

    engine: str

    def probability(self, slices: Sequence, memo: dict) -> np.ndarray:
        """(n_slices,) probabilities of hemorrhage; ``memo`` is one request's store, so
        what several models share (features, a CNN's outputs) is computed once."""


@dataclass
class ServingContext:
    """What loading a fold for serving may need beyond its file.

    ``run`` is the ``RunFolder`` served, ``config`` its resolved config;
    ``fold_model(name, fold)`` loads another model's fold (the CNN a sequence model
    reads, an ensemble's members); ``onnx_folder()`` is where ONNX exports go (None:
    predict with Keras); ``target`` is the target the loaded fold predicts.
    """

    run: Any
    config: dict
    fold_model: Callable[[str, int], FoldModel]
    onnx_folder: Callable[[], Path | None] = lambda: None
    n_threads: int = 1
    keras_lock: threading.Lock = field(default_factory=threading.Lock)
    target: str = "any"


def memoised(memo: dict, key, compute: Callable):
    """``memo[key]``, computed once a request."""
    if key not in memo:
        memo[key] = compute()
    return memo[key]


class ModelFamily:
    """The interface each family implements (see the package docstring)."""

    name: str = ""
    suffix: str = ".joblib"
    reads: str = "slices"  # "slices", "scans" or "predictions"

    def build(self, name: str, **params):
        from ichkit.experiments.registry import accepted_params, resolve

        builder = resolve(name).load_builder()
        return builder(**accepted_params(builder, params))

    def fit_fold(self, name: str, data: FoldData, config: dict, run) -> FoldFit:
        raise NotImplementedError

    def model_file(self, run, name: str, fold: int) -> Path:
        """Where fold ``fold`` of ``name`` is saved in ``run`` (a target's folder)."""
        return run.model_path(name, fold)

    def load_fold(self, name: str, fold: int, context: ServingContext) -> FoldModel:
        """Fold ``fold`` of model ``name`` from ``context.run``, ready to predict."""
        raise NotImplementedError

    def reads_scans(self, name: str, members: Sequence[str] = ()) -> bool:
        """Whether model ``name`` needs the ordered slices of a scan."""
        return self.reads == "scans"

    def heatmap_cnn(self, name: str, config: dict, members: Sequence[str] = ()) -> str | None:
        """The CNN whose Grad-CAM explains ``name``, or None (it has none of its own)."""
        return None

    def fold_choices(self, run, name: str, fold: int) -> str | None:
        """What a fitted fold chose from its training part that a reader should know (a
        CNN's budget, an ensemble's members), for the report's notes; None: nothing."""
        return None


def load_trusted_joblib(path: Path):
    """A joblib file of the run itself (a pickle: never one from an upload)."""
    import joblib

    return joblib.load(path)
