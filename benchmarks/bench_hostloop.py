"""Benchmark: a conv net's training step and forward pass inside ``lax.scan`` / ``lax.map`` vs the same
jitted step called from a Python loop — the measurement behind :mod:`stability.core.hostloop`.

    python benchmarks/bench_hostloop.py [--channels 16,32] [--batch 128] [--steps 20] [--out FILE.md]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from stability.core import nets
from stability.core.losses import cross_entropy
from stability.app.report import machine_description

from _table import best_time, emit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", default="16,32")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out")
    args = ap.parse_args()
    ch = tuple(int(c) for c in args.channels.split(","))
    net = nets.conv(jax.random.PRNGKey(0), (28, 28, 1), ch, 10, pool="max", dense=(128,))
    rng = np.random.default_rng(0)
    n = args.batch * args.steps
    X = jnp.asarray(rng.normal(size=(n, 28, 28, 1)), jnp.float32)
    Y = jnp.asarray(rng.integers(0, 10, n))
    idx = jnp.asarray(rng.permutation(n).reshape(args.steps, args.batch))

    def lossf(p, xs, ys):
        return cross_entropy.mean(nets.apply(p, xs), ys)

    def step(p, bi, X, Y):
        g = jax.grad(lossf)(p, X[bi], Y[bi])
        return jax.tree_util.tree_map(lambda a, b: a - 0.01 * b, p, g)

    scan_steps = jax.jit(lambda p, idx, X, Y: jax.lax.scan(lambda c, bi: (step(c, bi, X, Y), None), p, idx)[0])
    one = jax.jit(step)

    def loop_steps():
        p = net
        for i in range(args.steps):
            p = one(p, idx[i], X, Y)
        return p

    t_scan = best_time(lambda: scan_steps(net, idx, X, Y)) / args.steps
    t_loop = best_time(loop_steps) / args.steps
    xs = X.reshape(args.steps, args.batch, 28, 28, 1)
    fwd_map = jax.jit(lambda p, xs: jax.lax.map(lambda xb: nets.apply(p, xb), xs))
    fwd = jax.jit(nets.apply)
    f_map = best_time(lambda: fwd_map(net, xs)) / args.steps
    f_loop = best_time(lambda: [fwd(net, xs[i]) for i in range(args.steps)][-1]) / args.steps
    rows = [("machine", machine_description()), ("net", f"conv {ch} + dense 128, 28×28×1, batch {args.batch}"),
            ("train step inside lax.scan (s)", f"{t_scan:.4f}"), ("train step, Python loop of jitted steps (s)",
                                                                  f"{t_loop:.4f}"),
            ("forward batch inside lax.map (s)", f"{f_map:.4f}"), ("forward batch, Python loop (s)", f"{f_loop:.4f}"),
            ("forward ratio map / loop", f"{f_map / f_loop:.2f}")]
    emit(rows, t_scan / t_loop, args.out,
         header="# bench_hostloop: conv nets inside lax.scan vs a Python loop of jitted steps\n\n"
                "RATIO = train step inside lax.scan / train step from a Python loop (> 1: the loop is faster).\n")


if __name__ == "__main__":
    main()
