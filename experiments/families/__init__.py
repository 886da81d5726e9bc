"""Model families: one object per family owns how a fold of its models is fitted, saved
and loaded again for serving, so training and serving cannot drift apart.

Every family answers the same calls:

- ``build(name, **params)``: the untrained model (its builder from the registry);
- ``fit_fold(name, data, config, run) -> FoldFit``: train on the fold's training
  patients only for its target (``data.target``, whose labels are ``data.rows["label"]``),
  choose the threshold on held-out data, predict the test patients and save the model
  at ``model_file(run, name, fold)`` (``run`` is the target's folder:
  ``RunFolder.for_target``);
- ``load_fold(name, path, context) -> FoldModel``: the saved model again, with
  ``probability(slices, memo)`` of ``context.target`` for any list of slices
  (``ichkit serve``);
- ``suffix`` (its model files'), ``reads`` (``"slices"``, ``"scans"``: ordered slices of
  a scan, or ``"predictions"``: other models'), and ``heatmap_cnn``: which CNN's
  Grad-CAM explains a model.

Adding a family is one module with such a class plus one entry in ``FAMILIES``.
"""

from __future__ import annotations

from ichkit.experiments.families._base import (
    FoldData,
    FoldFit,
    FoldModel,
    ModelFamily,
    ServingContext,
)
from ichkit.experiments.families.classical import ClassicalFamily
from ichkit.experiments.families.cnn import CnnFamily
from ichkit.experiments.families.ensemble import EnsembleFamily
from ichkit.experiments.families.sequence import SequenceFamily

__all__ = [
    "FAMILIES",
    "ClassicalFamily",
    "CnnFamily",
    "EnsembleFamily",
    "FoldData",
    "FoldFit",
    "FoldModel",
    "ModelFamily",
    "SequenceFamily",
    "ServingContext",
]

#: Family name -> the object that fits and serves its models.
FAMILIES: dict[str, ModelFamily] = {
    family.name: family
    for family in (ClassicalFamily(), CnnFamily(), SequenceFamily(), EnsembleFamily())
}
