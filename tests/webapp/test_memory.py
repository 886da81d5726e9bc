"""Server memory is bounded: no cache outlives its request.

Twenty uploads of a large NIfTI volume (the phantom's head at 512 x 512 pixels, 100
slices: 52 MB of int16, 105 MB once read as float32), sent to the app behind waitress in
this process, leave its resident memory within 20 % of its level after the first. A
reader cache keyed by the requests' temporary paths, or one volume kept per waitress
thread, would hold several such volumes and fail this."""

from __future__ import annotations

import io
import json
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="reads the resident memory from /proc"
)

N_UPLOADS = 20
N_SLICES = 100


def _resident_mb() -> float:
    """This process's resident memory (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS line in /proc/self/status")


@pytest.fixture(scope="module")
def large_volume(tmp_path_factory) -> bytes:
    """The phantom head at 512 px, repeated to ``N_SLICES`` slices, as .nii.gz bytes
    (as ``shared/checks/10-reliability`` builds its volumes)."""
    import nibabel
    import numpy as np

    from ichkit.scans.phantom import write_phantom

    root = tmp_path_factory.mktemp("large")
    data_folder = write_phantom(root / "phantom", 1, seed=6, format="nifti")
    image = nibabel.load(next((data_folder / "imagesTr").glob("*.nii.gz")))
    head = np.asarray(image.dataobj)
    factor = max(1, 512 // head.shape[0])
    head = np.repeat(np.repeat(head, factor, axis=0), factor, axis=1)
    repeats = N_SLICES // head.shape[2] + 1
    volume = np.concatenate([head] * repeats, axis=2)[:, :, :N_SLICES].astype(np.int16)
    path = root / "large.nii.gz"
    nibabel.save(nibabel.Nifti1Image(volume, image.affine), path)
    return path.read_bytes()


def test_twenty_large_volumes_leave_memory_where_the_first_did(live_server, large_volume):
    from werkzeug.datastructures import FileStorage
    from werkzeug.test import encode_multipart

    def upload() -> None:
        boundary, body = encode_multipart(
            {"file": FileStorage(io.BytesIO(large_volume), "large.nii.gz"), "heatmaps": "0"}
        )
        request = urllib.request.Request(
            live_server + "/api/predict",
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            assert response.status == 200
            assert len(json.loads(response.read())["slices"]) == N_SLICES

    upload()
    after_first = _resident_mb()
    for _ in range(N_UPLOADS - 1):
        upload()
    after_last = _resident_mb()
    assert after_last <= 1.2 * after_first, (
        f"resident memory grew from {after_first:.0f} MB after the first upload to "
        f"{after_last:.0f} MB after {N_UPLOADS}"
    )
