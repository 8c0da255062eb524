"""Argument checks shared by the whole package: one message format, raised before any work.

Every check raises ``ValueError`` (``TypeError`` for a wrong kind of object) with a message that
names the argument, the rule and the value received, and returns the value so it can be used
inline::

    steps = positive_int("steps", steps)
    lr = positive_number("lr", lr)
    norm = one_of("norm", norm, NORMS)

:func:`bnutils.infra.config.configure` collects the messages of several checks into one error.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_int(name: str, value: Any) -> int:
    """An integer >= 1."""
    if not _is_int(value) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def nonnegative_int(name: str, value: Any) -> int:
    """An integer >= 0."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def positive_number(name: str, value: Any) -> float:
    """A finite number > 0."""
    if not _is_number(value) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return value


def nonnegative_number(name: str, value: Any) -> float:
    """A finite number >= 0."""
    if not _is_number(value) or not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return value


def at_least(name: str, value: Any, low: float, what: str = "a number") -> float:
    """A finite number >= ``low`` (e.g. a condition number >= 1)."""
    if not _is_number(value) or not (math.isfinite(value) and value >= low):
        raise ValueError(f"{name} must be {what} >= {low:g}, got {value!r}")
    return value


def in_range(name: str, value: Any, low: float, high: float) -> float:
    """A number in the closed interval [low, high]."""
    if not _is_number(value) or not low <= value <= high:
        raise ValueError(f"{name} must lie in [{low:g}, {high:g}], got {value!r}")
    return value


def one_of(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """One of ``allowed``; the message lists them."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; allowed: {', '.join(map(str, allowed))}")
    return value


def nonempty_list(name: str, value: Any, check=None) -> list:
    """A non-empty list or tuple; ``check(name, item)`` validates every entry."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{name} must be a non-empty list, got {value!r}")
    if check is not None:
        for item in value:
            check(f"every entry of {name}", item)
    return list(value)


def same_length(names: Sequence[str], *values: Sequence[Any]) -> None:
    """Sequences that must pair up one to one."""
    if len({len(v) for v in values}) > 1:
        raise ValueError(f"{', '.join(names)} must have the same length, got "
                         f"{', '.join(str(len(v)) for v in values)}")
