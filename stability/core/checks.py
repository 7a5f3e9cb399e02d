"""Argument checks shared by every floor: one-line ``ValueError``s that name the argument, the value and what
is allowed, raised before any expensive work starts.

>>> positive_int("steps", 0)
Traceback (most recent call last):
...
ValueError: steps must be an integer ≥ 1, got 0
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import numpy as np

__all__ = ["integer", "positive_int", "nonneg_int", "number", "positive", "nonneg", "probability", "rate",
           "int_tuple", "choice"]


def _is_int(v: Any) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def integer(name: str, v: Any, lo: int | None = None, hi: int | None = None) -> int:
    """``v`` as an ``int`` in ``[lo, hi]`` (either end optional); floats such as 1.5 or 2.0 are refused, not
    truncated."""
    what = "an integer" + (f" ≥ {lo}" if lo is not None and hi is None else "") + \
        (f" in {lo}..{hi}" if lo is not None and hi is not None else "") + \
        (f" ≤ {hi}" if hi is not None and lo is None else "")
    if not _is_int(v):
        raise ValueError(f"{name} must be {what}, got {v!r}")
    v = int(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{name} must be {what}, got {v}")
    return v


def positive_int(name: str, v: Any) -> int:
    """An integer ≥ 1 (steps, batch sizes, draws, widths, …)."""
    return integer(name, v, 1)


def nonneg_int(name: str, v: Any) -> int:
    """An integer ≥ 0 (seeds, optional counts)."""
    return integer(name, v, 0)


def number(name: str, v: Any, *, lo: float | None = None, hi: float | None = None, lo_open: bool = False,
           hi_open: bool = False, allowed: str | None = None) -> float:
    """A finite real number in the interval given by ``lo``/``hi`` (closed unless ``*_open``); ``allowed``
    overrides the description of the interval in the message."""
    if lo is None and hi is None:
        desc = "a finite number"
    elif hi is None:
        desc = f"a finite number {'>' if lo_open else '≥'} {lo:g}"
    elif lo is None:
        desc = f"a finite number {'<' if hi_open else '≤'} {hi:g}"
    else:
        desc = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    desc = allowed or desc
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Real, np.number)):
        raise ValueError(f"{name} must be {desc}, got {v!r}")
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{name} must be {desc}, got {f}")
    if lo is not None and (f < lo or (lo_open and f == lo)):
        raise ValueError(f"{name} must be {desc}, got {f:g}")
    if hi is not None and (f > hi or (hi_open and f == hi)):
        raise ValueError(f"{name} must be {desc}, got {f:g}")
    return f


def positive(name: str, v: Any) -> float:
    """A finite number > 0 (learning rates, tolerances)."""
    return number(name, v, lo=0.0, lo_open=True)


def nonneg(name: str, v: Any) -> float:
    """A finite number ≥ 0 (weight decay, penalties)."""
    return number(name, v, lo=0.0)


def probability(name: str, v: Any) -> float:
    """A dropout probability of Algorithm 1 / Definition 1: strictly between 0 and 1."""
    return number(name, v, lo=0.0, hi=1.0, lo_open=True, hi_open=True)


def rate(name: str, v: Any) -> float:
    """A training dropout rate: in [0, 1) (0 = no dropout)."""
    return number(name, v, lo=0.0, hi=1.0, hi_open=True)


def int_tuple(name: str, values: Any, lo: int = 1, *, min_len: int = 1) -> tuple[int, ...]:
    """A sequence of integers ≥ ``lo`` (widths, budgets) as a tuple; a non-integer entry is named with its
    position."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) and not isinstance(values, np.ndarray):
        raise ValueError(f"{name} must be a sequence of integers ≥ {lo}, got {values!r}")
    vals = tuple(values)
    if len(vals) < min_len:
        raise ValueError(f"{name} must hold at least {min_len} integer(s) ≥ {lo}, got {vals!r}")
    for k, v in enumerate(vals):
        if not _is_int(v) or int(v) < lo:
            raise ValueError(f"{name} must be integers ≥ {lo}; entry {k} of {vals!r} is {v!r}")
    return tuple(int(v) for v in vals)


def choice(name: str, v: Any, options: Sequence[Any]) -> Any:
    """``v`` if it is one of ``options``."""
    if v not in tuple(options):
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {v!r}")
    return v
