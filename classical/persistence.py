"""Saving and loading trained classical models with what they need to be used again."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import joblib

__all__ = ["save_model", "load_model", "package_versions"]

_PACKAGES = ("ichkit", "numpy", "scikit-learn", "scikit-image", "xgboost-cpu", "joblib")


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages a saved model depends on."""
    versions = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    return versions


def save_model(path: str | Path, model, *, feature_config: dict, feature_names, **extra) -> Path:
    """Write ``model`` with its feature config, feature names and package versions.

    The file is a joblib pickle: load it only from a source you trust (your own
    runs), never from an upload.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": model,
        "feature_config": feature_config,
        "feature_names": list(feature_names),
        "versions": package_versions(),
        **extra,
    }
    temporary = path.with_name(path.name + ".tmp")
    joblib.dump(payload, temporary)
    temporary.replace(path)
    return path


def load_model(path: str | Path) -> dict:
    """Read what ``save_model`` wrote; warns when package versions differ."""
    import warnings

    payload = joblib.load(path)
    saved, current = payload.get("versions", {}), package_versions()
    changed = {k: (v, current.get(k)) for k, v in saved.items() if current.get(k) != v}
    if changed:
        details = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
        warnings.warn(
            f"Model '{path}' was saved with other package versions: {details}.", stacklevel=2
        )
    return payload
