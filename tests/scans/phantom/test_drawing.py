"""The phantom head CT (scans/phantom/drawing.py): determinism, anatomy, lesions, difficulty."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ichkit.scans.dataset import SUBTYPES
from ichkit.scans.phantom import (
    MIN_LABEL_PIXELS,
    PhantomScan,
    make_phantom_scan,
    make_phantom_scans,
)

SMALL = {"size": 64, "n_slices": 16}
TINY = {"size": 32, "n_slices": 8}


@pytest.fixture(scope="module")
def lesion_scans() -> dict[str, list[tuple[PhantomScan, PhantomScan]]]:
    """For each subtype, (scan with it, its normal twin) for a few seeds."""
    pairs = {}
    for code, name in enumerate(SUBTYPES):
        pairs[name] = [
            (
                make_phantom_scan(seed, subtypes=(name,), **SMALL),
                make_phantom_scan(seed, subtypes=(), **SMALL),
            )
            for seed in (100 + 10 * code, 101 + 10 * code, 102 + 10 * code)
        ]
    return pairs


# --------------------------------------------------------------------------- volumes


def test_scan_shapes_and_types():
    scan = make_phantom_scan(0, subtypes=("subdural",), **SMALL)
    assert scan.hu.shape == scan.mask.shape == (16, 64, 64)
    assert scan.hu.dtype == np.float32 and scan.mask.dtype == np.uint8
    assert scan.slice_subtypes.shape == (16, 5)
    assert set(np.unique(scan.slice_subtypes)) <= {0, 1}
    assert scan.spacing_mm == (240 / 64, 240 / 64, 120 / 16)
    assert scan.subtypes == ("subdural",)
    np.testing.assert_array_equal(scan.slice_labels, scan.slice_subtypes.max(axis=1))


def test_same_seed_same_scan_and_different_seed_different_scan():
    first = make_phantom_scan(7, **SMALL)
    second = make_phantom_scan(7, **SMALL)
    other = make_phantom_scan(8, **SMALL)
    np.testing.assert_array_equal(first.hu, second.hu)
    np.testing.assert_array_equal(first.mask, second.mask)
    np.testing.assert_array_equal(first.slice_subtypes, second.slice_subtypes)
    assert first.subtypes == second.subtypes
    assert not np.array_equal(first.hu, other.hu)


def test_generator_and_seed_sequence_are_accepted():
    from_generator = make_phantom_scan(np.random.default_rng(3), **TINY)
    from_sequence = make_phantom_scan(np.random.SeedSequence(3), **TINY)
    np.testing.assert_array_equal(from_generator.hu, from_sequence.hu)


def test_data_set_is_deterministic_and_holds_every_subtype():
    for seed in range(4):
        scans = make_phantom_scans(5, seed=seed, **TINY)
        again = make_phantom_scans(5, seed=seed, **TINY)
        for scan, repeat in zip(scans, again, strict=True):
            np.testing.assert_array_equal(scan.hu, repeat.hu)
        labelled = np.concatenate([scan.slice_subtypes for scan in scans]).max(axis=0)
        assert labelled.tolist() == [1] * 5, f"seed {seed}: {labelled}"
        n_normal = sum(not scan.subtypes for scan in scans)
        assert n_normal == 2
        for scan in scans:
            assert len(scan.subtypes) <= 2
            present = scan.slice_subtypes.max(axis=0)
            assert [SUBTYPES[code] for code in np.flatnonzero(present)] == list(scan.subtypes)


def test_drawn_subtypes_are_about_half_normal():
    drawn = [make_phantom_scan(seed, **TINY).subtypes for seed in range(30)]
    n_normal = sum(not subtypes for subtypes in drawn)
    assert 8 <= n_normal <= 22
    assert all(len(subtypes) <= 2 for subtypes in drawn)


def test_tissue_densities():
    scan = make_phantom_scan(4, subtypes=(), size=128, n_slices=24)
    hu = scan.hu
    assert hu.min() >= -1024
    assert np.median(hu[:, :4, :4]) < -950  # air in the corners
    assert 1000 < hu.max() < 2000  # cortical bone
    middle = hu[12]
    skull = middle > 300
    cavity = ndimage.binary_erosion(ndimage.binary_fill_holes(skull) & ~skull, iterations=3)
    brain = middle[cavity]
    assert 20 < np.median(brain) < 45
    assert np.percentile(brain, 5) < 20  # CSF in ventricles and sulci
    # The head grows from the base, then shrinks toward the vertex.
    areas = (hu > -300).sum(axis=(1, 2))
    assert areas.argmax() not in (0, len(areas) - 1)
    assert areas[-1] < 0.6 * areas.max()


def test_normal_scan_has_no_labels():
    scan = make_phantom_scan(5, subtypes=(), **SMALL)
    assert scan.subtypes == ()
    assert not scan.mask.any() and not scan.slice_subtypes.any()


def test_labels_agree_with_masks(lesion_scans):
    for pairs in lesion_scans.values():
        for scan, _ in pairs:
            for code in range(1, 6):
                counts = (scan.mask == code).sum(axis=(1, 2))
                labelled = scan.slice_subtypes[:, code - 1] == 1
                assert (counts[labelled] >= MIN_LABEL_PIXELS).all()
                assert (counts[~labelled] == 0).all()


@pytest.mark.parametrize("name", SUBTYPES)
def test_each_subtype_is_placed_as_blood(lesion_scans, name):
    code = SUBTYPES.index(name) + 1
    for scan, twin in lesion_scans[name]:
        assert scan.subtypes == (name,)
        assert set(np.unique(scan.mask)) == {0, code}
        slices = np.flatnonzero(scan.slice_subtypes[:, code - 1])
        assert slices.size >= 1
        if name != "intraparenchymal":  # small clots may sit on one slice
            assert slices.size >= 2
            assert (np.diff(slices) == 1).all(), f"{name} skips slices: {slices}"
        blood = scan.hu[scan.mask == code]
        assert 45 <= blood.mean() <= 95, f"{name}: mean {blood.mean():.1f} HU"
        # The same seed without lesions gives the same head: changes stay near the lesion.
        changed = np.abs(scan.hu - twin.hu) > 1.0
        near = ndimage.binary_dilation(scan.mask > 0, iterations=4)
        assert changed[~near].mean() < 0.001


@pytest.mark.parametrize("name", ["epidural", "subdural"])
def test_extra_axial_blood_touches_the_inner_table(lesion_scans, name):
    code = SUBTYPES.index(name) + 1
    for scan, twin in lesion_scans[name]:
        for k in np.flatnonzero(scan.slice_subtypes[:, code - 1]):
            grown = ndimage.binary_dilation(scan.mask[k] == code, iterations=2)
            assert (twin.hu[k][grown] > 300).any(), f"{name} on slice {k} does not touch bone"


def test_intraventricular_blood_lies_in_ventricular_csf(lesion_scans):
    for scan, twin in lesion_scans["intraventricular"]:
        under = twin.hu[scan.mask == 5]
        assert np.median(under) < 20  # CSF before the bleed
        rows = np.nonzero(scan.mask == 5)[1]
        assert rows.mean() > scan.hu.shape[1] / 2 - 4  # dependent: toward the back


def test_intraparenchymal_blood_lies_in_brain(lesion_scans):
    for scan, twin in lesion_scans["intraparenchymal"]:
        under = twin.hu[scan.mask == 4]
        assert 15 < np.median(under) < 50
        assert under.max() < 200


def test_subarachnoid_blood_lies_in_sulci_or_basal_cisterns(lesion_scans):
    # Sulci reach at most ~20 mm under the inner table; the cisterns and the inner end
    # of the Sylvian fissures lie within ~40 mm of the middle of the head.
    for scan, twin in lesion_scans["subarachnoid"]:
        pixel_mm = scan.spacing_mm[0]
        for k in np.flatnonzero(scan.slice_subtypes[:, 2]):
            skull = twin.hu[k] > 300
            cavity = ndimage.binary_fill_holes(skull) & ~skull
            from_bone = ndimage.distance_transform_edt(cavity) * pixel_mm
            centre = np.array(ndimage.center_of_mass(cavity))
            rows, columns = np.nonzero(scan.mask[k] == 3)
            from_centre = np.hypot(rows - centre[0], columns - centre[1]) * pixel_mm
            assert ((from_bone[rows, columns] <= 20) | (from_centre <= 40)).all()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="Did you mean 'subdural'"):
        make_phantom_scan(0, subtypes=("subdurall",))
    with pytest.raises(TypeError, match=r"\('epidural',\)"):
        make_phantom_scan(0, subtypes="epidural")
    with pytest.raises(
        ValueError, match="'size' parameter of make_phantom_scan must be an int >= 32"
    ):
        make_phantom_scan(0, size=16)
    with pytest.raises(ValueError, match="'n_scans' parameter"):
        make_phantom_scans(0)


# --------------------------------------------------------------------------- difficulty


def _brightness_scores(hu: np.ndarray) -> dict[str, float]:
    """Simple per-slice brightness scores a threshold detector would use."""
    skull = hu > 300
    cavity = ndimage.binary_erosion(ndimage.binary_fill_holes(skull) & ~skull)
    soft_tissue = cavity & (hu < 150)
    n_cavity = max(int(cavity.sum()), 1)
    scores = {"max_inside_skull": float(hu[cavity].max()) if cavity.any() else 0.0}
    values = hu[soft_tissue]
    scores["p99_inside_skull"] = float(np.percentile(values, 99)) if values.size else 0.0
    for threshold in (50, 55, 60, 65, 70, 75):
        bright = int((soft_tissue & (hu > threshold)).sum())
        scores[f"count_above_{threshold}"] = bright
        scores[f"fraction_above_{threshold}"] = bright / n_cavity
    return scores


def test_a_brightness_threshold_does_not_solve_it():
    from sklearn.metrics import roc_auc_score

    scans = make_phantom_scans(16, seed=0, size=64)
    labels = np.concatenate([scan.slice_labels for scan in scans])
    assert 0.05 < labels.mean() < 0.5
    table: dict[str, list[float]] = {}
    for scan in scans:
        for hu in scan.hu:
            for name, value in _brightness_scores(hu).items():
                table.setdefault(name, []).append(value)
    areas = {name: roc_auc_score(labels, values) for name, values in table.items()}
    # Measured for seed 0: best 0.80 (count_above_55); over seeds 0-9 the best score
    # averaged 0.80 and never passed 0.89. The masks themselves separate perfectly.
    assert max(areas.values()) < 0.9, areas
    oracle = np.concatenate([(scan.mask > 0).sum(axis=(1, 2)) for scan in scans])
    assert roc_auc_score(labels, oracle) == 1.0
