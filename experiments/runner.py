"""``ichkit run``: every configured model on the same patient-grouped splits, then metrics.

For each fold (K patient-grouped folds, or one 70/15/15 patient split) and model:
tune on the training patients, choose the thresholds on held-out training-part data,
predict the held-out patients and write the predictions. A finished model x fold
leaves ``predictions/<model>__fold<k>.csv`` (written atomically, after its
``held_out/`` file), so a killed run started again with the same command skips what
was complete. Then the metrics, the summary with confidence intervals and paired
tests, and the report (``ichkit.experiments.report``).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ichkit import scans
from ichkit.experiments.config import load_config
from ichkit.experiments.families import FoldData
from ichkit.experiments.metrics import scan_predictions
from ichkit.experiments.parallel import compute_backend, n_jobs_for
from ichkit.experiments.registry import family_of
from ichkit.experiments.results import write_results
from ichkit.experiments.run_folder import PREDICTION_COLUMNS, RunFolder
from ichkit.experiments.targets import label_column, target_notes, target_rows
from ichkit.experiments.thresholds import fallback_notes, scan_threshold, slice_threshold
from ichkit.experiments.versions import used_package_versions
from ichkit.features.extraction import default_cache_dir, extract_features, time_features

__all__ = ["data_warnings", "load_dataset", "read_data", "run_experiment"]

_SLICE_COLUMNS = ["path", "patient_id", "scan_id", "slice_index", "label"]


def run_experiment(
    config_path: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    cv: int | None = None,
    models: list[str] | None = None,
    targets: list[str] | None = None,
    parallel: dict | None = None,
    dataset: dict | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run a comparison and write it to ``out``; returns the metrics table.

    ``config_path`` is a YAML file or the name of a preset (``ichkit list-configs``).

    Everything that can be checked is checked before anything is written to ``out``:
    the config, the model names, the data path and its patient ids (the leak guard,
    ``ScanDataset.require_patient_ids``), that the data has both classes, and that
    the folds can be made. A run that fails those checks leaves ``out`` as it was.
    Models the data cannot serve (sequence models on loose slices) are skipped with
    the reason in ``notes.json`` and the report. ``parallel`` overrides the config's
    ``parallel`` section (``backend``, ``scheduler``, ``n_workers``): with the
    ``dask`` backend the joblib work and XGBoost run on a Dask cluster. ``dataset``
    overrides its ``dataset`` section (how ``data`` is read: ``kind``, ``labels``,
    ``patient_pattern``, ``class_names``, ``one_slice_per_patient``). ``cv``,
    ``models`` and ``targets`` (any hemorrhage, then subtypes) override the config's.

    A run folder that already holds finished models keeps them: new models are added
    and the tables describe every model the folder holds.
    """
    config = load_config(config_path, cv=cv, models=models, targets=targets, parallel=parallel,
                         dataset=dataset)  # fmt: skip
    data, run = Path(data), RunFolder(out)
    if not data.exists():
        raise FileNotFoundError(f"Data set path '{data}' does not exist.")
    resolved = {**config, "data": str(data)}
    _check_resumable(run, resolved)
    loaded = load_dataset(data, config["dataset"])
    labelled = loaded.table["label"].notna().to_numpy()
    groups, y = loaded.groups[labelled], loaded.table["label"][labelled].astype(int).to_numpy()
    list(_folds(config, groups, y))  # refuses impossible folds (--cv 100) before writing
    names, members, notes = _runnable_models(config, loaded)
    # refuses targets the data set does not label; notes those with few positive patients
    notes.update(target_notes(loaded.table, config["targets"], config["cv"] or 1))
    models_to_run = (names, members, notes)
    settings = config["parallel"]
    with compute_backend(settings["backend"], scheduler=settings["scheduler"],
                         n_workers=settings["n_workers"] or config["n_jobs"]):  # fmt: skip
        return _run(config, resolved, loaded, models_to_run, data, run, progress)


def read_data(data: str | Path, options: dict) -> scans.ScanDataset:
    """``data`` read with a config's ``dataset`` options (``kind``, ``labels``,
    ``patient_pattern``, ``class_names``): the one reading of every command that takes
    ``--data``. Unreadable files stay in ``dataset.skipped`` for the inspection and the
    report, which list them (the loader's warning would repeat them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return scans.load(
            data,
            kind=options.get("kind"),
            labels=options.get("labels"),
            patient_pattern=options.get("patient_pattern"),
            class_names=options.get("class_names"),
        )


def load_dataset(data: Path, options: dict) -> scans.ScanDataset:
    """``data`` read (``read_data``), refused (``DatasetError``) when it cannot train
    (one class, no labels) or has no patient ids and is not declared one slice per
    patient."""
    dataset = read_data(data, options)
    dataset.require_trainable()
    dataset.require_patient_ids(one_slice_per_patient=options["one_slice_per_patient"])
    return dataset


def data_warnings(inspection: dict) -> list[str]:
    """What a reader of the results must know about the data: the inspection's notes,
    the files it could not read, and the slices that do not look like head CT."""
    from ichkit.scans.dataset import Skipped, describe_skipped

    found = list(inspection["notes"])
    if inspection["n_skipped"]:
        skipped = [Skipped(item["path"], item["reason"]) for item in inspection["skipped"]]
        found.append(
            f"{inspection['n_skipped']} files could not be read and were left out: "
            f"{describe_skipped(skipped)} (skipped.json lists them all)"
        )
    if inspection.get("n_implausible"):
        flagged = [Skipped(item["path"], item["reason"]) for item in inspection["implausible"]]
        found.append(
            f"{inspection['n_implausible']} slices do not look like head CT (kept for "
            f"training and testing; inspection.json lists them): {describe_skipped(flagged)}"
        )
    return found


def _run(config, resolved, dataset, models_to_run, data: Path, run: RunFolder, progress: bool):
    """The run itself, inside the configured compute backend."""
    names, members, notes = models_to_run
    n_jobs = n_jobs_for(config["parallel"]["backend"], config["n_jobs"])
    # Every slice through the plausibility gate (10-20 ms a 512-px slice): a run flags
    # what does not look like head CT, and trains on it all the same.
    inspection = scans.inspect(dataset, plausibility=True)
    warned = data_warnings(inspection)
    for line in warned:
        _say(f"warning: {line}", progress)
    run.root.mkdir(parents=True, exist_ok=True)
    # The folder's models: an earlier run's, then this one's (the tables show them all).
    held_models = list(dict.fromkeys([*_saved_models(run), *names]))
    run.write_config({**resolved, "models": held_models})
    run.write_json(run.inspection_path, inspection)
    if dataset.skipped:
        run.write_json(run.skipped_path, [item.__dict__ for item in dataset.skipped])

    with_features = [name for name in names if family_of(name).name == "classical"]
    rows, X, feature_ms = dataset.table, None, 0.0
    if with_features:
        features, skipped = extract_features(
            dataset, config["features"], cache_dir=default_cache_dir(), n_jobs=n_jobs,
            progress=progress,
        )  # fmt: skip
        if skipped:
            run.write_json(run.skipped_path, [item.__dict__ for item in skipped])
        rows, X = dataset.table.loc[features.index], features
        feature_ms = time_features(dataset, config["features"])
    rows = rows[rows["label"].notna().to_numpy()]
    X = X.loc[rows.index] if X is not None else None
    y, groups = rows["label"].astype(int).to_numpy(), rows["patient_id"].to_numpy()

    folds, targets = list(_folds(config, groups, y)), config["targets"]
    notes.update(_one_class_notes(rows, targets, folds))
    if len(targets) > 1:
        notes["targets"] = (
            f"{', '.join(targets)}; the main tables are any hemorrhage's, each subtype has "
            "a block in comparison.md and report.html and rows in summary.csv (target)"
        )
    bar = tqdm(total=len(folds) * len(names) * len(targets), desc="models x folds",
               disable=not progress)  # fmt: skip
    for fold, train, validation, test in folds:
        for name in names:
            for target in targets:  # a CNN trains once for every target, at the first
                bar.set_postfix_str(f"fold {fold} {name} {target}")
                of_target = run.for_target(target)
                if not of_target.predictions_path(name, fold).exists():
                    data_fold = FoldData(fold, dataset, target_rows(rows, target), train,
                                         validation, test, X, members, target)  # fmt: skip
                    extra_ms = feature_ms if name in with_features else 0.0
                    _fit_fold(name, data_fold, config, of_target, extra_ms)
                bar.update()
    bar.close()

    n_folds = len(folds)
    shown = [name for name in held_models
             if len(run.finished_folds(name).get(name, [])) == n_folds]  # fmt: skip
    for name in shown:  # what each fold chose on its training part (budgets, members)
        choices = [family_of(name).fold_choices(run, name, fold) for fold in range(n_folds)]
        if any(choices):
            notes[f"{name} choices"] = "; ".join(
                f"fold {fold}: {choice}" for fold, choice in enumerate(choices) if choice
            )
    added = [name for name in shown if name not in names]
    if added:
        notes["models from earlier runs in this folder"] = ", ".join(added)
    predictions = pd.concat([
        run.for_target(target).read_predictions(shown).assign(target=target)
        for target in targets
    ])  # fmt: skip
    threshold_notes = fallback_notes(predictions[predictions["target"] == "any"])
    if threshold_notes:
        which = ", ".join(line.split(" threshold:")[0] for line in threshold_notes)
        _say(
            f"note: thresholds from a stated fallback in some folds, where the held-out part "
            f"was too small or did not separate ({which}); the report, model_card.md and "
            "notes.json give each reason",
            progress,
        )
    run.write_json(run.notes_path, {"models": notes, "thresholds": threshold_notes,
                                    "data": warned})  # fmt: skip
    note_lines = [f"{name}: {reason}" for name, reason in notes.items()]
    metrics = write_results(
        run, predictions, config=resolved, title=f"ichkit comparison on {data.name}",
        notes=note_lines + threshold_notes, warnings=warned, inspection=inspection,
        n_jobs=n_jobs,
    )  # fmt: skip
    # Last, so that it lists every package the run imported (Keras, torch, ONNX, ...).
    run.write_json(run.versions_path, used_package_versions())
    return metrics


def _fit_fold(name: str, data: FoldData, config: dict, run: RunFolder, extra_ms: float):
    """Fit model ``name`` on one fold for its target, choose its thresholds on its
    held-out rows, and write its test predictions (``extra_ms``: the features' time a
    slice, for models that read them)."""
    rows, train, test = data.rows, data.train, data.test
    fit = family_of(name).fit_fold(name, data, config, run)
    chosen = _thresholds(fit.held_out, rows, rows.iloc[train])
    predictions = rows.iloc[test][_SLICE_COLUMNS].assign(
        row=rows.index[test],
        model=name,
        fold=data.fold,
        probability=fit.probability,
        ms_per_slice=fit.ms_per_slice + extra_ms,
        **_threshold_columns(chosen),
    )[PREDICTION_COLUMNS]
    run.write_predictions(name, data.fold, fit.held_out, predictions)


def _one_class_notes(rows: pd.DataFrame, targets: list[str], folds: list) -> dict[str, str]:
    """A note per target with folds whose training part holds one class of it."""
    notes = {}
    for target in targets:
        labels = rows[label_column(target)].to_numpy()
        lacking = [str(fold) for fold, train, _, _ in folds if np.unique(labels[train]).size < 2]
        if lacking:
            notes[f"target {target} folds {', '.join(lacking)}"] = (
                "the training part holds one class of this target: classical models predict "
                "that class's share there (scikit-learn's DummyClassifier), the CNN's output "
                "and the sequence models learn from that class alone"
            )
    return notes


def _say(message: str, progress: bool) -> None:
    """A line for the person at the console (beside the progress bar)."""
    if progress:
        tqdm.write(message, file=sys.stderr)


def _saved_models(run: RunFolder) -> list[str]:
    """The models an earlier run into this folder listed (none for a new folder)."""
    return list(run.read_config().get("models", [])) if run.config_path.is_file() else []


def _thresholds(held_out: pd.DataFrame, rows: pd.DataFrame, train: pd.DataFrame):
    """The slice and scan thresholds (``ichkit.experiments.thresholds``) from the
    held-out rows that may choose them."""
    chosen = held_out[held_out["for_threshold"]]
    labels = rows.loc[chosen.index, "label"].astype(int)
    slice_choice = slice_threshold(labels, chosen["probability"],
                                   prevalence=float(train["label"].mean()))  # fmt: skip
    table = rows.loc[chosen.index, ["scan_id", "label"]].assign(probability=chosen["probability"])
    scans_table = scan_predictions(table)
    scan_choice = scan_threshold(scans_table["label"], scans_table["probability"],
                                 slice_value=slice_choice.value)  # fmt: skip
    return slice_choice, scan_choice


def _threshold_columns(chosen) -> dict:
    slice_choice, scan_choice = chosen
    return {
        "threshold": slice_choice.value,
        "threshold_rule": slice_choice.rule,
        "threshold_reason": slice_choice.reason,
        "scan_threshold": scan_choice.value,
        "scan_threshold_rule": scan_choice.rule,
        "scan_threshold_reason": scan_choice.reason,
    }


def _runnable_models(config: dict, dataset) -> tuple[list[str], list[str], dict[str, str]]:
    """The models to run (ensembles last), the ensembles' members, and notes: the
    reason for each model left out."""
    notes, names = {}, []
    for name in config["models"]:
        family = family_of(name)
        if family.reads == "scans" and not dataset.is_ordered:
            notes[name] = (
                f"skipped: needs slices ordered within scans; this data set "
                f"({dataset.layout}) has loose slices"
            )
        elif family.reads != "predictions":
            names.append(name)
    members = config["ensemble"]["members"] or names
    members = [name for name in members if name in names]
    for name in config["models"]:
        if family_of(name).reads != "predictions":
            continue
        if len(members) < 2:
            notes[name] = f"skipped: needs two or more members; this run has {members}"
        else:
            names.append(name)
            notes.setdefault("ensemble candidates", ", ".join(members))
    if not names:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in notes.items())
        raise ValueError(f"None of the configured models can run on this data set ({reasons}).")
    return names, members, notes


def _check_resumable(run: RunFolder, config: dict) -> None:
    """Refuse to resume a run folder made with other settings: its finished
    predictions would be mixed with new ones. Adding models is fine."""
    if not run.config_path.is_file():
        return
    saved = _with_defaults(run.read_config())
    changed = sorted(
        key
        for key in set(saved) | set(config)
        if key not in ("models", "parallel") and saved.get(key) != config.get(key)
    )
    if changed:
        raise ValueError(
            f"Run folder '{run.root}' was made with other settings ({', '.join(changed)} differ); "
            "resuming would mix results. Use a new --out, or the same config and flags."
        )


def _with_defaults(saved: dict) -> dict:
    """A saved config with the settings added since it was written at their defaults
    (what that run did), so that a folder made before a new setting existed resumes."""
    from ichkit.experiments.config import DEFAULT_CONFIG

    filled = dict(saved)
    for key, default in DEFAULT_CONFIG.items():
        if key not in filled:
            filled[key] = default
        elif isinstance(default, dict) and default and isinstance(filled[key], dict):
            filled[key] = {**default, **filled[key]}
    return filled


def _folds(config: dict, groups: np.ndarray, y: np.ndarray):
    """(fold, train, validation or None, test) position arrays over the labelled slices."""
    if config["cv"]:
        folds = scans.grouped_kfold(groups, y, config["cv"], random_state=config["seed"])
        for fold, (train, test) in enumerate(folds):
            yield fold, train, None, test
    else:
        split = scans.patient_split(groups, y, random_state=config["seed"], **config["split"])
        yield 0, split.train, split.validation, split.test
