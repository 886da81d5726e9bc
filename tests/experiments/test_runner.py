"""ichkit run end to end on a tiny phantom: outputs, resume, early errors."""

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ichkit.experiments.config import load_config
from ichkit.experiments.runner import run_experiment
from ichkit.scans import DatasetError
from ichkit.scans.phantom import write_phantom

REQUIRED = ["model", "level", "fold", "auc", "accuracy", "sensitivity", "specificity",
            "precision", "f1", "tp", "tn", "fp", "fn", "ms_per_slice"]  # fmt: skip


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    return write_phantom(tmp_path_factory.mktemp("data") / "ph", 8, seed=2, size=32, n_slices=8)


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.setenv("ICHKIT_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "tiny.yaml"
    settings = {
        "features": {"families": ["intensity", "bands"], "size": 32},
        "models": ["logreg", "knn"],
        "bootstrap": 50,
        "n_jobs": 1,
    }
    path.write_text(yaml.safe_dump(settings))
    return path


def test_cross_validated_run_writes_every_output(phantom, config, tmp_path):
    out = tmp_path / "run"
    metrics = run_experiment(config, phantom, out, cv=2, progress=False)
    assert set(REQUIRED) <= set(metrics.columns)
    assert set(metrics["model"]) == {"logreg", "knn"}
    assert set(metrics["level"]) == {"slice", "scan"}
    assert sorted(metrics["fold"].unique()) == [0, 1]
    on_disk = pd.read_csv(out / "metrics.csv")
    pd.testing.assert_frame_equal(on_disk, metrics, check_dtype=False)
    for name in ("summary.csv", "comparison.md", "comparison.tex", "report.html", "config.yaml",
                 "versions.json", "inspection.json", "notes.json", "plots/roc_slice.png",
                 "plots/roc_scan.png", "plots/reliability_slice.png",
                 "plots/confusion_knn_scan.png"):  # fmt: skip
        assert (out / name).is_file(), name
    summary = pd.read_csv(out / "summary.csv")
    for column in ("auc_ci_low", "auc_ci_high", "ece", "delong_p", "mcnemar_p", "auc_pooled"):
        assert column in summary, column
    assert (summary["auc_ci_low"] <= summary["auc_ci_high"]).all()
    assert len(list((out / "models").glob("*.joblib"))) == 4
    slices = metrics[metrics["level"] == "slice"]
    counted = (slices["tp"] + slices["tn"] + slices["fp"] + slices["fn"]).groupby(slices["model"])
    assert counted.sum().tolist() == [64, 64]  # every slice tested once per model


@pytest.mark.filterwarnings("ignore:patient_split could not stratify")
def test_resume_redoes_only_what_is_missing(phantom, config, tmp_path):
    out = tmp_path / "run"
    first = run_experiment(config, phantom, out, progress=False)
    kept = out / "predictions" / "logreg__fold0.csv"
    redone = out / "predictions" / "knn__fold0.csv"
    stamp = kept.stat().st_mtime_ns
    redone.unlink()  # as if killed before knn finished
    second = run_experiment(config, phantom, out, progress=False)
    assert kept.stat().st_mtime_ns == stamp and redone.is_file()
    timing = ["ms_per_slice"]  # measured again for the redone model; all else is equal
    pd.testing.assert_frame_equal(first.drop(columns=timing), second.drop(columns=timing))


CONFIGS = Path(__file__).parents[2] / "experiments" / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda path: path.name)
def test_shipped_configs_load(path):
    config = load_config(path)
    assert config["models"] and config["deep"]["size"] >= 32


def test_bad_model_and_bad_path_fail_before_training(phantom, config, tmp_path):
    with pytest.raises(ValueError, match="Unknown model 'svn'. Did you mean 'svm'"):
        run_experiment(config, phantom, tmp_path / "a", models=["svn"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_experiment(config, tmp_path / "missing", tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_single_class_data_is_refused(bad_inputs, config, tmp_path):
    with pytest.raises(DatasetError, match="one class only"):
        run_experiment(config, bad_inputs / "datasets" / "single-class", tmp_path / "run")


@pytest.mark.filterwarnings("ignore:patient_split could not stratify")
def test_resuming_with_other_settings_is_refused(phantom, config, tmp_path):
    out = tmp_path / "run"
    run_experiment(config, phantom, out, progress=False)
    with pytest.raises(ValueError, match=r"other settings \(cv differ\)"):
        run_experiment(config, phantom, out, cv=2, progress=False)


@pytest.mark.filterwarnings("ignore:patient_split could not stratify")
def test_cnn_heads_run_beside_classical_models(phantom, tmp_path, monkeypatch):
    monkeypatch.setenv("ICHKIT_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "mixed.yaml"
    settings = {
        "features": {"families": ["intensity"], "size": 32},
        "models": ["logreg", "smallcnn"],
        "deep": {"size": 32, "epochs": 2, "batch_size": 8},
        "n_jobs": 1,
    }
    path.write_text(yaml.safe_dump(settings))
    metrics = run_experiment(path, phantom, tmp_path / "run", cv=2, progress=False)
    cnn = metrics[(metrics["model"] == "smallcnn") & (metrics["level"] == "slice")]
    assert len(cnn) == 2 and cnn["ms_per_slice"].gt(0).all()
    assert (cnn["tp"] + cnn["tn"] + cnn["fp"] + cnn["fn"]).sum() == 64
    models = tmp_path / "run" / "models"
    # Per fold: the inner CNN (chose the budget and the thresholds), the refit CNN and
    # the record of its training.
    assert len(list(models.glob("smallcnn__fold?.weights.h5"))) == 2
    assert len(list(models.glob("smallcnn__fold?__inner.weights.h5"))) == 2
    record = json.loads((models / "smallcnn__fold0.training.json").read_text())
    assert len(record["validation_auc"]) == 2 and record["refit_epochs"] in (1, 2)
    notes = json.loads((tmp_path / "run" / "notes.json").read_text())["models"]
    assert "fold 1: refit for" in notes["smallcnn choices"]


@pytest.mark.filterwarnings("ignore:patient_split could not stratify")
def test_without_refit_the_inner_cnn_is_the_folds_cnn(phantom, tmp_path):
    path = tmp_path / "inner.yaml"
    settings = {"models": ["smallcnn"], "deep": {"size": 32, "epochs": 1, "batch_size": 8,
                                                 "refit": False, "neighbors": 0}}  # fmt: skip
    path.write_text(yaml.safe_dump(settings))
    run_experiment(path, phantom, tmp_path / "run", cv=2, progress=False)
    models = tmp_path / "run" / "models"
    assert sorted(p.name for p in models.glob("*.weights.h5")) == [
        "smallcnn__fold0.weights.h5",
        "smallcnn__fold1.weights.h5",
    ]
    notes = json.loads((tmp_path / "run" / "notes.json").read_text())["models"]
    assert "fold 0: no refit" in notes["smallcnn choices"]


@pytest.mark.filterwarnings("ignore:patient_split could not stratify")
def test_self_supervised_pretraining_never_sees_a_test_patient(phantom, tmp_path, monkeypatch):
    import ichkit.deep.pretraining

    seen = []  # (the patients of each pretraining, in fold order)
    pretrain = ichkit.deep.pretraining.pretrain_contrastive

    def recording(model, slices, **kwargs):
        seen.append(set(slices.dataset.table.loc[slices.indices, "patient_id"]))
        return pretrain(model, slices, **kwargs)

    monkeypatch.setattr(ichkit.deep.pretraining, "pretrain_contrastive", recording)
    path = tmp_path / "ssl.yaml"
    settings = {"models": ["smallcnn"], "n_jobs": 1, "bootstrap": 20,
                "deep": {"size": 32, "epochs": 1, "batch_size": 8, "neighbors": 0,
                         "pretrain": "contrastive", "pretrain_epochs": 1}}  # fmt: skip
    path.write_text(yaml.safe_dump(settings))
    out = tmp_path / "run"
    run_experiment(path, phantom, out, cv=2, progress=False)
    assert len(seen) == 2  # one pretraining a fold, shared by its inner and refit CNNs
    for fold, patients in enumerate(seen):
        test = set(pd.read_csv(out / "predictions" / f"smallcnn__fold{fold}.csv")["patient_id"])
        assert patients and not patients & test
        assert len(patients | test) == 8  # every other patient: the whole training part
        assert (out / "models" / f"smallcnn__fold{fold}__pretrained.weights.h5").is_file()
    run_experiment(path, phantom, out, cv=2, progress=False)  # resumed: nothing retrained
    assert len(seen) == 2


@pytest.mark.filterwarnings("ignore:patient_split could not stratify")
def test_int8_is_chosen_on_inner_validation_and_calibrated_on_training_patients(
    phantom, tmp_path, monkeypatch
):
    from ichkit.experiments.families import cnn
    from ichkit.experiments.trained_run import TrainedRun

    calibrated = []  # the patients of each calibration, in order
    calibration_images = cnn._calibration_images

    def recording(dataset, rows, config):
        calibrated.append(set(dataset.table.loc[rows, "patient_id"]))
        return calibration_images(dataset, rows, config)

    monkeypatch.setattr(cnn, "_calibration_images", recording)
    path = tmp_path / "int8.yaml"
    settings = {"models": ["smallcnn"], "n_jobs": 1, "bootstrap": 20,
                "deep": {"size": 32, "epochs": 2, "batch_size": 8, "neighbors": 0}}  # fmt: skip
    path.write_text(yaml.safe_dump(settings))
    out = tmp_path / "run"
    run_experiment(path, phantom, out, cv=2, progress=False)
    assert calibrated
    tests = [set(pd.read_csv(out / "predictions" / f"smallcnn__fold{fold}.csv")["patient_id"])
             for fold in range(2)]  # fmt: skip
    for fold in range(2):
        record = json.loads((out / "models" / f"smallcnn__fold{fold}.inference.json").read_text())
        assert (out / "models" / record["file"]).is_file()
        if "candidates" in record:  # measured: float32 first, then int8 on each engine
            assert record["candidates"][0]["precision"] == "float32"
            assert {c["precision"] for c in record["candidates"][1:]} == {"int8"}
            chosen = [c for c in record["candidates"] if c["kept"]]
            assert record["latency_ms"] == min(c["latency_ms"] for c in chosen)
    # Every calibration read one fold's training patients only (with two folds, the other
    # fold's test patients): the inner CNN's, then the fold's CNN's where int8 won.
    assert calibrated[0] <= tests[1]
    assert all(patients <= tests[0] or patients <= tests[1] for patients in calibrated)
    served = TrainedRun(out).load("smallcnn")
    record = json.loads((out / "models" / "smallcnn__fold0.inference.json").read_text())
    assert served[0].engine == f"{record['engine']} {record['precision']}"
    notes = json.loads((out / "notes.json").read_text())["models"]
    assert "runs as" in notes["smallcnn choices"]


def test_int8_off_serves_the_float32_export(phantom, tmp_path):
    from ichkit.experiments.trained_run import TrainedRun

    path = tmp_path / "float.yaml"
    settings = {"models": ["smallcnn"], "n_jobs": 1, "bootstrap": 20,
                "deep": {"size": 32, "epochs": 1, "batch_size": 8, "neighbors": 0,
                         "int8": False}}  # fmt: skip
    path.write_text(yaml.safe_dump(settings))
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        run_experiment(path, phantom, out, cv=2, progress=False)
    assert not list((out / "models").glob("*.inference.json"))
    assert TrainedRun(out).load("smallcnn")[0].engine == "onnxruntime float32"


@pytest.mark.parametrize(
    "bad",
    [{"pretrain": "simclr"}, {"pretrain_epochs": 0}, {"int8": "yes"}, {"int8_max_auc_drop": -1},
     {"head_learning_rates": {"vgg16": 0}}, {"head_learning_rates": [1e-4]}],
)  # fmt: skip
def test_a_wrong_pretraining_or_int8_setting_fails_early(phantom, tmp_path, bad):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"deep": bad}))
    with pytest.raises(ValueError, match=f"deep.{next(iter(bad))} must be"):
        run_experiment(path, phantom, tmp_path / "run")


def test_a_head_trains_at_its_own_learning_rate_where_the_config_gives_one():
    from ichkit.experiments.config import DEFAULT_CONFIG
    from ichkit.experiments.families.cnn import training_recipe

    settings = {**DEFAULT_CONFIG["deep"], "head_learning_rates": {"vgg16": 1e-4}}
    assert training_recipe(settings, 5, "vgg16").learning_rate == 1e-4
    assert training_recipe(settings, 5, "smallcnn").learning_rate == settings["learning_rate"]


def test_unknown_deep_setting_fails_early(phantom, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"deep": {"epoch": 3}}))
    with pytest.raises(ValueError, match="unknown deep keys: epoch"):
        run_experiment(path, phantom, tmp_path / "run")


@pytest.mark.filterwarnings("ignore:patient_split could not stratify")
@pytest.mark.filterwarnings("ignore:stacking. the")  # one patient validates each tiny fold
def test_sequence_models_read_the_folds_cnn(phantom, tmp_path):
    path = tmp_path / "sequence.yaml"
    settings = {
        "models": ["smallcnn", "lstm", "gru", "stacking"],
        "deep": {"size": 32, "epochs": 2, "batch_size": 8},
        "sequence": {"cnn": "smallcnn", "units": 8, "epochs": 3},
        "bootstrap": 20,
        "n_jobs": 1,
    }
    path.write_text(yaml.safe_dump(settings))
    out = tmp_path / "run"
    metrics = run_experiment(path, phantom, out, cv=2, progress=False)
    slices = metrics[metrics["level"] == "slice"]
    assert set(slices["model"]) == {"smallcnn", "lstm", "gru", "stacking"}
    assert (slices.groupby("model")["n"].sum() == 64).all()
    # One CNN per fold, trained once and reused by both sequence models.
    assert len(list((out / "models").glob("smallcnn__fold?.weights.h5"))) == 2
    assert len(list((out / "models").glob("lstm__fold*.keras"))) == 2
    # Its logits are cached per slice (training and validation patients, not the
    # test patients, whose time counts); the stacking learns from the members'
    # predictions on the validation patients, which none of them fitted.
    stores = sorted((out / "models" / "slice-inputs").iterdir())
    assert len(stores) == 2  # one per fold's CNN
    stored = [pd.read_parquet(chunk) for store in stores for chunk in store.glob("*.parquet")]
    assert all(list(chunk.columns) == ["digest", "logits_0"] for chunk in stored)
    tested = sum(len(pd.read_csv(out / "predictions" / f"smallcnn__fold{k}.csv")) for k in (0, 1))
    assert sum(len(chunk) for chunk in stored) == 2 * 64 - tested
    held = pd.read_csv(out / "held_out" / "stacking__fold0.csv")
    validated = pd.read_csv(out / "held_out" / "smallcnn__fold0.csv")
    assert set(held["row"]) == set(validated["row"])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"sequence": {"cnn": "lstm"}}, "sequence.cnn must name a CNN head"),
        ({"sequence": {"inputs": "pixels"}}, "sequence.inputs must be 'logits' or 'embeddings'"),
        ({"ensemble": {"members": ["voting"]}}, "ensemble.members cannot hold ensembles"),
        ({"ensemble": {"members": ["svn"]}}, "Did you mean 'svm'"),
    ],
)
def test_bad_model_settings_fail_early(phantom, tmp_path, settings, message):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"models": ["lstm"], **settings}))
    with pytest.raises(ValueError, match=message):
        run_experiment(path, phantom, tmp_path / "run")


def test_sequence_models_are_skipped_on_loose_slices(config, tmp_path):
    from PIL import Image

    for label in ("normal", "hemorrhage"):
        for index in range(3):
            folder = tmp_path / "loose" / label
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("L", (40, 40), 30 * index + (label == "normal")).save(folder / f"{index}.png")
    settings = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**settings, "models": ["lstm", "logreg"]}))
    one_each = {"one_slice_per_patient": True}
    metrics = run_experiment(config, tmp_path / "loose", tmp_path / "run", dataset=one_each,
                             progress=False)  # fmt: skip
    assert set(metrics["model"]) == {"logreg"}
    notes = json.loads((tmp_path / "run" / "notes.json").read_text())
    assert "needs slices ordered within scans" in notes["models"]["lstm"]
    assert "needs slices ordered within scans" in (tmp_path / "run" / "report.html").read_text()

    config.write_text(yaml.safe_dump({**settings, "models": ["lstm"]}))
    with pytest.raises(ValueError, match="None of the configured models can run.*lstm: skipped"):
        run_experiment(config, tmp_path / "loose", tmp_path / "other", dataset=one_each,
                       progress=False)  # fmt: skip


@pytest.mark.filterwarnings("ignore:patient_split could not stratify")
def test_run_killed_mid_way_resumes_to_the_same_tables(phantom, config, tmp_path):
    # A real SIGKILL of `ichkit run` once the first model has finished, then the same
    # command again: it must finish, keep what was complete, and match a run that was
    # never interrupted.
    import os
    import signal
    import subprocess
    import sys
    import time

    settings = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**settings, "models": ["logreg", "knn", "voting"]}))
    command = [sys.executable, "-m", "ichkit", "run", str(config), "--data",
               str(phantom), "--cv", "2", "--out"]  # fmt: skip
    environment = {**os.environ, "PYTHONPATH": os.getcwd()}
    killed = tmp_path / "killed"
    process = subprocess.Popen([*command, str(killed)], env=environment,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    first = killed / "predictions" / "logreg__fold0.csv"
    deadline = time.monotonic() + 120
    while not first.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert first.exists() and not (killed / "metrics.csv").exists()
    stamp = first.stat().st_mtime_ns

    subprocess.run([*command, str(killed)], env=environment, check=True, capture_output=True)
    subprocess.run([*command, str(tmp_path / "whole")], env=environment, check=True,
                   capture_output=True)  # fmt: skip
    assert first.stat().st_mtime_ns == stamp  # not redone
    assert not list(killed.rglob("*.tmp"))
    timing = ["ms_per_slice"]
    resumed = pd.read_csv(killed / "metrics.csv").drop(columns=timing)
    pd.testing.assert_frame_equal(resumed, pd.read_csv(tmp_path / "whole" / "metrics.csv").drop(
        columns=timing))  # fmt: skip
    # The ensemble says, fold by fold, which members it kept and why.
    kept = json.loads((killed / "notes.json").read_text())["models"]["voting choices"]
    assert "fold 0: " in kept and "fold 1: " in kept and "kept" in kept


@pytest.mark.filterwarnings("ignore:patient_split could not stratify")
def test_same_seed_gives_the_same_metrics_for_deep_models(phantom, tmp_path):
    path = tmp_path / "deep.yaml"
    settings = {
        "models": ["smallcnn", "gru"],
        "deep": {"size": 32, "epochs": 2, "batch_size": 8},
        "sequence": {"units": 4, "epochs": 2},
        "bootstrap": 20,
    }
    path.write_text(yaml.safe_dump(settings))
    first, second = (
        run_experiment(path, phantom, tmp_path / name, progress=False) for name in ("a", "b")
    )
    timing = ["ms_per_slice"]
    pd.testing.assert_frame_equal(first.drop(columns=timing), second.drop(columns=timing))


def _loose_copy(phantom: Path, out: Path) -> Path:
    """The phantom's slices as loose class folders, named ``pt<patient>_s<slice>.png``."""
    import shutil

    from ichkit import scans

    table = scans.load(phantom).table
    for _, row in table.iterrows():
        folder = out / ("hemorrhage" if row["label"] == 1 else "normal")
        folder.mkdir(parents=True, exist_ok=True)
        name = f"pt{row['patient_id']}_s{int(row['slice_index'])}.png"
        shutil.copy(row["path"], folder / name)
    return out


def test_loose_slices_without_patient_ids_are_refused_and_grouped_with_a_pattern(
    phantom, config, tmp_path
):
    loose = _loose_copy(phantom, tmp_path / "loose")
    with pytest.raises(DatasetError, match="no patient ids.*--patient-pattern"):
        run_experiment(config, loose, tmp_path / "leak", progress=False)
    assert not (tmp_path / "leak").exists()  # refused before writing anything
    pattern = {"patient_pattern": r"pt(?P<patient>.+)_s\d+"}
    metrics = run_experiment(config, loose, tmp_path / "grouped", cv=2, dataset=pattern,
                             progress=False)  # fmt: skip
    inspection = json.loads((tmp_path / "grouped" / "inspection.json").read_text())
    assert inspection["n_patients"] == 8  # the phantom's patients, not one per slice
    assert set(metrics["model"]) == {"logreg", "knn"}


def test_a_refused_run_leaves_out_untouched(phantom, config, tmp_path):
    with pytest.raises(ValueError, match="cannot make n_splits=100 folds"):
        run_experiment(config, phantom, tmp_path / "run", cv=100, progress=False)
    assert not (tmp_path / "run").exists()
    run_experiment(config, phantom, tmp_path / "run", cv=2, progress=False)  # the corrected run


def test_a_models_subset_adds_to_the_folder_and_tables_keep_every_model(phantom, config, tmp_path):
    out = tmp_path / "run"
    run_experiment(config, phantom, out, cv=2, progress=False)
    metrics = run_experiment(config, phantom, out, cv=2, models=["rf"], progress=False)
    assert list(pd.unique(metrics["model"])) == ["logreg", "knn", "rf"]
    assert yaml.safe_load((out / "config.yaml").read_text())["models"] == ["logreg", "knn", "rf"]
    table = (out / "comparison.md").read_text()
    assert all(f"| {name} |" in table for name in ("logreg", "knn", "rf"))


def test_every_run_states_its_sizes_thresholds_and_model_card(phantom, config, tmp_path):
    out = tmp_path / "run"
    run_experiment(config, phantom, out, cv=2, progress=False)
    predictions = pd.read_csv(out / "predictions" / "logreg__fold0.csv")
    assert {"threshold_rule", "scan_threshold_rule"} <= set(predictions.columns)
    assert ((predictions["threshold"] > 0) & (predictions["threshold"] < 1)).all()
    card = (out / "model_card.md").read_text()
    for words in ("not a medical device", "Test part:", "patients", "Leakage safeguards",
                  "| logreg | classical | slice |"):  # fmt: skip
        assert words in card
    table = (out / "comparison.md").read_text()
    assert "Test part: 8 patients" in table and "Per fold:" in table
    assert 'href="model_card.md"' in (out / "report.html").read_text()
    summary = pd.read_csv(out / "summary.csv")
    assert {"auc_pooled", "auc_mean", "n_positive", "n_negative", "paired_note"} <= set(summary)
