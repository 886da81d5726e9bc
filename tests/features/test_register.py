"""A feature family registered from outside the package works like a built-in one."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ichkit.features import union
from ichkit.features._base import SliceFeatures
from ichkit.features.union import FamilySelector, HandcraftedFeatures, register_feature_family


class BrightFraction(SliceFeatures):
    """A user's family: the fraction of brain pixels above 60 HU."""

    def _names(self) -> list[str]:
        return ["bright_fraction"]

    def _features(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        inside = image[mask] if mask.any() else image.ravel()
        return np.array([float((inside > 60).mean())])


@pytest.fixture
def clean_families(monkeypatch):
    monkeypatch.setattr(union, "FAMILIES", dict(union.FAMILIES))
    monkeypatch.setattr(union, "FAMILY_PREFIXES", dict(union.FAMILY_PREFIXES))


def test_register_feature_family_extracts_and_is_selectable(clean_families):
    register_feature_family("bright", BrightFraction, prefix="bright_")
    slices = np.full((3, 64, 64), 30.0, dtype=np.float32)
    slices[1, 20:40, 20:40] = 80.0
    extractor = HandcraftedFeatures(families=("intensity", "bright")).fit(slices)
    names = list(extractor.get_feature_names_out())
    assert "bright_fraction" in names
    table = pd.DataFrame(extractor.transform(slices), columns=names)
    assert table["bright_fraction"].iloc[1] > table["bright_fraction"].iloc[0]
    assert list(FamilySelector(["bright"]).fit(table).columns_) == ["bright_fraction"]


def test_register_feature_family_refuses_clashes(clean_families):
    with pytest.raises(ValueError, match="already registered"):
        register_feature_family("glcm", BrightFraction, prefix="other_")
    with pytest.raises(ValueError, match="must not overlap.*glcm"):
        register_feature_family("glcm2", BrightFraction, prefix="glcm_")
