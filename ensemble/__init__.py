"""Ensembles of the classical and deep models: soft voting and stacking.

Bagging and boosting of the classical baselines are models of their own
(``bagging``, ``adaboost``, ``xgboost`` in ``ichkit.classical.models``); here are the
combiners of different models' probabilities, which ``ichkit run`` fits on
out-of-fold predictions (``voting``, ``stacking``), over the members that
``select_members`` keeps.
"""

from ichkit.ensemble.combiners import SoftVoting, StackingCombiner, probability_logits
from ichkit.ensemble.selection import select_members

__all__ = ["SoftVoting", "StackingCombiner", "probability_logits", "select_members"]
