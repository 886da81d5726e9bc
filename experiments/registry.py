"""The one table of model names: every name a config, ``--models``, a report or the web app
uses resolves here, to its family and its builder.

A model is a ``ModelSpec``: its family (``classical``, ``cnn``, ``sequence``,
``ensemble``: the ``ichkit.experiments.families`` object that fits, saves and serves
it) and its builder, a ``"module:function"`` string imported only when the model is
built, so ``--models svm`` never loads Keras. Users add their own models with
``register_model`` (or a ``ichkit.plugins`` entry point that calls it), and they then
work in configs, ``--models``, ``ichkit run``, reports and ``ichkit serve`` alike.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib.metadata import entry_points

from ichkit.scans.validation import unknown_name_message

__all__ = [
    "MODELS",
    "PLUGIN_GROUP",
    "ModelSpec",
    "accepted_params",
    "build_model",
    "check_model_names",
    "family_of",
    "list_models",
    "register_model",
    "resolve",
]

#: The entry-point group whose functions run (once) before a name is first resolved:
#: a package adds its models there, e.g. ``my_models = "my_package.ichkit:register"``.
PLUGIN_GROUP = "ichkit.plugins"


@dataclass(frozen=True)
class ModelSpec:
    """Where a model's builder lives, which family it belongs to, and its search grid.

    ``builder`` is a ``"module:function"`` string or the callable itself:

    - ``classical``: returns a scikit-learn estimator (a ``Pipeline`` whose last step is
      named ``model``, as ``ichkit.classical.models`` builds them), taking any of
      ``random_state`` and ``n_jobs``;
    - ``cnn``: a Keras backbone, ``backbone(inputs, weights) -> feature map``, to which
      ``ichkit.deep.backbones.build_classifier`` adds the shared top;
    - ``sequence``: ``build_sequence_model``-like, called with the model's name first;
    - ``ensemble``: a combiner class with ``fit`` and ``predict_proba``.

    ``grid`` (classical only) is the hyperparameter grid the inner patient-grouped
    search tries: a dict, or the name of one in ``ichkit.classical.models.PARAM_GRIDS``.
    """

    family: str
    builder: str | Callable
    grid: str | dict | None = None

    def load_builder(self) -> Callable:
        """The builder itself (its module is imported now)."""
        if callable(self.builder):
            return self.builder
        module, function = self.builder.split(":")
        return getattr(importlib.import_module(module), function)

    def search_grid(self) -> dict:
        """The hyperparameter grid (empty: fitted with its defaults)."""
        if isinstance(self.grid, str):
            from ichkit.classical.models import PARAM_GRIDS

            return PARAM_GRIDS.get(self.grid, {})
        return dict(self.grid or {})


MODELS: dict[str, ModelSpec] = {
    "logreg": ModelSpec("classical", "ichkit.classical.models:make_logreg", "logreg"),
    "svm": ModelSpec("classical", "ichkit.classical.models:make_svm", "svm"),
    "knn": ModelSpec("classical", "ichkit.classical.models:make_knn", "knn"),
    "rf": ModelSpec("classical", "ichkit.classical.models:make_random_forest", "rf"),
    "xgboost": ModelSpec("classical", "ichkit.classical.models:make_xgboost", "xgboost"),
    "bagging": ModelSpec("classical", "ichkit.classical.models:make_bagging", "bagging"),
    "adaboost": ModelSpec("classical", "ichkit.classical.models:make_adaboost", "adaboost"),
    "smallcnn": ModelSpec("cnn", "ichkit.deep.backbones:small_cnn"),
    "mobilenet": ModelSpec("cnn", "ichkit.deep.backbones:mobilenet"),
    "mobilenetv2": ModelSpec("cnn", "ichkit.deep.backbones:mobilenetv2"),
    "resnet50": ModelSpec("cnn", "ichkit.deep.backbones:resnet50"),
    "vgg16": ModelSpec("cnn", "ichkit.deep.backbones:vgg16"),
    "lstm": ModelSpec("sequence", "ichkit.deep.sequence:build_sequence_model"),
    "gru": ModelSpec("sequence", "ichkit.deep.sequence:build_sequence_model"),
    "voting": ModelSpec("ensemble", "ichkit.ensemble:SoftVoting"),
    "stacking": ModelSpec("ensemble", "ichkit.ensemble:StackingCombiner"),
}

_plugins_loaded = False


def _load_plugins() -> None:
    """Run every ``ichkit.plugins`` entry point once (each registers its models)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry_point in entry_points(group=PLUGIN_GROUP):
        entry_point.load()()


def register_model(
    name: str,
    family: str,
    builder: str | Callable,
    *,
    grid: str | dict | None = None,
    overwrite: bool = False,
) -> ModelSpec:
    """Add a model under ``name``, so configs, ``--models``, ``ichkit run``, the reports
    and ``ichkit serve`` all know it.

    Parameters
    ----------
    name : str
        The model's name in configs and outputs: lower-case letters, digits and ``_``.
    family : {'classical', 'cnn', 'sequence', 'ensemble'}
        Its family (see ``ModelSpec`` for what each builder returns).
    builder : str or callable
        ``"module:function"`` (imported when first built) or the callable. A string
        keeps the module importable by ``ichkit serve`` in another process; a callable
        must be registered again there (a ``ichkit.plugins`` entry point does that).
    grid : dict or str, default=None
        Classical models: the hyperparameter grid for the inner search.
    overwrite : bool, default=False
        Replace a model of the same name (refused otherwise).

    Returns
    -------
    ModelSpec

    Examples
    --------
    >>> from ichkit.experiments.registry import register_model, MODELS
    >>> spec = register_model("tinyforest", "classical",
    ...                       "ichkit.classical.models:make_random_forest")
    >>> spec.family
    'classical'
    >>> del MODELS["tinyforest"]
    """
    from ichkit.experiments.families import FAMILIES

    if not isinstance(name, str) or not name.replace("_", "").isalnum() or name != name.lower():
        raise ValueError(
            "The 'name' parameter of register_model must be lower-case letters, digits and "
            f"'_'. Got {name!r}."
        )
    if family not in FAMILIES:
        raise ValueError(unknown_name_message("model family", family, FAMILIES))
    if not (callable(builder) or (isinstance(builder, str) and builder.count(":") == 1)):
        raise TypeError(
            "The 'builder' parameter of register_model must be a callable or a "
            f"'module:function' string. Got {builder!r}."
        )
    if name in MODELS and not overwrite:
        raise ValueError(
            f"A model named '{name}' is already registered ({MODELS[name].family}); "
            "pass overwrite=True to replace it."
        )
    MODELS[name] = ModelSpec(family, builder, grid)
    return MODELS[name]


def resolve(name: str) -> ModelSpec:
    """The spec of model ``name``; a ValueError with a did-you-mean if there is none."""
    _load_plugins()
    if name not in MODELS:
        raise ValueError(unknown_name_message("model", name, MODELS) + " See 'ichkit list-models'.")
    return MODELS[name]


def family_of(name: str):
    """The family object (``ichkit.experiments.families``) that fits and serves ``name``."""
    from ichkit.experiments.families import FAMILIES

    return FAMILIES[resolve(name).family]


def list_models(pattern: str = "*", *, family: str | None = None) -> list[str]:
    """Model names matching a shell-style pattern (``"*"``, ``"x*"``), of one family or all."""
    _load_plugins()
    return [
        name
        for name, spec in MODELS.items()
        if fnmatch.fnmatch(name, pattern) and family in (None, spec.family)
    ]


def check_model_names(names: Iterable[str]) -> list[str]:
    """``names`` as a list, or a ValueError with a did-you-mean for the first unknown."""
    names = list(names)
    for name in names:
        resolve(name)
    return names


def build_model(name: str, **params):
    """Build model ``name``; keyword parameters its builder does not take are ignored,
    so a run can pass ``random_state`` and ``n_jobs`` to every model alike."""
    return family_of(name).build(name, **params)


def accepted_params(function: Callable, params: dict) -> dict:
    """The items of ``params`` that ``function`` takes as keywords."""
    signature = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.values()):
        return dict(params)
    return {key: value for key, value in params.items() if key in signature}
