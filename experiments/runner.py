"""``ichkit run``: every configured model on the same patient-grouped splits, then metrics.

For each fold (K patient-grouped folds, or one 70/15/15 patient split) and model:
tune on the training patients, choose the threshold on validation data, predict
the held-out patients and write the predictions. A finished model x fold leaves
``predictions/<model>__fold<k>.csv`` (written atomically), so a killed run started
again with the same command skips what was complete.
"""

from __future__ import annotations

import hashlib
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


def _fold_cnn(name, dataset, indices, train_groups, train_labels, config, out, fold):
    """The fold's CNN head, trained on training patients only (or loaded if this run
    already trained it). Returns it with the rows it fitted and the training patients
    it held out for early stopping."""
    settings = config["deep"]
    train, validation, _ = indices
    if validation is None:  # cross-validation: hold out some training patients
        inner = scans.patient_split(
            train_groups, train_labels, val_size=settings["validation_size"], test_size=0.0,
            random_state=config["seed"],
        )  # fmt: skip
        train, validation = train[inner.train], train[inner.validation]
    weights = _weights_path(out, name, fold)
    return _train_cnn(name, dataset, train, validation, config, weights), train, validation


def _weights_path(out: Path, name: str, fold: int, inner: int | None = None) -> Path:
    """Where a CNN trained in this run keeps its weights (``inner``: an out-of-fold CNN)."""
    suffix = "" if inner is None else f"__inner{inner}"
    return out / "models" / f"{name}__fold{fold}{suffix}.weights.h5"


def _train_cnn(name, dataset, train, validation, config, weights_path):
    """A CNN head fitted on rows ``train``, early-stopped on ``validation``; loaded
    from ``weights_path`` instead when that exists (a resumed run)."""
    from deep.backbones import build_classifier
    from deep.data import SliceBatches
    from deep.training import train_classifier

    settings = config["deep"]
    shape = (settings["size"], settings["size"], 3)
    if weights_path.is_file():
        return build_classifier(name, shape, weights=weights_path)
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
    return model


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

    model, _, validation = _fold_cnn(
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
    """A bidirectional LSTM/GRU over the ordered slices of each scan, reading what the
    fold's CNN (trained on training patients only) makes of every slice.

    ``sequence.inputs: logits``: the CNN's slice logit, which the model corrects from
    the neighbouring slices (``build_sequence_model(residual=True)``). For the training
    patients the logits are out-of-fold, from CNNs trained on the other training
    patients, so they are as unsure as on new patients; the fold's CNN gives those of
    its validation and test patients. ``inputs: embeddings``: the CNN's pooled
    embeddings (``deep.sequence``), the training patients' from the CNN that fitted
    them. Either way the CNN's validation patients validate the sequence model.
    """
    from classical.tuning import choose_threshold
    from deep.sequence import build_sequence_model, fit_sequence_model, pad_scans, predict_slices

    if not dataset.is_ordered:
        raise ValueError(
            f"'{name}' needs slices ordered within scans; this data set ({dataset.layout}) has "
            "loose slices. Leave it out of --models."
        )
    settings = config["sequence"]
    cnn, train, validation = _fold_cnn(
        settings["cnn"], dataset, indices, train_groups, train_labels, config, out, fold
    )
    test, weights = indices[2], _weights_path(out, settings["cnn"], fold)
    if settings["inputs"] == "logits":
        train_inputs = _out_of_fold_logits(dataset, train, validation, config, out, fold)
    else:
        train_inputs = _cached_slice_inputs(cnn, weights, dataset, train, config)
    parts = {"train": train_inputs}
    parts["validation"] = _cached_slice_inputs(cnn, weights, dataset, validation, config)
    start = time.perf_counter()  # not cached: the test slices' time is part of the model's
    parts["test"] = _slice_inputs(cnn, dataset, test, config)
    embed_seconds = time.perf_counter() - start
    batches = {}
    for part, rows in (("train", train), ("validation", validation), ("test", test)):
        table = dataset.table.loc[rows]
        batches[part] = pad_scans(
            parts[part], table["scan_id"], table["slice_index"], table["label"]
        )
    model = build_sequence_model(
        name, parts["train"].shape[1], units=settings["units"],
        residual=settings["inputs"] == "logits", seed=config["seed"],
    )  # fmt: skip
    fit_sequence_model(
        model, batches["train"], validation=batches["validation"], epochs=settings["epochs"],
        batch_size=settings["batch_size"], learning_rate=settings["learning_rate"],
        seed=config["seed"], patience=settings["patience"],
    )  # fmt: skip
    threshold = choose_threshold(
        dataset.table.loc[validation, "label"].to_numpy(),
        predict_slices(model, batches["validation"]),
    )
    start = time.perf_counter()
    probability = predict_slices(model, batches["test"])
    seconds = embed_seconds + time.perf_counter() - start  # CNN and sequence model together
    model.save(out / "models" / f"{name}__fold{fold}.keras")
    return probability, threshold, seconds * 1000 / len(test)


def _slice_inputs(cnn, dataset, rows, config) -> np.ndarray:
    """What a sequence model reads of each slice: the CNN's logit (one column) or its
    pooled embedding, as ``config["sequence"]["inputs"]`` says."""
    from deep.data import SliceBatches
    from deep.sequence import embedding_model

    slices = SliceBatches(dataset, rows, **_batch_settings(config))
    if config["sequence"]["inputs"] == "embeddings":
        return embedding_model(cnn).predict(slices, verbose=0)
    probability = np.clip(cnn.predict(slices, verbose=0)[:, :1], 1e-6, 1 - 1e-6)
    return np.log(probability / (1 - probability)).astype("float32")


def _cached_slice_inputs(cnn, weights: Path, dataset, rows, config) -> np.ndarray:
    """``_slice_inputs``, cached per CNN and slice beside the CNN's weights, so the
    LSTM, the GRU and a resumed run compute each slice once. The cache holds the
    weights' digest and is ignored if the weights changed."""
    kind = config["sequence"]["inputs"]
    cache = weights.with_name(weights.name.removesuffix(".weights.h5") + f".{kind}.npz")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    table = dataset.table.loc[rows]
    keys = (table["path"].astype(str) + "#" + table["frame"].astype(str)).to_numpy()
    known = {}
    if cache.is_file():
        with np.load(cache) as stored:
            if str(stored["digest"]) == digest:
                known = dict(zip(stored["keys"], stored["values"], strict=True))
    missing = np.array([key not in known for key in keys])
    if missing.any():
        values = _slice_inputs(cnn, dataset, rows[missing], config)
        known.update(zip(keys[missing], values, strict=True))
        _io.write_npz(cache, digest=digest, keys=np.array(list(known)),
                      values=np.stack(list(known.values())))  # fmt: skip
    return np.stack([known[key] for key in keys])


def _out_of_fold_logits(dataset, train, validation, config, out, fold) -> np.ndarray:
    """Logits of the ``train`` rows, each from a CNN trained without its patient:
    ``sequence.inner_folds`` patient-grouped folds of the training patients, each CNN
    early-stopped on the fold's validation patients. Weights are kept for resuming."""
    settings = config["sequence"]
    table = dataset.table.loc[train]
    logits = np.zeros((len(train), 1), dtype="float32")
    inner_folds = scans.grouped_kfold(
        table["patient_id"].to_numpy(), table["label"].to_numpy(dtype=float),
        settings["inner_folds"], random_state=config["seed"],
    )  # fmt: skip
    for inner, (fit_rows, held_out) in enumerate(inner_folds):
        weights = _weights_path(out, settings["cnn"], fold, inner)
        cnn = _train_cnn(settings["cnn"], dataset, train[fit_rows], validation, config, weights)
        logits[held_out] = _cached_slice_inputs(cnn, weights, dataset, train[held_out], config)
    return logits


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
