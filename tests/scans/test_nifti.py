"""One NIfTI volume (scans/nifti.py): slices in viewing orientation, whatever the storage."""

import nibabel
import numpy as np

from ichkit.scans.nifti import read_nifti_slice


def _save(path, data, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4) if affine is None else affine), path)


def _volume():
    """x (left->right), y (posterior->anterior), z (inferior->superior); slice k holds k."""
    data = np.zeros((8, 6, 4), np.float32)
    data += np.arange(4, dtype=np.float32)[None, None, :]
    data[7, 5, :] = 100  # the patient's far right-anterior corner... in RAS, x=7 is rightmost
    return data


def test_slices_run_inferior_to_superior_in_viewing_orientation(tmp_path):
    _save(tmp_path / "scan.nii.gz", _volume())
    first = read_nifti_slice(tmp_path / "scan.nii.gz", frame=0)
    assert first.hounsfield and first.pixels.shape == (6, 8)
    # Anterior at the top, the patient's right on the image's left (radiological view).
    assert first.pixels[0, 0] == 100
    assert read_nifti_slice(tmp_path / "scan.nii.gz", frame=3).pixels[3, 3] == 3


def test_orientation_does_not_depend_on_the_stored_axis_order(tmp_path):
    flipped = np.diag([-1.0, -1.0, -1.0, 1.0])  # stored left-posterior-superior... reversed
    _save(tmp_path / "a.nii.gz", _volume())
    _save(tmp_path / "b.nii.gz", _volume()[::-1, ::-1, ::-1].copy(), flipped)
    for frame in range(4):
        np.testing.assert_array_equal(
            read_nifti_slice(tmp_path / "a.nii.gz", frame=frame).pixels,
            read_nifti_slice(tmp_path / "b.nii.gz", frame=frame).pixels,
        )
