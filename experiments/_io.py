"""Atomic writes: a run killed at any moment leaves whole files or none."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import yaml


def _replace(path: Path, write) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write(temporary)
    os.replace(temporary, path)
    return path


def write_text(path: str | Path, text: str) -> Path:
    return _replace(Path(path), lambda target: target.write_text(text, encoding="utf-8"))


def write_csv(path: str | Path, table: pd.DataFrame) -> Path:
    return _replace(Path(path), lambda target: table.to_csv(target, index=False))


def write_json(path: str | Path, value) -> Path:
    return write_text(path, json.dumps(value, indent=2, default=str) + "\n")


def write_yaml(path: str | Path, value) -> Path:
    return write_text(path, yaml.safe_dump(value, sort_keys=False))
