"""One model on one fold, family by family: what ``ichkit run`` does per model x fold.

Each ``fit_*`` trains on the fold's training patients only and returns a ``FoldFit``:
the test slices' probabilities, the thresholds chosen on held-out data, the time per
slice, and ``held_out``: probabilities for training-part slices made by models that
did not fit them. Those choose the thresholds and are what the ensembles learn from
(patient-grouped out-of-fold predictions inside the training part).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from ichkit import scans
from ichkit.classical.dask_xgboost import make_dask_xgboost
from ichkit.classical.models import PARAM_GRIDS
from ichkit.classical.persistence import save_model
from ichkit.classical.tuning import choose_threshold, fit_tuned, grouped_folds
from ichkit.ensemble import SoftVoting, StackingCombiner, probability_logits
from ichkit.experiments.parallel import n_jobs_for
from ichkit.experiments.registry import MODELS, get_model, model_file
from ichkit.features.store import FeatureStore, slice_digest

__all__ = ["FoldFit", "fit_classical", "fit_cnn", "fit_ensemble", "fit_sequence"]


@dataclass
class FoldFit:
    """A model's results on one fold.

    ``held_out`` is indexed by data set row, with columns ``probability`` and
    ``for_threshold`` (True where the rows chose the threshold; the others are
    out-of-fold predictions for stacking only).
    """

    probability: np.ndarray
    threshold: float
    ms_per_slice: float
    held_out: pd.DataFrame


def _held_out(index, probability, for_threshold: bool) -> pd.DataFrame:
    return pd.DataFrame(
        {"probability": np.asarray(probability, dtype=float), "for_threshold": for_threshold},
        index=pd.Index(index, name="row"),
    )


# --- Classical models on handcrafted features -----------------------------------------


def fit_classical(name, X, y, groups, parts, config, model_path: Path) -> FoldFit:
    """Tune and fit a classical model on the training part; predict the test part.
    ``parts`` are positions into ``X``: (train, validation or None, test); the fitted
    model is saved to ``model_path`` (joblib, ``ichkit.classical.persistence``)."""
    train, validation, test = parts
    backend = config["parallel"]["backend"]
    search_backend = contextlib.nullcontext()
    if backend == "dask" and name == "xgboost":
        # xgboost.dask spreads each fit over the cluster, so the search runs its fits
        # one after another here rather than as tasks on the workers.
        estimator = make_dask_xgboost(random_state=config["seed"])
        search_backend = joblib.parallel_config(backend="sequential")
    else:
        estimator = get_model(name, random_state=config["seed"], n_jobs=1)
    with search_backend:
        fitted = fit_tuned(
            estimator,
            PARAM_GRIDS.get(MODELS[name].grid, {}),
            X.iloc[train],
            y[train],
            groups[train],
            validation=None if validation is None else (X.iloc[validation], y[validation]),
            inner_folds=config["tuning"]["inner_folds"],
            random_state=config["seed"],
            n_jobs=n_jobs_for(backend, config["n_jobs"]),
        )
    start = time.perf_counter()
    probability = fitted.predict_proba(X.iloc[test])
    model_ms = (time.perf_counter() - start) * 1000 / len(test)
    save_model(
        model_path,
        fitted,
        feature_config=config["features"],
        feature_names=X.columns,
    )
    held = []
    if fitted.out_of_fold is not None:
        held.append(_held_out(X.index[train], fitted.out_of_fold, validation is None))
    if validation is not None:
        held.append(_held_out(X.index[validation], fitted.predict_proba(X.iloc[validation]), True))
    held_out = pd.concat(held) if held else _held_out([], [], True)
    return FoldFit(probability, fitted.threshold, model_ms, held_out)


# --- CNN heads -------------------------------------------------------------------------


def fit_cnn(name, dataset, indices, train_groups, train_labels, config, out, fold) -> FoldFit:
    """Train a CNN head; threshold on its validation patients; predict the test slices
    (time per slice includes reading and preparing them). ``indices`` are data set
    rows: (train, validation or None, test).

    Its held-out rows are its validation patients only. K-fold predictions for all
    training patients would need K more CNNs, each trained on fewer patients: on the
    CT-ICH copy (about 13 training patients a fold) such CNNs reached slice AUC 0.69-0.71
    where the fold's CNN reached 0.92-0.96 on its validation patients, so they would
    tell an ensemble little about the CNN it actually gets."""
    model, _, validation = _fold_cnn(
        name, dataset, indices, train_groups, train_labels, config, out, fold
    )
    probability_validation = _sigmoid(
        _cached_slice_inputs(model, model_file(out, name, fold), dataset, validation, config)
    )
    threshold = choose_threshold(_labels(dataset, validation), probability_validation)
    test = indices[2]
    start = time.perf_counter()
    probability = _sigmoid(_slice_inputs(model, dataset, test, config))
    ms = (time.perf_counter() - start) * 1000 / len(test)
    return FoldFit(probability, threshold, ms, _held_out(validation, probability_validation, True))


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
    weights = model_file(out, name, fold)
    return _train_cnn(name, dataset, train, validation, config, weights), train, validation


def _train_cnn(name, dataset, train, validation, config, weights_path):
    """A CNN head fitted on rows ``train``, early-stopped on ``validation``; loaded
    from ``weights_path`` instead when that exists (a resumed run)."""
    from ichkit.deep.backbones import build_classifier
    from ichkit.deep.data import SliceBatches
    from ichkit.deep.training import train_classifier

    settings = config["deep"]
    shape = (settings["size"], settings["size"], 3)
    if weights_path.is_file():
        return build_classifier(name, shape, weights=weights_path)
    batches = _batch_settings(config)
    augment = scans.RandomAugment(**settings["augment"], random_state=config["seed"])
    training = SliceBatches(
        dataset, train, augment=augment, shuffle=True, seed=config["seed"], **batches
    )
    model = build_classifier(name, shape, weights=settings["weights"], seed=config["seed"])
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


def _labels(dataset, rows) -> np.ndarray:
    return dataset.table.loc[rows, "label"].to_numpy(dtype=float)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.asarray(logits, dtype=float)[:, 0]))


#: Slices per stored chunk of CNN logits or embeddings.
_INPUT_CHUNK = 256


def _slice_inputs(cnn, dataset, rows, config, kind: str = "logits") -> np.ndarray:
    """What the CNN makes of each slice: its logit (one column) or its pooled embedding."""
    from ichkit.deep.data import SliceBatches
    from ichkit.deep.sequence import embedding_model

    slices = SliceBatches(dataset, rows, **_batch_settings(config))
    if kind == "embeddings":
        return embedding_model(cnn).predict(slices, verbose=0)
    return probability_logits(cnn.predict(slices, verbose=0)[:, :1]).astype("float32")


def _cached_slice_inputs(cnn, weights: Path, dataset, rows, config, kind="logits") -> np.ndarray:
    """``_slice_inputs``, kept in a ``FeatureStore`` beside the CNN's weights, in chunks
    keyed by the slices' content and the weights' digest: the heads, the LSTM, the GRU
    and a resumed run compute each chunk once, and retrained weights start afresh."""
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    store = FeatureStore(weights.parent / "slice-inputs", f"{weights.name}:{digest}:{kind}")
    table = dataset.table.loc[rows]
    parts = []
    for start in range(0, len(rows), _INPUT_CHUNK):
        chunk = np.asarray(rows[start : start + _INPUT_CHUNK])
        pairs = zip(table.loc[chunk, "path"], table.loc[chunk, "frame"], strict=True)
        digests = [slice_digest(path, frame) for path, frame in pairs]
        path = store.chunk_path(digests)
        if path.is_file():
            parts.append(store.read(path))
            continue
        values = _slice_inputs(cnn, dataset, chunk, config, kind)
        store.write(path, digests, values, [f"{kind}_{i}" for i in range(values.shape[1])])
        parts.append(values)
    return np.concatenate(parts).astype("float32")


def fit_sequence(name, dataset, indices, train_groups, train_labels, config, out, fold) -> FoldFit:
    """A bidirectional LSTM/GRU over the ordered slices of each scan, reading what the
    fold's CNN (trained on training patients only) makes of every slice.

    ``sequence.inputs: logits`` (the default): the CNN's slice logit, which the model
    corrects from the neighbouring slices (``build_sequence_model(residual=True)``),
    so it starts as the CNN and learns only what the neighbours add. ``inputs:
    embeddings``: the CNN's pooled embeddings. The CNN's validation patients, which it
    did not fit, stop the training early and choose the threshold.

    Training reads the CNN's outputs on the patients it was trained on. Out-of-fold
    logits from CNNs trained on fewer patients were tried and dropped. On the validation
    patients of two CT-ICH folds (never the test patients), those CNNs were much
    weaker (slice AUC about 0.70 against 0.92-0.96) and LSTM/GRU trained on their
    logits lost 0.03-0.15 AUC against the fold CNN, while LSTM/GRU trained on the fold
    CNN's own logits gained 0.001-0.003; with the embeddings beside the logit they lost
    0.03-0.12 (the CNN's training slices are separable in its embeddings).
    """
    settings = config["sequence"]
    cnn_name, kind = settings["cnn"], settings["inputs"]
    cnn, train, validation = _fold_cnn(
        cnn_name, dataset, indices, train_groups, train_labels, config, out, fold
    )
    weights, test = model_file(out, cnn_name, fold), indices[2]
    inputs = {
        part: _cached_slice_inputs(cnn, weights, dataset, rows, config, kind)
        for part, rows in (("train", train), ("validation", validation))
    }
    model = _fit_sequence_model(name, dataset, (train, inputs["train"]),
                                (validation, inputs["validation"]), config)  # fmt: skip
    probability_validation = _predict_sequence(model, dataset, validation, inputs["validation"])
    threshold = choose_threshold(_labels(dataset, validation), probability_validation)

    start = time.perf_counter()  # the CNN and the sequence model together
    test_inputs = _slice_inputs(cnn, dataset, test, config, kind)
    probability = _predict_sequence(model, dataset, test, test_inputs)
    ms = (time.perf_counter() - start) * 1000 / len(test)
    model.save(model_file(out, name, fold))
    return FoldFit(probability, threshold, ms, _held_out(validation, probability_validation, True))


def _scan_batch(dataset, rows, inputs):
    from ichkit.deep.sequence import pad_scans

    table = dataset.table.loc[rows]
    return pad_scans(inputs, table["scan_id"], table["slice_index"], table["label"])


def _fit_sequence_model(name, dataset, training, validation, config):
    """Build and fit the LSTM/GRU on ``(rows, inputs)`` pairs."""
    from ichkit.deep.sequence import build_sequence_model, fit_sequence_model

    settings = config["sequence"]
    model = build_sequence_model(
        name, training[1].shape[1], units=settings["units"],
        residual=settings["inputs"] == "logits", seed=config["seed"],
    )  # fmt: skip
    fit_sequence_model(
        model, _scan_batch(dataset, *training), validation=_scan_batch(dataset, *validation),
        epochs=settings["epochs"], batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"], seed=config["seed"],
        patience=settings["patience"],
    )  # fmt: skip
    return model


def _predict_sequence(model, dataset, rows, inputs) -> np.ndarray:
    from ichkit.deep.sequence import predict_slices

    return predict_slices(model, _scan_batch(dataset, rows, inputs))


def fit_ensemble(name: str, members: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
                 table: pd.DataFrame, config: dict, model_path: Path) -> FoldFit:  # fmt: skip
    """Soft voting or stacking of the members' probabilities on one fold.

    ``members`` maps each member to its test predictions (columns ``row``,
    ``probability``, ``ms_per_slice``) and its held-out predictions (indexed by row,
    as ``FoldFit.held_out``); ``table`` gives every row's label and patient. The
    combiner is fitted on the training-part rows that every member predicted
    without having fitted them. Stacking's threshold comes from patient-grouped
    out-of-fold predictions of the combiner on those rows; voting fits nothing, so
    its threshold comes from the rows themselves. The fitted combiner and its
    members' names are saved to ``model_path`` (joblib).
    """
    import joblib
    from sklearn.model_selection import cross_val_predict

    names = list(members)
    held = pd.concat([members[m][1]["probability"].rename(m) for m in names], axis=1).dropna()
    test = pd.concat([members[m][0].set_index("row")["probability"].rename(m) for m in names],
                     axis=1)  # fmt: skip
    if held.empty:
        raise ValueError(
            f"'{name}' has no training-part rows that all of its members predicted "
            f"out of sample ({', '.join(names)}); cannot fit it."
        )
    y = table.loc[held.index, "label"].astype(int).to_numpy()
    groups = table.loc[held.index, "patient_id"].to_numpy()
    combiner = SoftVoting() if name == "voting" else StackingCombiner()
    if name == "stacking" and np.unique(y).size < 2:
        warnings.warn(
            f"stacking: the {len(y)} held-out training-part slices its members predicted "
            "hold one class only, so the combiner cannot learn; it averages the members "
            "(soft voting) on this fold.",
            UserWarning,
            stacklevel=2,
        )
        name, combiner = "voting", SoftVoting()
    combiner.fit(held.to_numpy(), y)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump({"combiner": combiner, "members": names}, model_path)
    folds = grouped_folds(y, groups, config["tuning"]["inner_folds"], config["seed"])
    if name == "stacking" and folds is not None:
        held_probability = cross_val_predict(
            StackingCombiner(), held.to_numpy(), y, groups=groups, cv=folds,
            method="predict_proba",
        )[:, 1]  # fmt: skip
    else:
        held_probability = combiner.predict_proba(held.to_numpy())[:, 1]
    start = time.perf_counter()
    probability = combiner.predict_proba(test.to_numpy())[:, 1]
    combine_ms = (time.perf_counter() - start) * 1000 / len(test)
    members_ms = sum(float(members[m][0]["ms_per_slice"].iloc[0]) for m in names)
    return FoldFit(
        probability,
        choose_threshold(y, held_probability),
        members_ms + combine_ms,  # every member, then the combiner (a shared CNN counts twice)
        _held_out(held.index, held_probability, True),
    )
