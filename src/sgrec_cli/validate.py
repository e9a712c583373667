"""The one set of option validators: every config dataclass checks its fields through these, so
an option's error reads the same wherever it is set (CLI or Python API)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from .errors import ConfigError

DEVICES = ("auto", "cpu", "cuda")


def require(cond: bool, message: str) -> None:
    """Raise ConfigError(message) unless cond: the one way options are validated."""
    if not cond:
        raise ConfigError(message)


def is_int(value: Any) -> bool:
    """An integer and not a bool (``True`` is an int to Python, never a count to us)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_num(value: Any) -> bool:
    """A finite real number, not a bool."""
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)) and math.isfinite(value))


def field_default(obj: Any, name: str) -> Any:
    """The dataclass default of field ``name`` of ``obj`` (or of class ``obj``); MISSING if
    it has none."""
    from dataclasses import MISSING, fields, is_dataclass

    if is_dataclass(obj):
        for f in fields(obj):
            if f.name == name:
                if f.default is not MISSING:
                    return f.default
                if f.default_factory is not MISSING:  # type: ignore[misc]
                    return f.default_factory()  # type: ignore[misc]
    return MISSING


def _default_hint(obj: Any, name: str) -> str:
    from dataclasses import MISSING

    d = field_default(obj, name)
    return "" if d is MISSING or d is None else f" (default {d})"


def flag(name: str) -> str:
    """``batch_size`` -> ``--batch-size``: options are named as the CLI spells them."""
    return "--" + name.replace("_", "-")


def check_ints(obj: Any, names: Iterable[str], minimum: int,
               label: Callable[[str], str] = flag) -> None:
    """Each named field of ``obj`` is an integer >= ``minimum`` (``label``: how an error names
    the field; the CLI flag by default)."""
    for name in names:
        value = getattr(obj, name)
        require(is_int(value) and value >= minimum,
                f"{label(name)} {value!r} must be an integer >= {minimum}"
                f"{_default_hint(obj, name)}")


def check_num(name: str, value: Any, *, low: float | None = None, high: float | None = None,
              low_open: bool = False, high_open: bool = False, hint: str = "",
              label: Callable[[str], str] = flag, of: Any = None) -> None:
    """``value`` is a finite number within [low, high] (``*_open``: the bound excluded);
    ``of``: the config it belongs to, whose default for ``name`` the message names."""
    ok = is_num(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if low is not None and high is not None:
        where = f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        where = f" {'>' if low_open else '>='} {low:g}"
    elif high is not None:
        where = f" {'<' if high_open else '<='} {high:g}"
    else:
        where = ""
    if of is not None and not hint:
        hint = _default_hint(of, name)
    require(ok, f"{label(name)} {value!r} must be a finite number{where}{hint}")


def check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    require(value in choices,
            f"{flag(name)} {value!r} is not known; use one of: {', '.join(choices)}")


def check_device(value: Any) -> None:
    check_choice("device", value, DEVICES)
