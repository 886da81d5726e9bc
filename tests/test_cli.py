"""The ichkit command line: data inspect, phantom, the config presets and the model list."""

import json

import pytest

from ichkit.cli import main


def test_inspect_json_on_real_ctich(shared_data, capsys):
    assert main(["data", "inspect", str(shared_data / "ct-ich-dev"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["n_patients"], summary["n_slices"], summary["n_positive"]) == (20, 605, 90)


def test_inspect_text_lists_skipped_files(bad_inputs, capsys):
    assert main(["data", "inspect", str(bad_inputs / "datasets" / "csv-mismatch")]) == 0
    out = capsys.readouterr().out
    assert "Skipped:    3 files" in out and "002.png" in out


def test_bad_path_is_a_message_not_a_traceback(tmp_path, capsys):
    assert main(["data", "inspect", str(tmp_path / "missing")]) == 2
    assert "ichkit: error:" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "usage: ichkit" in capsys.readouterr().out


@pytest.mark.parametrize("layout", ["png", "dicom", "nifti", "ctich"])
def test_phantom_then_inspect(tmp_path, capsys, layout):
    out = tmp_path / layout
    assert main(["phantom", str(out), "--scans", "3", "--seed", "1", "--format", layout,
                 "--size", "64", "--slices", "10"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["data", "inspect", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_scans"] == 3 and summary["n_slices"] == 30
    assert summary["n_positive"] > 0 and summary["ordered"]
    assert summary["n_skipped"] == 0


def test_inspect_duplicates_reports_the_split(tmp_path, capsys):
    out = tmp_path / "phantom"
    assert main(["phantom", str(out), "--scans", "7", "--size", "32", "--slices", "8"]) == 0
    capsys.readouterr()
    with pytest.warns(UserWarning, match="could not stratify"):  # 7 patients, 3 parts
        assert main(["data", "inspect", str(out), "--duplicates", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary["split"]) == {"train", "validation", "test"}
    assert sum(part["n_slices"] for part in summary["split"].values()) == 56
    assert sum(part["n_patients"] for part in summary["split"].values()) == 7
    assert summary["near_duplicates"] == []


def test_list_configs_shows_the_presets(capsys):
    assert main(["list-configs"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("paper") and "\nquick" in out
    assert main(["list-models", "--configs"]) == 0
    assert "quick" in capsys.readouterr().out


def test_list_models_filters_by_pattern(capsys):
    assert main(["list-models", "mob*"]) == 0
    assert capsys.readouterr().out.split() == ["mobilenet", "cnn", "mobilenetv2", "cnn"]


def test_a_preset_is_the_shipped_yaml():
    from importlib import resources

    from ichkit.experiments.config import load_config

    shipped = resources.files("ichkit.experiments") / "configs" / "quick.yaml"
    with resources.as_file(shipped) as path:
        assert load_config("quick") == load_config(path)


def test_unknown_preset_suggests_one(capsys):
    from ichkit.experiments.config import load_config

    with pytest.raises(ValueError, match="Did you mean 'quick'.*ichkit list-configs"):
        load_config("quik")
    with pytest.raises(FileNotFoundError, match="Presets: paper, quick"):
        load_config("configs/missing.yaml")


def test_run_refuses_loose_images_without_patient_ids_and_writes_nothing(tmp_path, capsys):
    from PIL import Image

    for label in ("normal", "hemorrhage"):
        folder = tmp_path / "loose" / label
        folder.mkdir(parents=True)
        for index in range(3):
            Image.new("L", (32, 32), 40 * index).save(folder / f"pt{index}_s{label}.png")
    out = tmp_path / "run"
    status = main(["run", "quick", "--data", str(tmp_path / "loose"), "--out", str(out),
                   "--models", "logreg"])  # fmt: skip
    error = capsys.readouterr().err
    assert status == 2 and "no patient ids" in error and "--one-slice-per-patient" in error
    assert not out.exists()


def test_run_refuses_a_misspelt_or_unlabelled_target_and_writes_nothing(tmp_path, capsys):
    from ichkit.scans.phantom import write_phantom

    data = write_phantom(tmp_path / "ph", 4, seed=1, size=32, n_slices=6)
    out = tmp_path / "run"
    status = main(["run", "quick", "--data", str(data), "--out", str(out), "--models",
                   "logreg", "--targets", "any,subdurl"])  # fmt: skip
    assert status == 2 and "Did you mean 'subdural'" in capsys.readouterr().err
    labels = (data / "labels.csv").read_text().splitlines()
    header = labels[0].split(",")
    keep = [i for i, name in enumerate(header) if name.strip() != "epidural"]
    (data / "labels.csv").write_text(
        "\n".join(",".join(line.split(",")[i] for i in keep) for line in labels) + "\n"
    )
    status = main(["run", "quick", "--data", str(data), "--out", str(out), "--models",
                   "logreg", "--targets", "any,epidural"])  # fmt: skip
    assert status == 2 and "does not label target 'epidural'" in capsys.readouterr().err
    assert not out.exists()


def test_class_names_are_folder_equals_label(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["data", "inspect", str(tmp_path), "--class-names", "bleed=yes"])
    assert "FOLDER=0 or FOLDER=1" in capsys.readouterr().err
