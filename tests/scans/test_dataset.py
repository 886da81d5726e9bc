"""ScanDataset: the shared table, derived labels, scans in order, refusal before training."""

import numpy as np
import pandas as pd
import pytest

from ichkit.scans import DatasetError, ScanDataset


def _table():
    return pd.DataFrame(
        {
            "path": [f"/d/{i}.png" for i in range(6)],
            "format": "image",
            "patient_id": ["b", "b", "b", "a", "a", "c"],
            "scan_id": ["b1", "b1", "b1", "a1", "a1", "c1"],
            "slice_index": [2, 0, 1, 1, 0, None],
            "subdural": [0, 1, 0, 0, 0, None],
            "epidural": [0, 0, 0, 0, 1, None],
        }
    )


def test_label_is_derived_from_subtypes_and_rows_are_ordered():
    dataset = ScanDataset(_table(), layout="folders", root="/d")
    table = dataset.table
    assert list(table.columns[:7]) == [
        "path", "format", "frame", "patient_id", "scan_id", "slice_index", "label"
    ]  # fmt: skip
    assert dataset.subtypes == ["epidural", "subdural"]
    assert table["patient_id"].tolist() == ["a", "a", "b", "b", "b", "c"]
    assert table["label"].tolist()[:5] == [1, 0, 1, 0, 0]
    assert np.isnan(dataset.labels[-1])
    assert not dataset.is_ordered  # patient c has a loose slice


def test_iter_scans_yields_slices_in_order():
    dataset = ScanDataset(_table(), layout="folders", root="/d")
    scans = dict(dataset.iter_scans())
    assert scans["b1"]["slice_index"].tolist() == [0, 1, 2]
    assert scans["b1"]["path"].tolist() == ["/d/1.png", "/d/2.png", "/d/0.png"]


def test_subset_keeps_layout():
    dataset = ScanDataset(_table(), layout="csv", root="/d")
    part = dataset.subset([0, 1])
    assert len(part) == 2 and part.layout == "csv" and set(part.groups) == {"a"}


def test_require_trainable():
    table = _table()
    ScanDataset(table, layout="folders", root="/d").require_trainable()
    with pytest.raises(DatasetError, match="one class only .*all normal"):
        ScanDataset(table.iloc[[0, 2]], layout="folders", root="/d").require_trainable()
    with pytest.raises(DatasetError, match="no labelled slices"):
        ScanDataset(table.iloc[[5]], layout="folders", root="/d").require_trainable()
