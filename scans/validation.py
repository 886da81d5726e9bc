"""Parameter checks for the whole project, with messages shaped like scikit-learn's.

The project's one home for parameter checks: scans/, features/, deep/ and
experiments/ all import them from here. A message names the parameter, its owner,
what is allowed and what was received: "The 'width' parameter of Window must be > 0.
Got -80."

Two styles live side by side:

- one-value checks (``check_int``, ``check_real``, ``check_fraction``, ``check_bool``,
  ``as_generator``) for callables and functions that check a few arguments;
- ``check_params``, for estimators: a ``_constraints`` table per class, where each entry
  maps a parameter to ``(kind, minimum, maximum)`` with kind ``int``, ``float`` or
  ``ints`` / ``floats`` (a non-empty sequence of them); ``None`` bounds are open.

``unknown_name_message`` answers a misspelt name with difflib's closest matches.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "as_generator",
    "check_band",
    "check_bool",
    "check_distinct",
    "check_fraction",
    "check_int",
    "check_params",
    "check_real",
    "check_unique",
    "is_real",
    "number_label",
    "unknown_name_message",
]


def check_int(value: object, name: str, owner: str, *, minimum: int) -> None:
    """An int (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"The '{name}' parameter of {owner} must be an int >= {minimum}. "
            f"Got {value!r} of type {type(value).__name__}."
        )
    if value < minimum:
        raise ValueError(
            f"The '{name}' parameter of {owner} must be an int >= {minimum}. Got {value!r}."
        )


def check_real(value: object, name: str, owner: str) -> None:
    """A finite real number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"The '{name}' parameter of {owner} must be a real number. "
            f"Got {value!r} of type {type(value).__name__}."
        )
    if not np.isfinite(value):
        raise ValueError(f"The '{name}' parameter of {owner} must be finite. Got {value!r}.")


def check_fraction(value: object, name: str, owner: str) -> None:
    """A real number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"The '{name}' parameter of {owner} must be a float in [0, 1). "
            f"Got {value!r} of type {type(value).__name__}."
        )
    if not 0 <= value < 1:
        raise ValueError(
            f"The '{name}' parameter of {owner} must be a float in [0, 1). Got {value!r}."
        )


def check_bool(value: object, name: str, owner: str) -> None:
    """True or False."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(
            f"The '{name}' parameter of {owner} must be True or False. "
            f"Got {value!r} of type {type(value).__name__}."
        )


def as_generator(random_state: object, owner: str) -> np.random.Generator:
    """``random_state`` (None, int, Generator, SeedSequence) as a numpy Generator."""
    try:
        return np.random.default_rng(random_state)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"The 'random_state' parameter of {owner} must be None, an int or a numpy "
            f"Generator. Got {random_state!r}."
        ) from error


def unknown_name_message(
    kind: str, name: str, known: Iterable[str], *, match: str | None = None
) -> str:
    """``Unknown window 'brian'. Did you mean 'brain'? Known windows: ...`` (difflib).

    ``match`` is the normalised spelling compared with ``known``; ``name`` is shown.
    """
    known = list(known)
    match = str(name).lower() if match is None else match
    close = difflib.get_close_matches(match, known, n=3, cutoff=0.6)
    message = f"Unknown {kind} '{name}'."
    if close:
        message += " Did you mean " + " or ".join(repr(item) for item in close) + "?"
    return message + f" Known {kind}s: {', '.join(known)}."


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


def number_label(value: float) -> str:
    """A number as it appears in a feature name: ``95``, ``2p5``, ``m5`` for -5."""
    return f"{float(value):g}".replace("-", "m").replace(".", "p")


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
    """A real number that is not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
