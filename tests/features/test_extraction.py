"""Extraction over a data set: cached by content and config, bad slices skipped by name."""

import numpy as np
import pytest

from ichkit import scans
from ichkit.features.extraction import extract_features, resolve_feature_config
from ichkit.scans.phantom import write_phantom

CONFIG = {"families": ["intensity", "bands"], "size": 32}


@pytest.fixture
def phantom(tmp_path):
    return write_phantom(tmp_path / "ph", 3, seed=4, size=32, n_slices=6)


def test_features_are_finite_and_indexed_by_row(phantom):
    dataset = scans.load(phantom)
    features, skipped = extract_features(dataset, CONFIG, progress=False)
    assert not skipped and list(features.index) == list(range(len(dataset)))
    assert np.isfinite(features.to_numpy()).all()
    assert features.columns[0] == "firstorder_mean"


def test_parallel_equals_serial(phantom):
    dataset = scans.load(phantom)
    serial, _ = extract_features(dataset, CONFIG, progress=False)
    parallel, _ = extract_features(dataset, CONFIG, n_jobs=2, chunk_size=5, progress=False)
    np.testing.assert_array_equal(serial.to_numpy(), parallel.to_numpy())


def test_cache_returns_identical_features_and_follows_changes(phantom, tmp_path, monkeypatch):
    import ichkit.features.extraction as extraction

    cache = tmp_path / "cache"
    dataset = scans.load(phantom)
    first, _ = extract_features(dataset, CONFIG, cache_dir=cache, progress=False)
    calls = []
    original = extraction.read_row
    monkeypatch.setattr(extraction, "read_row", lambda row: calls.append(row) or original(row))
    again, _ = extract_features(dataset, CONFIG, cache_dir=cache, progress=False)
    np.testing.assert_array_equal(first.to_numpy(), again.to_numpy())
    assert calls == []  # everything came from the cache
    changed = {**CONFIG, "size": 24}
    extract_features(dataset, changed, cache_dir=cache, progress=False)
    assert len(calls) == len(dataset)  # a new config recomputes every slice
    calls.clear()
    path = dataset.table["path"].iloc[0]
    black = np.zeros((32, 32), np.uint8)
    from PIL import Image

    Image.fromarray(black).save(path)  # the file's content changes
    edited, _ = extract_features(dataset, CONFIG, cache_dir=cache, progress=False, chunk_size=6)
    calls.clear()
    Image.fromarray(np.full((32, 32), 9, np.uint8)).save(path)  # and again
    edited, _ = extract_features(dataset, CONFIG, cache_dir=cache, progress=False, chunk_size=6)
    # Only the stored chunk that holds the edited file is computed again.
    assert [row["path"] for row in calls] == list(dataset.table["path"].iloc[:6])
    assert not np.array_equal(edited.iloc[0].to_numpy(), first.iloc[0].to_numpy())
    np.testing.assert_array_equal(edited.iloc[6:].to_numpy(), first.iloc[6:].to_numpy())


def test_features_can_live_in_a_memory_map(phantom, tmp_path):
    dataset = scans.load(phantom)
    in_memory, _ = extract_features(dataset, CONFIG, progress=False)
    mapped, _ = extract_features(dataset, CONFIG, progress=False, out=tmp_path / "f.npy")
    np.testing.assert_array_equal(mapped.to_numpy(), in_memory.to_numpy())
    assert isinstance(np.load(tmp_path / "f.npy", mmap_mode="r"), np.memmap)


def test_corrupt_slice_is_reported_by_name_and_skipped(phantom):
    dataset = scans.load(phantom)
    broken = dataset.table["path"].iloc[2]
    with open(broken, "r+b") as file:
        file.truncate(len(file.read()) // 2)
    features, skipped = extract_features(dataset, CONFIG, progress=False)
    assert [item.path for item in skipped] == [broken]
    assert "truncated" in skipped[0].reason
    assert 2 not in features.index and len(features) == len(dataset) - 1
    with pytest.raises(scans.ScanReadError, match="truncated"):
        extract_features(dataset, CONFIG, strict=True, progress=False)


def test_unknown_config_key():
    with pytest.raises(ValueError, match="Unknown feature config keys: sizes"):
        resolve_feature_config({"sizes": 64})
