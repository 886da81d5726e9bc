"""Tests for scans.splits: patient grouping guarantees."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ichkit.scans.splits import PART_NAMES, Split, grouped_kfold, patient_split


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
