"""One parameter check for every feature estimator: a ``_constraints`` table per class.

Each entry maps a parameter to ``(kind, minimum, maximum)`` with kind ``int``,
``float`` or ``ints`` / ``floats`` (a non-empty sequence of them); ``None`` bounds
are open. Messages follow scikit-learn's shape: parameter, owner, rule, value.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

_KINDS = {"int": numbers.Integral, "float": numbers.Real}


def check_params(estimator: object) -> None:
    """Check ``estimator``'s parameters against its class's ``_constraints`` table."""
    owner = type(estimator).__name__
    for name, (kind, low, high) in getattr(estimator, "_constraints", {}).items():
        value = getattr(estimator, name)
        if kind.endswith("s"):
            if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
                raise TypeError(
                    f"The '{name}' parameter of {owner} must be a sequence of {kind[:-1]}s. "
                    f"Got {value!r}."
                )
            if len(value) == 0:
                raise ValueError(f"The '{name}' parameter of {owner} must not be empty.")
            for item in value:
                _check_one(item, name, owner, kind[:-1], low, high)
        else:
            _check_one(value, name, owner, kind, low, high)


def _check_one(value: object, name: str, owner: str, kind: str, low, high) -> None:
    rule = _rule(kind, low, high)
    if isinstance(value, bool) or not isinstance(value, _KINDS[kind]):
        raise TypeError(
            f"The '{name}' parameter of {owner} must be {rule}. "
            f"Got {value!r} of type {type(value).__name__}."
        )
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"The '{name}' parameter of {owner} must be {rule}. Got {value!r}.")


def _rule(kind: str, low, high) -> str:
    article = "an int" if kind == "int" else "a float"
    if low is not None and high is not None:
        return f"{article} in [{low}, {high}]"
    if low is not None:
        return f"{article} >= {low}"
    if high is not None:
        return f"{article} <= {high}"
    return article
