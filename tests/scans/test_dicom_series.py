"""DICOM folders: series in slice order, notes, label CSVs, skipped files.

Real quirks come from ``../shared/data`` (skipped when absent); ordering, labels and
edge cases also run on small synthetic series written with pydicom (``write_slice``
in ``conftest.py``).
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import RLELossless

from ichkit import scans
from ichkit.scans.dicom import read_dicom_slice
from ichkit.scans.dicom_series import load_dicom
from ichkit.scans.errors import DatasetError, ScanReadError

#: Five axial slices 5 mm apart; file names and InstanceNumbers both disagree with position.
SYNTHETIC_SERIES = {"c": (10.0, 4), "a": (20.0, 1), "e": (0.0, 3), "b": (15.0, 5), "d": (5.0, 2)}


@pytest.fixture
def write_series(write_slice):
    """``write_series(folder)``: ``SYNTHETIC_SERIES`` there; returns ``name -> SOPInstanceUID``."""

    def write(folder: Path) -> dict[str, str]:
        return {
            name: write_slice(folder / name, position=(0.0, 0.0, z), instance=instance)
            for name, (z, instance) in SYNTHETIC_SERIES.items()
        }

    return write


def ordered_names(dataset) -> list[str]:
    rows = dataset.table.sort_values(["scan_id", "slice_index"])
    return [Path(path).name for path in rows["path"]]


def skipped_reasons(dataset) -> dict[str, str]:
    return {item.path: item.reason for item in dataset.skipped}


def assert_strictly_increasing(values) -> None:
    values = np.asarray(values, dtype=float)
    assert np.all(np.diff(values) > 0), values


@pytest.fixture(scope="module")
def ge_dataset(shared_data: Path):
    return load_dicom(shared_data / "dicom" / "ge-head-ct")


@pytest.fixture(scope="module")
def philips_dataset(shared_data: Path):
    return load_dicom(shared_data / "dicom" / "philips-head-phantom")


@pytest.fixture(scope="module")
def cq500_dataset(shared_data: Path):
    return load_dicom(shared_data / "dicom" / "cq500-subset")


def test_load_ge_orders_tilted_uneven_series(ge_dataset):
    table = ge_dataset.table

    assert len(ge_dataset) == 28 and ge_dataset.layout == "dicom"
    assert ge_dataset.skipped == []
    assert table["scan_id"].nunique() == 1 and table["patient_id"].nunique() == 1
    assert list(table["slice_index"]) == list(range(28))
    assert set(table["format"]) == {"dicom"} and table["frame"].isna().all()
    assert all(Path(path).is_absolute() for path in table["path"])
    assert_strictly_increasing(table["position_mm"])
    assert any("uneven slice spacing" in note for note in ge_dataset.notes)
    assert any("tilted 18.5 degrees" in note for note in ge_dataset.notes)
    assert ge_dataset.is_ordered


def test_load_philips_orders_by_position_not_file_name(philips_dataset, shared_data: Path):
    table = philips_dataset.table
    folder = shared_data / "dicom" / "philips-head-phantom"

    assert len(philips_dataset) == 28
    assert_strictly_increasing(table["position_mm"])
    assert ordered_names(philips_dataset) == [f"I{10 * number}" for number in range(1, 29)]
    assert ordered_names(philips_dataset) != sorted(ordered_names(philips_dataset))
    assert not any("uneven" in note for note in philips_dataset.notes)
    directory_file = folder / "DIRFILE"
    if directory_file.exists():  # the README lists one; not every copy of the data has it
        reasons = skipped_reasons(philips_dataset)
        assert reasons[str(directory_file)] == "a DICOMDIR (directory records), not an image"


def test_load_cq500_decodes_every_compressed_slice_in_position_order(cq500_dataset):
    table = cq500_dataset.table

    assert len(cq500_dataset) == 40 and cq500_dataset.skipped == []  # verify=True decoded all
    assert_strictly_increasing(table["position_mm"])
    assert ordered_names(cq500_dataset) != sorted(ordered_names(cq500_dataset))
    assert_strictly_increasing(table["instance_number"])
    assert any("tilted 8.5 degrees" in note for note in cq500_dataset.notes)
    assert not any("uneven" in note for note in cq500_dataset.notes)


@pytest.mark.parametrize("name", ["ge_dataset", "cq500_dataset"])
def test_no_value_below_air_after_reading_padded_series(name: str, request):
    dataset = request.getfixturevalue(name)
    minima = [read_dicom_slice(path).pixels.min() for path in dataset.table["path"]]
    assert min(minima) >= -1100


def test_load_rsna_samples_one_slice_per_study(shared_data: Path):
    dataset = load_dicom(shared_data / "dicom" / "rsna-samples")

    assert len(dataset) == 3
    assert dataset.table["patient_id"].nunique() == 3
    assert dataset.table["scan_id"].nunique() == 3
    assert list(dataset.table["slice_index"]) == [0, 0, 0]
    assert set(dataset.table["sop_instance_uid"]) == {
        "ID_000000e27",
        "ID_0000aee4b",
        "ID_0000f1657",
    }


def test_load_bad_inputs_skips_each_file_with_its_reason(bad_inputs: Path):
    folder = bad_inputs / "dicom"
    with pytest.warns(UserWarning) as record:
        dataset = load_dicom(folder)

    messages = [str(item.message) for item in record]
    assert any(message.startswith("Skipped 4 of 7 files") for message in messages)
    assert any("slice order is ambiguous" in message for message in messages)

    assert skipped_reasons(dataset) == {
        str(folder / "no-pixel-data.dcm"): "no pixel data",
        str(folder / "not-dicom.dcm"): "not DICOM",
        str(folder / "truncated.dcm"): (
            "truncated or corrupt DICOM (pixel data has 261846 of 524288 bytes)"
        ),
        str(folder / "unsupported-compression.dcm"): (
            "compression not supported: MPEG2 Main Profile / Main Level "
            "(1.2.840.10008.1.2.4.100), a video transfer syntax; none is supported"
        ),
    }
    assert len(dataset) == 3  # the duplicate-position series


def test_load_bad_inputs_headers_only_still_skips_them(bad_inputs: Path, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("verify=False must not decode pixels")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoding))
    with pytest.warns(UserWarning) as record:
        dataset = load_dicom(bad_inputs / "dicom", verify=False)

    assert any(str(item.message).startswith("Skipped 4 of 7 files") for item in record)

    reasons = skipped_reasons(dataset)
    assert reasons[str(bad_inputs / "dicom" / "truncated.dcm")].startswith("truncated or corrupt")
    assert reasons[str(bad_inputs / "dicom" / "no-pixel-data.dcm")] == "no pixel data"


def test_strict_raises_at_first_bad_file(bad_inputs: Path):
    path = bad_inputs / "dicom" / "no-pixel-data.dcm"
    with pytest.raises(ScanReadError, match=f"Cannot read '{re.escape(str(path))}': no pixel data"):
        load_dicom(bad_inputs / "dicom", strict=True)


def test_duplicate_position_warns_naming_both_files(bad_inputs: Path):
    with pytest.warns(UserWarning, match=r"ambiguous") as record:
        dataset = load_dicom(bad_inputs / "dicom" / "duplicate-position-series")

    messages = [str(item.message) for item in record if "ambiguous" in str(item.message)]
    assert len(messages) == 1
    assert "0.dcm" in messages[0] and "1.dcm" in messages[0]
    assert "same position" in messages[0]
    assert messages[0] in dataset.notes
    assert len(dataset) == 3  # both kept
    assert list(dataset.table["slice_index"]) == [0, 1, 2]


@pytest.mark.parametrize("key", ["sop", "series", "file"])
def test_ge_label_csv_matches_by_sop_series_or_file(ge_dataset, tmp_path: Path, key: str):
    root = ge_dataset.root
    table = ge_dataset.table
    labels_csv = tmp_path / "labels.csv"
    if key == "sop":
        lines = ["SOPInstanceUID,label"]
        lines += [f"{uid},{index % 2}" for index, uid in enumerate(table["sop_instance_uid"])]
        lines.append("1.2.3.999,1")
        expected = [index % 2 for index in range(28)]
        extra = "1.2.3.999"
    elif key == "series":
        lines = ["series_instance_uid,hemorrhage", f"{table['series_instance_uid'][0]},1", "9.9,0"]
        expected = [1] * 28
        extra = "9.9"
    else:
        names = [Path(path).name for path in table["path"]]
        expected = [int(name in {"05.dcm", "06.dcm"}) for name in names]
        lines = ["filename,label"]
        lines += [f"{name},{label}" for name, label in zip(names, expected, strict=True)]
        lines.append("99.dcm,0")
        extra = "99.dcm"
    labels_csv.write_text("\n".join(lines) + "\n")

    with pytest.warns(UserWarning, match=r"Skipped 1 of 29 files"):
        dataset = load_dicom(root, labels=labels_csv)

    assert len(dataset) == 28
    assert list(dataset.table["label"]) == expected
    assert skipped_reasons(dataset) == {
        f"{labels_csv} (row '{extra}')": "label row has no matching DICOM file"
    }


def test_rsna_long_label_format_gives_subtypes(shared_data: Path, tmp_path: Path):
    labels_csv = tmp_path / "train.csv"
    subtypes = [
        "any",
        "epidural",
        "subdural",
        "subarachnoid",
        "intraparenchymal",
        "intraventricular",
    ]
    positives = {"ID_000000e27": {"any", "subdural"}, "ID_0000aee4b": set(), "ID_0000f1657": set()}
    lines = ["ID,Label"] + [
        f"{uid}_{name},{int(name in found)}"
        for uid, found in positives.items()
        for name in subtypes
    ]
    labels_csv.write_text("\n".join(lines) + "\n")

    dataset = load_dicom(shared_data / "dicom" / "rsna-samples", labels=labels_csv)

    rows = dataset.table.set_index("sop_instance_uid")
    assert dataset.subtypes == subtypes[1:]
    assert rows.loc["ID_000000e27", "label"] == 1 and rows.loc["ID_000000e27", "subdural"] == 1
    assert rows.loc["ID_0000aee4b", "label"] == 0 and rows.loc["ID_0000aee4b", "epidural"] == 0
    assert dataset.skipped == []


def test_series_ordered_by_position_not_name_or_instance_number(tmp_path: Path, write_series):
    write_series(tmp_path)

    dataset = load_dicom(tmp_path)

    assert ordered_names(dataset) == ["e", "d", "c", "b", "a"]
    assert list(dataset.table["position_mm"]) == [0.0, 5.0, 10.0, 15.0, 20.0]
    assert list(dataset.table["slice_index"]) == [0, 1, 2, 3, 4]
    assert dataset.notes == [] and dataset.skipped == []
    assert dataset.table["label"].isna().all()  # no CSV: unlabelled


def test_tilted_uneven_series_ordered_along_normal(tmp_path: Path, write_slice):
    tilt = math.radians(20.0)
    orientation = (1.0, 0.0, 0.0, 0.0, math.cos(tilt), -math.sin(tilt))
    normal = np.array([0.0, math.sin(tilt), math.cos(tilt)])
    offsets = {"s1": 6.0, "s2": 0.0, "s3": 11.0, "s4": 2.0, "s5": 4.0}  # gaps 2, 2, 2, 5
    for instance, (name, offset) in enumerate(offsets.items(), start=1):
        position = tuple(np.array([-100.0, -80.0, 30.0]) + offset * normal)
        write_slice(tmp_path / name, position=position, orientation=orientation, instance=instance)

    dataset = load_dicom(tmp_path)

    assert ordered_names(dataset) == ["s2", "s4", "s5", "s1", "s3"]
    np.testing.assert_allclose(np.diff(dataset.table["position_mm"]), [2.0, 2.0, 2.0, 5.0])
    assert any("tilted 20.0 degrees" in note for note in dataset.notes)
    assert any("uneven slice spacing, 2.00 to 5.00 mm" in note for note in dataset.notes)


def test_without_position_falls_back_to_instance_number(tmp_path: Path, write_slice):
    for name, instance in {"x": 3, "y": 1, "z": 2}.items():
        write_slice(tmp_path / name, position=None, orientation=None, instance=instance)

    dataset = load_dicom(tmp_path)

    assert ordered_names(dataset) == ["y", "z", "x"]
    assert dataset.table["position_mm"].isna().all()
    assert any("ordered by InstanceNumber" in note for note in dataset.notes)


def test_labels_csv_in_root_is_used_and_mismatches_reported(tmp_path: Path, write_series):
    write_series(tmp_path)
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text("file, label\na,1\nb,0\nc,maybe\nd,0\nghost,1\n")  # no row for e

    with pytest.warns(UserWarning, match=r"Skipped 3 of 6 files"):
        dataset = load_dicom(tmp_path)

    assert ordered_names(dataset) == ["d", "b", "a"]
    assert list(dataset.table["label"]) == [0, 0, 1]
    assert list(dataset.table["slice_index"]) == [0, 1, 2]
    assert skipped_reasons(dataset) == {
        str(tmp_path / "c"): "unknown label value 'maybe' in column 'label' of labels.csv",
        str(tmp_path / "e"): "no label row in labels.csv",
        f"{labels_csv} (row 'ghost')": "label row has no matching DICOM file",
    }


def test_label_rows_of_unreadable_files_are_not_called_unmatched(tmp_path: Path, write_series):
    write_series(tmp_path)
    (tmp_path / "f").write_bytes(b"")
    labels_csv = tmp_path / "labels.csv"
    labels_csv.write_text("file,label\na,1\nb,0\nc,0\nd,0\ne,1\nf,1\n")

    with pytest.warns(UserWarning, match=r"Skipped 1 of 6 files"):
        dataset = load_dicom(tmp_path)

    assert skipped_reasons(dataset) == {str(tmp_path / "f"): "empty file"}


def test_label_row_matching_several_files_is_noted(tmp_path: Path, write_slice):
    for patient in ("p1", "p2"):
        write_slice(
            tmp_path / patient / "IM1", series_uid=f"1.2.826.0.1.3680043.10.999.1.{patient[1]}"
        )
    (tmp_path / "labels.csv").write_text("file,label\nIM1,1\n")

    dataset = load_dicom(tmp_path)

    assert list(dataset.table["label"]) == [1, 1]
    assert any("match more than one file (row 'IM1': p1/IM1, p2/IM1)" in n for n in dataset.notes)


def test_non_images_skipped_with_reason_and_strict_raises(
    tmp_path: Path, write_series, write_dicomdir
):
    write_series(tmp_path)
    write_dicomdir(tmp_path / "DIRFILE")
    (tmp_path / "README.txt").write_text("head CT export\n")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")  # hidden: ignored

    with pytest.warns(UserWarning, match=r"Skipped 2 of 7 files"):
        dataset = load_dicom(tmp_path)

    assert len(dataset) == 5
    assert skipped_reasons(dataset) == {
        str(tmp_path / "DIRFILE"): "a DICOMDIR (directory records), not an image",
        str(tmp_path / "README.txt"): "not DICOM",
    }
    with pytest.raises(ScanReadError, match=r"DIRFILE': a DICOMDIR"):
        load_dicom(tmp_path, strict=True)


def test_missing_ids_fall_back_to_folders(tmp_path: Path, write_slice):
    for patient in ("p1", "p2"):
        for z in (0.0, 5.0):
            write_slice(
                tmp_path / patient / "ct" / f"{z:.0f}",
                position=(0, 0, z),
                series_uid=None,
                patient_id=None,
            )

    dataset = load_dicom(tmp_path)

    assert sorted(dataset.table["patient_id"].unique()) == ["p1", "p2"]
    assert sorted(dataset.table["scan_id"].unique()) == ["p1/ct", "p2/ct"]
    assert list(dataset.table["slice_index"]) == [0, 1, 0, 1]
    assert any("no SeriesInstanceUID" in note for note in dataset.notes)
    assert any("no PatientID" in note for note in dataset.notes)


def test_single_file_root(tmp_path: Path, write_slice):
    path = tmp_path / "only.dcm"
    write_slice(path)

    dataset = load_dicom(path)

    assert list(dataset.table["path"]) == [str(path)]
    assert list(dataset.table["slice_index"]) == [0]


def test_headers_only_skips_truncated_native_file(tmp_path: Path, write_series):
    write_series(tmp_path)
    data = (tmp_path / "a").read_bytes()
    (tmp_path / "a").write_bytes(data[:-20])

    with pytest.warns(UserWarning, match=r"Skipped 1 of 5 files"):
        dataset = load_dicom(tmp_path, verify=False)

    assert skipped_reasons(dataset) == {
        str(tmp_path / "a"): "truncated or corrupt DICOM (pixel data has 108 of 128 bytes)"
    }


def test_compressed_slice_decodes_and_truncation_is_caught_when_verifying(
    tmp_path: Path, write_slice
):
    stored = np.arange(64).reshape(8, 8) + 1000
    good, cut = tmp_path / "good", tmp_path / "cut"
    write_slice(good, stored=stored, position=(0, 0, 0))
    write_slice(cut, stored=stored, position=(0, 0, 5))
    for path in (good, cut):
        dataset = pydicom.dcmread(path)
        dataset.compress(RLELossless)  # pydicom's own encoder: no plug-in needed to write
        dataset.save_as(path)
    cut.write_bytes(cut.read_bytes()[:-60])

    np.testing.assert_array_equal(read_dicom_slice(good).pixels, stored - 1024.0)
    with pytest.warns(UserWarning, match=r"Skipped 1 of 2 files"):
        verified = load_dicom(tmp_path)
    headers_only = load_dicom(tmp_path, verify=False)

    assert skipped_reasons(verified)[str(cut)].startswith("truncated or corrupt DICOM (")
    assert len(headers_only) == 2  # compressed streams are only checked by decoding


def test_missing_root_labels_or_images_are_refused(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"DICOM root '.*nowhere' does not exist"):
        load_dicom(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=r"label CSV '.*absent\.csv' given to load_dicom"):
        load_dicom(tmp_path, labels=tmp_path / "absent.csv")
    with pytest.raises(DatasetError, match=r"it holds no files"):
        load_dicom(tmp_path)
    (tmp_path / "notes.txt").write_text("nothing here\n")
    with pytest.raises(DatasetError, match=r"all 1 files were skipped: '.*notes\.txt': not DICOM"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load_dicom(tmp_path)


def test_rows_and_columns_become_height_and_width(tmp_path: Path, write_slice):
    write_slice(tmp_path / "a", stored=np.full((6, 10), 1064), series_uid="1.2.3.1")
    write_slice(tmp_path / "b", stored=np.full((8, 8), 1064), series_uid="1.2.3.2")

    dataset = load_dicom(tmp_path)

    assert list(dataset.table["height"]) == [6, 8]
    assert list(dataset.table["width"]) == [10, 8]
    assert scans.inspect(dataset)["image_sizes"] == {"6x10": 1, "8x8": 1}


def test_real_series_report_their_image_size(ge_dataset, cq500_dataset):
    assert scans.inspect(ge_dataset)["image_sizes"] == {"512x512": 28}
    assert scans.inspect(cq500_dataset)["image_sizes"] == {"512x512": 40}


# --- series that mix slice sizes or orientations -----------------------------------------

SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def test_mixed_sizes_are_split_into_one_scan_per_size(tmp_path: Path, write_slice):
    for index in range(3):
        write_slice(tmp_path / f"big{index}", stored=np.full((8, 8), 1064), position=(0, 0, index))
    write_slice(tmp_path / "small", stored=np.full((4, 4), 1064), position=(0, 0, 1.5))

    with pytest.warns(UserWarning, match="mixes slice sizes or orientations") as record:
        dataset = load_dicom(tmp_path)

    series = "1.2.826.0.1.3680043.10.999.1"
    message = str(record[0].message)
    assert f"3 slices 8x8 axial (kept as scan '{series}')" in message
    assert f"1 slices 4x4 axial (now scan '{series} (4x4 axial)': small)" in message
    assert message in dataset.notes
    scans_by_id = {scan_id: rows for scan_id, rows in dataset.iter_scans()}
    assert [Path(p).name for p in scans_by_id[series]["path"]] == ["big0", "big1", "big2"]
    assert list(scans_by_id[series]["slice_index"]) == [0, 1, 2]  # no gap for the odd slice
    assert list(scans_by_id[f"{series} (4x4 axial)"]["height"]) == [4]
    assert set(dataset.table["series_instance_uid"]) == {series}
    assert not dataset.skipped


def test_mixed_orientations_are_split_and_named_by_plane(tmp_path: Path, write_slice):
    for index in range(3):
        write_slice(tmp_path / f"axial{index}", position=(0, 0, index))
    for index in range(2):
        write_slice(tmp_path / f"sag{index}", position=(index, 0, 0), orientation=SAGITTAL)

    expected = r"2 slices 8x8 sagittal \(now scan '.* \(8x8 sagittal\)': sag0, sag1\)"
    with pytest.warns(UserWarning, match=expected):
        dataset = load_dicom(tmp_path)

    assert dataset.table.groupby("scan_id").size().sort_values().tolist() == [2, 3]
    assert dataset.is_ordered


def test_orientation_noise_or_absence_does_not_split(tmp_path: Path, write_slice):
    write_slice(tmp_path / "a", position=(0, 0, 0), instance=1)
    noisy = (1.0, 1e-6, 0.0, 0.0, 1.0, 1e-6)
    write_slice(tmp_path / "b", position=(0, 0, 5), orientation=noisy, instance=2)
    write_slice(tmp_path / "c", position=None, orientation=None, instance=3)

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        dataset = load_dicom(tmp_path)

    assert dataset.table["scan_id"].nunique() == 1 and len(dataset) == 3


# --- errors about several files name each file with its reason ---------------------------


def test_nothing_loaded_lists_each_file_with_its_reason(tmp_path: Path, write_slice):
    (tmp_path / "a.dcm").write_bytes(b"not a dicom file at all")
    write_slice(tmp_path / "b.dcm", stored=np.full((64, 64), 1064))
    (tmp_path / "b.dcm").write_bytes((tmp_path / "b.dcm").read_bytes()[:-2000])

    with pytest.raises(DatasetError) as caught, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scans.load(tmp_path)

    message = str(caught.value)
    assert "all 2 files were skipped" in message
    each = r"'[^']*a\.dcm': not DICOM; '[^']*b\.dcm': truncated or corrupt DICOM"
    assert re.search(each, message)
