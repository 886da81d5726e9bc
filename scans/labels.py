"""Label CSVs as they come: BOMs, spaces after commas, zero-padded ids, RSNA's long format."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from ichkit.scans.dataset import SUBTYPES
from ichkit.scans.errors import ScanReadError

__all__ = ["LabelTable", "read_labels", "binary_value", "subtype_name"]

#: Column names (lower case) that hold the any-hemorrhage label.
LABEL_COLUMNS = ("label", "hemorrhage", "haemorrhage", "any", "any_hemorrhage")

_SUBTYPE_ALIASES = {
    "epidural": "epidural", "edh": "epidural",
    "subdural": "subdural", "sdh": "subdural",
    "subarachnoid": "subarachnoid", "sah": "subarachnoid",
    "intraparenchymal": "intraparenchymal", "iph": "intraparenchymal", "ich": "intraparenchymal",
    "intraventricular": "intraventricular", "ivh": "intraventricular",
}  # fmt: skip
#: Optional columns that say which patient and scan a slice belongs to, and its order.
METADATA_COLUMNS = {
    "patient_id": ("patient_id", "patientid", "patient"),
    "scan_id": ("scan_id", "study_id", "series_id", "scan"),
    "slice_index": ("slice_index", "slice_number", "slicenumber", "slice"),
}
_TRUE = {"1", "1.0", "true", "yes", "y", "hemorrhage", "positive"}
_FALSE = {"0", "0.0", "false", "no", "n", "normal", "negative"}
_RSNA_ID = re.compile(
    r"^(?P<key>.+)_(?P<name>any|epidural|subdural|subarachnoid|intraparenchymal|intraventricular)$"
)


def binary_value(text: object) -> int | None:
    """0 or 1 for the usual spellings of a binary label; None when unrecognised."""
    value = str(text).strip().lower()
    if value in _TRUE:
        return 1
    if value in _FALSE:
        return 0
    return None


def subtype_name(column: str) -> str | None:
    """The subtype a column or mask label names (``Epidural``, ``EDH``, ...), or None."""
    return _SUBTYPE_ALIASES.get(column.strip().lower())


@dataclass
class LabelTable:
    """Labels keyed by an id, read from one CSV.

    Attributes
    ----------
    path : Path
        The CSV file.
    key_column : str
        The column (lower case) the keys came from.
    rows : dict
        ``key -> {"label": 0/1, subtype: 0/1, ...}``.
    invalid : dict
        ``key -> reason`` for rows whose values are not labels (``maybe``).
    subtypes : list of str
        Subtype columns the CSV has, in ``SUBTYPES`` order.
    metadata : dict
        ``key -> {"patient_id": ..., "scan_id": ..., "slice_index": ...}`` for the
        columns of ``METADATA_COLUMNS`` the CSV has (grouping and order of slices).
    """

    path: Path
    key_column: str
    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)
    subtypes: list[str] = field(default_factory=list)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)

    def lookup(self, *candidates: str) -> tuple[str | None, dict[str, int] | None]:
        """The first candidate key with a row (exact, then numeric match of padded ids)."""
        for key in candidates:
            if key in self.rows or key in self.invalid:
                return key, self.rows.get(key)
        for key in candidates:
            found = self._numeric_keys.get(_as_int(key))
            if found is not None:
                return found, self.rows.get(found)
        return None, None

    @cached_property
    def _numeric_keys(self) -> dict[int, str]:
        """Keys that are numbers, by value: '007' is found for a file named '7'."""
        keys = (*self.rows, *self.invalid)
        return {_as_int(key): key for key in keys if _as_int(key) is not None}


def read_labels(path: str | Path, key_columns: tuple[str, ...]) -> LabelTable:
    """Read a label CSV keyed by the first of ``key_columns`` (lower case) that it has.

    Accepts a wide table (a key column, a label column such as ``hemorrhage`` or
    ``label``, optional subtype columns) or the RSNA 2019 long table (``ID, Label``
    with ids like ``ID_abc123_epidural``). A row whose label is missing but whose
    subtypes are given gets the label "any subtype".

    Raises
    ------
    ScanReadError
        If the file is not a CSV with a key column and a label or subtype column.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, encoding="utf-8-sig", skipinitialspace=True)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ScanReadError(path, f"not a readable label CSV ({error})") from error
    table.columns = [str(column).strip().lower() for column in table.columns]
    table = table.apply(lambda column: column.str.strip())
    if set(table.columns) == {"id", "label"} and table["id"].str.match(_RSNA_ID).all():
        table = _widen_rsna(table)
    key_column = next((column for column in key_columns if column in table.columns), None)
    if key_column is None:
        raise ScanReadError(
            path,
            f"no key column; expected one of {', '.join(key_columns)}, found "
            f"{', '.join(table.columns)}",
        )
    label_column = next((column for column in LABEL_COLUMNS if column in table.columns), None)
    subtype_columns = {subtype_name(c): c for c in table.columns if subtype_name(c)}
    if label_column is None and not subtype_columns:
        raise ScanReadError(
            path,
            f"no label column; expected one of {', '.join(LABEL_COLUMNS)} or subtype columns",
        )
    labels = LabelTable(path, key_column, subtypes=[s for s in SUBTYPES if s in subtype_columns])
    metadata_columns = {}
    for name, candidates in METADATA_COLUMNS.items():
        found = [c for c in candidates if c in table.columns and c != key_column]
        if found:
            metadata_columns[name] = found[0]
    for _, row in table.iterrows():
        key = row[key_column]
        if pd.isna(key) or key == "":
            continue
        values, problem = {}, None
        for name, column in [("label", label_column), *subtype_columns.items()]:
            if column is None or pd.isna(row[column]) or row[column] == "":
                continue
            value = binary_value(row[column])
            if value is None:
                problem = f"unknown label value '{row[column]}' in column '{column}' of {path.name}"
                break
            values[name] = value
        if problem is None and "label" not in values:
            if not any(name in values for name in SUBTYPES):
                problem = f"empty label in {path.name}"
            else:
                values["label"] = max(values[name] for name in SUBTYPES if name in values)
        if problem:
            labels.invalid[key] = problem
        else:
            labels.rows[key] = values
        if metadata_columns:
            labels.metadata[key] = {
                name: row[column]
                for name, column in metadata_columns.items()
                if pd.notna(row[column])
            }
    return labels


def _widen_rsna(table: pd.DataFrame) -> pd.DataFrame:
    """RSNA 2019's ``ID_<sop>_<subtype>, Label`` rows as one row per SOP instance."""
    parts = table["id"].str.extract(_RSNA_ID)
    table = table.assign(sopinstanceuid=parts["key"], name=parts["name"])
    wide = table.pivot_table(index="sopinstanceuid", columns="name", values="label", aggfunc="last")
    return wide.reset_index().rename(columns={"any": "label"})


def _as_int(text: str) -> int | None:
    return int(text) if str(text).isdigit() else None
