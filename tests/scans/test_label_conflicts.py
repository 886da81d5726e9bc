"""Label CSVs listing an id twice: conflicts refused naming ids and lines, repeats used once."""

import numpy as np
import pytest
from PIL import Image

from ichkit import scans
from ichkit.cli import main
from ichkit.scans import DatasetError
from ichkit.scans.labels import read_labels


def _write_pngs(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(np.full((16, 16), 100, np.uint8)).save(folder / f"{name}.png")


def _write_csv(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_conflicting_duplicate_id_is_refused_naming_id_and_lines(tmp_path):
    path = _write_csv(tmp_path / "labels.csv", "id,hemorrhage\n000,1\n001,0\n001,1\n002,0\n")
    with pytest.raises(DatasetError, match=r"id '001' on lines 3, 4 \(hemorrhage 0 vs 1\)"):
        read_labels(path, key_columns=("id",))


def test_data_inspect_refuses_the_conflict_with_the_id(tmp_path, capsys):
    # The acceptance check of issue 14: `ichkit data inspect DIR --json` fails naming 001.
    folder = tmp_path / "head_ct"
    _write_pngs(folder, ["000", "001", "002"])
    _write_csv(folder / "labels.csv", "id,hemorrhage\n000,1\n001,0\n001,1\n002,0\n")
    assert main(["data", "inspect", str(folder), "--json"]) != 0
    error = capsys.readouterr().err
    assert "'001'" in error and "lines 3, 4" in error


def test_padded_and_unpadded_ids_are_one_id(tmp_path):
    # lookup matches '7' and '007' as one number, so two such rows describe one image.
    path = _write_csv(tmp_path / "labels.csv", "id,hemorrhage\n007,1\n8,0\n7,0\n")
    with pytest.raises(DatasetError, match=r"id '007'/'7' on lines 2, 4"):
        read_labels(path, key_columns=("id",))


def test_subtype_or_patient_differences_are_conflicts_too(tmp_path):
    path = _write_csv(
        tmp_path / "labels.csv",
        "id,hemorrhage,epidural,subdural,patient_id\na,1,1,0,P1\na,1,0,1,P1\nb,0,0,0,P1\nb,0,0,0,P2\n",
    )
    with pytest.raises(DatasetError, match="2 ids") as caught:
        read_labels(path, key_columns=("id",))
    message = str(caught.value)
    assert "id 'a' on lines 2, 3 (epidural 1 vs 0; subdural 0 vs 1)" in message
    assert "id 'b' on lines 4, 5 (patient_id P1 vs P2)" in message


def test_many_conflicts_are_listed_up_to_the_limit(tmp_path):
    rows = "".join(f"{i},0\n{i},1\n" for i in range(13))
    path = _write_csv(tmp_path / "labels.csv", "id,label\n" + rows)
    with pytest.raises(DatasetError, match=r"13 ids.*id '9'.*; and 3 more\. Correct"):
        read_labels(path, key_columns=("id",))


def test_exact_repeats_are_used_once_with_a_warning_and_a_note(tmp_path):
    folder = tmp_path / "head_ct"
    _write_pngs(folder, ["000", "001", "002"])
    # '1' and 'yes' are the same label, and a blank line does not shift the line numbers.
    _write_csv(folder / "labels.csv", "id,hemorrhage\n000,1\n\n001,0\n001,no\n002,1\n002,yes\n")
    expected = r"repeats 2 ids .*'001' \(lines 4, 5\), '002' \(lines 6, 7\)"
    with pytest.warns(UserWarning, match=expected):
        dataset = scans.load(folder)
    assert dataset.table["label"].tolist() == [1, 0, 1]
    assert any("repeats 2 ids" in note for note in dataset.notes)
    assert not dataset.skipped


def test_rsna_long_format_conflict_names_the_row_id(tmp_path):
    rows = ["ID,Label", "ID_abc_any,1", "ID_abc_epidural,0", "ID_abc_epidural,1"]
    path = _write_csv(tmp_path / "train.csv", "\n".join(rows) + "\n")
    with pytest.raises(DatasetError, match=r"id 'ID_abc_epidural' on lines 3, 4 \(label 0 vs 1\)"):
        read_labels(path, key_columns=("sopinstanceuid",))
    path.write_text("\n".join(rows[:3] + ["ID_abc_epidural,0"]) + "\n")
    with pytest.warns(UserWarning, match="'ID_abc_epidural' \\(lines 3, 4\\)"):
        table = read_labels(path, key_columns=("sopinstanceuid",))
    assert table.rows["ID_abc"] == {"label": 1, "epidural": 0}


def test_dicom_label_csv_with_a_conflict_is_refused(tmp_path, write_slice):
    uid = write_slice(tmp_path / "scan" / "a.dcm")
    _write_csv(tmp_path / "scan" / "labels.csv", f"SOPInstanceUID,any\n{uid},0\n{uid},1\n")
    with pytest.raises(DatasetError, match=f"id '{uid}' on lines 2, 3"):
        scans.load(tmp_path / "scan")
