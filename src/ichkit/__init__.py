"""ichkit: intracranial hemorrhage detection on head CT, every family of method in one
leakage-free comparison. Research software, not a medical device.

The subpackages hold the work, lowest floor first: ``ichkit.scans`` (reading head CT,
windowing, patient-grouped splits, the phantom), ``ichkit.features`` (handcrafted
features), ``ichkit.classical`` and ``ichkit.deep`` (models), ``ichkit.ensemble``
(voting, stacking), ``ichkit.experiments`` (the runner, statistics, reports) and
``ichkit.webapp`` (serving a run). This module gives the short API; heavy modules are
imported on first use, so ``import ichkit`` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ichkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "list_configs",
    "list_models",
    "load",
    "register_feature_family",
    "register_model",
    "run",
    "serve",
]

_HOMES = {
    "load": "ichkit.scans",
    "run": "ichkit.experiments.runner",
    "serve": "ichkit.webapp",
    "list_configs": "ichkit.experiments.config",
    "list_models": "ichkit.experiments.registry",
    "register_model": "ichkit.experiments.registry",
    "register_feature_family": "ichkit.features.union",
}
_NAMES = {"run": "run_experiment"}


def __getattr__(name: str):
    """The short API's names, imported on first use."""
    if name not in _HOMES:
        raise AttributeError(f"module 'ichkit' has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), _NAMES.get(name, name))


def __dir__() -> list[str]:
    return sorted(__all__)
