"""Benchmark: certified upper bounds of the maximum loss over a whole curve vs the 121-point sampled maximum.

Two digits MLPs 64-64-64-10 trained as the demo trains them (``stability demo``'s ``_train_pair``:
SGD 0.1 cosine, dropout 0.1, batch 64; ``--steps``), then three curves between them: (a) the straight
line, (b) a learned 1-bend Bezier curve (eq. 3 of Garipov et al., Adam 1e-2 cosine, ``--curve-steps``),
(c) a Theorem 2 path (``stability.theory.paths.theorem2``; its certified claims are exact shortcuts via
``proofs_check.path_bound``). For each: the certified bound (``stability.theory.bounds``, Taylor models,
float64) against the maximum of a plain float64 evaluation at 121 points (per segment for the path),
both timed as the median of ``--repeats`` paired, alternated warm repeats (min/max too; compilation
reported separately); plain interval arithmetic (``method="interval"``) on (a) and (b) for comparison;
and the tightness-vs-time curve (relative gap ``(upper − lower)/lower`` after every bisection round) as
a PNG.

    python benchmarks/bench_bounds.py [--steps 5000] [--curve-steps 3000] [--samples N] [--repeats 7]
        [--budget 512] [--rtol 1e-2] [--out FILE.md] [--png FILE.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from proofs_check.path_bounds import path_bound
from stability.curves import curve as curves
from stability import data
from stability.core import nets
from stability.theory.bounds import max_loss_bound
from stability.core.evaluate import evaluate, line_point
from stability.theory.paths import path_point, theorem2
from stability.core.polycurve import PolyCurve
from stability.app.report import machine_description
from stability.core.train import TrainConfig, fit

from _table import emit


def train_pair(x, y, steps: int) -> tuple[nets.Net, nets.Net]:
    """The demo's training recipe (``stability.app.demo._train_pair``) with ``steps`` SGD steps."""
    cfg = TrainConfig(steps=steps, batch_size=64, optimizer="sgd", lr=0.1, schedule="cosine", dropout=0.1,
                      log_every=max(1, steps // 3))
    out = []
    for s in (0, 1):
        net = nets.mlp(jax.random.PRNGKey(s), (x.shape[1], 64, 64, 64, 10))
        net, _ = fit(net, x, y, dataclasses.replace(cfg, seed=s), progress=False)
        out.append(net)
    return out[0], out[1]


def paired(fa, fb, repeats: int) -> tuple[list[float], list[float]]:
    """Warm wall times of ``fa`` and ``fb``, alternating which runs first."""
    ta, tb = [], []
    for r in range(repeats):
        for f, acc in ((fa, ta), (fb, tb)) if r % 2 == 0 else ((fb, tb), (fa, ta)):
            t0 = time.perf_counter()
            jax.block_until_ready(f())
            acc.append(time.perf_counter() - t0)
    return ta, tb


def stats(ts: list[float]) -> str:
    return f"{statistics.median(ts):.3f} s (min {min(ts):.3f}, max {max(ts):.3f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5000, help="SGD steps per net (the demo: 5000; --quick 1500)")
    ap.add_argument("--curve-steps", type=int, default=3000, help="Adam steps of the Bezier curve")
    ap.add_argument("--samples", type=int, default=0, help="use only the first N training samples (0: all)")
    ap.add_argument("--repeats", type=int, default=7, help="paired timing repeats (≥ 7 for the committed table)")
    ap.add_argument("--budget", type=int, default=512, help="max sub-intervals of the bound")
    ap.add_argument("--rtol", type=float, default=1e-2, help="stop when upper − lower ≤ rtol·lower")
    ap.add_argument("--points", type=int, default=121, help="points of the plain evaluation (per segment)")
    ap.add_argument("--out", help="append the result table to this markdown file")
    ap.add_argument("--png", help="tightness-vs-time figure (default: next to --out, or bench_bounds.png)")
    args = ap.parse_args()
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)

    ds = data.load("digits")
    x, y = ds.x_train, ds.y_train
    if args.samples:
        x, y = x[:args.samples], y[:args.samples]
    t0 = time.perf_counter()
    a, b = train_pair(x, y, args.steps)
    bez, _ = curves.train_curve(curves.bezier(a, b, 1), nets.apply, x, y,
                                TrainConfig(steps=args.curve_steps, batch_size=128, optimizer="adam", lr=1e-2,
                                            schedule="cosine", log_every=200), progress=False)
    path = theorem2(a, b, jax.random.PRNGKey(2))
    print(f"machine: {machine_description()}; {x.shape[0]} digits samples; trained in "
          f"{time.perf_counter() - t0:.1f} s; Theorem 2 path: {path.n_segments} segments {path.claims}", flush=True)

    with jax.enable_x64(True):
        f64 = lambda tree: jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), tree)  # noqa: E731
        x64, yj = jnp.asarray(x, jnp.float64), jnp.asarray(y)
        a64, b64, bez64 = f64(a), f64(b), f64(bez)
        stacked64 = f64(path.stacked())
        grid = np.linspace(0.0, 1.0, args.points)
        s_path = (np.arange(path.n_segments)[:, None] + grid[None, :]).reshape(-1)
        kw = dict(rtol=args.rtol, max_subintervals=args.budget)
        cases = {
            "(a) straight line": (
                lambda **k: max_loss_bound(PolyCurve.segment(a, b), x, y, **{**kw, **k}),
                lambda: evaluate(line_point, (a64, b64), grid, x64, yj)),
            "(b) learned 1-bend Bezier": (
                lambda **k: max_loss_bound(curves.as_polycurve(bez), x, y, **{**kw, **k}),
                lambda: evaluate(curves.curve_point, bez64, grid, x64, yj)),
            "(c) Theorem 2 path": (
                lambda **k: path_bound(path, x, y, **{**kw, **k}),
                lambda: evaluate(path_point, stacked64, s_path, x64, yj)),
        }
        rows = [("machine", machine_description()),
                ("net / data", f"MLP 64→64-64-64→10 (digits), {x.shape[0]} training samples, cross-entropy, float64"),
                ("training", f"{args.steps} SGD steps per net; Bezier curve {args.curve_steps} Adam steps"),
                ("bound settings", f"Taylor models, rtol {args.rtol}, at most {args.budget} sub-intervals"),
                ("plain evaluation", f"`stability.core.evaluate.evaluate` at {args.points} equally spaced t "
                                     f"(per segment for the path), float64")]
        curves_png = {}
        ratios = []
        for name, (bound, plain) in cases.items():
            c0 = time.perf_counter()
            res = bound()
            c1 = time.perf_counter()
            ev = plain()
            c2 = time.perf_counter()
            tb, tp = paired(bound, plain, args.repeats)
            res, ev = bound(), plain()
            sampled = float(ev.loss.max())
            ratio = statistics.median(tb) / statistics.median(tp)
            ratios.append(ratio)
            trace = bound(rtol=min(args.rtol, 1e-4))  # the same algorithm run on, for the tightness curve
            curves_png[name] = trace.history
            rows += [
                (f"{name}: certified upper / rigorous lower / sampled max ({args.points} pts)",
                 f"{res.upper:.6f} / {res.lower:.6f} / {sampled:.6f}"),
                (f"{name}: (upper − sampled)/sampled; (upper − lower)/lower",
                 f"{(res.upper - sampled) / sampled:.2%}; {res.gap / res.lower:.2%}"),
                (f"{name}: stop; sub-intervals; evaluations; pieces",
                 f"{res.stop}; {res.n_subintervals}; {res.n_evaluations}; "
                 + ", ".join(f"{m} ×{res.piece_method.count(m)}" for m in dict.fromkeys(res.piece_method))),
                (f"{name}: time, bound", stats(tb)),
                (f"{name}: time, plain {args.points}-point evaluation", stats(tp)),
                (f"{name}: time ratio bound / plain (median)", f"{ratio:.1f}×"),
                (f"{name}: first call incl. compilation, bound / plain", f"{c1 - c0:.2f} s / {c2 - c1:.2f} s"),
            ]
            print(f"{name}: upper {res.upper:.6f} lower {res.lower:.6f} sampled {sampled:.6f} stop {res.stop} "
                  f"n {res.n_subintervals}; bound {statistics.median(tb):.3f} s vs plain {statistics.median(tp):.3f} s",
                  flush=True)
            if name.startswith("(c)"):
                continue
            bound(method="interval")  # compile
            ti = time.perf_counter()
            itv = bound(method="interval")
            ti = time.perf_counter() - ti
            curves_png[name + ", intervals"] = bound(method="interval", rtol=min(args.rtol, 1e-4)).history
            rows.append((f"{name}: plain intervals (same budget): upper; stop; sub-intervals; time",
                         f"{itv.upper:.6f}; {itv.stop}; {itv.n_subintervals}; {ti:.3f} s"))
        load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
        rows.append(("load average (1, 5, 15 min) after the run", load))

    png = args.png or (os.path.splitext(args.out)[0] + "_tightness.png" if args.out else "bench_bounds.png")
    plot(curves_png, png)
    rows.append(("tightness-vs-time figure", f"`{os.path.basename(png)}`"))
    emit(rows, max(ratios), args.out,
         header=("# bench_bounds: certified max-loss bounds over whole curves vs 121-point sampling\n\n"
                 "Certified = `stability.theory.bounds.max_loss_bound` / `proofs_check.path_bound` (Taylor models in t, "
                 "float64 with outward rounding; proved claims as exact shortcuts). Plain = one batched float64 "
                 "`evaluate` call at 121 points (per segment for the path); its maximum is a lower bound of the "
                 "true maximum. Times: median (min, max) of paired, alternated warm repeats; compilation "
                 "excluded (first calls reported). RATIO = largest bound/plain time ratio. Each block below is "
                 "one run; its heading is the command.\n"))


def plot(histories: dict[str, np.ndarray], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, h in histories.items():
        gap = np.maximum((h[:, 2] - h[:, 3]) / np.abs(h[:, 3]), 1e-16)
        style = "--" if "intervals" in name else "-"
        axes[0].loglog(h[:, 0], gap, style, marker=".", label=name)
        axes[1].loglog(np.maximum(h[:, 4], 1e-4), gap, style, marker=".", label=name)
    axes[0].set_xlabel("sub-interval budget (partition size after each round)")
    axes[1].set_xlabel("wall time of the bound so far [s]")
    for ax in axes:
        ax.set_ylabel("(certified upper − rigorous lower) / lower")
        ax.axhline(1e-2, color="grey", lw=0.8, ls=":")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Certified max-loss bound: relative gap vs budget and time (digits MLPs; dashed: plain intervals)",
                 fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
