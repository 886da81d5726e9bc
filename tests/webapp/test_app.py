"""Every route and bad input through Flask's test client, on a tiny two-fold run."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.webapp.test_uploads import BAD_IMAGES


def _post(client, path: Path, route: str = "/api/predict", **fields):
    data = {"file": (io.BytesIO(path.read_bytes()), path.name), **fields}
    return client.post(route, data=data, content_type="multipart/form-data")


def _png_size(encoded: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(base64.b64decode(encoded))).size


def test_models_lists_the_run_with_thresholds_from_its_predictions(client, run_dir):
    answer = client.get("/api/models").get_json()
    models = {model["name"]: model for model in answer["models"]}
    assert set(models) == {"logreg", "smallcnn", "lstm", "voting"}
    assert models["lstm"]["input"] == "scan" and models["voting"]["input"] == "scan"
    assert models["smallcnn"]["folds"] == 2
    folds = [pd.read_csv(run_dir / "predictions" / f"smallcnn__fold{k}.csv") for k in (0, 1)]
    assert models["smallcnn"]["threshold"] == pytest.approx(
        np.mean([fold["threshold"].iloc[0] for fold in folds])
    )
    assert answer["default"] in ("logreg", "smallcnn")  # a slice model, never lstm
    assert answer["default_for_scans"] in models


def test_png_slice_gets_verdict_probability_threshold_and_heatmap(client, hemorrhage_slice,
                                                                   run_dir):  # fmt: skip
    response = _post(client, hemorrhage_slice, model="smallcnn")
    assert response.status_code == 200
    answer = response.get_json()
    assert answer["verdict"] in ("Hemorrhagic", "Normal")
    assert answer["hemorrhage"] == (answer["probability"] >= answer["threshold"])
    assert 0 <= answer["probability"] <= 1 and answer["kind"] == "slice"
    # the engine and precision the run chose for its CNN (fold 0 answers for the model)
    chosen = json.loads((run_dir / "models" / "smallcnn__fold0.inference.json").read_text())
    assert answer["engine"] == f"{chosen['engine']} {chosen['precision']}"
    assert answer["heatmap_model"] == "smallcnn"
    assert _png_size(answer["heatmaps"][0]["overlay_png"]) == (32, 32)
    assert set(answer["timing_ms"]) == {"read", "inference", "gradcam", "total"}
    assert "not a medical device" in answer["disclaimer"]


def test_served_folds_reproduce_the_runs_own_predictions(served, phantom, run_dir):
    """Each fold's model, served (CNN through ONNX), gives the probability the run
    recorded for its test slices: a whole scan, in order, so that a 2.5-D CNN sees the
    neighbours it saw in the run."""
    from ichkit import scans

    dataset = scans.load(phantom)
    for name in ("logreg", "smallcnn"):
        recorded = pd.read_csv(run_dir / "predictions" / f"{name}__fold0.csv")
        scan = recorded[recorded["scan_id"] == recorded["scan_id"].iloc[0]]
        recorded = scan.sort_values("slice_index")
        slices = [dataset.read(int(row)) for row in recorded["row"]]
        fold = served.load(name)[0]
        served_probability = fold.probability(slices, {})
        np.testing.assert_allclose(served_probability, recorded["probability"], atol=1e-4)


def test_scan_uploads_give_slice_plot_and_slices_to_look_at_first(
    client, dicom_series, nifti_volume
):
    for path, model in ((dicom_series, "lstm"), (nifti_volume, "voting"), (dicom_series, "")):
        response = _post(client, path, model=model)
        assert response.status_code == 200, response.get_json()
        answer = response.get_json()
        assert answer["kind"] == "scan" and len(answer["slices"]) == 8
        probabilities = [s["probability"] for s in answer["slices"]]
        assert answer["probability"] == pytest.approx(max(probabilities))
        assert probabilities[answer["look_first"][0]] == max(probabilities)
        assert len(answer["heatmaps"]) == 3 and answer["plot_png"]
    assert answer["model"] == client.get("/api/models").get_json()["default_for_scans"]


def test_dicom_slice_and_heatmap_count(client, dicom_folder):
    response = _post(client, next(dicom_folder.iterdir()), model="logreg", heatmaps="0")
    answer = response.get_json()
    assert response.status_code == 200 and answer["heatmaps"] == []
    assert answer["engine"].startswith("scikit-learn")


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"model": "lstm"}, 422, "reads the ordered slices of a scan"),
        ({"model": "svn"}, 400, "Unknown model 'svn'"),
        ({"heatmaps": "many"}, 400, "'heatmaps' must be an integer"),
        ({"heatmaps": "99"}, 400, "between 0 and 8"),
    ],
)
def test_bad_requests(client, hemorrhage_slice, fields, status, message):
    response = _post(client, hemorrhage_slice, **fields)
    assert response.status_code == status and message in response.get_json()["error"]


def test_missing_file(client):
    response = client.post("/api/predict", data={}, content_type="multipart/form-data")
    assert response.status_code == 400 and "form field 'file'" in response.get_json()["error"]


@pytest.mark.parametrize(("name", "status", "reason"), BAD_IMAGES)
def test_every_bad_input_is_a_4xx_without_trace(client, bad_inputs, name, status, reason):
    for route in ("/api/predict", "/"):
        response = _post(client, bad_inputs / name, route)
        assert response.status_code == status
        text = html.unescape(response.get_data(as_text=True))
        assert reason in text and Path(name).name in text and "Traceback" not in text


def test_too_large_upload_is_413(served, hemorrhage_slice, tmp_path):
    from ichkit.webapp import create_app

    client = create_app(served, max_upload_mb=0.001, upload_dir=tmp_path).test_client()
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200), np.uint8)).save(big)
    response = _post(client, big)
    assert response.status_code == 413 and "--max-upload-mb" in response.get_json()["error"]


def test_uploads_stay_in_a_temporary_folder_removed_after_the_request(
    served, dicom_series, bad_inputs, tmp_path
):
    from ichkit.webapp import create_app

    client = create_app(served, upload_dir=tmp_path).test_client()
    assert _post(client, dicom_series).status_code == 200
    assert _post(client, bad_inputs / "archives/path-climbing.zip").status_code == 400
    assert list(tmp_path.iterdir()) == []


def test_page_before_and_after_an_upload(client, hemorrhage_slice):
    page = client.get("/").get_data(as_text=True)
    assert "not a medical device" in page and 'id="file"' in page and "smallcnn" in page
    response = _post(client, hemorrhage_slice, route="/", model="smallcnn")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'id="verdict"' in page and 'id="heatmap"' in page and 'id="threshold"' in page
    assert "not a medical device" in page


def test_unknown_route_is_a_json_404_under_the_api(client):
    response = client.get("/api/nothing")
    assert response.status_code == 404 and "error" in response.get_json()


def _leaky_uploads(folder: Path, dicom_folder: Path, duplicate: Path) -> dict[str, Path]:
    """Uploads whose messages used to name server paths or internal names."""
    import gzip
    import zipfile

    folder.mkdir()
    text = folder / "text.nii.gz"
    text.write_bytes(gzip.compress(b"not a volume"))
    broken = folder / "broken.zip"
    first = next(dicom_folder.iterdir()).read_bytes()
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("series/cut.dcm", first[:400])
        archive.writestr("series/notes.txt", "no scan here")
    return {"text": text, "broken": broken, "duplicate": duplicate}


def test_answers_never_hold_server_paths_or_internal_names(
    served, dicom_folder, series_zip_with_copy, tmp_path
):
    from ichkit.webapp import create_app

    server_folder = tmp_path / "server"
    server_folder.mkdir()
    client = create_app(served, upload_dir=server_folder).test_client()
    uploads = _leaky_uploads(tmp_path / "client", dicom_folder, series_zip_with_copy)
    expected = {"text": (415, "text.nii.gz"), "broken": (422, "series/cut.dcm")}
    expected["duplicate"] = (200, "series/copy.dcm")
    for key, path in uploads.items():
        for route in ("/api/predict", "/"):
            response = _post(client, path, route)
            body = html.unescape(response.get_data(as_text=True))
            status, named = expected[key]
            assert response.status_code == status and named in body, body[:500]
            for internal in (str(server_folder), "ichkit-upload", "entry-0", "'entries'"):
                assert internal not in body, f"{key} {route}: {internal}"
    assert list(server_folder.iterdir()) == []


def test_every_request_releases_the_volumes_it_read(client, nifti_volume, monkeypatch):
    from ichkit.scans import nifti

    releases = []
    monkeypatch.setattr(nifti, "clear_volume_cache", lambda: releases.append(1))
    assert _post(client, nifti_volume, heatmaps="0").status_code == 200
    assert _post(client, Path(__file__)).status_code == 415
    assert len(releases) == 2
