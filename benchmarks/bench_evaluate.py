"""Benchmark: the algebraic evaluator against the per-point loop a competent user writes, in paired medians.

Rows (CPU defaults): 121 points on the straight line between two MLPs 784-256-256-256-10, 121 points on a
1-bend Bezier curve, a 21×21 plane through three MLPs (4,096 samples each), and a conv-net line. Ours:
``stability.core.evaluate.evaluate`` with the point function's declared combination (first layer once per
control point, combined per point; ``algebra="auto"``). Baselines, in the same process, on the same points:
a per-point Python loop — a jitted point function, then a jitted forward + loss + accuracy per data batch
summed on the device and read back once per point — at its BEST batch size (searched over ``--batches``
on a subset of the points) and at batch 128; and the structure-blind vectorised evaluator (``algebra="off"``).
Every comparison alternates the two sides in ``--pairs`` pairs after a warm-up call each and reports the
median of the per-pair ratios with its min/max, the machine and its load average before and after.

The ideal speed-up of the algebra is ``1 / (1 − s)``, ``s`` the first layer's share of the forward FLOPs (the
first layer is computed once per control point instead of once per point; the rest is unchanged).

    python benchmarks/bench_evaluate.py [--rows line,bezier,plane,conv] [--pairs 7] [--out FILE.md]
    python benchmarks/bench_evaluate.py --anchor [--precisions fp32,tf32,bf16]   # GPU: 784-1024³-10, 60,000 inputs
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from stability.core import nets
from stability.core.evaluate import evaluate, line_point
from stability.core.losses import accuracy, cross_entropy
from stability.curves import curve as curves
from stability.curves import planes

from _table import best_batch, emit, machine_load, matmul_tflops, paired, point_loop

D_IN, CLASSES = 784, 10


def layer_macs(arch: nets.Arch) -> list[int]:
    """Multiply-adds per sample of every layer of a net (same-padded convs at their input resolution)."""
    out, (h, w) = [], arch.in_shape[:2] if arch.n_conv else (1, 1)
    for l, (kind, shape) in enumerate(zip(arch.kinds, arch.weight_shapes())):
        if kind == "conv":
            out.append(h * w * int(np.prod(shape)))
            if arch.pool[l] is not None:
                h, w = h // 2, w // 2
        else:
            out.append(int(np.prod(shape)))
    return out


def ideal(arch: nets.Arch) -> tuple[float, float]:
    """``(first-layer FLOP share s, ideal speed-up 1/(1 − s))``."""
    m = layer_macs(arch)
    s = m[0] / sum(m)
    return s, 1.0 / (1.0 - s)


@jax.jit
def _batch_sums(net: nets.Net, xs, ys):
    out = nets.apply(net, xs)
    return jnp.sum(cross_entropy(out, ys)), jnp.sum(accuracy(out, ys))


@dataclasses.dataclass
class Row:
    name: str
    arch: nets.Arch
    point_fn: Callable
    theta: Any
    ts: np.ndarray
    x: Any
    y: Any


def make_rows(names: list[str], n: int, width: int, depth: int, conv_n: int, conv_points: int) -> list[Row]:
    sizes = (D_IN,) + (width,) * depth + (CLASSES,)
    mk = [nets.mlp(jax.random.PRNGKey(s), sizes) for s in (1, 2, 5)]
    x = jax.random.normal(jax.random.PRNGKey(3), (n, D_IN), jnp.float32)
    y = jax.random.randint(jax.random.PRNGKey(4), (n,), 0, CLASSES)
    rows = []
    for name in names:
        if name == "line":
            rows.append(Row("line, 121 points", mk[0].arch, line_point, (mk[0], mk[1]), np.linspace(0, 1, 121), x, y))
        elif name == "bezier":
            cv = curves.perturb_bends(curves.bezier(mk[0], mk[1], 1), jax.random.PRNGKey(7), 0.01)
            rows.append(Row("Bezier, 1 bend, 121 points", mk[0].arch, curves.curve_point, cv, np.linspace(0, 1, 121),
                            x, y))
        elif name == "plane":
            p = planes.plane(*mk)
            lo, hi = p.coords.min(0), p.coords.max(0)
            A, B = np.meshgrid(np.linspace(lo[0], hi[0], 21), np.linspace(lo[1], hi[1], 21))
            grid = np.stack([A.ravel(), B.ravel()], 1)
            theta = (p.origin, p.u, p.v, jnp.asarray(grid, p.origin.dtype), p.unravel(p.origin))
            rows.append(Row("plane, 21×21 = 441 points", mk[0].arch, planes.plane_grid_point, theta,
                            np.arange(441, dtype=np.float64), x, y))
        elif name == "conv":
            ca = nets.conv(jax.random.PRNGKey(11), (28, 28, 1), (16, 32), CLASSES, pool="max", dense=(128,))
            cb = nets.conv(jax.random.PRNGKey(12), (28, 28, 1), (16, 32), CLASSES, pool="max", dense=(128,))
            xc = jax.random.normal(jax.random.PRNGKey(13), (conv_n, 28, 28, 1), jnp.float32)
            yc = jax.random.randint(jax.random.PRNGKey(14), (conv_n,), 0, CLASSES)
            rows.append(Row(f"conv line, {conv_points} points", ca.arch, line_point, (ca, cb),
                            np.linspace(0, 1, conv_points), xc, yc))
        else:
            raise SystemExit(f"unknown row {name!r}; known: line, bezier, plane, conv")
    return rows


def arch_text(arch: nets.Arch) -> str:
    if arch.n_conv:
        return (f"conv {'×'.join(map(str, arch.in_shape))} → {' → '.join(map(str, arch.widths[:arch.n_conv]))} "
                f"(3×3, max pool each) → dense {'-'.join(map(str, arch.widths[arch.n_conv:]))}")
    return "MLP " + "-".join(map(str, (arch.in_shape[0],) + arch.widths))


def measure_row(r: Row, args, precision: str = "fp32") -> tuple[list[tuple[str, str]], float]:
    point = jax.jit(functools.partial(r.point_fn, r.theta))
    dtype = jax.tree_util.tree_leaves(r.theta)[0].dtype
    thetas = [jnp.asarray(t, dtype) for t in r.ts]
    n = r.x.shape[0]
    cands = [b for b in args.batches if b <= n] or [n]
    sub = thetas[:: max(1, len(thetas) // 11)]
    best, cand_times = best_batch(lambda b: point_loop(point, _batch_sums, sub, r.x, r.y, b)[0], cands)
    ours = lambda: evaluate(r.point_fn, r.theta, r.ts, r.x, r.y, precision=precision).loss
    loop_best = lambda: point_loop(point, _batch_sums, thetas, r.x, r.y, best)[0]
    res = evaluate(r.point_fn, r.theta, r.ts, r.x, r.y, precision=precision)
    ref, _ = point_loop(point, _batch_sums, thetas, r.x, r.y, best)
    err = float(np.max(np.abs(res.loss - ref) / np.maximum(1.0, np.abs(ref))))
    p_best = paired(ours, loop_best, args.pairs)
    share, ideal_x = ideal(r.arch)
    rows = [
        ("row", r.name),
        ("net / data", f"{arch_text(r.arch)}; {n} samples; {len(r.ts)} points; precision {precision}"),
        ("load average before / after (1, 5, 15 min)", p_best.load),
        ("per-point loop: batch-size search (s for every 11th point)",
         ", ".join(f"{b}: {t:.3f}" for b, t in cand_times.items()) + f" → best {best}"),
        ("ours: `evaluate` (algebra)", p_best.time_text("a")),
        (f"baseline: per-point loop at its best batch ({best})", p_best.time_text("b")),
        ("**speed-up vs best-batch loop (median of per-pair ratios)**", p_best.ratio_text()),
        ("first-layer FLOP share s → ideal speed-up 1/(1 − s)", f"{share:.3f} → {ideal_x:.2f}×"),
        ("**fraction of the ideal (median ratio / ideal)**", f"{100 * p_best.ratio / ideal_x:.0f}%"),
        ("max rel. loss difference vs the loop", f"{err:.1e}"),
    ]
    if not args.anchor:
        loop128 = lambda: point_loop(point, _batch_sums, thetas, r.x, r.y, min(128, n))[0]
        p128 = paired(ours, loop128, args.pairs)
        off = lambda: evaluate(r.point_fn, r.theta, r.ts, r.x, r.y, algebra="off").loss
        p_off = paired(ours, off, args.pairs)
        rows[6:6] = [(f"baseline: per-point loop at batch {min(128, n)}", p128.time_text("b")),
                     (f"speed-up vs batch-{min(128, n)} loop", p128.ratio_text()),
                     ("structure-blind vectorised evaluator (`algebra=\"off\"`)", p_off.time_text("b")),
                     ("speed-up vs the structure-blind evaluator", p_off.ratio_text())]
    flops = 2 * n * len(r.ts) * sum(layer_macs(r.arch))
    ours_med = float(np.median(p_best.a))
    rows.append(("per-point-equivalent FLOPs / our time (TFLOP/s)", f"{flops / ours_med / 1e12:.3f}"))
    if precision != "fp32":
        rows[-2] = (f"max rel. loss difference vs the FP32 loop ({precision} matmuls, FP32 accumulation)", f"{err:.1e}")
    elif err > 1e-4:
        raise SystemExit(f"results disagree: max rel. loss difference {err:.1e}")
    return rows, p_best.ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="line,bezier,plane,conv")
    ap.add_argument("--n", type=int, default=None, help="samples (default 4096; 60000 with --anchor)")
    ap.add_argument("--width", type=int, default=None, help="hidden width (default 256; 1024 with --anchor)")
    ap.add_argument("--depth", type=int, default=3, help="hidden layers")
    ap.add_argument("--conv-n", type=int, default=1024, help="samples of the conv row")
    ap.add_argument("--conv-points", type=int, default=41)
    ap.add_argument("--batches", default="128,256,512,1024,2048,4096,8192",
                    help="candidate batch sizes of the per-point loop")
    ap.add_argument("--pairs", type=int, default=7)
    ap.add_argument("--anchor", action="store_true",
                    help="the GPU anchor: 121 points between two 784-1024-1024-1024-10 MLPs over 60,000 inputs")
    ap.add_argument("--precisions", default="fp32", help="with --anchor: comma-separated of fp32, tf32, bf16")
    ap.add_argument("--out", help="append the result tables to this markdown file")
    args = ap.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    machine, load = machine_load()
    peak = matmul_tflops(8192 if jax.default_backend() == "gpu" else 2048)
    print(f"machine: {machine}; load {load}; plain FP32 matmul {peak:.3f} TFLOP/s", flush=True)
    if args.anchor:
        rows = make_rows(["line"], args.n or 60000, args.width or 1024, args.depth, 0, 0)
        runs = [(rows[0], p) for p in args.precisions.split(",")]
    else:
        rows = make_rows(args.rows.split(","), args.n or 4096, args.width or 256, args.depth, args.conv_n,
                         args.conv_points)
        runs = [(r, "fp32") for r in rows]
    for r, prec in runs:
        table, ratio = measure_row(r, args, prec)
        table = [("machine", machine), ("plain FP32 matmul, this run (TFLOP/s)", f"{peak:.3f}")] + table
        emit(table, ratio, args.out, header=HEADER)


HEADER = """# bench_evaluate: the algebraic evaluator against the per-point loop (paired medians)

Ours = `stability.core.evaluate.evaluate` with the point function's declared combination of control points
(the first layer's pre-activations once per control point, combined per point). Baselines in the same process:
the per-point loop at its best batch size (searched) and at batch 128, and the structure-blind vectorised
evaluator (`algebra="off"`). Each comparison: 7 alternating pairs after a warm-up call each; the speed-up is
the median of the per-pair ratios (min/max beside it). The ideal speed-up is 1/(1 − s), s the first layer's share
of the forward FLOPs. Each block below is one row of one run; its heading is the command.
"""


if __name__ == "__main__":
    main()
