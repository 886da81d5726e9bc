"""Fitting a classical model without leakage: grouped search, validation threshold.

Hyperparameters are chosen by patient-grouped cross-validation on the training
part only (``GridSearchCV`` over ``StratifiedGroupKFold``), and the decision
threshold on validation data: a given validation part, or else the out-of-fold
predictions of the chosen model on the training patients.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone
from sklearn.dummy import DummyClassifier
from sklearn.metrics import roc_curve
from sklearn.model_selection import GridSearchCV, StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import Pipeline

__all__ = [
    "FittedModel",
    "balance_classes",
    "choose_threshold",
    "fit_per_subtype",
    "fit_tuned",
    "grouped_folds",
]


@dataclass
class FittedModel:
    """A tuned, refitted model and the threshold chosen for it on validation data."""

    estimator: Pipeline | DummyClassifier
    threshold: float
    best_params: dict = field(default_factory=dict)
    search_auc: float = float("nan")
    out_of_fold: np.ndarray | None = None  # chosen parameters, training rows' held-out folds

    def predict_proba(self, X) -> np.ndarray:
        """Probability of hemorrhage per row (of the positive class, 0 or 1 for a model
        fitted on one class)."""
        classes = list(self.estimator.classes_)
        if 1 not in classes:
            return np.zeros(len(X))
        return self.estimator.predict_proba(X)[:, classes.index(1)]

    def predict(self, X) -> np.ndarray:
        """0/1 at the chosen threshold."""
        return (self.predict_proba(X) >= self.threshold).astype(int)


def balance_classes(estimator: Pipeline, y) -> Pipeline:
    """Set ``scale_pos_weight`` to negatives/positives of ``y`` on any model that has
    that parameter (XGBoost, local or on Dask); the others keep their class weights."""
    model = estimator.named_steps.get("model")
    if model is not None and "scale_pos_weight" in model.get_params(deep=False):
        y = np.asarray(y)
        estimator.set_params(model__scale_pos_weight=float((y == 0).sum() / max((y == 1).sum(), 1)))
    return estimator


def choose_threshold(y, probability) -> float:
    """The threshold that maximises Youden's J (sensitivity + specificity - 1).

    Every threshold between the best one and the next lower score gives the same J on
    these rows; the midpoint of that gap is returned rather than its upper end (the
    lowest positive score), so that new data a little below the held-out scores is not
    called negative by construction. 0.5 when ``y`` holds one class.
    """
    y = np.asarray(y)
    if np.unique(y).size < 2:
        return 0.5
    false_positive_rate, true_positive_rate, thresholds = roc_curve(
        y, probability, drop_intermediate=False
    )
    best = int(np.argmax(true_positive_rate - false_positive_rate))
    upper = float(min(thresholds[best], 1.0))
    lower = float(thresholds[best + 1]) if best + 1 < len(thresholds) else upper
    return (upper + lower) / 2


def grouped_folds(y, groups, n_folds: int, random_state) -> StratifiedGroupKFold | None:
    """Patient-grouped stratified folds, fewer than ``n_folds`` where a class has fewer
    patients; None when fewer than 2 folds can hold both classes."""
    y, groups = np.asarray(y).astype(int), np.asarray(groups)
    n_folds = min(n_folds, len(np.unique(groups[y == 1])), len(np.unique(groups[y == 0])))
    if n_folds < 2:
        return None
    return StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=random_state)


def fit_tuned(
    estimator: Pipeline,
    param_grid: dict,
    X,
    y,
    groups,
    *,
    validation: tuple | None = None,
    inner_folds: int = 3,
    random_state: int | None = 0,
    n_jobs: int = 1,
) -> FittedModel:
    """Tune, refit on all of ``X``, and choose the threshold on validation data.

    Parameters
    ----------
    estimator : Pipeline
        A classical model, e.g. ``ichkit.classical.models.make_svm()``.
    param_grid : dict
        Grid for ``GridSearchCV`` (``ichkit.classical.models.PARAM_GRIDS[name]``).
    X, y, groups : array-like
        Training features (a DataFrame of named features for the family choice),
        labels (0/1) and patient ids.
    validation : (X_val, y_val), default=None
        Held-out patients for the threshold; when None, out-of-fold predictions of
        the chosen parameters on the training patients are used instead. Those
        out-of-fold predictions are kept either way (``FittedModel.out_of_fold``,
        what a stacking ensemble learns from).
    inner_folds : int, default=3
        Patient-grouped folds of the search (fewer when there are too few patients).
    random_state : int, default=0
    n_jobs : int, default=1
        Parallel fits of the search.
    """
    y, groups = np.asarray(y).astype(int), np.asarray(groups)  # X may be a DataFrame
    if np.unique(y).size < 2:
        # One class (a rare subtype none of these patients has): nothing to learn. The
        # class's share, as scikit-learn's DummyClassifier gives it; no out-of-fold rows.
        return FittedModel(DummyClassifier(strategy="prior").fit(X, y), 0.5)
    folds = grouped_folds(y, groups, inner_folds, random_state)
    estimator = balance_classes(clone(estimator), y)
    if folds is None or not param_grid:
        estimator.fit(X, y)
        probability = estimator.predict_proba(validation[0])[:, 1] if validation else None
        threshold = choose_threshold(validation[1], probability) if validation else 0.5
        return FittedModel(estimator, threshold)
    splits = list(folds.split(X, y, groups))
    search = GridSearchCV(estimator, param_grid, scoring="roc_auc", cv=splits, n_jobs=n_jobs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # folds where a class is thin
        search.fit(X, y)
        chosen = clone(estimator).set_params(**search.best_params_)
        out_of_fold = cross_val_predict(
            chosen, X, y, cv=splits, method="predict_proba", n_jobs=n_jobs
        )[:, 1]
        if validation is not None:
            probability = search.best_estimator_.predict_proba(validation[0])[:, 1]
            threshold = choose_threshold(validation[1], probability)
        else:
            threshold = choose_threshold(y, out_of_fold)
    return FittedModel(
        search.best_estimator_,
        threshold,
        dict(search.best_params_),
        float(search.best_score_),
        out_of_fold,
    )


def fit_per_subtype(
    estimator: Pipeline, param_grid: dict, X, subtype_labels, groups, **options
) -> dict[str, FittedModel]:
    """One model per hemorrhage subtype (one-vs-rest), tuned like ``fit_tuned``.

    ``subtype_labels`` is a DataFrame with one 0/1 column per subtype (the data
    set's subtype columns). Subtypes seen in fewer than two patients are left out:
    no grouped validation is possible for them.
    """
    groups = np.asarray(groups)
    models = {}
    for subtype in subtype_labels.columns:
        y = subtype_labels[subtype].to_numpy().astype(int)
        if len(np.unique(groups[y == 1])) < 2:
            continue
        models[subtype] = fit_tuned(estimator, param_grid, X, y, groups, **options)
    return models
