"""``stability reproduce NAME``: the papers' figures and tables from one command (docs/THEORY.md §8–§9).

* ``kuditipudi-fig2`` — MNIST conv nets (Appendix D.1): dropout stability vs 1−p, the straight path to a
  p = 0.2 dropout version, narrow nets, and the certified connecting path through a narrow subnetwork;
* ``kuditipudi-fig3`` — VGG-11-style net with channel-wise dropout: cushion histograms and the Theorem 3 path;
* ``kuditipudi-thm4`` — the Theorem 4 counterexample evidence;
* ``garipov-table2`` — Table 2 rows (segment / Bezier / polychain) for an MNIST FC net and a small conv net;
* ``garipov-fge`` — FGE vs snapshot vs independent ensembles at equal budgets (Table 1 layout);
* ``ainsworth-mlp`` — Git Re-Basin's MNIST MLPs: straight-line barrier before and after weight and activation
  matching.

Each run writes ``summary.json``, ``report.md`` (tables with a "paper" column) and PNG figures into
its output directory, and states its seed, hardware, scale and wall time.
"""

from __future__ import annotations

import importlib
import shlex
from pathlib import Path
from typing import Any

from stability.app.report import Report
from stability.app.reproduce.common import (REGISTRY, ReproContext, Reproduction, apply_overrides, comparison_table, fmt,
                                           register)

__all__ = ["run", "names", "get", "scale_for", "REGISTRY", "ReproContext", "Reproduction", "comparison_table", "fmt", "register"]

_MODULES = {
    "kuditipudi-thm1": "kuditipudi_thm1",
    "kuditipudi-fig2": "kuditipudi_fig2",
    "kuditipudi-fig3": "kuditipudi_fig3",
    "kuditipudi-thm4": "kuditipudi_thm4",
    "garipov-table2": "garipov_table2",
    "garipov-fge": "garipov_fge",
    "ainsworth-mlp": "ainsworth_mlp",
}


def names() -> list[str]:
    """Every reproduction's name, in the order of the papers."""
    return list(_MODULES)


def get(name: str) -> Reproduction:
    """The registered reproduction ``name`` (its module is imported on demand)."""
    if name not in _MODULES:
        raise ValueError(f"unknown reproduction {name!r}; known: {', '.join(_MODULES)}")
    importlib.import_module(f"{__name__}.{_MODULES[name]}")
    return REGISTRY[name]


def scale_for(name: str, *, quick: bool = False, overrides: dict[str, str] | None = None) -> Any:
    """The scale reproduction ``name`` would run at (its ``QUICK`` or ``FULL`` with ``overrides`` applied and
    checked): every ``--set`` error surfaces here, before any output directory exists."""
    get(name)
    module = importlib.import_module(f"{__name__}.{_MODULES[name]}")
    return apply_overrides(module.QUICK if quick else module.FULL, dict(overrides or {}))[0]


def _quote(arg: str) -> str:
    """Shell-quote ``arg`` readably: double quotes when that is safe (``"models=('FC',)"``), else shlex."""
    if shlex.quote(arg) == arg:
        return arg
    if not any(c in arg for c in '"$`\\!'):
        return f'"{arg}"'
    return shlex.quote(arg)


def run(name: str, out: str | Path | None = None, *, quick: bool = False, seed: int = 0,
        source: str | None = None, overrides: dict[str, str] | None = None) -> dict[str, Any]:
    """Run reproduction ``name`` into ``out`` (default ``reproduce_out/NAME``); returns its headline numbers.

    ``overrides`` maps a field of the reproduction's scale dataclass to a Python literal (``--set``)."""
    rep = get(name)
    scale_for(name, quick=quick, overrides=overrides)  # a bad --set fails before the directory is touched
    out = Path(out) if out is not None else Path("reproduce_out") / name
    report = Report(out, title=f"{rep.name}: {rep.title}")
    flags = (["--quick"] if quick else []) + ([f"--seed {seed}"] if seed else []) + \
            ([f"--source {shlex.quote(str(source))}"] if source else []) + \
            [f"--set {_quote(f'{k}={v}')}" for k, v in (overrides or {}).items()]
    report.meta.update(reproduction=name, paper=rep.paper, seed=seed, quick=quick,
                       scale="quick (CPU smoke test)" if quick else "full (paper setting)",
                       command=" ".join(["stability reproduce", name, "--out", shlex.quote(str(out)), *flags]))
    if source:
        report.meta["source"] = str(source)
    ctx = ReproContext(report=report, quick=quick, seed=seed, source=source, overrides=dict(overrides or {}))
    ctx.progress(f"{name} ({report.meta['scale']}) on {report.meta['machine']} → {out}")
    with report.running():
        headline = rep.run(ctx)
        report.meta["headline"] = headline
        report.meta["wall_seconds_total"] = round(ctx.elapsed(), 1)
    ctx.progress(f"wrote {out / 'report.md'} and {out / 'summary.json'}")
    return headline
