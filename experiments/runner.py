"""``ichkit run``: every configured model on the same patient-grouped splits, then metrics.

For each fold (K patient-grouped folds, or one 70/15/15 patient split) and model:
tune on the training patients, choose the threshold on validation data, predict
the held-out patients and write the predictions. A finished model x fold leaves
``predictions/<model>__fold<k>.csv`` (written atomically), so a killed run started
again with the same command skips what was complete.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

import scans
from classical.models import PARAM_GRIDS
from classical.persistence import package_versions, save_model
from classical.tuning import fit_tuned
from experiments import _io
from experiments.config import load_config
from experiments.metrics import binary_metrics, scan_predictions
from experiments.registry import MODELS, get_model
from features.extraction import default_cache_dir, extract_features, time_features

__all__ = [
    "compute_metrics",
    "format_comparison",
    "read_predictions",
    "run_experiment",
    "summarise",
]

_PREDICTION_COLUMNS = ["path", "patient_id", "scan_id", "slice_index", "label"]
_METRIC_COLUMNS = [
    "model", "level", "fold", "auc", "accuracy", "sensitivity", "specificity", "precision",
    "f1", "tp", "tn", "fp", "fn", "ms_per_slice", "pr_auc", "log_loss", "threshold", "n",
    "n_positive",
]  # fmt: skip


def run_experiment(
    config_path: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    cv: int | None = None,
    models: list[str] | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run a comparison and write it to ``out``; returns the metrics table.

    Everything that can be checked is checked before any training: the config,
    the model names, the data path, that the data has both classes.
    """
    config = load_config(config_path, cv=cv, models=models)
    data, out = Path(data), Path(out)
    if not data.exists():
        raise FileNotFoundError(f"Data set path '{data}' does not exist.")
    resolved = {**config, "data": str(data)}
    _check_resumable(out, resolved)
    dataset = scans.load(data)
    dataset.require_trainable()
    out.mkdir(parents=True, exist_ok=True)
    _io.write_yaml(out / "config.yaml", resolved)
    _io.write_json(out / "versions.json", package_versions())
    _io.write_json(out / "inspection.json", scans.inspect(dataset))

    classical = [name for name in config["models"] if MODELS[name].family == "classical"]
    rows, X, feature_ms = dataset.table, None, 0.0
    if classical:
        features, skipped = extract_features(
            dataset, config["features"], cache_dir=default_cache_dir(), n_jobs=config["n_jobs"],
            progress=progress,
        )  # fmt: skip
        if skipped:
            _io.write_json(out / "skipped.json", [item.__dict__ for item in skipped])
        rows, X = dataset.table.loc[features.index], features
        feature_ms = time_features(dataset, config["features"])
    labelled = rows["label"].notna().to_numpy()
    rows = rows[labelled]
    X = X[labelled] if X is not None else None
    y, groups = rows["label"].astype(int).to_numpy(), rows["patient_id"].to_numpy()

    for fold, train, validation, test in _folds(config, groups, y):
        for name in config["models"]:
            path = out / "predictions" / f"{name}__fold{fold}.csv"
            if path.exists():
                continue
            model_path = out / "models" / f"{name}__fold{fold}"
            if name in classical:
                probability, threshold, ms = _fit_predict_classical(
                    name, X, y, groups, (train, validation, test), config, model_path
                )
                ms += feature_ms
            else:
                indices = [rows.index[part] if part is not None else None
                           for part in (train, validation, test)]  # fmt: skip
                fit_predict = (
                    _fit_predict_cnn if name not in ("lstm", "gru") else _fit_predict_sequence
                )
                probability, threshold, ms = fit_predict(
                    name, dataset, indices, groups[train], y[train], config, out, fold
                )
            predictions = rows.iloc[test][_PREDICTION_COLUMNS].assign(
                model=name,
                fold=fold,
                probability=probability,
                threshold=threshold,
                ms_per_slice=ms,
            )
            _io.write_csv(path, predictions)
            if progress:
                print(f"fold {fold} {name}: done", flush=True)
    predictions = read_predictions(out, config["models"])
    metrics = compute_metrics(predictions)
    _io.write_csv(out / "metrics.csv", metrics)
    summary = summarise(metrics, predictions)
    _io.write_csv(out / "summary.csv", summary)
    _io.write_text(out / "comparison.md", format_comparison(summary) + "\n")
    return metrics


def _fit_predict_classical(name, X, y, groups, parts, config, model_path):
    """Tune and fit a classical model on the training part; predict the test part."""
    train, validation, test = parts
    fitted = fit_tuned(
        get_model(name, random_state=config["seed"], n_jobs=1),
        PARAM_GRIDS.get(MODELS[name].grid, {}),
        X.iloc[train],
        y[train],
        groups[train],
        validation=None if validation is None else (X.iloc[validation], y[validation]),
        inner_folds=config["tuning"]["inner_folds"],
        random_state=config["seed"],
        n_jobs=config["n_jobs"],
    )
    start = time.perf_counter()
    probability = fitted.predict_proba(X.iloc[test])
    model_ms = (time.perf_counter() - start) * 1000 / len(test)
    save_model(
        model_path.with_suffix(".joblib"),
        fitted,
        feature_config=config["features"],
        feature_names=X.columns,
    )
    return probability, fitted.threshold, model_ms


def _train_cnn(name, dataset, indices, train_groups, train_labels, config, out, fold):
    """The fold's CNN head, trained on training patients only (or loaded if this run
    already trained it), with the training patients it held out for early stopping."""
    from deep.backbones import build_classifier
    from deep.data import SliceBatches
    from deep.training import train_classifier

    settings = config["deep"]
    train, validation, _ = indices
    if validation is None:  # cross-validation: hold out some training patients
        inner = scans.patient_split(
            train_groups, train_labels, val_size=settings["validation_size"], test_size=0.0,
            random_state=config["seed"],
        )  # fmt: skip
        train, validation = train[inner.train], train[inner.validation]
    shape = (settings["size"], settings["size"], 3)
    weights_path = out / "models" / f"{name}__fold{fold}.weights.h5"
    if weights_path.is_file():
        return build_classifier(name, shape, weights=weights_path), validation
    batches = _batch_settings(config)
    augment = scans.RandomAugment(**settings["augment"], random_state=config["seed"])
    training = SliceBatches(
        dataset, train, augment=augment, shuffle=True, seed=config["seed"], **batches
    )
    model = build_classifier(name, shape, weights=settings["weights"])
    train_classifier(
        model, training, SliceBatches(dataset, validation, **batches), epochs=settings["epochs"],
        learning_rate=settings["learning_rate"], optimizer=settings["optimizer"],
        warmup_epochs=settings["warmup_epochs"], patience=settings["patience"],
        checkpoint=weights_path, seed=config["seed"], verbose=0,
    )  # fmt: skip
    return model, validation


def _batch_settings(config: dict) -> dict:
    settings = config["deep"]
    return {
        "size": settings["size"],
        "window": settings["window"],
        "batch_size": settings["batch_size"],
        "cache": settings["cache_slices"],
    }


def _fit_predict_cnn(name, dataset, indices, train_groups, train_labels, config, out, fold):
    """Train a CNN head; threshold on its validation patients; predict the test slices
    (time per slice includes reading and preparing them)."""
    from classical.tuning import choose_threshold
    from deep.data import SliceBatches

    model, validation = _train_cnn(
        name, dataset, indices, train_groups, train_labels, config, out, fold
    )
    batches = _batch_settings(config)
    validating = SliceBatches(dataset, validation, **batches)
    threshold = choose_threshold(validating.labels, model.predict(validating, verbose=0)[:, 0])
    test = indices[2]
    start = time.perf_counter()
    probability = model.predict(SliceBatches(dataset, test, **batches), verbose=0)[:, 0]
    return probability, threshold, (time.perf_counter() - start) * 1000 / len(test)


def _fit_predict_sequence(name, dataset, indices, train_groups, train_labels, config, out, fold):
    """A bidirectional LSTM/GRU over the ordered slices of each scan, reading the
    embeddings of the fold's CNN (trained on training patients only). The CNN's own
    validation patients validate the sequence model too: the CNN has not fitted them."""
    from classical.tuning import choose_threshold
    from deep.data import SliceBatches
    from deep.sequence import (
        build_sequence_model,
        embedding_model,
        fit_sequence_model,
        pad_scans,
        predict_slices,
    )

    if not dataset.is_ordered:
        raise ValueError(
            f"'{name}' needs slices ordered within scans; this data set ({dataset.layout}) has "
            "loose slices. Leave it out of --models."
        )
    settings = config["sequence"]
    cnn, validation = _train_cnn(
        settings["cnn"], dataset, indices, train_groups, train_labels, config, out, fold
    )
    embedder = embedding_model(cnn)
    batches = _batch_settings(config)
    train = np.setdiff1d(indices[0], validation)
    parts, seconds = {}, {}
    for part, rows in (("train", train), ("validation", validation), ("test", indices[2])):
        start = time.perf_counter()
        embeddings = embedder.predict(SliceBatches(dataset, rows, **batches), verbose=0)
        seconds[part] = time.perf_counter() - start
        table = dataset.table.loc[rows]
        parts[part] = pad_scans(embeddings, table["scan_id"], table["slice_index"], table["label"])
    model = build_sequence_model(name, parts["train"].inputs.shape[-1], units=settings["units"],
                                 seed=config["seed"])  # fmt: skip
    fit_sequence_model(
        model, parts["train"], validation=parts["validation"], epochs=settings["epochs"],
        batch_size=settings["batch_size"], learning_rate=settings["learning_rate"],
        seed=config["seed"], patience=settings["patience"],
    )  # fmt: skip
    threshold = choose_threshold(
        dataset.table.loc[validation, "label"].to_numpy(),
        predict_slices(model, parts["validation"]),
    )
    start = time.perf_counter()
    probability = predict_slices(model, parts["test"])
    seconds["test"] += time.perf_counter() - start  # embedding and sequence model together
    model.save(out / "models" / f"{name}__fold{fold}.keras")
    return probability, threshold, seconds["test"] * 1000 / len(indices[2])


def _check_resumable(out: Path, config: dict) -> None:
    """Refuse to resume a run folder made with other settings: its finished
    predictions would be mixed with new ones. Adding models is fine."""
    saved_path = out / "config.yaml"
    if not saved_path.is_file():
        return
    saved = yaml.safe_load(saved_path.read_text())
    changed = sorted(
        key
        for key in set(saved) | set(config)
        if key != "models" and saved.get(key) != config.get(key)
    )
    if changed:
        raise ValueError(
            f"Run folder '{out}' was made with other settings ({', '.join(changed)} differ); "
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


def read_predictions(out: str | Path, models: list[str]) -> pd.DataFrame:
    """Every finished model x fold's test predictions in a run folder."""
    folder = Path(out) / "predictions"
    paths = [path for name in models for path in sorted(folder.glob(f"{name}__fold*.csv"))]
    return pd.concat([pd.read_csv(p, dtype={"patient_id": str, "scan_id": str}) for p in paths])


def compute_metrics(predictions: pd.DataFrame) -> pd.DataFrame:
    """Metrics per model, level (slice, and scan where scans have several slices) and fold."""
    has_scans = predictions.groupby("scan_id").size().max() > 1
    records = []
    for (name, fold), part in predictions.groupby(["model", "fold"], sort=False):
        threshold, ms = float(part["threshold"].iloc[0]), float(part["ms_per_slice"].iloc[0])
        levels = [("slice", part)] + ([("scan", scan_predictions(part))] if has_scans else [])
        for level, table in levels:
            values = binary_metrics(table["label"], table["probability"], threshold)
            records.append({"model": name, "level": level, "fold": fold, **values,
                            "threshold": threshold, "ms_per_slice": ms})  # fmt: skip
    return pd.DataFrame(records)[_METRIC_COLUMNS]


def summarise(metrics: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Per model and level: mean and standard deviation over folds, and pooled AUC."""
    rows = []
    for (name, level), part in metrics.groupby(["model", "level"], sort=False):
        pooled = predictions[predictions["model"] == name]
        if level == "scan":
            pooled = pd.concat([scan_predictions(p) for _, p in pooled.groupby("fold")])
        pooled_auc = binary_metrics(pooled["label"], pooled["probability"], 0.5)["auc"]
        row = {"model": name, "level": level, "n_folds": len(part), "auc_pooled": pooled_auc}
        for column in ("auc", "accuracy", "sensitivity", "specificity", "precision", "f1"):
            row[f"{column}_mean"] = part[column].mean()
            row[f"{column}_std"] = part[column].std(ddof=1) if len(part) > 1 else float("nan")
        row["ms_per_slice"] = part["ms_per_slice"].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def format_comparison(summary: pd.DataFrame) -> str:
    """The comparison as a Markdown table: mean (sd) over folds."""

    def cell(row, column):
        mean, std = row[f"{column}_mean"], row[f"{column}_std"]
        return f"{mean:.3f}" if np.isnan(std) else f"{mean:.3f} ({std:.3f})"

    columns = ["model", "level", "AUC", "pooled AUC", "accuracy", "sensitivity", "specificity"]
    columns += ["F1", "ms/slice"]
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for _, row in summary.iterrows():
        lines.append(
            f"| {row['model']} | {row['level']} | {cell(row, 'auc')} | {row['auc_pooled']:.3f} | "
            f"{cell(row, 'accuracy')} | {cell(row, 'sensitivity')} | {cell(row, 'specificity')} | "
            f"{cell(row, 'f1')} | {row['ms_per_slice']:.1f} |"
        )
    return "\n".join(lines)
