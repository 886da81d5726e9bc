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

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ichkit import scans
from ichkit.classical.tuning import choose_threshold
from ichkit.experiments import _io
from ichkit.experiments.config import load_config
from ichkit.experiments.families import FoldData
from ichkit.experiments.metrics import scan_predictions
from ichkit.experiments.parallel import compute_backend, n_jobs_for
from ichkit.experiments.registry import family_of
from ichkit.experiments.report import write_report
from ichkit.experiments.run_folder import RunFolder
from ichkit.experiments.tables import compute_metrics, summarise
from ichkit.experiments.versions import used_package_versions
from ichkit.features.extraction import default_cache_dir, extract_features, time_features

__all__ = ["run_experiment"]

_PREDICTION_COLUMNS = ["path", "patient_id", "scan_id", "slice_index", "label"]


def run_experiment(
    config_path: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    cv: int | None = None,
    models: list[str] | None = None,
    parallel: dict | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run a comparison and write it to ``out``; returns the metrics table.

    ``config_path`` is a YAML file or the name of a preset (``ichkit list-configs``).

    Everything that can be checked is checked before any training: the config,
    the model names, the data path, that the data has both classes. Models the
    data cannot serve (sequence models on loose slices) are skipped with the reason
    in ``notes.json`` and the report. ``parallel`` overrides the config's
    ``parallel`` section (``backend``, ``scheduler``, ``n_workers``): with the
    ``dask`` backend the joblib work and XGBoost run on a Dask cluster.
    """
    config = load_config(config_path, cv=cv, models=models, parallel=parallel)
    data, run = Path(data), RunFolder(out)
    if not data.exists():
        raise FileNotFoundError(f"Data set path '{data}' does not exist.")
    resolved = {**config, "data": str(data)}
    _check_resumable(run, resolved)
    dataset = scans.load(data)
    dataset.require_trainable()
    models_to_run = _runnable_models(config, dataset)
    settings = config["parallel"]
    with compute_backend(settings["backend"], scheduler=settings["scheduler"],
                         n_workers=settings["n_workers"] or config["n_jobs"]):  # fmt: skip
        return _run(config, resolved, dataset, models_to_run, data, run, progress)


def _run(config, resolved, dataset, models_to_run, data: Path, run: RunFolder, progress: bool):
    """The run itself, inside the configured compute backend."""
    names, members, notes = models_to_run
    n_jobs = n_jobs_for(config["parallel"]["backend"], config["n_jobs"])
    run.root.mkdir(parents=True, exist_ok=True)
    run.write_config(resolved)
    run.write_json(run.inspection_path, scans.inspect(dataset))
    run.write_json(run.notes_path, notes)

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

    folds = list(_folds(config, groups, y))
    bar = tqdm(total=len(folds) * len(names), desc="models x folds", disable=not progress)
    for fold, train, validation, test in folds:
        data_fold = FoldData(fold, dataset, rows, train, validation, test, X, members)
        for name in names:
            bar.set_postfix_str(f"fold {fold} {name}")
            if not run.predictions_path(name, fold).exists():
                fit = family_of(name).fit_fold(name, data_fold, config, run)
                if name in with_features:
                    fit.ms_per_slice += feature_ms
                predictions = rows.iloc[test][_PREDICTION_COLUMNS].assign(
                    row=rows.index[test],
                    model=name,
                    fold=fold,
                    probability=fit.probability,
                    threshold=fit.threshold,
                    scan_threshold=_scan_threshold(fit.held_out, rows),
                    ms_per_slice=fit.ms_per_slice,
                )
                run.write_predictions(name, fold, fit.held_out, predictions)
            bar.update()
    bar.close()

    predictions = run.read_predictions(names)
    metrics = compute_metrics(predictions)
    _io.write_csv(run.metrics_path, metrics)
    summary = summarise(metrics, predictions, n_resamples=config["bootstrap"],
                        random_state=config["seed"], n_jobs=n_jobs)  # fmt: skip
    _io.write_csv(run.summary_path, summary)
    note_lines = [f"{name}: {reason}" for name, reason in notes.items()]
    write_report(run, predictions, metrics, summary, title=f"ichkit comparison on {data.name}",
                 config=resolved, notes=note_lines)  # fmt: skip
    # Last, so that it lists every package the run imported (Keras, torch, ONNX, ...).
    run.write_json(run.versions_path, used_package_versions())
    return metrics


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
            notes.setdefault("ensemble members", ", ".join(members))
    if not names:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in notes.items())
        raise ValueError(f"None of the configured models can run on this data set ({reasons}).")
    return names, members, notes


def _scan_threshold(held_out: pd.DataFrame, rows: pd.DataFrame) -> float:
    """Youden threshold on the maximum slice probability of the held-out scans that
    chose the slice threshold (a scan is positive if any slice is)."""
    chosen = held_out[held_out["for_threshold"]]
    table = rows.loc[chosen.index, ["scan_id", "label"]].assign(probability=chosen["probability"])
    scans_table = scan_predictions(table)
    return choose_threshold(scans_table["label"].to_numpy(), scans_table["probability"])


def _check_resumable(run: RunFolder, config: dict) -> None:
    """Refuse to resume a run folder made with other settings: its finished
    predictions would be mixed with new ones. Adding models is fine."""
    if not run.config_path.is_file():
        return
    saved = run.read_config()
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


def _folds(config: dict, groups: np.ndarray, y: np.ndarray):
    """(fold, train, validation or None, test) position arrays over the labelled slices."""
    if config["cv"]:
        folds = scans.grouped_kfold(groups, y, config["cv"], random_state=config["seed"])
        for fold, (train, test) in enumerate(folds):
            yield fold, train, None, test
    else:
        split = scans.patient_split(groups, y, random_state=config["seed"], **config["split"])
        yield 0, split.train, split.validation, split.test
