"""The demo's first section: loss and accuracy along the straight line between the two nets."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from stability.core.evaluate import evaluate_line
from stability.plots import along as plots

__all__ = ["add_straight_line_section"]


def add_straight_line_section(report, ctx) -> dict[str, Any]:
    """Add the "straight_line" section (both splits, one batched call each); returns its numbers."""
    n_points = 61 if ctx.quick else 121
    t0 = time.perf_counter()
    tr = evaluate_line(ctx.net_a, ctx.net_b, n_points, ctx.x_train, ctx.y_train)
    te = evaluate_line(ctx.net_a, ctx.net_b, n_points, ctx.x_test, ctx.y_test)
    secs = time.perf_counter() - t0
    ends = max(tr.loss[0], tr.loss[-1])
    sec = report.section("straight_line", "The straight line between the two nets")
    k = int(np.argmax(tr.loss))
    barrier = float(tr.loss.max() - ends)
    sec.finding(
        f"Walking in a straight line from θ_A to θ_B, the train loss rises from {tr.loss[0]:.3g} and {tr.loss[-1]:.3g} "
        f"at the ends to {tr.loss[k]:.3g} at t = {tr.ts[k]:.2f} (a barrier of {barrier:.3g}), where only "
        f"{100 * tr.acc[k]:.1f}% of the training digits are classified correctly: "
        + ("the two nets are NOT linearly connected — the later sections look for paths that avoid this barrier."
           if barrier > 0.01 * max(1.0, ends) else "the two nets are linearly connected at this resolution.")
        + f" The maximum is over {n_points} sampled t (a lower bound of the true maximum).")
    sec.text(
        f"Loss and accuracy at {n_points} equally spaced points of θ(t) = (1−t)·θ_A + t·θ_B, "
        f"evaluated in one batched call per split ({secs:.2f} s for both splits)."
    )
    sec.table(
        ["", "train loss", "train acc", "test loss", "test acc"],
        [["θ_A (t=0)", float(tr.loss[0]), float(tr.acc[0]), float(te.loss[0]), float(te.acc[0])],
         ["θ_B (t=1)", float(tr.loss[-1]), float(tr.acc[-1]), float(te.loss[-1]), float(te.acc[-1])],
         [f"max over t (at t={tr.ts[np.argmax(tr.loss)]:.3f})", float(tr.loss.max()), float(tr.acc.min()),
          float(te.loss.max()), float(te.acc.min())]],
    )
    sec.text(f"Barrier (max train loss − max end-point loss): **{tr.loss.max() - ends:.4f}**.")
    fig = plots.plot_along({"train": tr, "test": te}, title="straight line θ_A → θ_B")
    report.figure(sec, fig, "straight_line.png", "Loss and error along the straight line (train and test)")
    sec.data.update(points=n_points, train=tr.to_dict(), test=te.to_dict(), barrier=float(tr.loss.max() - ends),
                    max_train_loss=float(tr.loss.max()), eval_seconds=secs)
    report.add(sec)
    return sec.data
