"""The speed work on the features left their values where they were.

``data/handcrafted_reference.npz`` holds every default feature of six phantom slices at
256 and 512 px as computed before the brain mask, HOG and Gabor were made faster at
512 px (ichkit at commit 1e91a73: whole-slice mask steps, scikit-image's ``resize``,
a 2-D kernel transform of the whole slice). The faster code must give the same
features: within 1e-5 of each feature's spread over the slices, plus 1e-6 absolute
(float32 rounding of the new FFT sizes and matrix products; measured 4e-6 at most on
120 CT-ICH slices at each size).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ichkit.features.union import HandcraftedFeatures
from ichkit.scans.phantom import make_phantom_scan

REFERENCE = Path(__file__).parent / "data" / "handcrafted_reference.npz"
#: (seed, subtypes) of the phantom scans; slices 3 and 5 of each.
SCANS = [(0, ()), (1, ("subdural",)), (2, ("intraparenchymal", "intraventricular"))]


def phantom_slices(size: int) -> np.ndarray:
    stacks = []
    for seed, subtypes in SCANS:
        scan = make_phantom_scan(seed, n_slices=8, size=size, subtypes=subtypes)
        stacks.append(scan.hu[[3, 5]])
    return np.concatenate(stacks).astype(np.float32)


@pytest.mark.parametrize("size", [256, 512])
def test_features_match_the_reference_computed_before_the_speed_work(size):
    slices = phantom_slices(size)
    expected = np.load(REFERENCE)[f"features_{size}"]
    extractor = HandcraftedFeatures().fit(slices)
    features = extractor.transform(slices)
    assert features.shape == expected.shape
    tolerance = 1e-5 * expected.std(axis=0) + 1e-6
    moved = np.abs(features - expected) > tolerance
    assert not moved.any(), extractor.get_feature_names_out()[moved.any(axis=0)].tolist()
