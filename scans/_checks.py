"""Parameter checks shared by scans/, with messages shaped like scikit-learn's.

"The 'width' parameter of Window must be > 0. Got -80." names the parameter, its
owner, what is allowed and what was received.
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Iterable

import numpy as np


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
