"""Combiners of member models' probabilities: soft voting and a stacking learner.

The members of an ichkit comparison read different inputs (handcrafted features,
slice images, slice sequences), so scikit-learn's ``VotingClassifier`` and
``StackingClassifier``, which fit every member on one ``X``, cannot hold them. These
combiners take the members' probabilities instead, one column per member; the
runner (``experiments``) makes the out-of-fold probabilities they are fitted on,
with patient-grouped folds inside the training part only.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_array, check_is_fitted

__all__ = ["SoftVoting", "StackingCombiner", "probability_logits"]

_EPSILON = 1e-6


def probability_logits(probabilities) -> np.ndarray:
    """``log(p / (1 - p))`` of probabilities clipped to [1e-6, 1 - 1e-6].

    >>> probability_logits([[0.5, 0.9]]).round(3).tolist()
    [[0.0, 2.197]]
    """
    probabilities = np.clip(np.asarray(probabilities, dtype=float), _EPSILON, 1 - _EPSILON)
    return np.log(probabilities / (1 - probabilities))


def _check_probabilities(X, owner: str) -> np.ndarray:
    X = check_array(X, dtype=float)
    if ((X < 0) | (X > 1)).any():
        raise ValueError(
            f"{owner} combines member probabilities: X must hold values in [0, 1], one "
            f"column per member. Got values from {X.min():.3g} to {X.max():.3g}."
        )
    return X


class SoftVoting(ClassifierMixin, BaseEstimator):
    """The (weighted) mean of the members' probabilities of hemorrhage.

    Parameters
    ----------
    weights : array-like of shape (n_members,), default=None
        Non-negative weight per member; None weighs them equally.

    Examples
    --------
    >>> SoftVoting().fit([[0.2, 0.4]], [0]).predict_proba([[0.2, 0.4]])[:, 1].round(2).tolist()
    [0.3]
    """

    def __init__(self, weights=None):
        self.weights = weights

    def fit(self, X, y=None):
        X = _check_probabilities(X, "SoftVoting")
        if self.weights is not None:
            weights = np.asarray(self.weights, dtype=float)
            if weights.shape != (X.shape[1],) or (weights < 0).any() or weights.sum() <= 0:
                raise ValueError(
                    "The 'weights' parameter of SoftVoting must hold one non-negative weight "
                    f"per member ({X.shape[1]}), not all zero. Got {self.weights!r}."
                )
        self.n_features_in_ = X.shape[1]
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Columns: probability of no hemorrhage, of hemorrhage."""
        check_is_fitted(self)
        X = _check_probabilities(X, "SoftVoting")
        positive = np.average(X, axis=1, weights=self.weights)
        return np.column_stack([1 - positive, positive])

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


class StackingCombiner(ClassifierMixin, BaseEstimator):
    """A level-2 learner on the members' logits (stacked generalisation, Wolpert 1992).

    Fit it on out-of-fold member probabilities, never on probabilities of slices the
    members were trained on: those are overconfident, and the learner would trust
    the member that overfits most.

    Parameters
    ----------
    final_estimator : classifier, default=None
        Fitted on ``probability_logits(X)``; None is ``LogisticRegression()``, whose
        coefficients say how much each member counts.
    """

    def __init__(self, final_estimator=None):
        self.final_estimator = final_estimator

    def fit(self, X, y):
        X = _check_probabilities(X, "StackingCombiner")
        final = self.final_estimator if self.final_estimator is not None else LogisticRegression()
        self.final_estimator_ = clone(final).fit(probability_logits(X), y)
        self.n_features_in_ = X.shape[1]
        self.classes_ = self.final_estimator_.classes_
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = _check_probabilities(X, "StackingCombiner")
        return self.final_estimator_.predict_proba(probability_logits(X))

    def predict(self, X) -> np.ndarray:
        return self.final_estimator_.predict(probability_logits(X))
