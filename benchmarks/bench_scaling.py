"""Benchmark: the same workloads on 1, 2 and 4 devices (stability.core.mesh) — evaluate along a segment, fit
(data parallel), cushions.measure — each sharded run paired with the one-device run (alternated, median of
the per-pair time ratios with min/max) and its largest difference from the one-device result.

    python benchmarks/bench_scaling.py [--n 2048] [--width 256] [--steps 50] [--pairs 5] [--devices 1,2,4]
                                       [--out benchmarks/results/bench_scaling_cpu.md]

On a CPU the script re-launches itself with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (forced host
devices share the CPU's cores: the table shows correctness and overhead, not speed-up). On a machine with
several GPUs it uses the real devices.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

HEADER = ("# Scaling over devices (benchmarks/bench_scaling.py)\n\nEach row: a sharded run against the one-device "
          "run of the same call (paired, alternated; time ratio sharded / one device, median with min/max) and the "
          "largest difference of its results. On a CPU the devices are forced host devices sharing the cores "
          "(2-core CPU, forced host devices: correctness/overhead, not speed-up).\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048, help="samples (evaluation, training set)")
    ap.add_argument("--width", type=int, default=256, help="hidden width of the 2-hidden-layer MLP")
    ap.add_argument("--steps", type=int, default=50, help="training steps per fit")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--devices", default="1,2,4")
    ap.add_argument("--out")
    args = ap.parse_args()
    counts = [int(c) for c in args.devices.split(",")]
    import jax

    if jax.default_backend() == "cpu" and jax.device_count() < max(counts) and "_STABILITY_BENCH_CHILD" not in os.environ:
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={max(counts)}",
                   _STABILITY_BENCH_CHILD="1")
        sys.exit(subprocess.call([sys.executable] + sys.argv, env=env))
    run(args, counts)


def run(args: argparse.Namespace, counts: list[int]) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from stability.core import mesh as M
    from stability.core import nets
    from stability.core.evaluate import evaluate_line
    from stability.core.train import TrainConfig, fit
    from stability.theory import cushions

    from _table import emit, machine_load, paired

    rng = np.random.default_rng(0)
    d_in, w = 64, args.width
    x = jnp.asarray(rng.normal(size=(args.n, d_in)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, args.n))
    a = nets.mlp(jax.random.PRNGKey(0), [d_in, w, w, 10])
    b = nets.mlp(jax.random.PRNGKey(1), [d_in, w, w, 10])
    batch = 256
    cfg = TrainConfig(steps=args.steps, batch_size=64, optimizer="momentum", lr=0.05, log_every=args.steps)
    n_cush = min(args.n, 64)
    work = {
        "evaluate (segment, 17 points)": lambda m: evaluate_line(a, b, 17, x, y, batch_size=batch, mesh=m).loss,
        f"fit ({args.steps} momentum steps, batch 64)": lambda m: jax.tree_util.tree_leaves(
            fit(a, x, y, cfg, progress=False, mesh=m)[0]),
        f"cushions.measure ({n_cush} samples)": lambda m: cushions.measure(
            nets.mlp(jax.random.PRNGKey(2), [d_in, 32, 32, 10]), x[:n_cush], jax.random.PRNGKey(3), batch_size=32,
            draws=2, progress=False, mesh=m).layer_cushion,
    }
    machine, load = machine_load()
    rows = [("machine", machine), ("backend", f"{jax.default_backend()}, {jax.device_count()} devices"
                                  + (" (forced host devices sharing the cores)" if jax.default_backend() == "cpu" else "")),
            ("load before", load), ("sizes", f"n {args.n}, MLP {d_in}-{w}-{w}-10, eval batch {batch}")]
    ratio = 1.0
    for name, fn in work.items():
        ref = fn(None)
        for d in counts:
            if d == 1:
                continue
            mesh = M.make_mesh(d)
            got = fn(mesh)
            diff = max(float(np.max(np.abs(np.asarray(M.to_host(u), np.float64) - np.asarray(v, np.float64))))
                       for u, v in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(ref)))
            p = paired(lambda: fn(None), lambda: fn(mesh), pairs=args.pairs)
            ratio = p.ratio
            rows.append((f"{name}, {d} devices", f"time ratio {p.ratio_text()}; one device "
                         f"{p.time_text('a')}; max |Δ result| {diff:.2e}; load {p.load}"))
    emit(rows, ratio, args.out, HEADER)


if __name__ == "__main__":
    main()
