"""Tests for scans.duplicates: near-duplicate slices across the parts of a split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from ichkit import scans
from ichkit.scans._slice import SliceImage
from ichkit.scans.dataset import ScanDataset
from ichkit.scans.duplicates import find_near_duplicates
from ichkit.scans.splits import Split


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
