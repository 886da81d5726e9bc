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
