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


def number_label(value: float) -> str:
    """A number as it appears in a feature name: ``95``, ``2p5``, ``m5`` for -5."""
    return f"{float(value):g}".replace("-", "m").replace(".", "p")


def check_unique(labels: list[str], name: str, owner: str, value, what: str = "values") -> None:
    """Raise if two entries would give the same feature name."""
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(
            f"The '{name}' parameter of {owner} must not repeat {what}, since each names a "
            f"feature; {', '.join(repeated)} repeated. Got {value!r}."
        )


def check_distinct(estimator: object, name: str) -> None:
    """Raise if two values of a numeric sequence parameter would name the same feature."""
    values = getattr(estimator, name)
    labels = [number_label(value) for value in values]
    check_unique(labels, name, type(estimator).__name__, values)


def check_band(band, name: str, owner: str, subject: str = "") -> tuple[float, float]:
    """Check a ``(low, high)`` band of Hounsfield units and return it as floats.

    ``subject`` starts the message (default: the parameter and its owner).

    Raises
    ------
    TypeError
        If ``band`` is not a pair of real numbers.
    ValueError
        If a bound is not finite or ``low >= high``.
    """
    subject = subject or f"The '{name}' parameter of {owner}"
    if (
        isinstance(band, str | bytes)
        or not isinstance(band, Sequence | np.ndarray)
        or len(band) != 2
        or not all(is_real(value) for value in band)
    ):
        raise TypeError(f"{subject} must be a (low, high) pair of Hounsfield units. Got {band!r}.")
    low, high = float(band[0]), float(band[1])
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValueError(
            f"{subject} must be a (low, high) pair of finite Hounsfield units with "
            f"low < high. Got {band!r}."
        )
    return low, high


def is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
