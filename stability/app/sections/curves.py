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
           "DISPLAY_COLUMNS", "display_row", "curve_finding", "plane_finding", "fge_finding", "ensemble_size_curves"]

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


def _peak(r: dict[str, Any]) -> tuple[float, float, float]:
    """(max train loss, its t, the larger end loss) of one :func:`curve_rows` entry."""
    loss, ts = np.asarray(r["train"]["loss"]), np.asarray(r["train"]["t"])
    k = int(np.argmax(loss))
    return float(loss[k]), float(ts[k]), float(max(loss[0], loss[-1]))


def curve_finding(rows: dict[str, dict[str, Any]], kind: str) -> str:
    """Plain sentences: where the learned curve's train loss peaks against the straight segment's, and what
    that means (the maxima are over the sampled t: lower bounds of the true maxima)."""
    seg, cur = rows["Segment"], rows[kind]
    s_max, s_t, ends = _peak(seg)
    c_max, c_t, _ = _peak(cur)
    n = len(seg["train"]["t"])
    verdict = ("the learned curve removes the barrier: its loss never rises above the larger end loss"
               if c_max <= ends * (1 + 1e-6) else
               f"the learned curve lowers the barrier from {s_max - ends:.3g} to {c_max - ends:.3g}"
               if c_max < s_max else "the learned curve does NOT lower the straight segment's barrier")
    return (f"On the training data the straight segment between the two nets peaks at loss {s_max:.4g} (t = {s_t:.2f}; "
            f"end losses at most {ends:.4g}), the learned {kind} curve at {c_max:.4g} (t = {c_t:.2f}): {verdict}. "
            f"Its test error peaks at {cur['row']['test err Max']:.3g}% against the segment's "
            f"{seg['row']['test err Max']:.3g}%, and it is {cur['row']['length ratio']:.3g}× as long. Maxima are "
            f"over {n} sampled t (lower bounds of the true maxima).")


def plane_finding(grid: dict[str, np.ndarray], point_loss: Any, labels: tuple[str, ...]) -> str:
    """Plain sentences: the loss range on the plane grid (with where it is reached) and the points' losses."""
    loss = np.asarray(grid["loss"])
    a, b = np.asarray(grid["alpha"]), np.asarray(grid["beta"])
    i_lo, i_hi = np.unravel_index(np.argmin(loss), loss.shape), np.unravel_index(np.argmax(loss), loss.shape)
    pts = ", ".join(f"{lab} {float(v):.4g}" for lab, v in zip(labels, point_loss))
    return (f"Over the {loss.shape[0]}×{loss.shape[1]} grid the train loss ranges from {loss.min():.4g} (at α = "
            f"{a[i_lo[1]]:.3g}, β = {b[i_lo[0]]:.3g}) to {loss.max():.4g} (at α = {a[i_hi[1]]:.3g}, β = "
            f"{b[i_hi[0]]:.3g}); the three checkpoints have train loss {pts}. Grid values are samples: the true "
            f"minimum and maximum over the plane may lie between grid points.")


def ensemble_size_curves(runs: dict[str, list[list[Any]]], x: Array, y: Array) -> dict[str, dict[str, list]]:
    """Per method, test error (%) and NLL of the ensemble of its first k members, k = 1..M (members in training
    order: run 0's, then run 1's, …); each member is evaluated once."""
    out: dict[str, dict[str, list]] = {}
    for name, per_run in runs.items():
        members = [m for run in per_run for m in run]
        probs = [np.asarray(ensembles.ensemble_probs([m], x), np.float64) for m in members]
        cum = np.cumsum(np.stack(probs), axis=0) / np.arange(1, len(probs) + 1)[:, None, None]
        metrics = [ensembles.ensemble_metrics(jax.numpy.asarray(p), y) for p in cum]
        out[name] = {"members": list(range(1, len(members) + 1)), "error": [m["error"] for m in metrics],
                     "nll": [m["nll"] for m in metrics]}
    return out


def fge_finding(rows: list[dict[str, Any]], sizes: dict[str, dict[str, list]]) -> str:
    """Plain sentences: which method wins at the largest budget and how the error falls with more members."""
    top = max(r["budget"] for r in rows)
    at = {r["method"]: r for r in rows if r["budget"] == top}
    best = min(at.values(), key=lambda r: (r["error"], r["nll"]))
    others = ", ".join(f"{m} {r['error']:.2f}% ({r['members']} members)" for m, r in at.items() if m != best["method"])
    f = sizes.get("FGE")
    tail = (f" FGE's error goes from {f['error'][0]:.2f}% with 1 member to {f['error'][-1]:.2f}% with "
            f"{f['members'][-1]} (NLL {f['nll'][0]:.3f} → {f['nll'][-1]:.3f})." if f and f["members"] else "")
    return (f"At the largest budget ({top}B) {best['method']} has the lowest test error, {best['error']:.2f}% with "
            f"{best['members']} members (NLL {best['nll']:.4f}), against {others}.{tail}")


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
    peaks = {name: _peak(r)[0] for name, r in rows.items()}
    ends = _peak(rows["Segment"])[2]
    learned_max = max(peaks["Bezier"], peaks["Polychain"])
    other = (f"the straight segment peaks at {peaks['Segment']:.3g}"
             + (f" and the Theorem 1 path at {peaks['Theorem 1 path']:.3g}" if "Theorem 1 path" in peaks else ""))
    if learned_max <= ends * (1 + 1e-6):
        head = (f"The learned Bezier and polygonal-chain curves never rise above the end losses (highest sampled "
                f"train loss {learned_max:.3g}, at an end point), while {other}: training finds a path with no "
                f"barrier at all between the two nets.")
    else:
        head = (f"The learned Bezier and polygonal-chain curves peak at train loss {peaks['Bezier']:.3g} and "
                f"{peaks['Polychain']:.3g} (end losses at most {ends:.3g}), while {other}: the best learned barrier "
                f"({learned_max - ends:.3g}) is {(peaks['Segment'] - ends) / max(learned_max - ends, 1e-12):.3g}× "
                f"smaller than the segment's.")
    sec.finding(head + f" These are maxima over {n} sampled t (lower bounds of the true maxima); over every t the "
                "certified upper bounds are " + ", ".join(f"{k} {b.upper:.3g}" for k, b in bounds.items()) + ".")
    sec.text(f"Bezier and polygonal-chain curves with one bend, trained on eq. (3) for {steps} Adam steps "
             f"(one t ~ U(0,1) per minibatch). Every row comes from the same evaluator on {n} points; Int is the "
             "arc-length mean (trapezoid); errors in %. The constructed path's segments are timed equally. "
             "`train loss Max` is the largest of the grid's values (a lower bound of the maximum over t); the "
             "certified column encloses the maximum over EVERY t, [proved lower, proved upper] "
             f"({_bound_note(bounds)}; {t_bound:.1f} s for all rows).")
    sec.table(["curve"] + DISPLAY_COLUMNS, [[name] + display_row(r["row"]) for name, r in rows.items()])
    fig = plots.plot_along({name: EvalResult(np.asarray(r["train"]["t"]), np.asarray(r["train"]["loss"]),
                                             np.asarray(r["train"]["acc"])) for name, r in rows.items()},
                           title="train loss and error along each curve", loss_label="train loss (mean)",
                           err_label="train error (%)", envelopes={k: b.envelope() for k, b in bounds.items()})
    report.figure(sec, fig, "curves_along.png", "Train loss and train error along the segment, the learned curves "
                                                "and the Theorem 1 path; dotted steps: the certified upper bound of "
                                                "each curve's loss for every t")
    fig, _ = plane_figure(a, b, learned["Bezier"], ctx.x_train, ctx.y_train, resolution=15 if ctx.quick else 31)
    report.figure(sec, fig, "curves_plane.png", "Train loss on the plane through θ_A, the Bezier bend and θ_B")

    half = ctx.x_test.shape[0] // 2
    val, test = (ctx.x_test[:half], ctx.y_test[:half]), (ctx.x_test[half:], ctx.y_test[half:])
    ens = ensembles.curve_ensemble(curves.curve_point, learned["Bezier"], *test, n=50, x_val=val[0], y_val=val[1])
    pair = ensembles.ensemble_metrics(ensembles.ensemble_probs([a, b], test[0]), test[1])
    singles = [ensembles.ensemble_metrics(ensembles.ensemble_probs([m], test[0]), test[1]) for m in (a, b)]
    sec.text(f"Ensembles on the second half of the test set (temperature fitted on the first half): the 50-point "
             f"Bezier-curve ensemble has {ens['error']:.2f}% error against {pair['error']:.2f}% for the pair "
             f"{{θ_A, θ_B}} and {singles[0]['error']:.2f}% / {singles[1]['error']:.2f}% for the single nets.")
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
