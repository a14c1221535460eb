"""Argument checks shared by the public constructors; messages name the argument."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from multitask_mnist.errors import InvalidTypeError, InvalidValueError

__all__ = ["check_bool", "check_choice", "check_int", "check_number"]


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` if it is a bool (not merely truthy)."""
    if not isinstance(value, bool):
        raise InvalidTypeError(f"Expected argument `{name}` to be a bool, got {value!r}")
    return value


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Return ``value`` if it is an int (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTypeError(
            f"Expected argument `{name}` to be an int, got {value!r} ({type(value).__name__})"
        )
    if minimum is not None and value < minimum:
        raise InvalidValueError(f"Expected argument `{name}` to be >= {minimum}, got {value}")
    return value


def check_number(name: str, value: Any, *, minimum: float | None = None) -> float:
    """Return ``value`` as a float if it is a finite real number of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidTypeError(
            f"Expected argument `{name}` to be a number, got {value!r} ({type(value).__name__})"
        )
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = "a finite number" if minimum is None else f"a finite number >= {minimum}"
        raise InvalidValueError(f"Expected argument `{name}` to be {bound}, got {value}")
    return float(value)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``; the error lists them."""
    options = tuple(choices)
    if value not in options:
        listed = ", ".join(repr(c) for c in options)
        raise InvalidValueError(f"Expected argument `{name}` to be one of {listed}, got {value!r}")
    return str(value)
