"""Label CSVs: headers with spaces and BOMs, padded ids, RSNA's long format, bad values."""

import pytest

from ichkit.scans import ScanReadError
from ichkit.scans.labels import binary_value, read_labels, subtype_name


def test_rsna_long_format_is_widened(tmp_path):
    path = tmp_path / "stage_2_train.csv"
    rows = ["ID,Label"]
    for name, value in [("epidural", 0), ("subdural", 1), ("subarachnoid", 0),
                        ("intraparenchymal", 0), ("intraventricular", 0), ("any", 1)]:  # fmt: skip
        rows.append(f"ID_abc123_{name},{value}")
        rows.append(f"ID_def456_{name},0")
    path.write_text("\n".join(rows) + "\n")
    table = read_labels(path, key_columns=("sopinstanceuid",))
    assert table.rows["ID_abc123"]["label"] == 1 and table.rows["ID_abc123"]["subdural"] == 1
    assert table.rows["ID_def456"] == {"label": 0, **dict.fromkeys(table.subtypes, 0)}
    assert len(table.subtypes) == 5


def test_bom_spaces_and_padded_ids(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("\ufeffid, hemorrhage, patient_id\n007, 1, P1\n8,0,P2\n", encoding="utf-8")
    table = read_labels(path, key_columns=("id",))
    assert table.lookup("007") == ("007", {"label": 1})
    assert table.lookup("7")[1] == {"label": 1}  # unpadded file name, padded row
    assert table.lookup("008")[1] == {"label": 0}  # padded file name, unpadded row
    assert table.metadata["007"] == {"patient_id": "P1"}


def test_label_derived_from_subtypes_and_bad_values_kept_apart(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("file,EDH,SDH\na.png,0,1\nb.png,0,0\nc.png,yes?,0\n")
    table = read_labels(path, key_columns=("file",))
    assert table.rows["a.png"]["label"] == 1 and table.rows["b.png"]["label"] == 0
    assert "unknown label value 'yes?'" in table.invalid["c.png"]


def test_csv_without_key_or_label_column(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("name,score\na,0.3\n")
    with pytest.raises(ScanReadError, match="no key column; expected one of id"):
        read_labels(path, key_columns=("id",))
    path.write_text("id,score\na,0.3\n")
    with pytest.raises(ScanReadError, match="no label column"):
        read_labels(path, key_columns=("id",))


@pytest.mark.parametrize(("text", "value"), [("1", 1), (" Yes ", 1), ("0.0", 0), ("normal", 0),
                                             ("maybe", None), ("", None)])  # fmt: skip
def test_binary_value(text, value):
    assert binary_value(text) == value


def test_subtype_aliases():
    assert subtype_name("IVH") == "intraventricular" and subtype_name("Epidural") == "epidural"
    assert subtype_name("Fracture_Yes_No") is None
