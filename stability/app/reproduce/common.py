"""What every reproduction shares: its context (report, options, progress), the "paper vs ours" table,
and the registry that ``stability reproduce NAME`` dispatches on.

A reproduction is a function ``run(ctx: ReproContext) -> dict`` that adds sections to
``ctx.report`` (each written atomically as it finishes: ``summary.json``, ``report.md``, PNGs)
and returns its headline numbers. ``ctx.quick`` selects the CPU smoke-test scale; the full
scale is the paper's setting (meant for a GPU). Every report states its seed, hardware, scale
and wall time.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import numbers
import time
import types
import typing
from pathlib import Path
from typing import Any, Callable

from stability.app.report import Report, Section
from stability.core.progress import get_logger

__all__ = ["ReproContext", "Reproduction", "comparison_table", "register", "REGISTRY", "fmt", "apply_overrides",
           "check_scale"]


_log = get_logger("reproduce")


@dataclasses.dataclass
class ReproContext:
    """Options and output of one reproduction run."""

    report: Report
    quick: bool = False
    seed: int = 0
    source: str | None = None  # a data directory (CIFAR-10 python batches, MNIST IDX files)
    overrides: dict[str, str] = dataclasses.field(default_factory=dict)  # --set NAME=VALUE
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def scale(self, full: Any, quick: Any) -> Any:
        """The run's scale dataclass: ``quick`` or ``full``, with the ``--set NAME=VALUE`` overrides applied
        (values parsed as Python literals, checked against each field's type and range by
        :func:`apply_overrides`) and recorded in the report."""
        base = quick if self.quick else full
        out, changes = apply_overrides(base, self.overrides)
        if changes:
            self.report.meta["scale"] = f"{self.report.meta.get('scale', '')} with overrides {changes}"
        self.report.meta["scale_settings"] = dataclasses.asdict(out)
        return out

    @property
    def out(self) -> Path:
        return self.report.out

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def progress(self, msg: str) -> None:
        """A stage of the run, on the ``stability.reproduce`` logger with the time since it started."""
        _log.info(f"[{self.elapsed():7.1f}s] {msg}")


def _type_name(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is tuple:
        plural = {int: "integers, e.g. (64, 64)", float: "numbers, e.g. (0.5, 0.75)", str: "quoted strings"}
        return f"a tuple of {plural.get(args[0], _type_name(args[0]))}" if len(args) == 2 and args[1] is Ellipsis \
            else "a tuple"
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    return {int: "an integer", float: "a number", str: "a quoted string", bool: "True or False",
            type(None): "None"}.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(tp: Any, v: Any) -> Any:
    """``v`` as a value of the annotation ``tp`` (int, float, str, bool, None, unions, Literal, tuple[X, ...]);
    raises ``TypeError`` when it is not one. Floats are never truncated to ints."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        for a in args:
            try:
                return _coerce(a, v)
            except TypeError:
                continue
        raise TypeError
    if origin is typing.Literal:
        if v in args:
            return v
        raise TypeError
    if origin is tuple:
        if not isinstance(v, (tuple, list)):
            v = (v,)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], e) for e in v)
        if len(args) != len(v):
            raise TypeError
        return tuple(_coerce(a, e) for a, e in zip(args, v))
    if tp is type(None):
        if v is None:
            return None
        raise TypeError
    if tp is bool:
        if isinstance(v, bool):
            return v
        raise TypeError
    if tp is int:
        if isinstance(v, numbers.Integral) and not isinstance(v, bool):
            return int(v)
        raise TypeError
    if tp is float:
        if isinstance(v, numbers.Real) and not isinstance(v, bool):
            return float(v)
        raise TypeError
    if tp is str:
        if isinstance(v, str):
            return v
        raise TypeError
    return v


def check_scale(scale: Any) -> None:
    """Ranges every scale field shares — numbers finite and ≥ 0, integers in a tuple (widths, channels,
    budgets) ≥ 1 — then the scale's own ``check()`` if it has one."""
    for f in dataclasses.fields(scale):
        v = getattr(scale, f.name)
        vals = v if isinstance(v, tuple) else (v,)
        for e in vals:
            if isinstance(e, bool) or not isinstance(e, numbers.Real):
                continue
            if not math.isfinite(float(e)) or e < 0:
                raise ValueError(f"{f.name} must {'hold finite numbers' if isinstance(v, tuple) else 'be a finite number'}"
                                 f" ≥ 0, got {v!r}")
            if isinstance(v, tuple) and isinstance(e, numbers.Integral) and e < 1:
                raise ValueError(f"{f.name} must hold integers ≥ 1, got {v!r}")
    check = getattr(scale, "check", None)
    if callable(check):
        check()


def apply_overrides(base: Any, overrides: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    """``base`` (a scale dataclass) with ``overrides`` (field → Python literal, from ``--set``) applied; every
    value is checked against its field's type (``widths=1.5`` is refused, not truncated) and the result against
    the ranges of :func:`check_scale`. Returns ``(scale, changes)``; every error is one line naming the field."""
    hints = typing.get_type_hints(type(base))
    fields = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"--set: unknown scale setting(s) {unknown} for this reproduction; known: {sorted(fields)}")
    changes = {}
    for k, raw in overrides.items():
        try:
            v = ast.literal_eval(raw)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise ValueError(f"--set {k}={raw}: the value must be a Python literal (number, tuple, None, quoted "
                             f"string)") from None
        try:
            changes[k] = _coerce(hints[k], v)
        except TypeError:
            raise ValueError(f"--set {k}={raw}: {k} takes {_type_name(hints[k])}, got {v!r}") from None
    out = dataclasses.replace(base, **changes)
    try:
        check_scale(out)
    except ValueError as e:
        if not changes:
            raise
        raise ValueError(f"--set {', '.join(f'{k}={overrides[k]}' for k in changes)}: {e}") from None
    return out, changes


def fmt(v: Any, digits: int = 4) -> str:
    """A number for a table: ``4`` significant digits, ``–`` for missing, ``a–b`` for a (lo, hi) pair."""
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if isinstance(v, (tuple, list)) and len(v) == 2:
        return f"{fmt(v[0], digits)}–{fmt(v[1], digits)}"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    v = float(v)
    if math.isnan(v):
        return "nan"
    return f"{v:.{digits}g}"


def comparison_table(section: Section, rows: list[tuple[str, Any, Any, str]], *,
                     columns: tuple[str, str, str, str] = ("quantity", "paper", "ours", "note")) -> list[dict[str, Any]]:
    """Add a markdown table with a "paper" column beside ours; return the rows as JSON records.

    ``rows`` holds ``(quantity, paper value, our value, note)``; a value may be a number, a
    ``(lo, hi)`` range, a string or None (not reported).
    """
    section.table(list(columns), [[q, fmt(p), fmt(o), n] for q, p, o, n in rows])
    records = [{"quantity": q, "paper": p, "ours": o, "note": n} for q, p, o, n in rows]
    section.data.setdefault("comparison", []).extend(records)
    return records


@dataclasses.dataclass(frozen=True)
class Reproduction:
    """One entry of ``stability reproduce``: its name, the figure/table it reproduces, and its runner."""

    name: str
    title: str
    paper: str
    run: Callable[[ReproContext], dict[str, Any]]
    needs: str = ""  # the data it reads, for --list


REGISTRY: dict[str, Reproduction] = {}


def register(name: str, title: str, paper: str, needs: str = "") -> Callable:
    """Decorator: add ``run(ctx)`` to :data:`REGISTRY` under ``name``."""

    def deco(fn: Callable[[ReproContext], dict[str, Any]]) -> Callable[[ReproContext], dict[str, Any]]:
        if name in REGISTRY:
            raise ValueError(f"reproduction {name!r} registered twice")
        REGISTRY[name] = Reproduction(name, title, paper, fn, needs)
        return fn

    return deco


def vacuity_text(noise: dict[str, Any]) -> str:
    """``"vacuity ratio √p·ε / loss range = 812 (the bound is vacuous on these nets)"`` for a Theorem 2/3 verdict's
    ``noise`` dict (docs/THEORY.md §10), or why the ratio is undefined."""
    r = noise["vacuity_ratio"]
    if r is None:
        return (f"vacuity ratio undefined (an end net is no better than the zero-output net: loss range "
                f"{noise['loss_range']:.3g})")
    return f"vacuity ratio √p·ε / loss range = {r:.3g}" + (" (the bound is vacuous on these nets)" if r > 1 else
                                                             " (the bound is informative)")
