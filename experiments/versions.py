"""The versions of everything a run used, for ``versions.json``."""

from __future__ import annotations

import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, packages_distributions, version

__all__ = ["used_package_versions"]


def used_package_versions() -> dict[str, str]:
    """Python, the platform, and every installed distribution this process has imported
    from (numpy, scikit-learn, xgboost, and keras, torch, onnx, onnxruntime, dask where a
    run used them), with the Keras backend when Keras was loaded.

    Read from ``sys.modules`` rather than from a fixed list, so a model a user
    registered (LightGBM, say) has its package recorded too.
    """
    versions = {"python": platform.python_version(), "platform": platform.platform()}
    owners = packages_distributions()
    names = {
        distribution
        for module in list(sys.modules)
        if "." not in module
        for distribution in owners.get(module, [])
    }
    names.add("ichkit")
    for name in sorted(names, key=str.lower):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    if "keras" in sys.modules:
        versions["keras backend"] = os.environ.get("KERAS_BACKEND", "tensorflow")
    return versions
