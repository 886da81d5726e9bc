"""CNN heads on single slices (the small CNN, MobileNet, ResNet50, VGG16, or a user's)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ichkit.experiments import _io
from ichkit.experiments.families._base import (
    FoldData,
    FoldFit,
    ModelFamily,
    ServingContext,
    held_out_frame,
    memoised,
)
from ichkit.experiments.targets import label_column, run_targets

__all__ = ["CnnFamily", "CnnFold", "FoldCnn"]

log = logging.getLogger(__name__)

#: Slices per stored chunk of CNN logits or embeddings.
_INPUT_CHUNK = 256


@dataclass
class FoldCnn:
    """A fold's CNN and how it was made.

    ``model`` is the fold's CNN, trained on every training patient; ``inner`` (saved at
    ``inner_path``) was trained first on ``inner_train``, without the ``validation``
    patients, whose AUC after each epoch chose the refit's budget and whose predictions
    choose the thresholds (``inner`` never saw them). Without a refit both are one CNN.
    ``inference`` is how ``model`` runs once trained (``CnnFamily.choose_inference``):
    None where ``deep.int8`` is off (Keras).
    """

    model: object
    inner: object
    inner_path: Path
    inner_train: pd.Index
    validation: pd.Index
    inference: dict | None = None


class CnnFamily(ModelFamily):
    """A Keras head (``ichkit.deep.backbones.build_classifier`` around the registered
    backbone), trained by ``ichkit.deep.training``'s small-data recipe; its weights are
    the saved model."""

    name = "cnn"
    suffix = ".weights.h5"
    reads = "slices"

    def build(self, name: str, input_shape=(224, 224, 3), **params):
        """The classifier ``name`` with the shared top (``build_classifier``)."""
        from ichkit.deep.backbones import build_classifier
        from ichkit.experiments.registry import accepted_params, resolve

        backbone = resolve(name).load_builder()
        params = accepted_params(build_classifier, params)
        return build_classifier(name, input_shape, backbone=backbone, **params)

    def fit_fold(self, name: str, data: FoldData, config: dict, run) -> FoldFit:
        """Train the head (``fold_model``); predict the test slices with it (time per
        slice includes reading and preparing them, and the flipped copy of test-time
        augmentation).

        Its held-out rows are its validation patients, predicted by the inner CNN that
        did not see them. K-fold predictions for all training patients would need K more
        CNNs, each trained on fewer patients: on the CT-ICH copy (about 13 training
        patients a fold) such CNNs reached slice AUC 0.69-0.71 where the fold's CNN
        reached 0.92-0.96 on its validation patients, so they would tell an ensemble
        little about the CNN it actually gets."""
        cnn = self.fold_model(name, data, config, run)
        column = output_column(config, data.target)
        probability_validation = _sigmoid(
            cached_slice_inputs(cnn.inner, cnn.inner_path, data.dataset, cnn.validation, config),
            column,
        )  # fmt: skip
        test = data.index(data.test)
        predictor = cnn.model  # the engine and precision that will serve it, where chosen
        if cnn.inference is not None:
            predictor = _OnnxPredictor(cnn.inference["path"], cnn.inference["engine"])
        start = time.perf_counter()
        probability = _sigmoid(slice_inputs(predictor, data.dataset, test, config), column)
        ms = (time.perf_counter() - start) * 1000 / len(test)
        held_out = held_out_frame(cnn.validation, probability_validation, True)
        return FoldFit(probability, ms, held_out)

    def fold_model(self, name: str, data: FoldData, config: dict, run) -> FoldCnn:
        """The fold's CNN, trained on training patients only (or loaded if this run
        already trained it). One CNN predicts every target of the run (one sigmoid
        output each, ``output_column``), so it is trained once, at the first target, and
        kept in the run's top folder (``run.main``).

        First an inner CNN is trained on the training patients less a patient-grouped
        validation part (``deep.validation_size``; the split's own validation patients
        in a single split), over the recipe's whole budget, measuring the validation
        AUC after every epoch. The candidate budget (``deep.budget_candidates``, as
        fractions of ``deep.epochs``) with the best validation AUC is then the budget of
        the refit on every training patient (``deep.refit: false`` keeps the inner CNN).
        """
        from ichkit import scans
        from ichkit.deep.training import choose_epochs

        settings, run = config["deep"], run.main
        train, validation = data.index(data.train), data.index(data.validation)
        if validation is None:  # cross-validation: hold out some training patients
            inner = scans.patient_split(  # stratified on any hemorrhage, as the folds are
                data.groups[data.train],
                data.dataset.table.loc[train, "label"].astype(int).to_numpy(),
                val_size=settings["validation_size"], test_size=0.0,
                random_state=config["seed"],
            )  # fmt: skip
            inner_train, validation = train[inner.train], train[inner.validation]
        else:
            inner_train, train = train, train.append(validation)
        fold, refit = data.fold, settings["refit"]
        start = settings["weights"]
        if settings["pretrain"]:  # the training part's slices only: never a test patient's
            start = self._pretrained(name, data.dataset, train, config,
                                     run.model_path(name, fold, "pretrained"))  # fmt: skip
        record_path = run.model_path(name, fold, "training")
        inner_path = run.model_path(name, fold, "inner" if refit else "")
        inner_model, aucs = self._train(
            name, data.dataset, inner_train, validation, settings["epochs"], config,
            inner_path, record_path, run, start,
        )  # fmt: skip
        if not refit:  # the inner CNN is the fold's CNN
            cnn = FoldCnn(inner_model, inner_model, inner_path, inner_train, validation)
        else:
            candidates = [max(1, round(f * settings["epochs"]))
                          for f in settings["budget_candidates"]]  # fmt: skip
            epochs = choose_epochs(aucs, candidates)
            model, _ = self._train(name, data.dataset, train, None, epochs, config,
                                   run.model_path(name, fold), None, run, start)  # fmt: skip
            record = json.loads(record_path.read_text())
            if record.get("refit_epochs") != epochs:
                run.write_json(record_path, {**record, "refit_epochs": epochs})
            cnn = FoldCnn(model, inner_model, inner_path, inner_train, validation)
        if settings["int8"]:
            try:
                cnn.inference = self.choose_inference(name, cnn, data.dataset, train, fold,
                                                      config, run)  # fmt: skip
            except Exception as error:  # noqa: BLE001  any export failure: Keras still works
                log.warning("Exporting '%s' fold %d for ONNX failed (%s); it runs with Keras.",
                            name, fold, error)  # fmt: skip
        return cnn

    def choose_inference(self, name: str, cnn: FoldCnn, dataset, train, fold: int,
                         config: dict, run) -> dict:  # fmt: skip
        """How the fold's CNN runs once trained: float32 on ONNX Runtime, or int8 on the
        fastest engine whose AUC stays within ``deep.int8_max_auc_drop`` of float32's.

        Decided on the inner CNN and its validation patients, which it never saw: it is
        exported, quantized statically (``quantize_static_int8``) with scales calibrated
        on its own training slices, and run by every installed engine
        (``compare_engines``: AUC and batch-1 latency); ``fastest_kept`` picks. The fold's
        CNN is then exported and, where int8 won, quantized the same way on the slices
        of the training patients (``train``), never a test patient's. Written to
        ``models/<name>__fold<k>.inference.json`` beside the ONNX files (``RunFolder.
        onnx_path``) with every candidate's figures; kept from an earlier run while
        the weights are the same. Returns ``inference_record``'s view of it."""
        from ichkit.deep.export import (
            compare_engines,
            export_onnx,
            fastest_kept,
            quantize_static_int8,
        )

        run = run.main
        earlier = self.inference_record(run, name, fold)
        if earlier is not None:
            return earlier
        record_path = run.model_path(name, fold, "inference")
        digest = _file_digest(run.model_path(name, fold))
        shape, settings = input_shape(config), config["deep"]
        labels = dataset.table.loc[cnn.validation, "label"].astype(int).to_numpy()
        float_path = export_onnx(cnn.model, run.onnx_path(name, fold), input_shape=shape)
        record = {"engine": "onnxruntime", "precision": "float32", "file": float_path.name,
                  "weights_sha256": digest, "decided_on_slices": int(len(labels))}  # fmt: skip
        if np.unique(labels).size < 2:
            record["reason"] = "the inner validation patients hold one class: int8 not measured"
        else:
            with tempfile.TemporaryDirectory(dir=record_path.parent) as scratch:
                scratch = Path(scratch)
                inner_float = export_onnx(cnn.inner, scratch / "inner.onnx", input_shape=shape)
                inner_int8 = quantize_static_int8(
                    inner_float, scratch / "inner.int8.onnx",
                    _calibration_images(dataset, cnn.inner_train, config),
                )  # fmt: skip
                timings = _LatencyRecord(name, shape, n_outputs(config))
                results = compare_engines(
                    inner_float, inner_int8, _prepared(dataset, cnn.validation, config), labels,
                    max_auc_drop=settings["int8_max_auc_drop"], latencies=timings.known(),
                )  # fmt: skip
                timings.remember(results)
            chosen = fastest_kept(results)
            record["candidates"] = [
                {"engine": r.engine, "precision": r.precision, "latency_ms": r.latency_ms,
                 "auc": r.auc, "auc_drop": r.auc_drop, "kept": r.kept}
                for r in results
            ]  # fmt: skip
            record.update(engine=chosen.engine, precision=chosen.precision,
                          auc_drop=chosen.auc_drop, latency_ms=chosen.latency_ms)  # fmt: skip
            if chosen.precision == "int8":
                int8_path = quantize_static_int8(
                    float_path, run.onnx_path(name, fold, "int8"),
                    _calibration_images(dataset, train, config),
                )  # fmt: skip
                record["file"] = int8_path.name
        run.write_json(record_path, record)
        return self.inference_record(run, name, fold)

    def _pretrained(self, name, dataset, rows, config, weights_path: Path) -> Path:
        """The head pretrained self-supervised (``deep.pretrain``) on the slices of
        ``rows``, saved at ``weights_path`` (kept from an earlier, resumed run)."""
        from ichkit.deep.data import SliceBatches
        from ichkit.deep.pretraining import pretrain_contrastive
        from ichkit.deep.training import save_weights_atomically

        settings = config["deep"]
        if weights_path.is_file():
            return weights_path
        model = self.build(name, input_shape(config), weights=settings["weights"],
                           seed=config["seed"], n_outputs=n_outputs(config))  # fmt: skip
        slices = SliceBatches(dataset, rows, shuffle=True, seed=config["seed"],
                              **batch_settings(config))  # fmt: skip
        pretrain_contrastive(
            model, slices, epochs=settings["pretrain_epochs"],
            learning_rate=settings["learning_rate"], seed=config["seed"],
        )  # fmt: skip
        save_weights_atomically(model, weights_path)
        return weights_path

    def _train(self, name, dataset, train, validation, epochs, config, weights_path: Path,
               record_path: Path | None, run, start=None):  # fmt: skip
        """A head fitted on rows ``train`` for ``epochs`` passes from the weights
        ``start`` (None: from scratch), with the validation AUC of each epoch (written to
        ``record_path``); loaded from ``weights_path`` instead when that exists (a
        resumed run)."""
        from ichkit import scans
        from ichkit.deep.data import SliceBatches
        from ichkit.deep.training import train_classifier

        settings = config["deep"]
        shape = input_shape(config)
        outputs = n_outputs(config)
        if weights_path.is_file() and (record_path is None or record_path.is_file()):
            aucs = json.loads(record_path.read_text())["validation_auc"] if record_path else []
            return self.build(name, shape, weights=weights_path, n_outputs=outputs), aucs
        batches = {**batch_settings(config), "label_columns": label_columns(config)}
        augment = scans.RandomAugment(**settings["augment"], random_state=config["seed"])
        training = SliceBatches(
            dataset, train, augment=augment, shuffle=True, seed=config["seed"], **batches
        )
        model = self.build(name, shape, weights=start, seed=config["seed"], n_outputs=outputs)
        aucs = train_classifier(
            model, training,
            SliceBatches(dataset, validation, **batches) if validation is not None else None,
            recipe=training_recipe(settings, epochs, name), checkpoint=weights_path,
            seed=config["seed"], verbose=0,
        )  # fmt: skip
        if record_path is not None:
            run.write_json(record_path, {"validation_auc": aucs})
        return model, aucs

    def load_fold(self, name: str, fold: int, context: ServingContext) -> CnnFold:
        return CnnFold(self, name, self.model_file(context.run, name, fold), context,
                       self.inference_record(context.run, name, fold))  # fmt: skip

    def inference_record(self, run, name: str, fold: int) -> dict | None:
        """What ``choose_inference`` chose for this fold, with the path of its ONNX file;
        None where the run chose nothing (``deep.int8`` off, an older run) or the
        weights changed since."""
        run = run.main
        path, weights = run.model_path(name, fold, "inference"), run.model_path(name, fold)
        if not path.is_file() or not weights.is_file():
            return None
        record = json.loads(path.read_text())
        onnx = run.root / "models" / record["file"]
        if record.get("weights_sha256") != _file_digest(weights):
            return None
        return {**record, "path": onnx} if onnx.is_file() else None

    def model_file(self, run, name: str, fold: int) -> Path:
        """One CNN for every target, in the run's top folder."""
        return run.main.model_path(name, fold)

    def fold_choices(self, run, name: str, fold: int) -> str | None:
        """The budget the inner validation chose, with its curve's best AUC."""
        path = run.model_path(name, fold, "training")
        if not path.is_file():
            return None
        record = json.loads(path.read_text())
        aucs = [auc for auc in record["validation_auc"] if auc == auc]  # not NaN
        chosen = record.get("refit_epochs")
        budget = f"refit for {chosen} epochs" if chosen else "no refit"
        best = f"; validation AUC up to {max(aucs):.3f}" if aucs else ""
        choice = f"{budget} ({len(record['validation_auc'])} on inner validation{best})"
        inference = self.inference_record(run, name, fold)
        return choice if inference is None else f"{choice}; {describe_inference(inference)}"

    def heatmap_cnn(self, name, config, members=()):
        return name


def describe_inference(record: dict) -> str:
    """One line on the engine and precision a fold's CNN runs with, and why."""
    served = f"runs as {record['engine']} {record['precision']}"
    if "candidates" not in record:
        return f"{served} ({record.get('reason', 'int8 not measured')})"
    reference = record["candidates"][0]
    int8 = [c for c in record["candidates"] if c["precision"] == "int8"]
    tried = ", ".join(
        f"{c['engine']} int8 {c['latency_ms']:.1f} ms, AUC drop {c['auc_drop']:+.4f}" for c in int8
    )
    return (
        f"{served} (on {record['decided_on_slices']} inner-validation slices: float32 "
        f"{reference['latency_ms']:.1f} ms a slice; {tried})"
    )


def n_outputs(config: dict) -> int:
    """A run's CNN outputs: one sigmoid per target (any hemorrhage, then subtypes)."""
    return len(run_targets(config))


def output_column(config: dict, target: str) -> int:
    """The CNN output (and logit column) of ``target``."""
    return run_targets(config).index(target)


def label_columns(config: dict) -> list[str]:
    """The data set's label columns of the run's targets, in output order."""
    return [label_column(target) for target in run_targets(config)]


def training_recipe(settings: dict, epochs: int, head: str | None = None):
    """The ``TrainingRecipe`` of a config's ``deep`` section for ``head``, over ``epochs``
    passes: ``learning_rate``, or the head's own in ``head_learning_rates``."""
    from ichkit.deep.training import TrainingRecipe

    learning_rate = settings["head_learning_rates"].get(head, settings["learning_rate"])
    return TrainingRecipe(
        epochs, learning_rate, warmup_fraction=settings["warmup_fraction"],
        optimizer=settings["optimizer"], mixup=settings["mixup"],
    )  # fmt: skip


#: The settings of run folders made before 2.5-D input and test-time flips existed.
_EARLIER_RUNS = {"neighbors": 0, "flip_tta": False}


def deep_settings(config: dict) -> dict:
    """A run's ``deep`` section, with what earlier run folders trained with where it is
    silent (so they still serve)."""
    return {**_EARLIER_RUNS, **config["deep"]}


def input_shape(config: dict) -> tuple[int, int, int]:
    """A CNN's input: ``deep.size`` square, 3 channels per slice of the 2.5-D stack."""
    settings = deep_settings(config)
    return settings["size"], settings["size"], 3 * (2 * settings["neighbors"] + 1)


def batch_settings(config: dict) -> dict:
    settings = deep_settings(config)
    return {
        "size": settings["size"],
        "window": settings["window"],
        "neighbors": settings["neighbors"],
        "batch_size": settings["batch_size"],
        "cache": settings["cache_slices"],
    }


def _prepared(dataset, rows, config) -> np.ndarray:
    """Slices ``rows`` as the CNN's input (no augmentation), in one array."""
    from ichkit.deep.data import SliceBatches

    batches = SliceBatches(dataset, rows, **batch_settings(config))
    return np.concatenate([batches[k][0] for k in range(len(batches))])


def _file_digest(path: Path) -> str:
    """SHA-256 of a weights file: what names its export and ties records to it."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _calibration_images(dataset, rows, config) -> np.ndarray:
    """The calibration slices among ``rows`` (training slices), prepared."""
    from ichkit.deep.export import calibration_subset

    return _prepared(dataset, calibration_subset(pd.Index(rows)), config)


class _LatencyRecord:
    """Batch-1 latencies of one CNN architecture on this machine, by engine and precision,
    kept in ``<cache>/inference-latency.json`` (``ICHKIT_CACHE_DIR``): measured the
    first time, then reused, so that every run of a config on this machine chooses
    the same engine and gives the same tables (timing noise would otherwise flip
    close choices). A new machine, CPU count or engine version measures afresh."""

    def __init__(self, name: str, shape: tuple[int, ...], outputs: int):
        import platform

        import onnxruntime

        from ichkit.deep.inference import available_engines
        from ichkit.features.extraction import default_cache_dir

        versions = [f"onnxruntime {onnxruntime.__version__}"]
        if "openvino" in available_engines():
            import openvino

            versions.append(f"openvino {openvino.__version__}")
        self.path = default_cache_dir() / "inference-latency.json"
        self.key = " | ".join([f"{name} {shape} x{outputs}", _cpu_name(), platform.machine(),
                               f"{os.cpu_count()} cpus", *versions])  # fmt: skip

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):  # none yet, or unreadable: measure again
            return {}

    def known(self) -> dict[tuple[str, str], float]:
        entries = self._read().get(self.key, {})
        return {tuple(label.split(" ")): ms for label, ms in entries.items()}

    def remember(self, results) -> None:
        stored = self._read()
        stored[self.key] = {f"{r.engine} {r.precision}": r.latency_ms for r in results}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _io.write_json(self.path, stored)
        except OSError as error:  # a read-only cache: the choice stands, unremembered
            log.warning("Could not record CNN latencies in '%s': %s", self.path, error)


def _cpu_name() -> str:
    """The CPU's model name (Linux), else the platform's processor string."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


class _OnnxPredictor:
    """An exported CNN where ``slice_inputs`` expects a Keras model: ``predict``."""

    def __init__(self, path: Path, engine: str):
        from ichkit.deep.inference import OnnxClassifier

        self.classifier = OnnxClassifier(path, engine=engine)

    def predict(self, images, verbose=0) -> np.ndarray:
        return self.classifier.predict_outputs(images)


def _sigmoid(logits: np.ndarray, column: int = 0) -> np.ndarray:
    return 1 / (1 + np.exp(-np.asarray(logits, dtype=float)[:, column]))


def slice_inputs(cnn, dataset, rows, config, kind: str = "logits") -> np.ndarray:
    """What the CNN makes of each slice: its logits (a column per target,
    ``output_column``) or its pooled embedding; with ``deep.flip_tta``, averaged with what
    it makes of the mirrored slice."""
    from ichkit.deep.data import SliceBatches
    from ichkit.deep.sequence import embedding_model
    from ichkit.deep.training import denormals_flushed
    from ichkit.ensemble import probability_logits

    flip_tta = deep_settings(config)["flip_tta"]
    model = embedding_model(cnn) if kind == "embeddings" else cnn
    slices = SliceBatches(dataset, rows, **batch_settings(config))
    outputs = []
    with denormals_flushed():
        # Each batch is read and prepared once, and predicted as it is and mirrored.
        for batch in range(len(slices)):
            images = slices[batch][0]
            views = [images, images[:, :, ::-1]] if flip_tta else [images]
            outputs.append(np.mean([model.predict(view, verbose=0) for view in views], axis=0))
    outputs = np.concatenate(outputs)
    if kind == "embeddings":
        return outputs.astype("float32")
    return probability_logits(outputs).astype("float32")


def cached_slice_inputs(cnn, weights: Path, dataset, rows, config, kind="logits") -> np.ndarray:
    """``slice_inputs``, kept in a ``FeatureStore`` beside the CNN's weights, in chunks
    keyed by the slices' content and the weights' digest: the heads, the LSTM, the GRU
    and a resumed run compute each chunk once, and retrained weights start afresh."""
    from ichkit.features.store import FeatureStore, slice_digest

    digest = _file_digest(weights)
    settings = deep_settings(config)
    store = FeatureStore(
        weights.parent / "slice-inputs",
        f"{weights.name}:{digest}:{kind}:n{settings['neighbors']}:tta{settings['flip_tta']}",
    )
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
        values = slice_inputs(cnn, dataset, chunk, config, kind)
        store.write(path, digests, values, [f"{kind}_{i}" for i in range(values.shape[1])])
        parts.append(values)
    return np.concatenate(parts).astype("float32")


class CnnFold:
    """A CNN head from its weights. Where ``context.onnx_folder()`` gives a folder, the
    ONNX file and engine the run chose (``inference``, from ``CnnFamily.
    choose_inference``) predict, or else a float32 export run by ONNX Runtime; Keras
    where neither works. ``engine`` says which. ``keras`` is kept for Grad-CAM.
    Its ``probability`` is the output of ``context.target``; the outputs of every target
    are computed once a request (keyed by the weights) and shared by the targets' folds."""

    def __init__(self, family: CnnFamily, name: str, weights: Path, context: ServingContext,
                 inference: dict | None = None):  # fmt: skip
        settings = deep_settings(context.config)
        self.size, self.window = settings["size"], settings["window"]
        self.neighbors, self.flip_tta = settings["neighbors"], settings["flip_tta"]
        self.shape = input_shape(context.config)
        self.weights, self.column = str(weights), output_column(context.config, context.target)
        self.keras = family.build(name, self.shape, weights=weights,
                                  n_outputs=n_outputs(context.config))  # fmt: skip
        self._lock = context.keras_lock
        self.onnx, self.engine = None, "keras"
        onnx_dir = context.onnx_folder()
        if onnx_dir is not None and inference is not None:  # what the run chose and measured
            from ichkit.deep.inference import OnnxClassifier

            self.onnx = OnnxClassifier(inference["path"], engine=inference["engine"],
                                       n_threads=context.n_threads)  # fmt: skip
            self.engine = f"{inference['engine']} {inference['precision']}"
        elif onnx_dir is not None:
            try:
                self.onnx = self._exported(name, weights, onnx_dir, context.n_threads)
                self.engine = "onnxruntime float32"
            except Exception as error:  # noqa: BLE001  any export failure: Keras still works
                log.warning(
                    "ONNX export of '%s' failed (%s); predicting with Keras.", weights, error
                )

    def _exported(self, name: str, weights: Path, folder: Path, n_threads: int):
        """The ONNX export of these weights, made once: named by the weights' digest."""
        from ichkit.deep.export import export_onnx
        from ichkit.deep.inference import OnnxClassifier

        digest = _file_digest(weights)[:16]
        target = folder / f"{name}__{digest}.onnx"
        if not target.is_file():
            with tempfile.TemporaryDirectory(dir=folder) as scratch:
                written = export_onnx(
                    self.keras, Path(scratch) / target.name, input_shape=self.shape
                )
                written.replace(target)
        return OnnxClassifier(target, n_threads=n_threads)

    def images(self, slices, memo: dict) -> np.ndarray:
        """The model inputs: (n, size, size, channels) in [0, 1], prepared as in training
        (``slices`` are one scan in order where the input is 2.5-D)."""
        from ichkit.deep.data import prepare_slices

        key = ("images", self.size, self.window, self.neighbors)
        return memoised(memo, key, lambda: prepare_slices(
            slices, size=self.size, window=self.window, neighbors=self.neighbors
        ))  # fmt: skip

    def _views(self, slices, memo: dict) -> list[np.ndarray]:
        """The inputs as predicted: with test-time augmentation, also mirrored."""
        images = self.images(slices, memo)
        return [images, images[:, :, ::-1]] if self.flip_tta else [images]

    def outputs(self, slices, memo: dict) -> np.ndarray:
        """(n_slices, n_targets) probabilities, flips averaged."""

        def predict(images):
            if self.onnx is not None:
                return self.onnx.predict_outputs(images).astype(float)
            with self._lock:
                return self.keras.predict(images, verbose=0).astype(float)

        return memoised(memo, ("cnn", self.weights), lambda: np.mean(
            [predict(view) for view in self._views(slices, memo)], axis=0
        ))  # fmt: skip

    def probability(self, slices, memo: dict) -> np.ndarray:
        return self.outputs(slices, memo)[:, self.column]

    def embeddings(self, slices, memo: dict) -> np.ndarray:
        from ichkit.deep.sequence import embedding_model

        def compute():
            with self._lock:
                embed = embedding_model(self.keras)
                views = self._views(slices, memo)
                return np.mean([embed.predict(view, verbose=0) for view in views], axis=0)

        return memoised(memo, ("embeddings", self.weights), compute)
