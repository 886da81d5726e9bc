"""Classical baselines as scikit-learn Pipelines, each with its search grid.

Scaling and feature selection sit inside the Pipeline, so they are fitted on the
training folds only; tree models get no scaling (they do not need it). With a few
hundred slices and about 500 handcrafted features (324 of them HOG), which
features to use must itself be learnt: every model first keeps some feature
families (``FAMILY_CHOICES``), then a percentile of the features ranked by the
ANOVA F-test, both searched like any hyperparameter on the training patients. Class
imbalance is handled by class weights (``balanced``) and, for XGBoost,
``scale_pos_weight`` set from the training labels by ``ichkit.classical.tuning``.
"""

from __future__ import annotations

from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import AdaBoostClassifier, BaggingClassifier, RandomForestClassifier
from sklearn.feature_selection import SelectPercentile, VarianceThreshold, f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

__all__ = [
    "FAMILY_CHOICES",
    "PARAM_GRIDS",
    "SELECTION_PERCENTILES",
    "make_adaboost",
    "make_bagging",
    "make_knn",
    "make_logreg",
    "make_random_forest",
    "make_svm",
    "make_xgboost",
]


def make_logreg(*, random_state: int | None = None) -> Pipeline:
    """L2 logistic regression: the floor every other model must beat."""
    model = LogisticRegression(class_weight="balanced", max_iter=5000, random_state=random_state)
    return _pipeline(model, scale=True)


def make_svm(*, random_state: int | None = None) -> Pipeline:
    """RBF SVM with probabilities from ``CalibratedClassifierCV`` (Platt scaling).

    scikit-learn 1.9 deprecates ``SVC(probability=True)``; calibrating on internal
    folds of the training data is the supported way to get probabilities.
    """
    svm = SVC(kernel="rbf", class_weight="balanced", random_state=random_state)
    model = CalibratedClassifierCV(svm, method="sigmoid", cv=3)
    return _pipeline(model, scale=True)


def make_knn() -> Pipeline:
    """k nearest neighbours on standardised features, weighted by distance."""
    model = KNeighborsClassifier(n_neighbors=15, weights="distance")
    return _pipeline(model, scale=True)


def make_random_forest(*, random_state: int | None = None, n_jobs: int = 1) -> Pipeline:
    """Random forest with class weights per bootstrap sample."""
    model = RandomForestClassifier(
        n_estimators=300,
        class_weight="balanced_subsample",
        min_samples_leaf=2,
        random_state=random_state,
        n_jobs=n_jobs,
    )
    return _pipeline(model, scale=False)


def make_xgboost(*, random_state: int | None = None, n_jobs: int = 1) -> Pipeline:
    """Gradient-boosted trees (``xgboost-cpu``, histogram method)."""
    from xgboost import XGBClassifier

    model = XGBClassifier(
        n_estimators=300,
        max_depth=3,
        learning_rate=0.05,
        subsample=0.8,
        colsample_bytree=0.5,
        tree_method="hist",
        eval_metric="logloss",
        random_state=random_state,
        n_jobs=n_jobs,
    )
    return _pipeline(model, scale=False)


def make_bagging(*, random_state: int | None = None, n_jobs: int = 1) -> Pipeline:
    """Bagged decision trees, as the seed paper lists bagging."""
    tree = DecisionTreeClassifier(class_weight="balanced", min_samples_leaf=2)
    model = BaggingClassifier(tree, n_estimators=100, random_state=random_state, n_jobs=n_jobs)
    return _pipeline(model, scale=False)


def make_adaboost(*, random_state: int | None = None) -> Pipeline:
    """AdaBoost on decision stumps, as the seed paper lists boosting."""
    stump = DecisionTreeClassifier(max_depth=1, class_weight="balanced")
    model = AdaBoostClassifier(stump, n_estimators=200, random_state=random_state)
    return _pipeline(model, scale=False)


def _pipeline(model, *, scale: bool) -> Pipeline:
    """Choose families, drop constant features, keep the top percentile by F-test,
    (scale,) model."""
    from ichkit.features.union import FamilySelector

    steps = [
        ("families", FamilySelector()),
        ("drop_constant", VarianceThreshold()),
        ("select", SelectPercentile(f_classif, percentile=100)),
    ]
    if scale:
        steps.append(("scale", StandardScaler()))
    return Pipeline([*steps, ("model", model)])


#: Feature families searched with every model's grid: all; all but HOG (its cells
#: mostly encode the slice's outline); the intensity statistics and shapes alone.
FAMILY_CHOICES = [
    "all",
    ("intensity", "bands", "shape", "glcm", "lbp", "gabor"),
    ("intensity", "bands", "shape"),
]
#: Percentiles of features kept, searched with every model's grid.
SELECTION_PERCENTILES = [30, 100]

#: Hyperparameters searched by patient-grouped cross-validation on the training part.
#: Small on purpose: a few hundred slices cannot support wide searches.
PARAM_GRIDS: dict[str, dict[str, list]] = {
    "logreg": {"model__C": [0.01, 0.1, 1.0]},
    "svm": {"model__estimator__C": [0.3, 1.0, 3.0], "model__estimator__gamma": ["scale", 0.0005]},
    "knn": {"model__n_neighbors": [7, 15, 31]},
    "rf": {"model__max_features": ["sqrt", 0.2]},
    "xgboost": {"model__max_depth": [2, 4], "model__learning_rate": [0.05, 0.1]},
    "bagging": {"model__max_features": [0.5, 1.0]},
    "adaboost": {"model__learning_rate": [0.3, 1.0]},
}
for _grid in PARAM_GRIDS.values():
    _grid["families__families"] = FAMILY_CHOICES
    _grid["select__percentile"] = SELECTION_PERCENTILES
