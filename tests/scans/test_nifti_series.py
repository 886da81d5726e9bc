"""Folders of NIfTI volumes (scans/nifti_series.py): masks (nnU-Net layout), NaN voxels."""

import json

import nibabel
import numpy as np
import pytest

from ichkit import scans


def _save(path, data, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4) if affine is None else affine), path)


def _volume():
    """x (left->right), y (posterior->anterior), z (inferior->superior); slice k holds k."""
    data = np.zeros((8, 6, 4), np.float32)
    data += np.arange(4, dtype=np.float32)[None, None, :]
    data[7, 5, :] = 100  # the patient's far right-anterior corner... in RAS, x=7 is rightmost
    return data


def test_nnunet_masks_give_slice_and_subtype_labels(tmp_path):
    mask = np.zeros((8, 6, 4), np.uint8)
    mask[2:4, 2:4, 1] = 2  # subdural on slice 1
    mask[2:4, 2:4, 2] = 5  # intraventricular on slice 2
    _save(tmp_path / "imagesTr" / "case7_0000.nii.gz", _volume())
    _save(tmp_path / "labelsTr" / "case7.nii.gz", mask)
    labels = {"background": 0, "EDH": 1, "SDH": 2, "SAH": 3, "IPH": 4, "IVH": 5}
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": labels}))
    dataset = scans.load(tmp_path)
    table = dataset.table
    assert dataset.layout == "nifti" and len(dataset) == 4
    assert table["patient_id"].unique().tolist() == ["case7"]
    assert table["label"].tolist() == [0, 1, 1, 0]
    assert table["subdural"].tolist() == [0, 1, 0, 0]
    assert table["intraventricular"].tolist() == [0, 0, 1, 0]
    assert dataset.read(2).pixels.mean() == pytest.approx((47 * 2 + 100) / 48)


def test_volume_without_mask_loads_unlabelled(tmp_path):
    _save(tmp_path / "scan.nii", _volume())
    dataset = scans.load(tmp_path)
    assert dataset.table["label"].isna().all()
    assert any("no mask" in note for note in dataset.notes)


def test_mismatched_mask_is_reported(tmp_path):
    _save(tmp_path / "scan.nii.gz", _volume())
    _save(tmp_path / "scan_mask.nii.gz", np.zeros((8, 6, 3), np.uint8))
    with pytest.warns(UserWarning, match="Skipped 1"):
        with pytest.raises(scans.DatasetError, match="mask has 3 slices, the volume 4"):
            scans.load(tmp_path)


def test_nan_voxels_become_air_and_are_reported(bad_inputs):
    with pytest.warns(UserWarning, match="NaN voxels on slice"):
        dataset = scans.load(bad_inputs / "nifti" / "nan-voxels.nii.gz")
    assert len(dataset) == 8
    assert any("slice(s) 3" in note for note in dataset.notes)
    for index in range(len(dataset)):
        assert np.isfinite(dataset.read(index).pixels).all()


def test_not_a_volume_is_skipped_with_its_name(tmp_path):
    (tmp_path / "broken.nii.gz").write_bytes(b"not gzip at all")
    _save(tmp_path / "good.nii.gz", _volume())
    with pytest.warns(UserWarning, match="broken.nii.gz"):
        dataset = scans.load(tmp_path)
    assert dataset.table["patient_id"].unique().tolist() == ["good"]
    assert "not a readable NIfTI" in dataset.skipped[0].reason
