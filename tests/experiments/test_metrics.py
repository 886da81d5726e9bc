"""Metrics agree with scikit-learn and with counting by hand."""

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from ichkit.experiments.metrics import binary_metrics, scan_predictions


def test_binary_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    probability = np.clip(0.3 * y + rng.uniform(0, 0.7, 200), 0, 1)
    values = binary_metrics(y, probability, threshold=0.5)
    predicted = probability >= 0.5
    assert values["auc"] == roc_auc_score(y, probability)
    assert values["accuracy"] == accuracy_score(y, predicted)
    assert values["sensitivity"] == recall_score(y, predicted)
    assert values["specificity"] == recall_score(1 - y, ~predicted)
    assert values["precision"] == precision_score(y, predicted)
    assert values["f1"] == f1_score(y, predicted)
    assert values["tp"] + values["tn"] + values["fp"] + values["fn"] == 200


def test_known_counts_and_one_class():
    values = binary_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], threshold=0.5)
    assert (values["tp"], values["tn"], values["fp"], values["fn"]) == (1, 1, 1, 1)
    assert values["auc"] == 0.75
    assert np.isnan(binary_metrics([0, 0], [0.2, 0.3], 0.5)["auc"])


def test_scan_is_positive_if_any_slice_is():
    slices = pd.DataFrame(
        {
            "scan_id": ["a", "a", "b", "b"],
            "patient_id": ["p", "p", "q", "q"],
            "label": [0, 1, 0, 0],
            "probability": [0.2, 0.7, 0.4, 0.1],
        }
    )
    scans = scan_predictions(slices)
    assert scans["label"].tolist() == [1, 0] and scans["probability"].tolist() == [0.7, 0.4]


def test_pooled_cells_and_their_intervals_come_from_one_estimator():
    """Each summary value is the pooled statistic, and its bootstrap interval holds it,
    even on two patients a fold (where percentile intervals are most skewed)."""
    from ichkit.experiments.tables import compute_metrics, summarise

    rng = np.random.default_rng(5)
    rows = []
    for fold in range(3):
        for patient in range(2):
            for index in range(6):
                label = int(patient == 1 and index > 2)
                rows.append({"model": "m", "fold": fold, "path": f"{fold}{patient}/{index}",
                             "patient_id": f"{fold}-{patient}", "scan_id": f"{fold}-{patient}",
                             "slice_index": index, "label": label, "row": len(rows),
                             "probability": float(np.clip(0.4 * label + rng.uniform(0, 0.7), 0, 1)),
                             "threshold": 0.45, "scan_threshold": 0.45,
                             "ms_per_slice": 1.0})  # fmt: skip
    predictions = pd.DataFrame(rows)
    summary = summarise(compute_metrics(predictions), predictions, n_resamples=200)
    for _, row in summary.iterrows():
        for metric in ("auc", "accuracy", "sensitivity", "specificity", "precision", "f1"):
            point, low, high = (row[f"{metric}_{part}"] for part in ("pooled", "ci_low", "ci_high"))
            if not np.isnan(point) and not np.isnan(low):
                assert low <= point <= high, (row["level"], metric, point, low, high)
    slice_row = summary[summary["level"] == "slice"].iloc[0]
    assert slice_row["n"] == 36 and slice_row["n_positive"] == 9 and slice_row["n_patients"] == 6
    assert slice_row["paired_note"] == "reference"


def test_test_sizes_count_each_level_per_fold_and_in_all():
    from ichkit.experiments.tables import evaluation_sizes

    predictions = pd.DataFrame({
        "model": "m", "fold": [0, 0, 0, 1, 1, 1], "patient_id": ["a", "a", "b", "c", "c", "d"],
        "scan_id": ["a", "a", "b", "c", "c", "d"], "label": [0, 1, 0, 0, 0, 1],
        "probability": 0.5, "threshold": 0.5,
    })  # fmt: skip
    sizes = evaluation_sizes(predictions).set_index(["level", "fold"])
    assert sizes.loc[("slice", "all"), ["n_patients", "n_positive", "n_negative"]].tolist() == [
        4,
        2,
        4,
    ]
    assert sizes.loc[("scan", "all"), ["n_scans", "n_positive", "n_negative"]].tolist() == [4, 2, 2]
    assert sizes.loc[("scan", 1), "n_slices"] == 3
