"""Thresholds that survive small held-out parts: Youden's J where the rows carry it, a
stated fallback where they do not, never 0 or 1."""

import numpy as np
import pandas as pd
import pytest

from ichkit.experiments.thresholds import (
    MIN_PER_CLASS,
    fallback_notes,
    scan_threshold,
    slice_threshold,
)


def separable(n_per_class: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n_per_class)
    probability = np.where(y == 1, rng.uniform(0.6, 0.9, y.size), rng.uniform(0.1, 0.4, y.size))
    return y, probability


def test_youden_on_enough_held_out_rows_sits_between_the_classes():
    y, probability = separable(20)
    chosen = slice_threshold(y, probability, prevalence=0.5)
    assert chosen.rule == "youden" and not chosen.is_fallback and chosen.reason == ""
    # The midpoint of the gap between the classes, not the lowest positive score.
    assert probability[y == 0].max() < chosen.value < probability[y == 1].min()
    gap_middle = (probability[y == 0].max() + probability[y == 1].min()) / 2
    assert chosen.value == pytest.approx(gap_middle)


def test_too_few_positives_fall_back_to_the_training_prevalence_quantile():
    y, probability = separable(MIN_PER_CLASS - 1)
    probability = np.concatenate([probability, np.linspace(0.05, 0.3, 30)])
    y = np.concatenate([y, np.zeros(30, dtype=int)])
    chosen = slice_threshold(y, probability, prevalence=0.2)
    assert chosen.rule == "prevalence" and chosen.is_fallback
    assert "4 positive" in chosen.reason and f"needs {MIN_PER_CLASS} of each" in chosen.reason
    assert np.mean(probability >= chosen.value) == pytest.approx(0.2, abs=0.03)
    assert 0 < chosen.value < 1


def test_unseparated_rows_and_saturated_probabilities_never_give_0_or_1():
    y = np.repeat([0, 1], 10)
    reversed_scores = np.where(y == 1, 0.2, 0.8)  # ranks worse than chance
    chosen = slice_threshold(y, reversed_scores, prevalence=0.5)
    assert chosen.is_fallback and "not separated" in chosen.reason
    saturated = slice_threshold(y, np.ones(20), prevalence=0.5)
    assert saturated.value == 0.5 and saturated.rule == "default"
    assert 0 < chosen.value < 1


def test_scan_threshold_falls_back_to_the_slice_threshold():
    chosen = scan_threshold([0, 1], [0.2, 0.9], slice_value=0.37)
    assert chosen.rule == "slice" and chosen.value == 0.37
    assert "any slice" in chosen.reason
    y, probability = separable(8)
    assert scan_threshold(y, probability, slice_value=0.37).rule == "youden"


def test_fallback_notes_name_model_level_and_fold():
    rows = pd.DataFrame({
        "model": ["cnn"] * 4, "fold": [0, 0, 1, 1], "scan_id": ["a", "a", "b", "b"],
        "label": [0, 1, 0, 1], "probability": 0.5,
        "threshold": [0.4, 0.4, 0.6, 0.6], "threshold_rule": ["youden"] * 2 + ["prevalence"] * 2,
        "threshold_reason": ["", "", "few rows", "few rows"],
        "scan_threshold": 0.5, "scan_threshold_rule": "youden", "scan_threshold_reason": "",
    })  # fmt: skip
    notes = fallback_notes(rows)
    assert notes == [
        "cnn, slice threshold: a fallback, not Youden's J, in 1 of 2 folds (fold 1: few rows)"
    ]
