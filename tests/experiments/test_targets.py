"""Subtype targets end to end: checked before training, one block per target in the
tables, the RSNA weighted log loss, one CNN for every target, and per-subtype
probabilities where the run's models are applied."""

import numpy as np
import pandas as pd
import pytest
import yaml

from ichkit.experiments.statistics import weighted_log_loss
from ichkit.experiments.targets import (
    TARGETS,
    check_targets,
    target_notes,
    target_rows,
    weighted_log_loss_of,
)
from ichkit.scans import SUBTYPES


def test_targets_are_checked_by_name_order_and_repetition():
    assert check_targets(["any", "subdural"]) == ["any", "subdural"]
    with pytest.raises(ValueError, match="Unknown target 'subduarl'.*subdural"):
        check_targets(["any", "subduarl"])
    with pytest.raises(ValueError, match="twice"):
        check_targets(["any", "subdural", "subdural"])
    with pytest.raises(ValueError, match="must start with 'any'"):
        check_targets(["subdural", "any"])
    with pytest.raises(ValueError, match="non-empty list"):
        check_targets("any")


def _table(subdural, patients=("a", "a", "b", "b", "c", "c")):
    return pd.DataFrame({"label": [1, 0, 1, 0, 0, 0], "patient_id": list(patients),
                         "subdural": subdural})  # fmt: skip


def test_a_target_the_data_does_not_label_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="does not label target 'epidural'.*labels: any, subdural"):
        target_notes(_table([1, 0, 0, 0, 0, 0]), ["any", "epidural"], 2)
    with pytest.raises(ValueError, match="does not label target 'subdural'"):
        target_notes(_table([1, 0, None, 0, 0, 0]), ["any", "subdural"], 2)
    with pytest.raises(ValueError, match="'subdural' has one class only"):
        target_notes(_table([0, 0, 0, 0, 0, 0]), ["any", "subdural"], 2)


def test_a_target_with_fewer_positive_patients_than_folds_is_noted_not_dropped():
    notes = target_notes(_table([1, 0, 0, 0, 0, 0]), ["any", "subdural"], 3)
    assert list(notes) == ["target any", "target subdural"]  # 2 and 1 positive patients
    assert "1 positive patient(s) for 3 fold(s)" in notes["target subdural"]
    relabelled = target_rows(_table([1, 0, 0, 0, 0, 0]), "subdural")
    assert relabelled["label"].tolist() == [1, 0, 0, 0, 0, 0]


def test_weighted_log_loss_of_pooled_predictions_is_the_rsna_metric():
    rng = np.random.default_rng(0)
    labels, probabilities = rng.integers(0, 2, (20, 6)), rng.uniform(0.05, 0.95, (20, 6))
    long = pd.DataFrame([
        {"row": row, "target": target, "label": labels[row, k],
         "probability": probabilities[row, k]}
        for row in range(20) for k, target in enumerate(TARGETS)
    ])  # fmt: skip
    expected = weighted_log_loss(labels, probabilities)  # any weighted 2, subtypes 1
    assert weighted_log_loss_of(long) == pytest.approx(expected)
    assert np.isnan(weighted_log_loss_of(long[long["target"] != "epidural"]))


@pytest.fixture(scope="module")
def six_target_run(tmp_path_factory):
    from ichkit.experiments.runner import run_experiment
    from ichkit.scans.phantom import write_phantom

    root = tmp_path_factory.mktemp("targets")
    data = write_phantom(root / "ph", 12, seed=2, size=32, n_slices=8)
    config = root / "six.yaml"
    config.write_text(yaml.safe_dump({
        "features": {"families": ["intensity", "bands"], "size": 32},
        "models": ["logreg", "smallcnn", "voting"], "targets": list(TARGETS),
        "deep": {"size": 32, "epochs": 1, "batch_size": 8, "neighbors": 0},
        "bootstrap": 20, "n_jobs": 1,
    }))  # fmt: skip
    out = root / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ICHKIT_CACHE_DIR", str(root / "cache"))
        metrics = run_experiment(config, data, out, cv=2, progress=False)
    return data, out, metrics


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_every_family_predicts_every_target_in_one_table(six_target_run):
    _, out, metrics = six_target_run
    assert set(metrics["target"]) == set(TARGETS)
    for target in TARGETS:
        slices = metrics[(metrics["target"] == target) & (metrics["level"] == "slice")]
        assert set(slices["model"]) == {"logreg", "smallcnn", "voting"}
        assert (slices.groupby("model")["n"].sum() == 96).all()  # every slice, each target
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["target"]) == set(TARGETS)
    assert summary["weighted_log_loss"].between(0, 10).all()
    comparison = (out / "comparison.md").read_text()
    assert all(f"## Target: {subtype}" in comparison for subtype in SUBTYPES)
    assert "## Weighted log loss" in comparison
    # one CNN a fold (six outputs) in the top folder; subtype files in targets/<subtype>/
    assert len(list((out / "models").glob("smallcnn__fold?.weights.h5"))) == 2
    assert not list((out / "targets").rglob("smallcnn*.weights.h5"))
    for subtype in SUBTYPES:
        assert (out / "targets" / subtype / "predictions" / "logreg__fold1.csv").is_file()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_served_and_batch_predictions_give_each_subtype(six_target_run, tmp_path):
    from ichkit.experiments.external import predict_run
    from ichkit.webapp import ServedRun, create_app

    data, out, _ = six_target_run
    image = sorted(data.rglob("*.png"))[5]
    client = create_app(ServedRun(out, onnx=False)).test_client()
    for model in ("logreg", "smallcnn"):
        with image.open("rb") as handle:
            answer = client.post("/api/predict", data={
                "file": (handle, image.name), "model": model, "target": "subdural",
                "heatmaps": "1",
            }).get_json()  # fmt: skip
        assert set(answer["subtypes"]) == set(SUBTYPES)
        assert all(0 <= s["probability"] <= 1 for s in answer["subtypes"].values())
        assert answer["heatmap_target"] == "subdural" and answer["heatmaps"]
    rows = predict_run(out, data, tmp_path / "p.csv", model="smallcnn", onnx=False,
                       progress=False)  # fmt: skip
    assert all(rows[f"{subtype}_probability"].between(0, 1).all() for subtype in SUBTYPES)


def test_the_phantom_spreads_its_subtypes_evenly():
    from ichkit.scans.phantom import make_phantom_scans

    for n_scans in (10, 40):
        scans = make_phantom_scans(n_scans, seed=1, size=32, n_slices=6)
        counts = [sum(name in scan.subtypes for scan in scans) for name in SUBTYPES]
        assert min(counts) >= 1 and max(counts) - min(counts) <= 1, counts
