"""The plausibility gate in front of the web app's verdicts: nonsense gets a 422 naming
the file, real-looking slices and scans still get verdicts."""

from __future__ import annotations

import io
from pathlib import Path

import nibabel
import numpy as np
import pytest
from PIL import Image


def _post(client, path: Path, **fields):
    data = {"file": (io.BytesIO(path.read_bytes()), path.name), **fields}
    return client.post("/api/predict", data=data, content_type="multipart/form-data")


@pytest.mark.parametrize(
    ("name", "size", "value", "reason"),
    [
        ("one.png", (1, 1), 128, "too small (1x1 pixels"),
        ("black.png", (512, 512), 0, "constant image"),
    ],
)
def test_nonsense_slice_is_refused_naming_the_file(client, tmp_path, name, size, value, reason):
    path = tmp_path / name
    Image.new("L", size, value).save(path)
    response = _post(client, path, model="logreg")
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error.startswith(f"'{name}' does not look like a head CT slice: {reason}")
    assert str(tmp_path) not in error


def test_phantom_slice_still_gets_a_verdict(client, hemorrhage_slice):
    response = _post(client, hemorrhage_slice, model="logreg")
    assert response.status_code == 200
    assert response.get_json()["verdict"] in ("Hemorrhagic", "Normal")


def _volume_like(source: Path, target: Path, edit) -> Path:
    image = nibabel.load(source)
    data = np.asarray(image.dataobj, dtype=np.float32)
    nibabel.save(nibabel.Nifti1Image(edit(data), image.affine), target)
    return target


def test_scan_of_nothing_is_refused_and_a_scan_with_air_slices_gets_a_note(
    client, nifti_volume, tmp_path
):
    zeros = _volume_like(nifti_volume, tmp_path / "zeros.nii.gz", np.zeros_like)
    response = _post(client, zeros, model="lstm")
    assert response.status_code == 422
    assert response.get_json()["error"].startswith(
        "'zeros.nii.gz' does not look like a head CT scan: none of its 8 slices"
    )

    def air_on_top(data):
        data[:, :, -2:] = -1000.0  # two slices of air above the vertex
        return data

    topped = _volume_like(nifti_volume, tmp_path / "topped.nii.gz", air_on_top)
    response = _post(client, topped, model="lstm")
    assert response.status_code == 200
    notes = " ".join(response.get_json()["notes"])
    assert "2 of the 8 slices do not look like head CT on their own" in notes
    assert "constant image" in notes and str(tmp_path) not in notes
