"""One phantom written in every layout reads back through scans.load unchanged."""

import numpy as np
import pytest

from ichkit import scans
from ichkit.scans.phantom import PHANTOM_FORMATS, make_phantom_scans, write_phantom
from ichkit.scans.windowing import Window

N_SCANS, SIZE, N_SLICES, SEED = 5, 32, 8, 11


@pytest.fixture(scope="module")
def phantom():
    return make_phantom_scans(N_SCANS, seed=SEED, size=SIZE, n_slices=N_SLICES)


@pytest.mark.parametrize("format", PHANTOM_FORMATS)
def test_labels_order_and_pixels_survive_every_layout(tmp_path, phantom, format):
    root = write_phantom(tmp_path / format, N_SCANS, seed=SEED, format=format,
                         size=SIZE, n_slices=N_SLICES)  # fmt: skip
    dataset = scans.load(root)
    assert dataset.layout == {"png": "csv"}.get(format, format)
    assert not dataset.skipped and not any("no patient ids" in n for n in dataset.notes)
    assert dataset.is_ordered and dataset.table["patient_id"].nunique() == N_SCANS
    assert set(dataset.subtypes) == set(scans.SUBTYPES)
    by_patient = dataset.table.sort_values("slice_index").groupby("patient_id", sort=True)
    for (_, rows), scan in zip(by_patient, phantom, strict=True):
        assert rows["label"].tolist() == scan.slice_labels.tolist()
        np.testing.assert_array_equal(rows[list(scans.SUBTYPES)].to_numpy(int), scan.slice_subtypes)
        for position, k in ((0, 0), (N_SLICES // 2, N_SLICES // 2)):
            image = dataset.read(int(rows.index[position]))
            if format in ("dicom", "nifti"):
                assert image.hounsfield
                np.testing.assert_allclose(image.pixels, np.rint(scan.hu[k]), atol=0.5)
            else:
                center, width = (40, 80) if format == "png" else (40, 120)
                expected = Window(center, width)(scan.hu[k]) * 255
                # PNG is lossless; the CT-ICH export is JPEG, as the real one is.
                tolerance = 1.0 if format == "png" else 40.0
                assert np.abs(image.pixels - expected).mean() < tolerance / 4
                assert np.abs(image.pixels - expected).max() <= tolerance
