"""Soft voting and the stacking learner on member probabilities."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV

from ichkit.ensemble import SoftVoting, StackingCombiner


def _members(n=400, seed=0):
    """Labels and three members: two informative with independent noise, one noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    logits = np.column_stack([2 * (2 * y - 1) + rng.normal(0, 2.5, n) for _ in range(2)])
    logits = np.column_stack([logits, rng.normal(0, 2.5, n)])
    return 1 / (1 + np.exp(-logits)), y


def test_voting_is_the_weighted_mean():
    X = np.array([[0.2, 0.6], [0.9, 0.1]])
    np.testing.assert_allclose(SoftVoting().fit(X).predict_proba(X)[:, 1], [0.4, 0.5])
    weighted = SoftVoting(weights=[3, 1]).fit(X).predict_proba(X)[:, 1]
    np.testing.assert_allclose(weighted, [0.3, 0.7])


def test_stacking_beats_each_member_and_ignores_noise():
    (train, y_train), (test, y_test) = _members(seed=1), _members(seed=2)
    stacking = StackingCombiner().fit(train, y_train)
    auc = roc_auc_score(y_test, stacking.predict_proba(test)[:, 1])
    member_aucs = [roc_auc_score(y_test, test[:, column]) for column in range(3)]
    assert auc > max(member_aucs) + 0.02
    coefficients = stacking.final_estimator_.coef_[0]
    assert abs(coefficients[2]) < 0.2 * min(coefficients[:2])


def test_stacking_works_in_a_grid_search():
    X, y = _members(seed=3)
    grid = {"final_estimator": [LogisticRegression(C=0.1), LogisticRegression(C=1.0)]}
    search = GridSearchCV(StackingCombiner(), grid, scoring="roc_auc", cv=3).fit(X, y)
    assert search.best_score_ > 0.8


@pytest.mark.parametrize("combiner", [SoftVoting(), StackingCombiner()])
def test_values_outside_zero_one_are_refused(combiner):
    with pytest.raises(ValueError, match="must hold values in \\[0, 1\\]"):
        combiner.fit([[0.5, 1.5], [0.1, 0.2]], [0, 1])


def test_bad_voting_weights_are_refused():
    with pytest.raises(ValueError, match="one non-negative weight per member \\(2\\)"):
        SoftVoting(weights=[1, 2, 3]).fit([[0.5, 0.5]])
