"""Classical models (SVM, k-NN, RF, XGBoost, ...) on handcrafted features."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ichkit.experiments.families._base import (
    FoldData,
    FoldFit,
    ModelFamily,
    ServingContext,
    held_out_frame,
    load_trusted_joblib,
    memoised,
)

__all__ = ["ClassicalFamily"]


class ClassicalFamily(ModelFamily):
    """A scikit-learn pipeline tuned by a patient-grouped inner search on the run's
    handcrafted features; saved with joblib (``ichkit.classical.persistence``)."""

    name = "classical"
    suffix = ".joblib"
    reads = "slices"

    def fit_fold(self, name: str, data: FoldData, config: dict, run) -> FoldFit:
        """Tune and fit on the training part; predict the test part. Its held-out rows are
        the out-of-fold predictions over every training patient (and the validation
        patients of a single split)."""
        import joblib

        from ichkit.classical.dask_xgboost import make_dask_xgboost
        from ichkit.classical.persistence import save_model
        from ichkit.classical.tuning import fit_tuned
        from ichkit.experiments.parallel import n_jobs_for
        from ichkit.experiments.registry import resolve

        X, y, groups = data.features, data.labels, data.groups
        train, validation, test = data.train, data.validation, data.test
        backend = config["parallel"]["backend"]
        search_backend = contextlib.nullcontext()
        if backend == "dask" and name == "xgboost":
            # xgboost.dask spreads each fit over the cluster, so the search runs its fits
            # one after another here rather than as tasks on the workers.
            estimator = make_dask_xgboost(random_state=config["seed"])
            search_backend = joblib.parallel_config(backend="sequential")
        else:
            estimator = self.build(name, random_state=config["seed"], n_jobs=1)
        with search_backend:
            fitted = fit_tuned(
                estimator,
                resolve(name).search_grid(),
                X.iloc[train],
                y[train],
                groups[train],
                validation=None if validation is None else (X.iloc[validation], y[validation]),
                inner_folds=config["tuning"]["inner_folds"],
                random_state=config["seed"],
                n_jobs=n_jobs_for(backend, config["n_jobs"]),
            )
        start = time.perf_counter()
        probability = fitted.predict_proba(X.iloc[test])
        model_ms = (time.perf_counter() - start) * 1000 / len(test)
        save_model(run.model_path(name, data.fold), fitted,
                   feature_config=config["features"], feature_names=X.columns)  # fmt: skip
        held = []  # out-of-fold over the training patients, and any validation patients
        if fitted.out_of_fold is not None:
            held.append(held_out_frame(X.index[train], fitted.out_of_fold, True))
        if validation is not None:
            held.append(
                held_out_frame(X.index[validation], fitted.predict_proba(X.iloc[validation]), True)
            )
        held_out = pd.concat(held) if held else held_out_frame([], [], True)
        return FoldFit(probability, model_ms, held_out)

    def load_fold(self, name: str, fold: int, context: ServingContext) -> ClassicalFold:
        return ClassicalFold(context.run.model_path(name, fold))


class ClassicalFold:
    """A tuned classical model on handcrafted features (``classical.persistence`` file)."""

    engine = "scikit-learn on handcrafted features"

    def __init__(self, path: Path):
        from ichkit.features.extraction import build_extractor

        payload = load_trusted_joblib(path)
        self.model, self.feature_names = payload["model"], payload["feature_names"]
        self.feature_config = payload["feature_config"]
        self._extractor = build_extractor(self.feature_config)
        self._key = ("features", json.dumps(self.feature_config, sort_keys=True))

    def probability(self, slices, memo: dict) -> np.ndarray:
        from ichkit.features.extraction import slice_features

        def compute():
            return np.stack(
                [
                    slice_features(image, self.feature_config, extractor=self._extractor)
                    for image in slices
                ]
            )

        frame = pd.DataFrame(memoised(memo, self._key, compute), columns=self.feature_names)
        return np.asarray(self.model.predict_proba(frame), dtype=float)
