"""Learned curves next to the straight line and the constructed paths (Garipov et al. 2018 Table 2
layout), loss planes and curve ensembles: the demo section and the ``curve`` / ``plane`` / ``fge``
commands share these functions."""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
import numpy as np

from stability.curves import curve as curves
from stability.curves import ensembles
from stability.plots import along as plots
from stability.plots.planes import plot_plane
from stability.core import nets as _nets
from stability.core.train import TrainConfig
from stability.curves.metrics import TABLE_COLUMNS, certified_cell, curve_table
from stability.core.evaluate import EvalResult, line_point
from stability.core.polycurve import PolyCurve

Array = jax.Array

__all__ = ["unit_path_point", "learn_curves", "curve_rows", "certified_maxima", "add_curves_section", "plane_figure",
           "DISPLAY_COLUMNS", "display_row"]

DISPLAY_COLUMNS = TABLE_COLUMNS[:3] + ["train loss Max, every t (certified)"] + TABLE_COLUMNS[3:]
"""The Table 2 columns as printed: the grid's sampled Max next to the certified enclosure over every t."""


def display_row(row: dict[str, Any]) -> list[Any]:
    """One printed row of :data:`DISPLAY_COLUMNS`."""
    return [row[c] for c in TABLE_COLUMNS[:3]] + [certified_cell(row)] + [row[c] for c in TABLE_COLUMNS[3:]]


def certified_maxima(curves_by_name: dict[str, Any], x: Array, y: Array, **opts: Any) -> dict[str, Any]:
    """The certified enclosure of the plain train loss's maximum over every t for each curve: a constructed
    :class:`~stability.theory.paths.Path` through ``proofs_check.path_bound`` (its proved claims are exact
    shortcuts), a :class:`~stability.core.polycurve.PolyCurve` through ``max_loss_bound``."""
    from proofs_check import path_bound
    from stability.core.polycurve import PolyCurve
    from stability.theory.bounds import max_loss_bound
    from stability.theory.paths import Path

    out = {}
    for name, c in curves_by_name.items():
        if isinstance(c, Path):
            out[name] = path_bound(c, x, y, **opts)
        elif isinstance(c, PolyCurve):
            out[name] = max_loss_bound(c, x, y, **opts)
        else:
            raise ValueError(f"{name}: a certified maximum needs a Path or a PolyCurve, got {type(c).__name__}")
    return out


def unit_path_point(waypoints: _nets.Net, t: Array) -> _nets.Net:
    """A constructed path (stacked way points) as a function of global ``t ∈ [0, 1]``, segments equally timed."""
    from stability.theory.paths import path_point

    n = jax.tree_util.tree_leaves(waypoints)[0].shape[0] - 1
    return path_point(waypoints, t * n)


def learn_curves(a: _nets.Net, b: _nets.Net, x: Array, y: Array, *, steps: int, bends: int = 1, seed: int = 0,
                 lr: float = 1e-2, progress: bool = True) -> dict[str, curves.Curve]:
    """A Bezier curve and a polygonal chain with ``bends`` bends trained on eq. (3) between ``a`` and ``b``."""
    out = {}
    for name, make in (("Bezier", curves.bezier), ("Polychain", curves.polychain)):
        cfg = TrainConfig(steps=steps, batch_size=128, optimizer="adam", lr=lr, schedule="cosine", seed=seed,
                          log_every=max(1, steps // 3))
        c, _ = curves.train_curve(make(a, b, bends), _nets.apply, x, y, cfg, progress=progress)
        out[name] = c
    return out


def curve_rows(named: dict[str, tuple[Callable, Any]], train: tuple, test: tuple, n: int = 121,
               certified: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """The Table 2 row for every ``name → (point_fn, theta)``, all through the same evaluator; ``certified``:
    name → the certified maximum on ``train`` (:func:`certified_maxima`)."""
    cert = certified or {}
    return {name: curve_table(fn, theta, train, test, n=n, certified=cert.get(name))
            for name, (fn, theta) in named.items()}


def plane_figure(a: _nets.Net, b: _nets.Net, curve: curves.Curve, x: Array, y: Array, *, resolution: int,
                 extra: dict[str, list] | None = None):
    """Loss plane through ``a``, the curve's middle control point and ``b`` with the curve projected."""
    from stability.curves import planes

    mid = jax.tree_util.tree_map(lambda w: w[w.shape[0] // 2], curve.bends)
    p = planes.plane(a, mid, b)
    grid = planes.evaluate_plane(p, x, y, resolution=resolution)
    pts = [curves.point(curve, float(t)) for t in np.linspace(0, 1, 41)]
    lines = {"learned curve": pts, "segment": [a, b], **(extra or {})}
    return plot_plane(p, grid, lines, labels=("θ_A", "bend", "θ_B"), title="train loss plane"), grid


def _bound_note(bounds: dict[str, Any]) -> str:
    """How the enclosures stopped: all at the tolerance, or which ones the budget stopped."""
    loose = [f"{k} (stopped by its {b.stop}, gap {b.gap:.3g})" for k, b in bounds.items() if not b.converged]
    return "every enclosure within its tolerance" if not loose else "not converged: " + ", ".join(loose)


def add_curves_section(report: Any, ctx: Any) -> dict[str, Any]:
    """Demo section: Bezier / polychain curves between the demo's nets, next to the straight line and the
    Theorem 1 path (if the paths section left it in ``ctx.extra``), a loss plane and curve ensembles."""
    t0 = time.perf_counter()
    a, b = ctx.net_a, ctx.net_b
    steps = 600 if ctx.quick else 3000
    learned = learn_curves(a, b, ctx.x_train, ctx.y_train, steps=steps, seed=ctx.seed)
    named: dict[str, tuple[Callable, Any]] = {"Segment": (line_point, (a, b))}
    named.update({k: (curves.curve_point, c) for k, c in learned.items()})
    polys: dict[str, Any] = {"Segment": PolyCurve.segment(a, b),
                             **{k: curves.as_polycurve(c) for k, c in learned.items()}}
    path = ctx.extra.get("theorem1_path")
    if path is not None:
        named["Theorem 1 path"] = (unit_path_point, path.stacked())
        polys["Theorem 1 path"] = path
    n = 61 if ctx.quick else 121
    t_bound = time.perf_counter()
    bounds = certified_maxima(polys, ctx.x_train, ctx.y_train)
    t_bound = time.perf_counter() - t_bound
    rows = curve_rows(named, (ctx.x_train, ctx.y_train), (ctx.x_test, ctx.y_test), n=n, certified=bounds)

    sec = report.section("curves", "Learned curves (Garipov et al. 2018) vs the straight line and the constructed path")
    sec.text(f"Bezier and polygonal-chain curves with one bend, trained on eq. (3) for {steps} Adam steps "
             f"(one t ~ U(0,1) per minibatch). Every row comes from the same evaluator on {n} points; Int is the "
             "arc-length mean (trapezoid); errors in %. The constructed path's segments are timed equally. "
             "`train loss Max` is the largest of the grid's values (a lower bound of the maximum over t); the "
             "certified column encloses the maximum over EVERY t, [proved lower, proved upper] "
             f"({_bound_note(bounds)}; {t_bound:.1f} s for all rows).")
    sec.table(["curve"] + DISPLAY_COLUMNS, [[name] + display_row(r["row"]) for name, r in rows.items()])
    fig = plots.plot_along({name: EvalResult(np.asarray(r["train"]["t"]), np.asarray(r["train"]["loss"]),
                                             np.asarray(r["train"]["acc"])) for name, r in rows.items()},
                           title="train loss / accuracy along each curve",
                           envelopes={k: b.envelope() for k, b in bounds.items()})
    report.figure(sec, fig, "curves_along.png", "Train loss and accuracy along the segment, the learned curves "
                                                "and the Theorem 1 path; dotted steps: the certified upper bound of "
                                                "each curve's loss for every t")
    fig, _ = plane_figure(a, b, learned["Bezier"], ctx.x_train, ctx.y_train, resolution=15 if ctx.quick else 31)
    report.figure(sec, fig, "curves_plane.png", "Train loss on the plane through θ_A, the Bezier bend and θ_B")

    half = ctx.x_test.shape[0] // 2
    val, test = (ctx.x_test[:half], ctx.y_test[:half]), (ctx.x_test[half:], ctx.y_test[half:])
    ens = ensembles.curve_ensemble(curves.curve_point, learned["Bezier"], *test, n=50, x_val=val[0], y_val=val[1])
    pair = ensembles.ensemble_metrics(ensembles.ensemble_probs([a, b], test[0]), test[1])
    singles = [ensembles.ensemble_metrics(ensembles.ensemble_probs([m], test[0]), test[1]) for m in (a, b)]
    sec.text("Ensembles on the second half of the test set (temperature fitted on the first half):")
    sec.table(["model", "test err %", "NLL"],
              [["θ_A", singles[0]["error"], singles[0]["nll"]], ["θ_B", singles[1]["error"], singles[1]["nll"]],
               ["{θ_A, θ_B}", pair["error"], pair["nll"]],
               ["Bezier curve, 50 points", ens["error"], ens["nll"]],
               [f"  … temperature {ens['temperature']:.2f}", ens["calibrated_error"], ens["calibrated_nll"]]])
    sec.data.update(rows={k: r["row"] for k, r in rows.items()}, certified={k: r.get("certified") for k, r in rows.items()},
                    certified_seconds=t_bound, steps=steps, points=n, curve_ensemble=ens,
                    pair_ensemble=pair, singles=singles, seconds=time.perf_counter() - t0)
    report.add(sec)
    return sec.data
