"""``ichkit predict`` gives no verdict to what does not look like head CT, and says so."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from ichkit import scans
from ichkit.experiments.external import REFUSED, predict_run, prediction_summary
from ichkit.scans.phantom import write_phantom

RUN_SETTINGS = {
    "features": {"families": ["intensity"], "size": 32},
    "models": ["logreg"],
    "tuning": {"inner_folds": 2},
    "bootstrap": 20,
    "n_jobs": 1,
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, train_tiny_run) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("source"), RUN_SETTINGS, n_scans=6)


def test_loose_nonsense_slices_are_refused_one_by_one(run_dir, tmp_path):
    data = write_phantom(tmp_path / "ph", 2, seed=9, size=32, n_slices=6)
    root = tmp_path / "folders" / "normal"
    root.mkdir(parents=True)
    for path in sorted(data.rglob("*.png"))[4:8]:  # slices from the middle of the head
        shutil.copy(path, root / path.name)
    Image.new("L", (64, 64), 0).save(root / "black.png")
    Image.new("L", (1, 1), 0).save(root / "dot.png")

    predictions = predict_run(run_dir, tmp_path / "folders", tmp_path / "p.csv", progress=False)
    names = predictions["path"].map(lambda path: Path(path).name)
    verdicts = dict(zip(names, predictions["slice_verdict"], strict=True))
    assert verdicts["black.png"] == REFUSED + "constant image (every pixel is 0)"
    assert verdicts["dot.png"].startswith(REFUSED + "too small (1x1 pixels")
    assert {verdicts[name] for name in verdicts if name not in ("black.png", "dot.png")} <= {
        "hemorrhage",
        "normal",
    }
    written = pd.read_csv(tmp_path / "p.csv")
    assert written.loc[written["slice_verdict"].str.startswith(REFUSED), "probability"].isna().all()
    assert "2 refused (not head CT)" in prediction_summary(predictions)[0]


def test_a_scan_of_nothing_is_refused_whole_and_the_others_get_verdicts(run_dir, tmp_path):
    data = write_phantom(tmp_path / "ph", 2, seed=9, size=32, n_slices=6)
    table = scans.load(data).table
    blank_scan = table["scan_id"].iloc[0]
    for path in table.loc[table["scan_id"] == blank_scan, "path"]:
        Image.new("L", (32, 32), 0).save(path)

    predictions = predict_run(run_dir, data, tmp_path / "p.csv", progress=False)
    blank = predictions["scan_id"] == blank_scan
    assert (
        predictions.loc[blank, "scan_verdict"]
        .str.startswith(REFUSED + "scan does not look like head CT: none of its 6 slices")
        .all()
    )
    assert predictions.loc[blank, "probability"].isna().all()
    assert set(predictions.loc[~blank, "scan_verdict"]) <= {"hemorrhage", "normal"}
    assert "1 refused (not head CT)" in prediction_summary(predictions)[0]
