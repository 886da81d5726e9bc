"""The one table of model names used by configs, ``--models`` and every output."""

from __future__ import annotations

import fnmatch
import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path

from ichkit.scans._checks import unknown_name_message

__all__ = [
    "MODELS",
    "ModelSpec",
    "check_model_names",
    "get_builder",
    "get_model",
    "list_models",
    "model_file",
]


@dataclass(frozen=True)
class ModelSpec:
    """Where a model's builder lives and which family it belongs to."""

    family: str
    builder: str  # "module:function", imported only when the model is built
    grid: str | None = None  # its search grid: name in classical.models.PARAM_GRIDS


MODELS = {
    "logreg": ModelSpec("classical", "ichkit.classical.models:make_logreg", "logreg"),
    "svm": ModelSpec("classical", "ichkit.classical.models:make_svm", "svm"),
    "knn": ModelSpec("classical", "ichkit.classical.models:make_knn", "knn"),
    "rf": ModelSpec("classical", "ichkit.classical.models:make_random_forest", "rf"),
    "xgboost": ModelSpec("classical", "ichkit.classical.models:make_xgboost", "xgboost"),
    "bagging": ModelSpec("classical", "ichkit.classical.models:make_bagging", "bagging"),
    "adaboost": ModelSpec("classical", "ichkit.classical.models:make_adaboost", "adaboost"),
    "smallcnn": ModelSpec("cnn", "ichkit.deep.backbones:build_classifier"),
    "mobilenet": ModelSpec("cnn", "ichkit.deep.backbones:build_classifier"),
    "mobilenetv2": ModelSpec("cnn", "ichkit.deep.backbones:build_classifier"),
    "resnet50": ModelSpec("cnn", "ichkit.deep.backbones:build_classifier"),
    "vgg16": ModelSpec("cnn", "ichkit.deep.backbones:build_classifier"),
    "lstm": ModelSpec("sequence", "ichkit.deep.sequence:build_sequence_model"),
    "gru": ModelSpec("sequence", "ichkit.deep.sequence:build_sequence_model"),
    "voting": ModelSpec("ensemble", "ensemble:SoftVoting"),
    "stacking": ModelSpec("ensemble", "ensemble:StackingCombiner"),
}


def list_models(pattern: str = "*") -> list[str]:
    """Model names matching a shell-style pattern (``"*"``, ``"x*"``)."""
    return [name for name in MODELS if fnmatch.fnmatch(name, pattern)]


def check_model_names(names) -> list[str]:
    """``names`` as a list, or a ValueError with a did-you-mean for the first unknown."""
    names = list(names)
    for name in names:
        if name not in MODELS:
            raise ValueError(
                unknown_name_message("model", name, MODELS) + " See 'ichkit list-models'."
            )
    return names


def get_builder(name: str):
    """The function that builds model ``name`` (its module is imported now)."""
    check_model_names([name])
    module, function = MODELS[name].builder.split(":")
    return getattr(importlib.import_module(module), function)


def get_model(name: str, **params):
    """Build model ``name``; keyword parameters its builder does not take are ignored,
    so a run can pass ``random_state`` and ``n_jobs`` to every model alike."""
    builder = get_builder(name)
    accepted = inspect.signature(builder).parameters
    params = {key: value for key, value in params.items() if key in accepted}
    if MODELS[name].family in ("cnn", "sequence"):
        # One builder serves every head (or LSTM and GRU): the name picks it.
        return builder(name, **params)
    return builder(**params)


#: What each family's trained model is saved as, in a run's ``models/`` folder.
_MODEL_SUFFIXES = {"cnn": ".weights.h5", "sequence": ".keras"}


def model_file(run_dir: str | Path, name: str, fold: int) -> Path:
    """Where a run keeps model ``name`` of fold ``fold``: CNN weights (``.weights.h5``),
    a Keras sequence model (``.keras``), or a joblib file (classical, ensembles)."""
    suffix = _MODEL_SUFFIXES.get(MODELS[name].family, ".joblib")
    return Path(run_dir) / "models" / f"{name}__fold{fold}{suffix}"
