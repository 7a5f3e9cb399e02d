"""Benchmark: 121 points on the straight line between two MLPs over a dataset.

Ours: ``stability.core.evaluate.evaluate_line`` (vmap over a chunk of points, ``lax.scan`` over
data batches, one compiled program). Baseline, in the same process: a per-point Python loop
that materialises each point and runs a jitted batch-``--baseline-batch`` forward pass over
the data (what one-point-at-a-time scripts do). Also measures the FP32 matmul throughput
the device reaches in this run, and the fraction of it our evaluation achieves.

    python benchmarks/bench_evaluate.py [--n 10000] [--width 1024] [--depth 3] [--out FILE.md]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from stability.core import nets
from stability.core.evaluate import evaluate_line
from stability.core.losses import accuracy, cross_entropy
from stability.app.report import machine_description

from _table import best_time, emit, per_point_means


def baseline(a, b, ts, x, y, batch: int) -> tuple[np.ndarray, np.ndarray]:
    @jax.jit
    def point(a, b, t):
        return nets.lerp(a, b, t)

    @jax.jit
    def batch_sums(net, xs, ys):
        out = nets.apply(net, xs)
        return jnp.sum(cross_entropy(out, ys)), jnp.sum(accuracy(out, ys))

    return per_point_means(batch_sums, (point(a, b, jnp.float32(t)) for t in ts), x, y, batch)


def matmul_tflops(n: int) -> float:
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    f(a).block_until_ready()
    secs = best_time(lambda: f(a).block_until_ready())
    return 2 * n**3 / secs / 1e12


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None, help="samples (default 4096 on CPU, 60000 on GPU)")
    ap.add_argument("--width", type=int, default=None, help="hidden width (default 256 CPU, 1024 GPU)")
    ap.add_argument("--depth", type=int, default=3, help="hidden layers")
    ap.add_argument("--points", type=int, default=121)
    ap.add_argument("--baseline-batch", type=int, default=128)
    ap.add_argument("--out", help="append the result table to this markdown file")
    args = ap.parse_args()
    gpu = jax.devices()[0].platform == "gpu"
    n = args.n or (60000 if gpu else 4096)
    width = args.width or (1024 if gpu else 256)
    d_in, classes = 784, 10
    sizes = (d_in,) + (width,) * args.depth + (classes,)
    a = nets.mlp(jax.random.PRNGKey(1), sizes)
    b = nets.mlp(jax.random.PRNGKey(2), sizes)
    x = jax.random.normal(jax.random.PRNGKey(3), (n, d_in), jnp.float32)
    y = jax.random.randint(jax.random.PRNGKey(4), (n,), 0, classes)
    ts = np.linspace(0, 1, args.points)
    print(f"machine: {machine_description()}; MLP {sizes}; {n} samples; {args.points} points", flush=True)

    ours_res = evaluate_line(a, b, ts, x, y)
    t_ours = best_time(lambda: evaluate_line(a, b, ts, x, y))
    print(f"ours: {t_ours:.3f} s", flush=True)
    base_res = baseline(a, b, ts, x, y, args.baseline_batch)
    t_base = best_time(lambda: baseline(a, b, ts, x, y, args.baseline_batch), repeats=1)
    print(f"baseline (per-point loop, batch {args.baseline_batch}): {t_base:.3f} s", flush=True)
    err = float(np.max(np.abs(ours_res.loss - base_res[0]) / np.maximum(1.0, np.abs(base_res[0]))))
    assert err < 1e-4, f"results disagree: max rel err {err}"
    flops = 2 * n * args.points * sum(i * o for i, o in zip(sizes[:-1], sizes[1:]))
    ours_tflops = flops / t_ours / 1e12
    peak = matmul_tflops(8192 if gpu else 2048)
    rows = [
        ("machine", machine_description()),
        ("net / data", f"MLP {'-'.join(map(str, sizes))}, {n} samples, {args.points} points"),
        ("ours (vmap points × scan batches)", f"{t_ours:.3f} s"),
        (f"baseline: per-point loop, batch {args.baseline_batch}", f"{t_base:.3f} s"),
        ("speed-up", f"{t_base / t_ours:.1f}×"),
        ("ours, achieved FP32 TFLOP/s", f"{ours_tflops:.2f}"),
        ("plain FP32 matmul TFLOP/s, same run", f"{peak:.2f}"),
        ("fraction of matmul throughput", f"{100 * ours_tflops / peak:.0f}%"),
        ("max rel. difference of losses", f"{err:.1e}"),
    ]
    emit(rows, t_base / t_ours, args.out)


if __name__ == "__main__":
    main()
