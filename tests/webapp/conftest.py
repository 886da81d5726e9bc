"""A tiny finished run to serve (two folds of logreg, smallcnn, lstm and voting on a
phantom), phantom uploads, and a live server on loopback for the browser and load tests."""

from __future__ import annotations

import os
import threading
import warnings
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

os.environ["KERAS_BACKEND"] = "torch"

RUN_SETTINGS = {
    "features": {"families": ["intensity", "bands"], "size": 32},
    "models": ["logreg", "smallcnn", "lstm", "voting"],
    "deep": {"size": 32, "epochs": 2, "batch_size": 8},
    "sequence": {"units": 8, "epochs": 3},
    "tuning": {"inner_folds": 2},
    "bootstrap": 20,
    "n_jobs": 1,
}


@pytest.fixture(scope="session")
def phantom(tmp_path_factory) -> Path:
    from ichkit.scans.phantom import write_phantom

    return write_phantom(tmp_path_factory.mktemp("web") / "png", 8, seed=4, size=48, n_slices=8)


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory, phantom) -> Path:
    from ichkit.experiments.runner import run_experiment

    root = tmp_path_factory.mktemp("webrun")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(RUN_SETTINGS))
    with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
        patch.setenv("ICHKIT_CACHE_DIR", str(root / "cache"))
        warnings.simplefilter("ignore", UserWarning)  # 8 patients: no stratified inner splits
        run_experiment(config, phantom, root / "run", cv=2, progress=False)
    return root / "run"


@pytest.fixture(scope="session")
def served(run_dir):
    from ichkit.webapp import ServedRun

    return ServedRun(run_dir)


@pytest.fixture(scope="session")
def app(served):
    from ichkit.webapp import create_app

    return create_app(served)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def hemorrhage_slice(phantom) -> Path:
    """A phantom PNG slice labelled with a hemorrhage."""
    labels = pd.read_csv(phantom / "labels.csv", skipinitialspace=True)
    first = int(labels[labels["hemorrhage"] == 1].iloc[0]["id"])
    return next(path for path in phantom.rglob("*.png") if int(path.stem) == first)


@pytest.fixture(scope="session")
def dicom_series(tmp_path_factory) -> Path:
    """A zip of one phantom DICOM series."""
    from ichkit.scans.phantom import write_phantom

    root = tmp_path_factory.mktemp("dicom")
    data = write_phantom(root / "dicom", 2, seed=5, format="dicom", size=48, n_slices=8)
    series = [folder for folder in sorted(data.rglob("series-*")) if folder.is_dir()]
    path = root / "series.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(series[0].iterdir()):
            archive.write(file, f"series/{file.name}")
    return path


@pytest.fixture(scope="session")
def dicom_folder(dicom_series) -> Path:
    return next(dicom_series.parent.rglob("series-*"))


@pytest.fixture(scope="session")
def series_zip_with_copy(tmp_path_factory, dicom_folder) -> Path:
    """``dup.zip``: the DICOM series under ``series/``, its first file also as
    ``series/copy.dcm`` (two slices at one position)."""
    import zipfile

    path = tmp_path_factory.mktemp("zips") / "dup.zip"
    files = sorted(dicom_folder.iterdir())
    with zipfile.ZipFile(path, "w") as archive:
        for file in files:
            archive.write(file, f"series/{file.name}")
        archive.write(files[0], "series/copy.dcm")
    return path


@pytest.fixture(scope="session")
def nifti_volume(tmp_path_factory) -> Path:
    from ichkit.scans.phantom import write_phantom

    data = write_phantom(
        tmp_path_factory.mktemp("nifti") / "n", 1, seed=6, format="nifti", size=48, n_slices=8
    )
    return next((data / "imagesTr").glob("*.nii.gz"))


@pytest.fixture(scope="session")
def live_server(app):
    """The app behind waitress on a free loopback port; yields its base URL."""
    from waitress import create_server

    server = create_server(app, host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}"
    server.close()
    thread.join(timeout=10)
