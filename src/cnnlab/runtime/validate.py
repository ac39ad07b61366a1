"""Argument checks shared by every config: each error names the argument, the value received
and what was expected, as Keras's do (``... Received: batch_size=0``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import Enum
from typing import Any


def is_integer(value: Any) -> bool:
    """An int that is not a bool (``True`` is an int to Python, never a count to a user)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(
    name: str,
    value: Any,
    *,
    low: int | None = None,
    high: int | None = None,
    optional: bool = False,
) -> None:
    """``value`` is an integer in [low, high] (either bound may be open), or None if optional."""
    if optional and value is None:
        return
    if is_integer(value) and (low is None or value >= low) and (high is None or value <= high):
        return
    if low == 1 and high is None:
        expected = "a positive integer"
    elif low is not None and high is not None:
        expected = f"an integer from {low} to {high}"
    elif low is not None:
        expected = f"an integer >= {low}"
    elif high is not None:
        expected = f"an integer <= {high}"
    else:
        expected = "an integer"
    if optional:
        expected += " or None"
    raise ValueError(f"{name} must be {expected}. Received: {name}={value!r}")


def check_positive_int(name: str, value: Any, *, optional: bool = False) -> None:
    """``value`` is an integer >= 1 (or None if ``optional``)."""
    check_int(name, value, low=1, optional=optional)


def check_number(
    name: str, value: Any, low: float, high: float, expected: str, *, open_low: bool = False
) -> None:
    """``low <= value < high`` (``low < value`` when ``open_low``) for a finite real number."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not low <= value < high or (open_low and value == low):
        raise ValueError(f"{name} must be {expected}. Received: {name}={value!r}")


def check_choice(name: str, value: Any, options: type[Enum]) -> str:
    """The string value of an option given as a string or as one of the enum's members."""
    allowed = [option.value for option in options]
    text = value.value if isinstance(value, options) else value
    if text not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}. Received: {name}={value!r}")
    return text


def check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False. Received: {name}={value!r}")


def distinct_positive_ints(name: str, values: Any) -> tuple[int, ...]:
    """One positive integer or a sequence of distinct ones, returned sorted."""
    values = (
        tuple(values) if isinstance(values, Sequence) and not isinstance(values, str) else (values,)
    )
    if not values or not all(is_integer(v) and v >= 1 for v in values):
        raise ValueError(
            f"{name} must be positive integers (at least one). Received: {name}={values!r}"
        )
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat a value. Received: {name}={values!r}")
    return tuple(sorted(values))
