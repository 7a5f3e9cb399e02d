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
import time
from pathlib import Path
from typing import Any, Callable

from stability.app.report import Report, Section
from stability.core.progress import get_logger

__all__ = ["ReproContext", "Reproduction", "comparison_table", "register", "REGISTRY", "fmt"]


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
        (values parsed as Python literals) and recorded in the report."""
        base = quick if self.quick else full
        fields = {f.name for f in dataclasses.fields(base)}
        unknown = sorted(set(self.overrides) - fields)
        if unknown:
            raise ValueError(f"unknown scale setting(s) {unknown} for this reproduction; known: {sorted(fields)}")
        changes = {}
        for k, raw in self.overrides.items():
            try:
                v = ast.literal_eval(raw)
            except (ValueError, SyntaxError):
                raise ValueError(f"--set {k}={raw!r}: the value must be a Python literal (number, tuple, None, "
                                 "quoted string)") from None
            old = getattr(base, k)
            if isinstance(old, tuple) and isinstance(v, (int, float)):
                v = (v,)
            if isinstance(old, float) and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            changes[k] = v
        out = dataclasses.replace(base, **changes)
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
