"""Shared helpers of the experiments tests."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml

from ichkit.scans.phantom import write_phantom


@pytest.fixture(scope="session")
def train_tiny_run():
    """``_train_tiny_run``, for module-scoped fixtures of external-data tests."""
    return _train_tiny_run


def _train_tiny_run(root: Path, settings: dict, n_scans: int) -> Path:
    """A finished 2-fold run of ``settings`` on a tiny phantom (32 px, ``n_scans`` scans of
    as many slices), written under ``root``; the source of external-data tests."""
    from ichkit.experiments.runner import run_experiment

    data = write_phantom(root / "train", n_scans, seed=4, size=32, n_slices=n_scans)
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(settings))
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        patch.setenv("ICHKIT_CACHE_DIR", str(root / "cache"))
        warnings.simplefilter("ignore", UserWarning)  # few patients: no stratified inner splits
        run_experiment(config, data, root / "run", cv=2, progress=False)
    return root / "run"
