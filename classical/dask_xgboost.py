"""XGBoost trained by ``xgboost.dask`` on a Dask cluster, as a scikit-learn classifier.

``DaskXGBoost`` takes ``XGBClassifier``'s settings, so it replaces it in the same
pipeline and grid (``make_dask_xgboost``). ``fit`` splits the rows into one partition
per worker and trains with ``xgboost.dask.DaskXGBClassifier`` on Dask's current client (the one
``client.as_current()`` names; ``ichkit run --backend dask`` sets it): each worker builds its
histograms on its rows and XGBoost's allreduce combines them. It keeps only the
trained booster, so the fitted estimator pickles and predicts without a cluster.

With one partition the result equals ``XGBClassifier`` exactly; with several,
row subsampling and the quantile sketches are per worker and the probabilities
differ slightly (tests/classical/test_dask_xgboost.py states by how much).
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

__all__ = ["DaskXGBoost", "make_dask_xgboost"]


class DaskXGBoost(ClassifierMixin, BaseEstimator):
    """Binary gradient-boosted trees trained on a Dask cluster with ``xgboost.dask``.

    Parameters
    ----------
    n_estimators, max_depth, learning_rate, subsample, colsample_bytree, random_state
        As for ``xgboost.XGBClassifier`` (histogram method, log loss).
    scale_pos_weight : float or None, default=None
        As for ``xgboost.XGBClassifier``: the weight of the positive class
        (``classical.tuning.balance_classes`` sets it from the training labels).
    n_partitions : int or None, default=None
        Row partitions of the training data; None: one per worker of the cluster.

    Attributes
    ----------
    booster_ : xgboost.Booster
        The trained model.
    classes_ : ndarray of shape (2,)
    """

    def __init__(
        self,
        n_estimators: int = 300,
        max_depth: int = 3,
        learning_rate: float = 0.05,
        subsample: float = 0.8,
        colsample_bytree: float = 0.5,
        random_state: int | None = None,
        scale_pos_weight: float | None = None,
        n_partitions: int | None = None,
    ):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.random_state = random_state
        self.scale_pos_weight = scale_pos_weight
        self.n_partitions = n_partitions

    def fit(self, X, y) -> DaskXGBoost:
        import dask.array as da
        import xgboost.dask
        from distributed import Client

        try:
            client = Client.current(allow_global=False)
        except ValueError:
            raise RuntimeError(
                "DaskXGBoost trains on a Dask cluster: fit it inside `with client.as_current():` "
                "(ichkit.experiments.parallel.compute_backend('dask'), or ichkit run --backend "
                "dask, does this)."
            ) from None
        X, y = np.asarray(X, dtype=np.float32), np.asarray(y)
        self.classes_ = np.unique(y)
        if self.classes_.size != 2:
            raise ValueError(f"DaskXGBoost is binary; got classes {self.classes_.tolist()}.")
        n_partitions = self.n_partitions or max(1, len(client.scheduler_info()["workers"]))
        rows = math.ceil(len(X) / n_partitions)
        model = xgboost.dask.DaskXGBClassifier(
            n_estimators=self.n_estimators, max_depth=self.max_depth,
            learning_rate=self.learning_rate, subsample=self.subsample,
            colsample_bytree=self.colsample_bytree, tree_method="hist",
            eval_metric="logloss", random_state=self.random_state,
            scale_pos_weight=self.scale_pos_weight,
        )  # fmt: skip
        model.client = client
        model.fit(
            da.from_array(X, chunks=(rows, X.shape[1])),
            da.from_array((y == self.classes_[1]).astype(np.int32), chunks=rows),
        )
        self.booster_ = model.get_booster()
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "booster_")
        positive = self.booster_.inplace_predict(np.asarray(X, dtype=np.float32))
        return np.column_stack([1 - positive, positive]).astype(float)

    def predict(self, X) -> np.ndarray:
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]


def make_dask_xgboost(*, random_state: int | None = None) -> Pipeline:
    """``make_xgboost``'s pipeline with ``DaskXGBoost`` as its model: same grid, and the
    settings copied from its ``XGBClassifier``, so the two cannot drift apart."""
    from ichkit.classical.models import make_xgboost

    pipeline = make_xgboost(random_state=random_state)
    local = pipeline.named_steps["model"].get_params()
    shared = DaskXGBoost().get_params().keys() - {"n_partitions"}
    return pipeline.set_params(model=DaskXGBoost(**{key: local[key] for key in shared}))
