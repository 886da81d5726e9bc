"""Experiment configs: YAML sets the defaults, command-line flags override them.

A config is a YAML file or the name of a preset shipped with the package
(``ichkit list-configs``): ``quick`` (every family, CPU-sized) and ``paper`` (the seed
study's settings), so ``ichkit run quick ...`` works from any folder after
``pip install ichkit``.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import yaml

from ichkit.experiments.registry import check_model_names, family_of, list_models
from ichkit.experiments.targets import check_targets
from ichkit.features.extraction import resolve_feature_config
from ichkit.scans.validation import unknown_name_message

__all__ = ["DEFAULT_CONFIG", "list_configs", "load_config", "preset_path"]

DEFAULT_CONFIG = {
    "seed": 0,
    "cv": None,  # K patient-grouped folds; None: one 70/15/15 split
    "split": {"val_size": 0.15, "test_size": 0.15},
    "dataset": {  # how --data is read: the options of `ichkit data inspect` and scans.load
        "kind": None,  # layout: ctich, nifti, dicom, csv or folders; None: found from content
        "labels": None,  # label CSV, when not labels.csv in the folder
        "patient_pattern": None,  # regex with a group 'patient' in loose images' paths
        "class_names": None,  # extra class folder names, e.g. {bleed: 1, clear: 0}
        "one_slice_per_patient": False,  # loose images without patient ids: each a person
    },
    "features": {},
    "models": ["logreg", "svm", "knn", "rf", "xgboost"],
    "targets": ["any"],  # and any of the five subtypes; the first is the primary target
    "tuning": {"inner_folds": 3},
    "deep": {  # the small-data recipe of ichkit.deep.training (docs/deep-recipe.md)
        "size": 128,  # 224 as in the seed paper; smaller on a CPU
        "window": "stack",  # brain/subdural/bone channels, or one window repeated
        "neighbors": 1,  # 2.5-D: slices on each side as channels (ordered scans); 0: one slice
        "weights": None,  # None (from scratch), "imagenet" or a weights file
        "pretrain": None,  # "contrastive": SimCLR on each fold's training slices first
        "pretrain_epochs": 20,  # passes of that pretraining
        "optimizer": "adam",
        "learning_rate": 1e-3,  # the peak, after warm-up; cosine decay to 0
        # heads that need another peak from scratch: VGG16 (no BatchNormalization)
        # barely learns at 1e-3 (docs/speed.md)
        "head_learning_rates": {"vgg16": 1e-4},
        "warmup_fraction": 0.1,
        "epochs": 20,  # the budget: passes over the training slices (steps scale with data)
        "budget_candidates": [0.5, 1.0],  # budgets tried on inner validation (of epochs)
        "refit": True,  # then train on every training patient with the chosen budget
        "batch_size": 16,
        "mixup": 0.0,  # Beta(a, a) mixup of slice pairs; 0: off
        "flip_tta": True,  # predict each slice and its mirror image, average
        "validation_size": 0.2,  # of the training patients: budget and thresholds
        "cache_slices": False,  # keep prepared slices in memory between epochs
        "int8": True,  # serve int8 where it costs < int8_max_auc_drop on inner validation
        "int8_max_auc_drop": 0.005,  # the fastest engine and precision within it serve
        "augment": {"rotation_degrees": 15, "zoom": 0.1, "horizontal_flip": True},
    },
    "sequence": {
        "cnn": "smallcnn",  # the CNN head whose view of each slice the LSTM/GRU read
        "inputs": "logits",  # the CNN's slice logits, which the LSTM/GRU correct, or "embeddings"
        "units": 16,
        "epochs": 50,
        "batch_size": 4,
        "learning_rate": 1e-2,
        "patience": 8,
    },
    "ensemble": {
        "members": None,  # voting/stacking candidates; None: every other model run
        "select": True,  # keep those that help, on held-out predictions (select_members)
    },
    "bootstrap": 1000,  # resamples of patients for the 95% confidence intervals
    "n_jobs": 2,
    "parallel": {
        "backend": "loky",  # joblib's local processes, or "dask": a Dask cluster
        "scheduler": None,  # the Dask scheduler's address; None starts a local cluster
        "n_workers": None,  # workers of that local cluster; None: n_jobs
    },
}


def _presets():
    """The preset YAML files shipped in ``ichkit.experiments``' ``configs/`` folder."""
    folder = resources.files("ichkit.experiments") / "configs"
    return {item.name.removesuffix(".yaml"): item for item in folder.iterdir()
            if item.name.endswith(".yaml")}  # fmt: skip


def list_configs() -> dict[str, str]:
    """Preset name -> its description: the first sentence of its YAML's opening comment."""
    described = {}
    for name, item in sorted(_presets().items()):
        comment = []
        for line in item.read_text().splitlines():
            if not line.startswith("#"):
                break
            comment.append(line.lstrip("# ").strip())
        text = " ".join(comment)
        described[name] = text.split(". ")[0].rstrip(".")
    return described


def preset_path(name: str):
    """The YAML of preset ``name`` (a ``Traversable``); a ValueError with a did-you-mean."""
    presets = _presets()
    if name not in presets:
        raise ValueError(
            unknown_name_message("config preset", name, presets)
            + " Give a YAML file's path, or see 'ichkit list-configs'."
        )
    return presets[name]


def load_config(path: str | Path, **overrides) -> dict:
    """Read a config (a YAML file, or a preset's name) over ``DEFAULT_CONFIG``;
    non-None ``overrides`` win.

    Everything is checked here, before any data is read or model trained: unknown
    keys, unknown model names (with a did-you-mean), feature settings.
    """
    if Path(path).is_file():
        path = Path(path)
    elif str(path).endswith((".yaml", ".yml")) or Path(path).parent != Path("."):
        raise FileNotFoundError(
            f"Config file '{path}' does not exist. Presets: {', '.join(list_configs())}."
        )
    else:
        path = preset_path(str(path))
    loaded = yaml.safe_load(path.read_text()) or {}
    if not isinstance(loaded, dict):
        raise ValueError(f"Config '{path}' must be a YAML mapping; got {type(loaded).__name__}.")
    unknown = set(loaded) - set(DEFAULT_CONFIG)
    if unknown:
        raise ValueError(
            f"Config '{path}' has unknown keys: {', '.join(sorted(unknown))}. Allowed: "
            f"{', '.join(DEFAULT_CONFIG)}."
        )
    config = copy.deepcopy(DEFAULT_CONFIG)
    for section in ("dataset", "deep", "sequence", "ensemble", "parallel"):  # key by key
        given = loaded.pop(section, None) or {}
        unknown = set(given) - set(config[section])
        if unknown:
            raise ValueError(
                f"Config '{path}' has unknown {section} keys: {', '.join(sorted(unknown))}. "
                f"Allowed: {', '.join(config[section])}."
            )
        config[section].update(given)
    config.update(loaded)
    for section in ("dataset", "parallel"):
        given = overrides.pop(section, None) or {}
        config[section].update({key: value for key, value in given.items() if value is not None})
    config.update({key: value for key, value in overrides.items() if value is not None})
    config["models"] = check_model_names(config["models"])
    config["targets"] = check_targets(config["targets"])
    config["features"] = resolve_feature_config(config["features"])
    if config["cv"] is not None and (not isinstance(config["cv"], int) or config["cv"] < 2):
        raise ValueError(
            f"'cv' must be an int >= 2 (patient-grouped folds) or null. Got {config['cv']!r}."
        )
    _check_deep(config["deep"])
    _check_sequence(config["sequence"])
    _check_ensemble(config["ensemble"])
    _check_parallel(config["parallel"])
    return config


def _check_deep(settings: dict) -> None:
    """The recipe's numbers are in range (before any model trains)."""
    problems = []
    if not isinstance(settings["neighbors"], int) or settings["neighbors"] < 0:
        problems.append(f"deep.neighbors must be an int >= 0; got {settings['neighbors']!r}")
    if not isinstance(settings["epochs"], int) or settings["epochs"] < 1:
        problems.append(f"deep.epochs must be an int >= 1; got {settings['epochs']!r}")
    candidates = settings["budget_candidates"]
    if not candidates or not all(isinstance(c, int | float) and 0 < c <= 1 for c in candidates):
        problems.append(f"deep.budget_candidates must be fractions in (0, 1]; got {candidates!r}")
    if settings["pretrain"] not in (None, "contrastive"):
        problems.append(
            f"deep.pretrain must be null or 'contrastive'; got {settings['pretrain']!r}"
        )
    if not isinstance(settings["pretrain_epochs"], int) or settings["pretrain_epochs"] < 1:
        problems.append(
            f"deep.pretrain_epochs must be an int >= 1; got {settings['pretrain_epochs']!r}"
        )
    rates = settings["head_learning_rates"]
    if not isinstance(rates, dict) or not all(
        isinstance(rate, int | float) and not isinstance(rate, bool) and rate > 0
        for rate in rates.values()
    ):
        problems.append(
            "deep.head_learning_rates must be a mapping of head names to numbers > 0; "
            f"got {rates!r}"
        )
    if not isinstance(settings["int8"], bool):
        problems.append(f"deep.int8 must be true or false; got {settings['int8']!r}")
    drop = settings["int8_max_auc_drop"]
    if isinstance(drop, bool) or not isinstance(drop, int | float) or not 0 <= drop < 1:
        problems.append(f"deep.int8_max_auc_drop must be a number in [0, 1); got {drop!r}")
    if settings["neighbors"] and settings["weights"] == "imagenet":
        problems.append("deep.weights 'imagenet' takes one slice (3 channels): set neighbors 0")
    if problems:
        raise ValueError("; ".join(problems) + ".")


def _check_sequence(settings: dict) -> None:
    """The sequence section names a CNN head and an input kind."""
    cnn_heads = list_models(family="cnn")
    if settings["cnn"] not in cnn_heads:
        raise ValueError(
            f"sequence.cnn must name a CNN head ({', '.join(cnn_heads)}). Got {settings['cnn']!r}."
        )
    if settings["inputs"] not in ("logits", "embeddings"):
        raise ValueError(
            f"sequence.inputs must be 'logits' or 'embeddings'. Got {settings['inputs']!r}."
        )


def _check_ensemble(settings: dict) -> None:
    members = settings["members"]
    if members is None:
        return
    check_model_names(members)
    wrong = [name for name in members if family_of(name).reads == "predictions"]
    if wrong:
        raise ValueError(f"ensemble.members cannot hold ensembles; got {', '.join(wrong)}.")


def _check_parallel(settings: dict) -> None:
    if settings["backend"] not in ("loky", "dask"):
        raise ValueError(
            f"parallel.backend must be 'loky' (local processes) or 'dask'. "
            f"Got {settings['backend']!r}."
        )
    if settings["scheduler"] is not None and settings["backend"] != "dask":
        raise ValueError("parallel.scheduler is a Dask scheduler's address: set backend 'dask'.")
