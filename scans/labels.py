"""Label CSVs as they come: BOMs, spaces after commas, zero-padded ids, RSNA's long format.

A label file is checked before it is used: an id listed twice with different values
is refused (the CSV does not say which row is right), and rows repeated exactly are
used once, with a warning.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd

from ichkit.scans.dataset import SUBTYPES, WINDOW_COLUMNS, join_listed, window_problem
from ichkit.scans.errors import DatasetError, ScanReadError

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
    windows : dict
        ``key -> (center, width)``: the window each grey image was exported with, from
        the columns ``window_center`` and ``window_width`` where the CSV has them (a
        row with an invalid window is in ``invalid`` instead).
    notes : list of str
        What was repaired while reading (exact duplicate rows used once).
    """

    path: Path
    key_column: str
    rows: dict[str, dict[str, int]] = field(default_factory=dict)
    invalid: dict[str, str] = field(default_factory=dict)
    subtypes: list[str] = field(default_factory=list)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

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
        """Keys that are numbers, by value: '007' is found for a file named '7'.

        ``read_labels`` refuses two rows whose keys are the same number, so each
        value has one key.
        """
        keys = (*self.rows, *self.invalid)
        return {_as_int(key): key for key in keys if _as_int(key) is not None}


def read_labels(path: str | Path, key_columns: tuple[str, ...]) -> LabelTable:
    """Read a label CSV keyed by the first of ``key_columns`` (lower case) that it has.

    Accepts a wide table (a key column, a label column such as ``hemorrhage`` or
    ``label``, optional subtype columns, optional ``window_center`` and
    ``window_width``) or the RSNA 2019 long table (``ID, Label`` with ids like
    ``ID_abc123_epidural``). A row whose label is missing but whose subtypes are
    given gets the label "any subtype".

    An id may appear on one row only. Ids that are the same number (``001`` and
    ``1``) are the same id, since ``LabelTable.lookup`` matches them so. Rows of one
    id that agree on every column used (labels, subtypes, patient, scan, slice,
    window) are used once, with a warning and a note; rows that disagree are refused.

    Raises
    ------
    ScanReadError
        If the file is not a CSV with a key column and a label or subtype column.
    DatasetError
        If an id has rows with different values, naming each such id and its lines.

    Warns
    -----
    UserWarning
        When rows are repeated exactly (ids and lines named); they are used once.
    """
    path = Path(path)
    try:
        # Blank lines are kept (and dropped below) so that a row's index gives its line.
        table = pd.read_csv(
            path, dtype=str, encoding="utf-8-sig", skipinitialspace=True, skip_blank_lines=False
        )
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ScanReadError(path, f"not a readable label CSV ({error})") from error
    table.columns = [str(column).strip().lower() for column in table.columns]
    table = table.apply(lambda column: column.str.strip()).dropna(how="all")
    table.index = table.index + 2  # the header is line 1
    notes: list[str] = []
    if set(table.columns) == {"id", "label"} and table["id"].str.match(_RSNA_ID).all():
        table = _drop_repeated_rows(table, "id", {"label": binary_value}, path, notes)
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
    labels = LabelTable(
        path, key_column, subtypes=[s for s in SUBTYPES if s in subtype_columns], notes=notes
    )
    metadata_columns = {}
    for name, candidates in METADATA_COLUMNS.items():
        found = [c for c in candidates if c in table.columns and c != key_column]
        if found:
            metadata_columns[name] = found[0]
    window_columns = [column for column in WINDOW_COLUMNS if column in table.columns]
    table = table[table[key_column].notna() & (table[key_column] != "")]
    compared = {
        **dict.fromkeys([label_column, *subtype_columns.values()], binary_value),
        **dict.fromkeys(metadata_columns.values(), str),
        **dict.fromkeys(window_columns, _number),
    }
    compared.pop(None, None)
    table = _drop_repeated_rows(table, key_column, compared, path, notes)
    for line, row in table.iterrows():
        key = row[key_column]
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
        if problem is None and window_columns:
            center, width = (row.get(column, pd.NA) for column in WINDOW_COLUMNS)
            window = window_problem(center, width)
            if window is not None:
                problem = f"invalid export window on line {line} of {path.name}: {window}"
            elif pd.notna(center):
                labels.windows[key] = (float(center), float(width))
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


def _drop_repeated_rows(
    table: pd.DataFrame,
    key_column: str,
    compared: dict[str, object],
    path: Path,
    notes: list[str],
) -> pd.DataFrame:
    """``table`` with each id on one row; refuse ids whose rows disagree.

    Ids are the same when equal as text or, both being digits, as numbers (the match
    ``LabelTable.lookup`` makes). ``compared`` maps each column that must agree to the
    function that reads its value (``binary_value`` makes ``1`` and ``yes`` agree).
    The first of identical rows is kept; their lines are named in a warning and a note.
    """
    identities = table[key_column].map(_identity)
    repeated = identities[identities.duplicated(keep=False)]
    if repeated.empty:
        return table
    conflicts, repeats = [], []
    for _, group in table.loc[repeated.index].groupby(repeated, sort=False):
        keys = "/".join(f"'{key}'" for key in dict.fromkeys(group[key_column]))
        lines = ", ".join(str(line) for line in group.index)
        differences = []
        for column, read in compared.items():
            values = [_read_value(read, value) for value in group[column]]
            if len(set(values)) > 1:
                shown = " vs ".join(str(value) for value in dict.fromkeys(values))
                differences.append(f"{column} {shown}")
        if differences:
            conflicts.append(f"id {keys} on lines {lines} ({'; '.join(differences)})")
        else:
            repeats.append(f"{keys} (lines {lines})")
    if conflicts:
        raise DatasetError(
            f"Label CSV '{path}' gives different values for {len(conflicts)} "
            f"{'id' if len(conflicts) == 1 else 'ids'}; each id needs one row (or identical "
            f"rows): {join_listed(conflicts, separator='; ')}. Correct or remove the wrong rows."
        )
    message = (
        f"Label CSV '{path.name}' repeats {len(repeats)} {'id' if len(repeats) == 1 else 'ids'} "
        f"with identical values: {join_listed(repeats)}; each is used once."
    )
    warnings.warn(message, UserWarning, stacklevel=3)
    notes.append(message)
    return table[~identities.duplicated(keep="first")]


def _read_value(read, value: object) -> object:
    """A cell as ``read`` understands it; the text itself when empty or not understood."""
    if pd.isna(value) or value == "":
        return ""
    understood = read(value)
    return value if understood is None else understood


def _number(text: str) -> float | None:
    """A window value as a number (so ``40`` and ``40.0`` agree), or None."""
    try:
        return float(text)
    except ValueError:
        return None


def _identity(key: str) -> int | str:
    """What makes two keys the same id: their number when both are digits, else the text."""
    number = _as_int(key)
    return key if number is None else number


def _widen_rsna(table: pd.DataFrame) -> pd.DataFrame:
    """RSNA 2019's ``ID_<sop>_<subtype>, Label`` rows as one row per SOP instance
    (each id on one row already: see ``_drop_repeated_rows``)."""
    parts = table["id"].str.extract(_RSNA_ID)
    table = table.assign(sopinstanceuid=parts["key"], name=parts["name"], line=table.index)
    wide = table.pivot_table(
        index="sopinstanceuid", columns="name", values="label", aggfunc="first"
    )
    first_lines = table.groupby("sopinstanceuid")["line"].min()
    wide = wide.reset_index().rename(columns={"any": "label"})
    wide.index = first_lines[wide["sopinstanceuid"]].to_numpy()  # each instance's first line
    return wide


def _as_int(text: str) -> int | None:
    return int(text) if str(text).isdigit() else None
