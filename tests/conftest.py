"""Shared fixtures: the real data beside the checkout (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ICHKIT_SHARED_DATA", REPOSITORY.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: small real head CT; tests that need it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real fixtures not found at {SHARED_DATA} (set ICHKIT_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def bad_inputs(shared_data: Path) -> Path:
    return shared_data / "bad-inputs"
