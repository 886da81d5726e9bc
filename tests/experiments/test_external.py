"""``ichkit evaluate`` and ``ichkit predict``: a tiny finished run (two folds of logreg,
smallcnn, lstm and voting on a phantom) applied to other phantoms without refitting."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ichkit import scans
from ichkit.cli import main
from ichkit.experiments.external import evaluate_run, predict_run
from ichkit.experiments.run_folder import RunFolder
from ichkit.experiments.trained_run import TrainedRun
from ichkit.scans.phantom import write_phantom

os.environ.setdefault("KERAS_BACKEND", "torch")

MODELS = ["logreg", "smallcnn", "lstm", "voting"]
RUN_SETTINGS = {
    "features": {"families": ["intensity", "bands"], "size": 32},
    "models": MODELS,
    "deep": {"size": 32, "epochs": 2, "batch_size": 8},
    "sequence": {"units": 8, "epochs": 3},
    "tuning": {"inner_folds": 2},
    "bootstrap": 20,
    "n_jobs": 1,
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, train_tiny_run) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("source"), RUN_SETTINGS, n_scans=8)


@pytest.fixture(scope="module")
def other_data(tmp_path_factory) -> Path:
    """A second phantom, another seed: the external data set."""
    return write_phantom(tmp_path_factory.mktemp("other") / "ph", 4, seed=9, size=32, n_slices=8)


@pytest.fixture(scope="module")
def unlabelled_scans(tmp_path_factory) -> Path:
    """Two DICOM series without a label CSV."""
    data = write_phantom(
        tmp_path_factory.mktemp("dicom") / "dc", 2, seed=3, format="dicom", size=32, n_slices=6
    )
    (data / "labels.csv").unlink()
    return data


@pytest.fixture(scope="module")
def loose_slices(tmp_path_factory, other_data) -> Path:
    """The second phantom's slices in class folders: no order, no patient ids."""
    root = tmp_path_factory.mktemp("loose") / "folders"
    for _, row in scans.load(other_data).table.iterrows():
        folder = root / ("hemorrhage" if row["label"] == 1 else "normal")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(row["path"], folder / Path(row["path"]).name)
    return root


def _mean_fold_thresholds(run_dir: Path, name: str, column: str) -> float:
    run = RunFolder(run_dir)
    folds = run.finished_folds(name)[name]
    return float(np.mean([run.read_fold_predictions(name, k)[column].iloc[0] for k in folds]))


def test_evaluate_applies_every_model_at_the_source_thresholds(run_dir, other_data, tmp_path):
    out = tmp_path / "external"
    metrics = evaluate_run(run_dir, other_data, out, progress=False)

    assert (out / "metrics.csv").is_file() and (out / "summary.csv").is_file()
    assert (out / "report.html").is_file() and (out / "comparison.md").is_file()
    slices = metrics[metrics["level"] == "slice"]
    assert sorted(slices["model"]) == sorted(MODELS)
    assert np.isfinite(slices["auc"]).all()
    n_slices = len(scans.load(other_data))
    for name in MODELS:
        predictions = pd.read_csv(out / "predictions" / f"{name}__fold0.csv")
        source = pd.read_csv(run_dir / "predictions" / f"{name}__fold0.csv")
        assert {*predictions.columns} <= {*source.columns}
        assert len(predictions) == n_slices and predictions["row"].is_unique
        assert predictions["threshold"].unique() == pytest.approx(
            _mean_fold_thresholds(run_dir, name, "threshold")
        )
        assert predictions["scan_threshold"].unique() == pytest.approx(
            _mean_fold_thresholds(run_dir, name, "scan_threshold")
        )
    assert not (out / "models").exists() and not (out / "config.yaml").exists()
    provenance = json.loads((out / "external.json").read_text())
    assert provenance["source_run"] == str(run_dir) and provenance["data"] == str(other_data)
    assert set(provenance["models"]) == set(MODELS)
    report = (out / "report.html").read_text()
    assert "External validation of run on ph" in report and "without refitting" in report


def test_evaluate_on_loose_slices_needs_patient_ids_and_skips_sequence_models(
    run_dir, loose_slices, tmp_path
):
    out = tmp_path / "loose"
    with pytest.raises(ValueError, match="gives no patient ids.*--one-slice-per-patient"):
        evaluate_run(run_dir, loose_slices, out, progress=False)
    assert not out.exists()

    metrics = evaluate_run(run_dir, loose_slices, out, one_slice_per_patient=True, progress=False)
    assert set(metrics["model"]) == {"logreg", "smallcnn"}
    provenance = json.loads((out / "external.json").read_text())
    assert set(provenance["not_applied"]) == {"lstm", "voting"}
    assert "ordered slices" in provenance["not_applied"]["lstm"]


def test_evaluate_refuses_before_writing_anything(run_dir, other_data, unlabelled_scans, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="is the run being evaluated"):
        evaluate_run(run_dir, other_data, run_dir, progress=False)
    with pytest.raises(FileNotFoundError, match="is not a finished run folder"):
        evaluate_run(other_data, other_data, out, progress=False)
    with pytest.raises(ValueError, match="no labelled slices; external validation needs"):
        evaluate_run(run_dir, unlabelled_scans, out, progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate_run(run_dir, tmp_path / "missing", out, progress=False)
    assert not out.exists()


def test_evaluate_that_fails_midway_removes_what_it_wrote(
    run_dir, other_data, tmp_path, monkeypatch
):
    from ichkit.experiments import external

    def fail(*args, **kwargs):
        (tmp_path / "out" / "predictions").mkdir()
        raise RuntimeError("killed midway")

    monkeypatch.setattr(external, "_apply", fail)
    with pytest.raises(RuntimeError, match="killed midway"):
        evaluate_run(run_dir, other_data, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_evaluate_refuses_a_folder_that_holds_a_run(run_dir, other_data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.yaml").write_text("seed: 0\n")
    with pytest.raises(FileExistsError, match="already holds a run"):
        evaluate_run(run_dir, other_data, out, progress=False)
    assert sorted(path.name for path in out.iterdir()) == ["config.yaml"]


def test_predict_writes_slice_and_scan_verdicts(run_dir, other_data, tmp_path):
    out = tmp_path / "predictions.csv"
    trained = TrainedRun(run_dir)
    predictions = predict_run(run_dir, other_data, out, progress=False)

    written = pd.read_csv(out)
    dataset = scans.load(other_data)
    assert len(written) == len(predictions) == len(dataset)
    assert written["model"].unique().tolist() == [trained.default_model("scan")]
    model = trained.models[written["model"].iloc[0]]
    assert set(written["slice_verdict"]) <= {"hemorrhage", "normal"}
    called = written["probability"] >= model.threshold
    assert (written["slice_verdict"] == "hemorrhage").eq(called).all()
    by_scan = written.groupby("scan_id")["probability"].transform("max")
    np.testing.assert_allclose(written["scan_probability"], by_scan)
    assert (written["scan_verdict"] == "hemorrhage").eq(by_scan >= model.scan_threshold).all()
    assert "label" in written and not (tmp_path / "predictions.skipped.csv").exists()

    # Each scan's rows, in slice order, are the model on that scan's slices.
    scan_id, rows = next(dataset.iter_scans())
    slices = [dataset.read(int(row)) for row in rows.index]
    expected = trained.probability(model.name, slices, {})
    got = written[written["scan_id"].astype(str) == scan_id].sort_values("slice_index")
    np.testing.assert_allclose(got["probability"], expected, atol=1e-6)


def test_predict_all_models_on_unlabelled_scans(run_dir, unlabelled_scans, loose_slices, tmp_path):
    predictions = predict_run(
        run_dir, unlabelled_scans, tmp_path / "all.csv", model="all", progress=False
    )
    assert "label" not in predictions
    assert predictions.groupby("model").size().to_dict() == dict.fromkeys(MODELS, 12)

    with pytest.raises(ValueError, match="reads the ordered slices of a scan"):
        predict_run(run_dir, loose_slices, tmp_path / "lstm.csv", model="lstm", progress=False)
    with pytest.raises(ValueError, match="Unknown model 'logre'. Did you mean 'logreg'"):
        predict_run(run_dir, loose_slices, tmp_path / "x.csv", model="logre", progress=False)


def test_command_line_round_trip(run_dir, other_data, tmp_path, capsys):
    out, csv = tmp_path / "ext", tmp_path / "pred.csv"
    assert main(["evaluate", str(run_dir), "--data", str(other_data), "--out", str(out)]) == 0
    assert (out / "metrics.csv").is_file()
    assert "External validation in" in capsys.readouterr().out

    arguments = ["predict", str(run_dir), str(other_data), "--out", str(csv), "--model", "all"]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    assert "called hemorrhage" in printed and f"Wrote {4 * 32} rows" in printed
    assert len(pd.read_csv(csv)) == 4 * 32

    assert main(["evaluate", str(run_dir), "--data", str(other_data), "--out", str(out)]) == 2
    assert "already holds files" in capsys.readouterr().err
