"""Benchmark: evaluating a whole Theorem 1 path (every segment, ≥ 61 points each) on the digits data.

Ours: ``Path.evaluate`` — the way points stacked into one net and ONE jitted, vmapped
``stability.core.evaluate.evaluate`` call with the module-level point function ``path_point``.
Baseline, in the same process: a per-point Python loop that materialises each point with a
jitted ``lerp`` of the segment's end points and calls a jitted ``stability.apply`` + loss +
accuracy on the whole data set (what a script evaluating one net at a time does).
Compilation is excluded from both (one warm-up call each); results must agree.

    python benchmarks/bench_paths.py [--points 61] [--widths 64,64] [--literal] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from stability.theory import dropout
from stability.core import nets
from stability import apply
from stability.core.losses import accuracy, cross_entropy
from stability.theory.paths import Path, theorem1
from stability.app.report import machine_description

from _table import emit, timed


def digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from stability import data
        ds = data.load("digits")
        return ds.x_train, ds.y_train
    except ImportError:  # pragma: no cover
        from sklearn.datasets import load_digits
        x, y = load_digits(return_X_y=True)
        return (x / 16.0).astype(np.float32), y.astype(np.int32)


def baseline(path: Path, t: np.ndarray, x, y) -> tuple[np.ndarray, np.ndarray]:
    """Per-point Python loop: jitted lerp + jitted apply/loss/accuracy at every t of every segment."""
    lerp = jax.jit(nets.lerp)

    @jax.jit
    def metrics(net, xs, ys):
        out = apply(net, xs)
        return jnp.mean(cross_entropy(out, ys)), jnp.mean(accuracy(out, ys))

    loss = np.empty((path.n_segments, t.size))
    acc = np.empty_like(loss)
    for k, seg in enumerate(path.segments):
        for j, tj in enumerate(t):
            l, a = metrics(lerp(seg.start, seg.end, jnp.float32(tj)), x, y)
            loss[k, j], acc[k, j] = float(l), float(a)
    return loss, acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=61, help="points per segment (≥ 61 for the committed table)")
    ap.add_argument("--widths", default="64,64", help="hidden widths of the two MLPs")
    ap.add_argument("--literal", action="store_true",
                    help="literal Lemma 1 paths (6d−10) instead of compact (4d−6)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", help="append the result table to this markdown file")
    args = ap.parse_args()
    widths = tuple(int(w) for w in args.widths.split(","))
    x_np, y_np = digits()
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    sizes = (x.shape[1],) + widths + (10,)
    a = nets.mlp(jax.random.PRNGKey(0), sizes)
    b = nets.mlp(jax.random.PRNGKey(1), sizes)
    ka = dropout.fixed_count(a, 0.5, jax.random.PRNGKey(2))
    kb = dropout.fixed_count(b, 0.5, jax.random.PRNGKey(3))
    path = theorem1(a, ka, b, kb, compact=not args.literal)
    n_points = path.n_segments * args.points
    print(f"machine: {machine_description()}; MLP {sizes}; {x.shape[0]} digits samples; Theorem 1 "
          f"({'literal' if args.literal else 'compact'}) {path.n_segments} segments × {args.points} points "
          f"= {n_points} points", flush=True)

    t_first, best, ours = timed(lambda: path.evaluate(x, y, args.points), args.repeats)
    print(f"ours: {best:.3f} s (first call incl. compilation {t_first:.3f} s)", flush=True)

    t = np.linspace(0.0, 1.0, args.points)
    baseline(Path(path.segments[:1]), t[:2], x, y)  # warm-up: compile lerp and the metrics
    t0 = time.perf_counter()
    base_loss, base_acc = baseline(path, t, x, y)
    t_base = time.perf_counter() - t0
    print(f"baseline (per-point loop): {t_base:.3f} s", flush=True)
    err = float(np.max(np.abs(ours.loss - base_loss) / np.maximum(1.0, np.abs(base_loss))))
    acc_err = float(np.max(np.abs(ours.acc - base_acc)))
    assert err < 1e-4 and acc_err < 1e-3, f"results disagree: loss rel err {err}, acc err {acc_err}"
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    rows = [
        ("machine", machine_description()),
        ("load average (1, 5, 15 min) after the run", load),
        ("net / data", f"MLP {'-'.join(map(str, sizes))}, {x.shape[0]} digits train samples"),
        ("path", f"Theorem 1 ({'literal' if args.literal else 'compact'}), {path.n_segments} segments × "
                 f"{args.points} points = {n_points} points"),
        ("ours: `Path.evaluate` (one batched call)", f"{best:.3f} s"),
        ("ours, first call incl. compilation", f"{t_first:.3f} s"),
        ("baseline: per-point loop (jitted lerp + jitted apply)", f"{t_base:.3f} s"),
        ("speed-up", f"{t_base / best:.1f}×"),
        ("points per second, ours / baseline", f"{n_points / best:.0f} / {n_points / t_base:.0f}"),
        ("max rel. difference of losses", f"{err:.1e}"),
    ]
    emit(rows, t_base / best, args.out,
         header=("# bench_paths: a whole Theorem 1 path on the digits data\n\n"
                 "Ours = `Path.evaluate` (way points stacked, one jitted `evaluate` call with the point "
                 "function "
                 "`path_point`, vmap over points × scan over data batches). Baseline = a per-point Python loop "
                 "with a jitted `lerp` and a jitted `stability.apply` + loss on the whole data set, in the same "
                 "process. Compilation excluded from both (reported separately for ours). Each block below "
                 "is one run; its heading is the command.\n"))


if __name__ == "__main__":
    main()
