"""How fast this machine is right now: the CPU seconds of a fixed single-threaded workload (a pure-Python loop and
small NumPy matrix products). On a shared or throttled machine the same workload takes more CPU time; quote the
probe beside a timing that is compared across runs (README "Tests": the suite's time on the same code varied by
±15% on one 2-core machine).

    python benchmarks/machine_probe.py [--repeats 3] [--scale 1.0]

Prints one line per repeat and the median, in CPU seconds (``time.process_time``). At ``--scale 1`` one 2-core
x86_64 machine read between 1.1 and 2.6 s over one morning (2026-11-30), with nothing else running on it."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before NumPy loads its BLAS
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402


def probe(scale: float = 1.0) -> float:
    """CPU seconds of the fixed workload, ``scale`` times its default size."""
    t = time.process_time()
    s = 0
    for i in range(int(12_000_000 * scale)):
        s += i * i % 7
    a = np.random.default_rng(0).random((200, 200))
    for _ in range(int(1200 * scale)):
        a = np.tanh(a @ a.T / 200)
    return time.process_time() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="runs of the workload (≥ 1; the median is printed)")
    ap.add_argument("--scale", type=float, default=1.0, help="size of the workload relative to the default (> 0)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error(f"--repeats must be ≥ 1, got {args.repeats}")
    if not args.scale > 0:
        ap.error(f"--scale must be > 0, got {args.scale}")
    runs = [probe(args.scale) for _ in range(args.repeats)]
    for r in runs:
        print(f"probe {r:.2f} CPU-s")
    print(f"median {statistics.median(runs):.2f} CPU-s (scale {args.scale:g}, {args.repeats} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
