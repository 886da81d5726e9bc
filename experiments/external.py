"""A finished run's models on other data: external validation and batch prediction.

``evaluate_run`` (``ichkit evaluate``) applies every model of a run to another
labelled data set and writes the run's own results for it (metrics, summary with
intervals, plots, report), marked as external. ``predict_run`` (``ichkit predict``)
writes per-slice and per-scan probabilities and verdicts for data with or without
labels.

Nothing is refitted: each model is the mean of its fold models (``TrainedRun``), and
its verdicts use the source run's thresholds, chosen on held-out training-part patients
of each fold. Only the run's own model files are loaded; the data is read as images,
DICOM or NIfTI by ``ichkit.scans.load``, never unpickled.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ichkit import scans
from ichkit.experiments import _io
from ichkit.experiments.results import write_results
from ichkit.experiments.run_folder import PREDICTION_COLUMNS, RunFolder
from ichkit.experiments.runner import read_data
from ichkit.experiments.thresholds import fallback_notes
from ichkit.experiments.trained_run import (
    THRESHOLD_RULE,
    TrainedRun,
    is_informative_threshold,
)
from ichkit.scans.dataset import read_row
from ichkit.scans.plausibility import check_scan, check_slices
from ichkit.scans.validation import unknown_name_message

__all__ = ["EXTERNAL_FILE", "REFUSED", "evaluate_run", "predict_run", "prediction_summary"]

#: The provenance file of an external validation folder (where a run has ``config.yaml``).
EXTERNAL_FILE = "external.json"

_SLICE_COLUMNS = ["path", "patient_id", "scan_id", "slice_index"]
_VERDICTS = np.array(["normal", "hemorrhage"])
#: How a verdict the plausibility gate withheld starts, in ``slice_verdict`` and
#: ``scan_verdict``; the gate's reason follows.
REFUSED = "refused: "
#: How many implausible slices of passing scans a note names.
_N_SLICES_NAMED = 5


def evaluate_run(
    run_dir: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    kind: str | None = None,
    labels: str | Path | None = None,
    patient_pattern: str | None = None,
    class_names: dict[str, int] | None = None,
    one_slice_per_patient: bool = False,
    onnx: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """Apply a finished run's models to another labelled data set and write its results.

    Every model of the run that the data can serve is applied (models that read the
    ordered slices of a scan need a data set whose slices are ordered; the others are
    left out with the reason in the report's notes): its fold models averaged, at the
    run's thresholds, nothing refitted. ``out`` then holds what a run holds for its test
    folds, as fold 0: ``predictions/``, ``metrics.csv``, ``summary.csv``, the report and
    plots, ``inspection.json`` of the new data, and ``external.json`` (the source run,
    the data and the thresholds used) in place of ``config.yaml``, so that ``out`` is
    never mistaken for a run to resume or serve. It holds no model files.

    Everything is checked before ``out`` is made; a failure later removes what was
    written.

    Parameters
    ----------
    run_dir : str or Path
        A folder written by ``ichkit run``.
    data : str or Path
        The data set, in any layout ``ichkit.scans.load`` reads; it needs labels of
        both classes.
    out : str or Path
        The folder to write; it must not exist yet or be empty.
    kind, labels, patient_pattern, class_names
        Passed to ``ichkit.scans.load``: the layout (found from the content when
        None), a label CSV, a regular expression finding loose images' patients, extra
        class folder names.
    one_slice_per_patient : bool, default=False
        Confirm that every image is a different patient, for loose images without
        patient ids (the confidence intervals resample patients).
    onnx : bool, default=True
        Run CNN heads through ONNX Runtime (exported into the run's ``serving/``).
    progress : bool, default=True
        Show a progress bar over scans.

    Returns
    -------
    pandas.DataFrame
        The metrics, as ``metrics.csv`` holds them.

    Raises
    ------
    FileNotFoundError
        ``run_dir`` is not a finished run, or ``data`` does not exist.
    FileExistsError
        ``out`` holds files (a run, an earlier evaluation, anything).
    ValueError
        ``out`` is the source run; the data has no labels, one class only, no patient
        ids (without ``one_slice_per_patient``), or no slice any of the run's models can
        read (``DatasetError`` is a ``ValueError``).
    """
    trained = TrainedRun(run_dir, onnx=onnx)
    out = Path(out)
    _check_out(out, trained.run_dir)
    loading = {"kind": kind, "labels": None if labels is None else str(labels),
               "patient_pattern": patient_pattern, "class_names": class_names,
               "one_slice_per_patient": one_slice_per_patient}  # fmt: skip
    dataset = read_data(data, loading)
    _require_labels(dataset)
    _require_patients(dataset, one_slice_per_patient)
    names, notes = _servable_models(trained, dataset, model="all")
    trained.warm_up(names)  # a model that cannot load fails here, before out is made

    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _evaluate(trained, dataset, names, notes, Path(data), loading, RunFolder(out),
                         progress)  # fmt: skip
    except BaseException:
        _remove_contents(out, remove_folder=created)
        raise


def _evaluate(trained: TrainedRun, dataset, names, skipped_models, data: Path, loading: dict,
              external: RunFolder, progress: bool) -> pd.DataFrame:  # fmt: skip
    """``evaluate_run`` once everything is checked: predict, write, summarise."""
    probabilities, unreadable, ms_per_slice = _apply(
        trained, dataset, names, progress=progress, timed=True
    )
    table = dataset.table.loc[probabilities.index]
    labelled = table["label"].notna().to_numpy()
    for name in names:
        model = trained.models[name]
        predictions = (
            table[labelled][[*_SLICE_COLUMNS, "label"]].assign(
                row=table.index[labelled],
                model=name,
                fold=0,
                probability=probabilities.loc[labelled, name].to_numpy(),
                threshold=model.threshold,
                scan_threshold=model.scan_threshold,
                ms_per_slice=ms_per_slice[name],
                # How each fold's threshold was chosen is in the source run's files.
                threshold_rule="source run",
                threshold_reason="",
                scan_threshold_rule="source run",
                scan_threshold_reason="",
            )
        )[PREDICTION_COLUMNS]
        _io.write_csv(external.predictions_path(name, 0), predictions)

    skipped = [*dataset.skipped, *unreadable]
    if skipped:
        external.write_json(external.skipped_path, [item.__dict__ for item in skipped])
    external.write_json(external.inspection_path, scans.inspect(dataset))
    external.write_json(
        external.root / EXTERNAL_FILE,
        {
            "source_run": str(trained.run_dir),
            "source_data": trained.config.get("data"),
            "data": str(data),
            "layout": dataset.layout,
            "loading": loading,
            "threshold_rule": THRESHOLD_RULE,
            "models": {
                name: {
                    "folds": list(trained.models[name].folds),
                    "threshold": trained.models[name].threshold,
                    "scan_threshold": trained.models[name].scan_threshold,
                    "source_slice_auc": trained.models[name].auc,
                }
                for name in names
            },
            "not_applied": skipped_models,
            "n_unlabelled_slices": int((~labelled).sum()),
            "n_skipped": len(skipped),
        },
    )
    config = {**trained.config, "data": str(data), "dataset": loading,
              "external_from": str(trained.run_dir)}  # fmt: skip
    source_data = Path(str(trained.config.get("data", "?"))).name
    notes = [
        f"External validation: the models of run '{trained.run_dir}' (trained on "
        f"{source_data}) applied to {data.name} without refitting; each model is the mean "
        f"of its fold models, at the source run's thresholds ({THRESHOLD_RULE}).",
        *(f"{name}: {reason}" for name, reason in skipped_models.items()),
        *(f"source run: {line}" for line in fallback_notes(trained.run.read_predictions(names))),
    ]
    if (~labelled).any():
        notes.append(f"{int((~labelled).sum())} unlabelled slices predicted but not scored.")
    if skipped:
        notes.append(f"{len(skipped)} unreadable files or slices left out (skipped.json).")
    notes.extend(f"data: {note}" for note in dataset.notes)
    predictions = external.read_predictions(names)
    return write_results(
        external,
        predictions,
        config=config,
        title=f"External validation of {trained.run_dir.name} on {data.name}",
        notes=notes,
        n_jobs=1,
    )


def predict_run(
    run_dir: str | Path,
    path: str | Path,
    out_csv: str | Path,
    *,
    model: str | None = None,
    kind: str | None = None,
    labels: str | Path | None = None,
    patient_pattern: str | None = None,
    class_names: dict[str, int] | None = None,
    onnx: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """Write a finished run's probabilities and verdicts for every slice and scan of ``path``.

    One row per slice and model: ``path, patient_id, scan_id, slice_index``, ``label``
    (where the data has labels), ``model``, ``probability`` (its fold models averaged),
    ``threshold`` and ``slice_verdict`` (``hemorrhage`` or ``normal``), then
    ``scan_probability`` (the scan's most likely slice), ``scan_threshold`` and
    ``scan_verdict``; where the run predicted subtypes, ``<subtype>_probability`` for
    each. Thresholds are the source run's. Files the reader could not use
    are listed in ``<out_csv stem>.skipped.csv`` (path and reason) and in the returned
    table's ``attrs["skipped"]``; ``attrs["notes"]`` says what to keep in mind (models
    left out, thresholds that separate nothing, what the loader noticed).

    Before any model runs, every slice passes the plausibility gate
    (``ichkit.scans.plausibility``). Ordered scans are judged whole (``check_scan``):
    a scan that does not hold a head gets no verdicts, one that does gets a verdict on
    every slice, and its slices that do not look like head CT on their own (above the
    vertex, a headrest) are named in a note. Loose slices are judged one by one
    (``check_slice``). What the gate refuses keeps its rows, with an empty
    ``probability`` and ``slice_verdict`` (and ``scan_verdict`` when the whole scan is
    refused) ``"refused: <reason>"``: every readable input keeps a row to join on, and
    the reason sits beside the file it concerns, where a list of skipped files would
    mix it with files that could not be read at all.

    Parameters
    ----------
    run_dir : str or Path
        A folder written by ``ichkit run``.
    path : str or Path
        Slices or scans in any layout ``ichkit.scans.load`` reads, labelled or not.
    out_csv : str or Path
        The CSV to write (replaced atomically).
    model : str, default=None
        A model of the run, or ``"all"``; None: the run's best by pooled slice AUC that
        can read the data (``TrainedRun.default_model``).
    kind, labels, patient_pattern, class_names
        Passed to ``ichkit.scans.load``.
    onnx : bool, default=True
        Run CNN heads through ONNX Runtime (exported into the run's ``serving/``).
    progress : bool, default=True
        Show a progress bar over scans.

    Returns
    -------
    pandas.DataFrame
        The rows written.

    Raises
    ------
    FileNotFoundError
        ``run_dir`` is not a finished run, or ``path`` does not exist.
    ValueError
        ``model`` is not one of the run's, or reads ordered scans and the data has loose
        slices; ``out_csv`` is a folder.
    """
    trained = TrainedRun(run_dir, onnx=onnx)
    out_csv = Path(out_csv)
    if out_csv.is_dir():
        raise ValueError(f"--out '{out_csv}' is a folder; give the name of the CSV to write.")
    loading = {"kind": kind, "labels": labels, "patient_pattern": patient_pattern,
               "class_names": class_names}  # fmt: skip
    dataset = read_data(path, loading)
    names, left_out = _servable_models(trained, dataset, model=model)
    gate = _Gate(whole_scans=dataset.is_ordered)
    probabilities, unreadable, _ = _apply(trained, dataset, names, progress=progress, gate=gate,
                                          subtypes=True)  # fmt: skip

    kept = set(probabilities.index) | set(gate.refused)
    table = dataset.table.loc[[row for row in dataset.table.index if row in kept]]
    has_labels = bool(table["label"].notna().any())
    refused = pd.Series(gate.refused, dtype=object).reindex(table.index)
    # A scan none of whose slices got a verdict is refused with its first slice's reason.
    scan_refused = refused.groupby(table["scan_id"]).transform("first")
    parts = []
    for name in names:
        threshold = trained.models[name].threshold
        scan_threshold = trained.models[name].scan_threshold
        probability = probabilities[name].reindex(table.index)
        # A scan is as likely as its most likely slice (as scan_predictions scores it).
        scan_probability = probability.groupby(table["scan_id"]).transform("max")
        part = table[_SLICE_COLUMNS + (["label"] if has_labels else [])].assign(
            model=name,
            probability=probability,
            threshold=threshold,
            slice_verdict=_verdicts(probability, threshold, refused),
            scan_probability=scan_probability,
            scan_threshold=scan_threshold,
            scan_verdict=_verdicts(
                scan_probability, scan_threshold, scan_refused.where(scan_probability.isna())
            ),
            **{  # each subtype the run predicted, by this model's counterpart for it
                f"{target}_probability": probabilities[f"{name}/{target}"].reindex(table.index)
                for target in trained.targets
                if f"{name}/{target}" in probabilities
            },
        )
        parts.append(part)
    predictions = pd.concat(parts, ignore_index=True)
    _io.write_csv(out_csv, predictions)

    skipped = [*dataset.skipped, *unreadable]
    skipped_csv = out_csv.with_name(f"{out_csv.stem}.skipped.csv")
    if skipped:
        _io.write_csv(skipped_csv, pd.DataFrame([item.__dict__ for item in skipped]))
    elif skipped_csv.is_file():
        skipped_csv.unlink()  # an earlier prediction's list would describe other files
    notes = [f"{name}: {reason}" for name, reason in left_out.items()]
    for name in names:
        for level, value in (("slice", trained.models[name].threshold),
                             ("scan", trained.models[name].scan_threshold)):  # fmt: skip
            if not is_informative_threshold(value):
                notes.append(
                    f"{name}: the run chose a {level} threshold of {value:.2f}: its held-out "
                    f"{level}s did not separate (too few of them), so its {level} verdicts "
                    "say little."
                )
    notes.extend(f"{name}: ran as {trained.load(name)[0].engine}" for name in names)
    notes.extend(gate.notes)
    notes.extend(f"data: {note}" for note in dataset.notes)
    predictions.attrs["skipped"] = [f"{item.path}: {item.reason}" for item in skipped]
    predictions.attrs["notes"] = notes
    return predictions


def prediction_summary(predictions: pd.DataFrame) -> list[str]:
    """One line per model of a ``predict_run`` table: slices and scans read, how many of
    each it calls hemorrhage, and how many the plausibility gate refused."""
    lines = []
    for name, rows in predictions.groupby("model", sort=False):
        scan_rows = rows.drop_duplicates("scan_id")
        line = (
            f"{name}: {len(rows)} slices, {(rows['slice_verdict'] == 'hemorrhage').sum()} "
            f"called hemorrhage"
        )
        n_refused = int(rows["slice_verdict"].str.startswith(REFUSED).sum())
        if n_refused:
            line += f", {n_refused} refused (not head CT)"
        line += (
            f"; {len(scan_rows)} scans, "
            f"{(scan_rows['scan_verdict'] == 'hemorrhage').sum()} called hemorrhage"
        )
        n_scans_refused = int(scan_rows["scan_verdict"].str.startswith(REFUSED).sum())
        if n_scans_refused:
            line += f", {n_scans_refused} refused (not head CT)"
        lines.append(line)
    return lines


# --- checks -------------------------------------------------------------------------


def _check_out(out: Path, run_dir: Path) -> None:
    """Refuse an ``out`` that is the source run, or that holds anything already."""
    if out.exists() and out.resolve() == run_dir.resolve():
        raise ValueError(
            f"--out '{out}' is the run being evaluated; external results go to a new folder."
        )
    if out.is_file():
        raise FileExistsError(f"--out '{out}' is a file; give a new folder to write.")
    if out.is_dir() and any(out.iterdir()):
        what = "a run" if RunFolder(out).config_path.is_file() else "files"
        raise FileExistsError(
            f"--out '{out}' already holds {what}; external results go to a new or empty folder."
        )


def _require_labels(dataset) -> None:
    """External validation needs labelled slices of both classes (for AUC, sensitivity
    and specificity)."""
    labelled = dataset.table["label"].dropna().astype(int)
    if labelled.nunique() < 2:
        held = (
            "no labelled slices"
            if labelled.empty
            else f"one class only ({len(labelled)} slices, all "
            f"{'hemorrhage' if labelled.iloc[0] == 1 else 'normal'})"
        )
        raise scans.DatasetError(
            f"Data set '{dataset.root}' has {held}; external validation needs labelled "
            "normal and hemorrhage slices (a label CSV, class folders or masks). For "
            "unlabelled data, write predictions with: ichkit predict RUN_DIR PATH --out CSV"
        )


def _require_patients(dataset, one_slice_per_patient: bool) -> None:
    """Refuse images without patient ids (``ScanDataset.patients_known``) unless every
    image is said to be a different patient: the confidence intervals resample patients,
    and slices of one patient counted as several patients would make them too narrow."""
    if dataset.patients_known or one_slice_per_patient:
        return
    raise scans.DatasetError(
        f"Data set '{dataset.root}' ({dataset.layout} layout, {len(dataset)} images) gives no "
        "patient ids, so each image would count as its own patient, and the confidence "
        "intervals, which resample patients, would be too narrow wherever one patient has "
        "several images. Either give patient ids (--patient-pattern REGEX with a group "
        "'patient' matched in each file's path, or a patient_id column in the label CSV), "
        "or state that every image comes from a different person (--one-slice-per-patient)."
    )


def _servable_models(trained: TrainedRun, dataset, *, model: str | None):
    """The models to apply, and the reason for each of the run's models left out.

    ``model`` is None (the run's default for this data), ``"all"``, or a model name.
    """
    kind = "scan" if dataset.is_ordered else "slice"
    servable = [m.name for m in trained.models.values() if kind == "scan" or not m.needs_scan]
    left_out = {
        name: "not applied: the source run has no finished model of it"
        for name in trained.config.get("models", [])
        if name not in trained.models
    }
    for name in trained.models:
        if name not in servable:
            left_out[name] = (
                "not applied: reads the ordered slices of a scan; this data set "
                f"({dataset.layout}) has loose slices"
            )
    if model is None:
        default = trained.default_model(kind)
        names = [] if default is None else [default]
    elif model == "all":
        names = servable
    elif model not in trained.models:
        raise ValueError(
            unknown_name_message("model", model, trained.models)
            + f" Run '{trained.run_dir}' has these; or pass 'all'."
        )
    elif model not in servable:
        raise ValueError(
            f"Model '{model}' reads the ordered slices of a scan, and '{dataset.root}' has "
            f"loose slices ({dataset.layout}). Choose one of: {', '.join(servable) or 'none'}."
        )
    else:
        names = [model]
    if not names:
        raise ValueError(
            f"None of the models of run '{trained.run_dir}' can read '{dataset.root}': "
            + "; ".join(f"{name}: {reason}" for name, reason in left_out.items())
        )
    return names, left_out if model == "all" else {}


# --- predicting ---------------------------------------------------------------------


@dataclass
class _Gate:
    """What the plausibility gate decided in ``_apply``: ``refused`` maps data set rows
    that got no probability to the reason; ``implausible`` names the slices that do not
    look like head CT of scans that passed. ``whole_scans``: judge ordered scans whole
    (``check_scan``), else every slice on its own."""

    whole_scans: bool
    refused: dict = field(default_factory=dict)
    implausible: list[str] = field(default_factory=list)

    @property
    def notes(self) -> list[str]:
        """A note naming the first implausible slices of the scans that passed."""
        if not self.implausible:
            return []
        more = len(self.implausible) - _N_SLICES_NAMED
        return [
            f"{len(self.implausible)} slices do not look like head CT on their own (usual "
            "above the vertex or below the skull base) and got verdicts as parts of scans "
            f"that do: {'; '.join(self.implausible[:_N_SLICES_NAMED])}"
            + (f"; and {more} more" if more > 0 else "")
        ]

    def admit(self, slices: list, rows: list, names: list[str]) -> list[int]:
        """Positions in ``slices`` (data set ``rows``, called ``names`` in notes) the
        models may see; the others go to ``refused``."""
        reasons = check_slices(slices)
        if not self.whole_scans:
            self.refused.update(
                (row, reason) for row, reason in zip(rows, reasons, strict=True) if reason
            )
            return [place for place, reason in enumerate(reasons) if reason is None]
        refusal = check_scan(slices, reasons=reasons)
        if refusal is not None:
            self.refused.update(
                (row, f"scan does not look like head CT: {refusal}") for row in rows
            )
            return []
        self.implausible.extend(
            f"{name} ({reason})" for name, reason in zip(names, reasons, strict=True) if reason
        )
        return list(range(len(slices)))


def _slice_name(row: pd.Series) -> str:
    """A slice as people find it: its file, and its frame inside a volume."""
    frame = row.get("frame")
    return str(row["path"]) + ("" if pd.isna(frame) else f" (slice {int(frame)})")


def _verdicts(probability: pd.Series, threshold: float, refused: pd.Series) -> np.ndarray:
    """``hemorrhage``/``normal`` at ``threshold``, or ``"refused: <reason>"`` where
    ``refused`` holds a reason."""
    called = _VERDICTS[(probability >= threshold).astype(int)]
    return np.where(refused.notna(), REFUSED + refused.astype(str), called)


def _apply(trained: TrainedRun, dataset, names: list[str], *, progress: bool,
           timed: bool = False, gate: _Gate | None = None, subtypes: bool = False):  # fmt: skip
    """Every model of ``names`` on every slice, scan by scan (in slice order).

    One memo per scan, so what models share (features, a CNN's outputs) is computed
    once per scan. Returns the probabilities (rows: the data set rows that could be
    read; columns: ``names``), the slices that could not be read (``scans.Skipped``),
    and each model's milliseconds per slice: measured on the first scan with nothing
    shared (every member and CNN a model reads counted), else None. With a ``gate``,
    slices it refuses get no probability (their rows are in ``gate.refused``). With
    ``subtypes``, each model's probability of each subtype the run predicted is a column
    ``<model>/<subtype>`` beside its own.
    """
    columns: dict[str, list[np.ndarray]] = {name: [] for name in names}
    rows_read, unreadable = [], []
    ms_per_slice: dict[str, float | None] = dict.fromkeys(names)
    n_scans = dataset.table["scan_id"].nunique()
    for _, rows in tqdm(dataset.iter_scans(), total=n_scans, desc="scans", disable=not progress):
        slices, kept = [], []
        for index, row in rows.iterrows():
            try:
                slices.append(read_row(row))
            except scans.ScanReadError as error:
                unreadable.append(scans.Skipped(error.path, error.reason))
                continue
            kept.append(index)
        if gate is not None and slices:
            admitted = gate.admit(slices, kept, [_slice_name(rows.loc[index]) for index in kept])
            slices = [slices[place] for place in admitted]
            kept = [kept[place] for place in admitted]
        if not slices:
            continue
        memo: dict = {}
        for name in names:
            if timed and ms_per_slice[name] is None:
                start = time.perf_counter()
                probability = trained.probability(name, slices, {})
                ms_per_slice[name] = (time.perf_counter() - start) * 1000 / len(slices)
            else:
                probability = trained.probability(name, slices, memo)
            columns[name].append(probability)
            if subtypes:
                for target, values in trained.target_probabilities(name, slices, memo).items():
                    columns.setdefault(f"{name}/{target}", []).append(values)
        rows_read.extend(kept)
    if not rows_read and not (gate and gate.refused):
        raise scans.DatasetError(f"No slice of '{dataset.root}' could be read.")
    probabilities = pd.DataFrame(
        {name: np.concatenate(parts) if parts else np.zeros(0) for name, parts in columns.items()},
        index=pd.Index(rows_read, name="row"),
    )
    return probabilities, unreadable, ms_per_slice


def _remove_contents(folder: Path, *, remove_folder: bool) -> None:
    """Undo a failed evaluation: ``folder`` was empty or absent before it."""
    if remove_folder:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
