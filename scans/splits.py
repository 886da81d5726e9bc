"""Patient-grouped splits: a train/validation/test split and grouped k-fold.

Leakage is the classic error of published hemorrhage detectors: slices of one patient
in both the training and the test part let a model recognise the patient instead of
the bleed. Every split here keeps all slices of a patient in one part. The leak that
grouping cannot see, the same image stored under two patient ids, is
``ichkit.scans.duplicates.find_near_duplicates``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from ichkit.scans.validation import as_generator, check_fraction, check_int

__all__ = ["Split", "patient_split", "grouped_kfold", "PART_NAMES"]

#: Names of the three parts, in ``Split`` order.
PART_NAMES = ("train", "validation", "test")


class Split(NamedTuple):
    """Slice positions of the three parts of a patient-grouped split.

    Attributes
    ----------
    train, validation, test : ndarray of int
        Sorted positions (row numbers) of the slices in each part.
    """

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray

    def part_names(self) -> np.ndarray:
        """The part name (``train``, ``validation``, ``test``) of every slice, by position.

        Returns
        -------
        ndarray of str, shape (n_slices,)
            Suitable as the ``parts`` of ``find_near_duplicates``.
        """
        n_slices = sum(len(part) for part in self)
        names = np.full(n_slices, "", dtype=object)
        for name, part in zip(PART_NAMES, self, strict=True):
            names[part] = name
        return names


def patient_split(
    groups: Sequence | np.ndarray,
    labels: Sequence | np.ndarray | None,
    *,
    val_size: float = 0.15,
    test_size: float = 0.15,
    random_state: int | np.random.Generator | None = None,
) -> Split:
    """Split slices into train, validation and test parts by patient.

    Patients (``groups``) are shuffled into the parts, stratified by the patient label:
    a patient is positive if any of their slices is. Unlabelled slices (NaN) count as
    negative for stratification only.

    Parameters
    ----------
    groups : array-like of shape (n_slices,)
        Patient id of every slice (``ScanDataset.groups``).
    labels : array-like of shape (n_slices,) or None
        0/1 label of every slice, NaN where unlabelled (``ScanDataset.labels``).
        None splits without stratification.
    val_size : float, default=0.15
        Fraction of patients in the validation part, in ``[0, 1)``.
    test_size : float, default=0.15
        Fraction of patients in the test part, in ``[0, 1)``;
        ``val_size + test_size`` must be < 1.
    random_state : int, Generator or None, default=None
        Seed for the shuffle; the same seed gives the same split.

    Returns
    -------
    Split
        Sorted slice positions of ``train``, ``validation`` and ``test``. Each part
        asked for (size > 0) holds at least one patient; parts are disjoint by patient
        and together cover every slice.

    Raises
    ------
    ValueError
        If there are fewer patients than non-empty parts asked for, if a patient id is
        missing, if labels are not 0, 1 or NaN, or if the sizes are out of range.

    Warns
    -----
    UserWarning
        When a class has too few patients to stratify; the split is then a plain
        grouped shuffle.

    Examples
    --------
    >>> groups = ["p1", "p1", "p2", "p3", "p3", "p4"]
    >>> split = patient_split(groups, None, val_size=0.25, test_size=0.25, random_state=0)
    >>> sorted(np.concatenate(split).tolist())
    [0, 1, 2, 3, 4, 5]
    """
    check_fraction(val_size, "val_size", "patient_split")
    check_fraction(test_size, "test_size", "patient_split")
    if val_size + test_size >= 1:
        raise ValueError(
            "The 'val_size' and 'test_size' parameters of patient_split must sum to < 1 "
            f"so that some patients are left to train on. Got {val_size!r} + {test_size!r}."
        )
    patient_of_slice, n_patients = _patient_codes(groups, "patient_split")
    patient_labels = _patient_labels(labels, patient_of_slice, n_patients, "patient_split")
    n_parts = 1 + (val_size > 0) + (test_size > 0)
    if n_patients < n_parts:
        raise ValueError(
            f"patient_split needs at least {n_parts} patients to give every part "
            f"(train, validation, test) at least one; got {n_patients} patient"
            f"{'s' if n_patients != 1 else ''} in 'groups'. Use more patients, or set "
            "val_size=0 or test_size=0 to ask for fewer parts."
        )
    n_test = _part_size(test_size, n_patients)
    n_validation = _part_size(val_size, n_patients)
    while n_patients - n_test - n_validation < 1:
        if n_validation >= n_test:
            n_validation -= 1
        else:
            n_test -= 1

    rng = as_generator(random_state, "patient_split")
    patients = np.arange(n_patients)
    parts = _stratified_parts(patients, patient_labels, n_validation, n_test, rng)
    if parts is None:
        order = rng.permutation(n_patients)
        parts = (
            order[n_test + n_validation :],
            order[n_test : n_test + n_validation],
            order[:n_test],
        )
    return Split(
        *(np.flatnonzero(np.isin(patient_of_slice, part_patients)) for part_patients in parts)
    )


def grouped_kfold(
    groups: Sequence | np.ndarray,
    labels: Sequence | np.ndarray | None,
    n_splits: int = 5,
    *,
    random_state: int | np.random.Generator | None = None,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """K folds by patient, stratified by slice label (scikit-learn's StratifiedGroupKFold).

    Parameters
    ----------
    groups : array-like of shape (n_slices,)
        Patient id of every slice.
    labels : array-like of shape (n_slices,) or None
        0/1 label of every slice, NaN where unlabelled (counted as negative for
        stratification). None gives grouped folds without stratification.
    n_splits : int, default=5
        Number of folds, at least 2 and at most the number of patients.
    random_state : int, Generator or None, default=None
        Seed for the shuffle of patients; the same seed gives the same folds.

    Returns
    -------
    iterator of (train_index, test_index)
        Sorted slice positions, one pair per fold. Every patient is in exactly one test
        fold, and no test fold is empty. The folds are made (and checked) at the call,
        so errors and warnings come at once rather than at the first iteration.

    Raises
    ------
    ValueError
        If ``n_splits`` is larger than the number of patients or smaller than 2.

    Warns
    -----
    UserWarning
        When fewer positive (or negative) patients than folds exist, so some test folds
        hold one class only and their AUC is undefined.
    """
    check_int(n_splits, "n_splits", "grouped_kfold", minimum=2)
    patient_of_slice, n_patients = _patient_codes(groups, "grouped_kfold")
    if n_splits > n_patients:
        raise ValueError(
            f"grouped_kfold cannot make n_splits={n_splits} folds from {n_patients} "
            f"patient{'s' if n_patients != 1 else ''}: each fold needs at least one patient. "
            f"Use n_splits <= {n_patients}."
        )
    patient_labels = _patient_labels(labels, patient_of_slice, n_patients, "grouped_kfold")
    slice_labels = _slice_labels(labels, len(patient_of_slice))
    if patient_labels.any() and not patient_labels.all():
        n_smallest = int(min(patient_labels.sum(), (~patient_labels).sum()))
        if n_smallest < n_splits:
            name = "positive" if patient_labels.sum() == n_smallest else "negative"
            warnings.warn(
                f"grouped_kfold: only {n_smallest} {name} patient"
                f"{'s' if n_smallest != 1 else ''} for {n_splits} folds; some test folds "
                "will hold one class only (their AUC is undefined).",
                UserWarning,
                stacklevel=2,
            )

    rng = as_generator(random_state, "grouped_kfold")
    seed = int(rng.integers(np.iinfo(np.int32).max))
    folds = None
    if np.unique(slice_labels).size > 1 and np.bincount(slice_labels).max() >= n_splits:
        from sklearn.model_selection import StratifiedGroupKFold  # lazy: 1 s to import

        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            # Replaced by the patient-level warning above, which says what it means.
            warnings.filterwarnings(
                "ignore", message="The least populated class", category=UserWarning
            )
            folds = [
                test
                for _, test in splitter.split(
                    np.zeros(len(slice_labels)), slice_labels, patient_of_slice
                )
            ]
        if any(len(test) == 0 for test in folds):
            folds = None
    if folds is None:
        folds = _balanced_group_folds(patient_of_slice, n_patients, n_splits, rng)
    every_slice = np.arange(len(patient_of_slice))
    pairs = []
    for test in folds:
        test = np.sort(test)
        pairs.append((np.setdiff1d(every_slice, test, assume_unique=True), test))
    return iter(pairs)


# --- helpers -----------------------------------------------------------------------------


def _patient_codes(groups: object, owner: str) -> tuple[np.ndarray, int]:
    """Patient number (0..n_patients-1, in sorted id order) of every slice."""
    groups = np.asarray(groups, dtype=object)
    if groups.ndim != 1:
        raise ValueError(
            f"The 'groups' parameter of {owner} must be 1-D (one patient id per slice). "
            f"Got shape {groups.shape}."
        )
    if groups.size == 0:
        raise ValueError(f"The 'groups' parameter of {owner} is empty; there is nothing to split.")
    missing = pd.isna(groups)
    if missing.any():
        raise ValueError(
            f"The 'groups' parameter of {owner} has {int(missing.sum())} missing patient ids "
            f"(first at position {int(np.flatnonzero(missing)[0])}); every slice needs one, "
            "or its patient cannot be kept in one part."
        )
    try:
        codes, uniques = pd.factorize(groups, sort=True)
    except TypeError:  # mixed id types cannot be sorted; first-seen order still works
        codes, uniques = pd.factorize(groups, sort=False)
    return codes.astype(np.intp), len(uniques)


def _slice_labels(labels: object, n_slices: int) -> np.ndarray:
    """0/1 label of every slice, unlabelled (NaN) as 0; all 0 when ``labels`` is None."""
    if labels is None:
        return np.zeros(n_slices, dtype=np.intp)
    values = pd.to_numeric(pd.Series(np.asarray(labels, dtype=object)), errors="coerce")
    return np.nan_to_num(values.to_numpy(dtype=float), nan=0.0).astype(np.intp)


def _patient_labels(
    labels: object, patient_of_slice: np.ndarray, n_patients: int, owner: str
) -> np.ndarray:
    """Whether each patient has a positive slice."""
    if labels is None:
        return np.zeros(n_patients, dtype=bool)
    raw = np.asarray(labels, dtype=object)
    if raw.shape != patient_of_slice.shape:
        raise ValueError(
            f"The 'labels' parameter of {owner} must have one label per slice: "
            f"{patient_of_slice.size} patient ids in 'groups', got {raw.size} labels."
        )
    values = pd.to_numeric(pd.Series(raw), errors="coerce").to_numpy(dtype=float)
    not_labels = ~(np.isnan(values) | np.isin(values, (0.0, 1.0)))
    not_labels |= np.isnan(values) & ~pd.isna(raw)
    if not_labels.any():
        examples = ", ".join(repr(value) for value in pd.unique(raw[not_labels])[:3])
        raise ValueError(
            f"The 'labels' parameter of {owner} must hold 0, 1 or NaN (unlabelled). Got {examples}."
        )
    positive = np.zeros(n_patients, dtype=bool)
    positive[patient_of_slice[values == 1]] = True
    return positive


def _part_size(fraction: float, n_patients: int) -> int:
    if fraction == 0:
        return 0
    return max(1, int(round(fraction * n_patients)))


def _stratified_parts(
    patients: np.ndarray,
    patient_labels: np.ndarray,
    n_validation: int,
    n_test: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Stratified (train, validation, test) patients, or None when a class is too small."""
    counts = np.bincount(patient_labels.astype(np.intp), minlength=2)
    if counts.min() == 0:  # one class: a plain shuffle is already stratified
        return None
    n_parts = 1 + (n_validation > 0) + (n_test > 0)
    n_train = len(patients) - n_validation - n_test
    sizes = [size for size in (n_train, n_validation, n_test) if size > 0]
    if counts.min() < n_parts or min(sizes) < 2:
        warnings.warn(
            f"patient_split could not stratify by label: {counts[1]} positive and "
            f"{counts[0]} negative patients for parts of {n_train}, {n_validation} and "
            f"{n_test} patients (each class needs at least one patient per part). "
            "Fell back to a grouped shuffle without stratification.",
            UserWarning,
            stacklevel=3,
        )
        return None
    try:
        rest, test = _take(patients, patient_labels, n_test, rng)
        train, validation = _take(rest, patient_labels[rest], n_validation, rng)
    except ValueError as error:  # scikit-learn's own limits on tiny classes
        warnings.warn(
            f"patient_split could not stratify by label ({error}); fell back to a grouped "
            "shuffle without stratification.",
            UserWarning,
            stacklevel=3,
        )
        return None
    return train, validation, test


def _take(
    patients: np.ndarray, patient_labels: np.ndarray, n_taken: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``patients`` into (rest, ``n_taken`` taken), stratified by label."""
    if n_taken == 0:
        return patients, patients[:0]
    from sklearn.model_selection import train_test_split  # lazy: 1 s to import

    seed = int(rng.integers(np.iinfo(np.int32).max))
    rest, taken = train_test_split(
        patients, test_size=n_taken, stratify=patient_labels, random_state=seed
    )
    return rest, taken


def _balanced_group_folds(
    patient_of_slice: np.ndarray, n_patients: int, n_splits: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Shuffled patients, each into the fold with the fewest slices so far (biggest first)."""
    sizes = np.bincount(patient_of_slice, minlength=n_patients)
    order = rng.permutation(n_patients)
    order = order[np.argsort(-sizes[order], kind="stable")]
    fold_of_patient = np.empty(n_patients, dtype=np.intp)
    fold_sizes = np.zeros(n_splits, dtype=np.intp)
    for position, patient in enumerate(order):
        # The first n_splits patients open one fold each, so no fold stays empty.
        fold = position if position < n_splits else int(np.argmin(fold_sizes))
        fold_of_patient[patient] = fold
        fold_sizes[fold] += sizes[patient]
    fold_of_slice = fold_of_patient[patient_of_slice]
    return [np.flatnonzero(fold_of_slice == fold) for fold in range(n_splits)]
