"""Tests for scans.splits: patient grouping guarantees and near-duplicate detection."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy import ndimage

from ichkit import scans
from ichkit.scans._slice import SliceImage
from ichkit.scans.dataset import ScanDataset
from ichkit.scans.splits import (
    PART_NAMES,
    Split,
    find_near_duplicates,
    grouped_kfold,
    patient_split,
)


@st.composite
def grouped_slices(draw, min_patients=1, max_patients=40):
    """Random patient ids per slice (every patient has a slice) and 0/1/NaN labels."""
    n_patients = draw(st.integers(min_patients, max_patients))
    n_extra = draw(st.integers(0, 3 * n_patients))
    extra = draw(st.lists(st.integers(0, n_patients - 1), min_size=n_extra, max_size=n_extra))
    order = draw(st.permutations(list(range(n_patients)) + extra))
    groups = np.array([f"patient-{number:03d}" for number in order], dtype=object)
    labels = draw(
        st.lists(st.sampled_from([0.0, 1.0, np.nan]), min_size=len(groups), max_size=len(groups))
    )
    return groups, np.array(labels), n_patients


def patients_of(groups: np.ndarray, positions: np.ndarray) -> set:
    return set(groups[positions].tolist())


def patient_is_positive(groups: np.ndarray, labels: np.ndarray) -> dict:
    table = pd.DataFrame({"patient": groups, "positive": np.nan_to_num(labels) == 1})
    return table.groupby("patient")["positive"].any().to_dict()


# --- patient_split -------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(data=grouped_slices(min_patients=3), seed=st.integers(0, 2**16))
def test_patient_split_guarantees(data, seed):
    groups, labels, n_patients = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fallback to an unstratified shuffle
        split = patient_split(groups, labels, random_state=seed)
    parts = [patients_of(groups, part) for part in split]
    # Every part non-empty, disjoint by patient, every patient in exactly one part.
    assert all(parts)
    assert sum(len(part) for part in parts) == n_patients
    assert set().union(*parts) == set(groups.tolist())
    # Slices: sorted positions covering every slice exactly once.
    every = np.concatenate(split)
    assert np.array_equal(np.sort(every), np.arange(len(groups)))
    for part in split:
        assert np.array_equal(part, np.sort(part))
        assert part.dtype.kind == "i"


@settings(max_examples=30, deadline=None)
@given(data=grouped_slices(min_patients=3), seed=st.integers(0, 2**16))
def test_patient_split_is_reproducible(data, seed):
    groups, labels, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        first = patient_split(groups, labels, random_state=seed)
        second = patient_split(groups, labels, random_state=seed)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_patient_split_sizes_and_stratification():
    rng = np.random.default_rng(0)
    n_patients = 200
    positive_patients = rng.random(n_patients) < 0.3
    groups = np.repeat(np.arange(n_patients), rng.integers(1, 20, n_patients))
    labels = np.where(positive_patients[groups], rng.random(len(groups)) < 0.5, 0).astype(float)
    positive_patients = np.array(list(patient_is_positive(groups, labels).values()))
    labels[rng.random(len(labels)) < 0.1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # enough patients: no fallback
        split = patient_split(groups, labels, random_state=1)
    positive = patient_is_positive(groups, labels)
    overall = np.mean(list(positive.values()))
    counts = [len(patients_of(groups, part)) for part in split]
    assert counts == [140, 30, 30]
    for part in split:
        fraction = np.mean([positive[patient] for patient in patients_of(groups, part)])
        assert abs(fraction - overall) < 0.05
    assert abs(overall - positive_patients.mean()) < 0.1


def test_patient_split_counts_unlabelled_as_negative():
    groups = np.repeat(np.arange(30), 2)
    labels = np.full(60, np.nan)
    labels[:20] = 1.0  # ten positive patients
    split = patient_split(groups, labels, val_size=0.2, test_size=0.2, random_state=0)
    for part in split:
        assert 0 < np.nansum(labels[part])


def test_patient_split_falls_back_with_a_warning():
    groups = np.arange(20)
    labels = np.zeros(20)
    labels[0] = 1.0
    with pytest.warns(UserWarning, match="could not stratify by label: 1 positive and 19 negative"):
        split = patient_split(groups, labels, random_state=0)
    assert all(len(part) for part in split)


def test_patient_split_single_class_needs_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        split = patient_split(np.arange(10), np.zeros(10), random_state=0)
        patient_split(np.arange(10), None, random_state=0)
    assert [len(part) for part in split] == [6, 2, 2]


@pytest.mark.parametrize("n_patients", [1, 2])
def test_patient_split_too_few_patients(n_patients):
    groups = np.repeat(np.arange(n_patients), 3)
    plural = "patient" if n_patients == 1 else "patients"
    with pytest.raises(ValueError, match=f"needs at least 3 patients .* got {n_patients} {plural}"):
        patient_split(groups, None)


def test_patient_split_two_parts():
    with pytest.warns(UserWarning, match="could not stratify"):
        split = patient_split(["a", "b"], [0, 1], val_size=0, test_size=0.5, random_state=0)
    assert len(split.validation) == 0
    assert len(split.train) == len(split.test) == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"val_size": 1.2}, "The 'val_size' parameter of patient_split must be a float in"),
        ({"test_size": -0.1}, "The 'test_size' parameter of patient_split must be a float in"),
        ({"val_size": 0.5, "test_size": 0.5}, "must sum to < 1"),
    ],
)
def test_patient_split_size_checks(arguments, message):
    with pytest.raises(ValueError, match=message):
        patient_split(np.arange(10), None, **arguments)


def test_patient_split_label_and_group_checks():
    with pytest.raises(ValueError, match="must hold 0, 1 or NaN \\(unlabelled\\). Got 2"):
        patient_split(np.arange(5), [0, 1, 2, 0, 1])
    with pytest.raises(ValueError, match="one label per slice: 5 patient ids"):
        patient_split(np.arange(5), [0, 1])
    with pytest.raises(ValueError, match="has 1 missing patient ids"):
        patient_split(["a", "b", None, "c"], None)


def test_split_part_names():
    split = Split(np.array([0, 3]), np.array([1]), np.array([2]))
    assert split.part_names().tolist() == ["train", "validation", "test", "train"]
    train, validation, test = split
    assert PART_NAMES == ("train", "validation", "test")


# --- grouped_kfold -------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(data=grouped_slices(min_patients=2), n_splits=st.integers(2, 6), seed=st.integers(0, 99))
def test_grouped_kfold_guarantees(data, n_splits, seed):
    groups, labels, n_patients = data
    if n_splits > n_patients:
        with pytest.raises(ValueError, match=f"from {n_patients} patients"):
            grouped_kfold(groups, labels, n_splits, random_state=seed)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        folds = list(grouped_kfold(groups, labels, n_splits, random_state=seed))
    assert len(folds) == n_splits
    test_count = pd.Series(0, index=pd.unique(groups))
    for train, test in folds:
        assert len(test) > 0
        assert not patients_of(groups, train) & patients_of(groups, test)
        assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(groups)))
        for patient in patients_of(groups, test):
            test_count[patient] += 1
    assert (test_count == 1).all()


def test_grouped_kfold_is_reproducible_and_stratified():
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(100), 10)
    labels = (rng.random(1000) < 0.2).astype(float)
    first = list(grouped_kfold(groups, labels, 5, random_state=4))
    second = list(grouped_kfold(groups, labels, 5, random_state=4))
    for (train_a, test_a), (train_b, test_b) in zip(first, second, strict=True):
        np.testing.assert_array_equal(train_a, train_b)
        np.testing.assert_array_equal(test_a, test_b)
    for _, test in first:
        assert abs(labels[test].mean() - labels.mean()) < 0.03


def test_grouped_kfold_errors_at_the_call():
    with pytest.raises(ValueError, match="cannot make n_splits=5 folds from 3 patients"):
        grouped_kfold(["a", "b", "c", "c"], None, 5)
    with pytest.raises(
        ValueError, match="The 'n_splits' parameter of grouped_kfold must be an int >= 2"
    ):
        grouped_kfold(["a", "b"], None, 1)


def test_grouped_kfold_warns_about_folds_without_positives():
    groups = np.arange(10)
    labels = np.zeros(10)
    labels[:2] = 1
    with pytest.warns(UserWarning, match="only 2 positive patients for 5 folds"):
        folds = list(grouped_kfold(groups, labels, 5, random_state=0))
    assert len(folds) == 5


# --- find_near_duplicates ------------------------------------------------------------------


def head(seed: int, size: int = 96) -> np.ndarray:
    """A head-like image in HU: skull ellipse, brain with a seeded smooth texture."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[:size, :size]
    center_row, center_column = size / 2 + rng.uniform(-6, 6, 2)
    radius_rows, radius_columns = rng.uniform(0.3, 0.45, 2) * size
    radius = np.hypot((rows - center_row) / radius_rows, (columns - center_column) / radius_columns)
    hounsfield = np.full((size, size), -1000.0, dtype=np.float32)
    hounsfield[radius < 1] = 1000.0
    texture = ndimage.gaussian_filter(rng.normal(size=(size, size)), 5)
    texture /= texture.std()
    brain = radius < 0.88
    hounsfield[brain] = 40 + 25 * texture[brain]
    return hounsfield


def test_copy_across_train_and_test_is_found():
    images = [head(seed) for seed in range(8)]
    copy = images[2] + np.random.default_rng(0).normal(0, 1, images[2].shape)  # re-exported
    images.append(copy.astype(np.float32))
    parts = ["train"] * 6 + ["validation", "test", "test"]
    found = find_near_duplicates(np.stack(images), parts)
    assert len(found) == 1
    row = found.iloc[0]
    assert (row.index_a, row.index_b) == (2, 8)
    assert (row.part_a, row.part_b) == ("train", "test")
    assert row.distance <= 4


def test_distinct_images_are_not_reported():
    images = [head(seed) for seed in range(12)]
    parts = np.array(["train", "test", "validation"] * 4)
    found = find_near_duplicates(images, parts)
    assert found.empty
    assert list(found.columns) == [
        "index_a",
        "index_b",
        "part_a",
        "part_b",
        "path_a",
        "path_b",
        "patient_id_a",
        "patient_id_b",
        "distance",
    ]


def test_duplicates_in_the_same_part_and_unassigned_images_are_ignored():
    image = head(1)
    images = [image, image.copy(), image.copy(), head(2)]
    found = find_near_duplicates(images, ["train", "train", None, "test"])
    assert found.empty


def test_blank_slices_are_not_compared():
    blank = np.full((32, 32), -1000.0)
    assert find_near_duplicates([blank, blank], ["train", "test"]).empty


def test_near_duplicates_accepts_split_and_grey_arrays():
    images = [head(seed) for seed in range(4)]
    images[3] = images[0].copy()
    split = Split(np.array([0, 1]), np.array([2]), np.array([3]))
    assert len(find_near_duplicates(images, split)) == 1
    grey = [np.round((image + 1000) / 8).astype(np.uint8) for image in images]
    assert len(find_near_duplicates(grey, split, window=None)) == 1


def test_near_duplicates_checks():
    with pytest.raises(ValueError, match="one part per image: 2 images, got 3 parts"):
        find_near_duplicates([head(0), head(1)], ["train", "test", "test"])
    with pytest.raises(ValueError, match="The 'max_distance' parameter of find_near_duplicates"):
        find_near_duplicates([head(0)], ["train"], max_distance=-1)
    with pytest.raises(ValueError, match="Did you mean 'brain'"):
        find_near_duplicates([head(0)], ["train"], window="brian")


def png_dataset(tmp_path) -> ScanDataset:
    """Five 8-bit PNG slices of four patients; p3's slice is a copy of p1's."""
    rows = []
    sources = {"p1": [0, 1], "p2": [2], "p3": [0], "p4": [3]}
    for patient, seeds in sources.items():
        for slice_index, seed in enumerate(seeds):
            grey = np.round(np.clip((head(seed) + 160) / 400, 0, 1) * 255).astype(np.uint8)
            path = tmp_path / f"{patient}_{slice_index}.png"
            Image.fromarray(grey).save(path)
            rows.append(
                {
                    "path": str(path),
                    "format": "image",
                    "patient_id": patient,
                    "scan_id": patient,
                    "slice_index": slice_index,
                    "label": 0,
                }
            )
    return ScanDataset(pd.DataFrame(rows), layout="csv", root=tmp_path)


def read_png(dataset: ScanDataset, index: int) -> SliceImage:
    path = dataset.table["path"].iloc[index]
    pixels = np.asarray(Image.open(path), dtype=np.float32)
    return SliceImage(pixels, hounsfield=False, path=path)


def check_dataset_duplicates(dataset: ScanDataset) -> None:
    parts = np.where(dataset.table["patient_id"] == "p3", "test", "train")
    found = find_near_duplicates(dataset, parts)
    assert len(found) == 1
    row = found.iloc[0]
    assert {row.patient_id_a, row.patient_id_b} == {"p1", "p3"}
    assert {row.path_a.rsplit("/", 1)[-1], row.path_b.rsplit("/", 1)[-1]} == {
        "p1_0.png",
        "p3_0.png",
    }
    assert row.distance == 0


def test_near_duplicates_in_scan_dataset_with_mocked_reader(tmp_path, monkeypatch):
    dataset = png_dataset(tmp_path)
    monkeypatch.setattr(ScanDataset, "read", read_png)
    check_dataset_duplicates(dataset)


def test_near_duplicates_in_scan_dataset(tmp_path):
    readers = pytest.importorskip("ichkit.scans.readers")
    if not hasattr(readers, "read_slice"):
        pytest.skip("ichkit.scans.readers.read_slice not written yet")
    check_dataset_duplicates(png_dataset(tmp_path))


def test_near_duplicates_scale_to_many_images():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, size=(1500, 16, 16)).astype(np.uint8)
    images[1499] = images[3]
    parts = np.where(np.arange(1500) < 1000, "train", "test")
    found = find_near_duplicates(images, parts, window=None)
    assert (3, 1499) in set(zip(found.index_a, found.index_b, strict=True))


def test_near_duplicates_on_real_slices(shared_data, tmp_path):
    """Default hash settings: a re-encoded copy is found, other patients' slices are not."""
    import io

    from ichkit.scans.readers import read_image

    dataset = scans.load(shared_data / "ct-ich-dev")
    rows = np.arange(0, len(dataset), 6)
    images = [dataset.read(int(index)) for index in rows]
    copy = Image.fromarray(images[7].pixels.astype(np.uint8)).resize((512, 512))
    buffer = io.BytesIO()
    copy.save(buffer, "JPEG", quality=70)
    (tmp_path / "copy.jpg").write_bytes(buffer.getvalue())
    images.append(read_image(tmp_path / "copy.jpg"))
    patients = [*dataset.table["patient_id"].iloc[rows], "copy"]
    parts = np.where(np.asarray(patients) == "copy", "test", "train")
    pairs = find_near_duplicates(images, parts)
    assert pairs[["index_a", "index_b"]].values.tolist() == [[7, len(images) - 1]]
    # Across all patients of the sample, nothing else comes close.
    everyone = find_near_duplicates(images[:-1], [str(p) for p in patients[:-1]])
    assert everyone.empty
