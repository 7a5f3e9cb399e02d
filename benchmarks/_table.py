"""What the benchmark scripts share: timing (:func:`timed`, :func:`best_time`, and :func:`paired` — the two
sides alternated in pairs, the median of the per-pair ratios with its min/max), the machine and its load
(:func:`machine_load`), the per-point baseline loops (:func:`per_point_means`, :func:`point_loop`,
:func:`best_batch`), and the output (:func:`emit`: print the result table and the ratio, and append the table to
a markdown file under a heading that names the command and date)."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any, Callable, Iterable, Sequence

import jax
import numpy as np


def timed(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, float, Any]:
    """``(first call's seconds incl. compilation, best of repeats more warm calls, last result)``; every result
    is blocked on (``jax.block_until_ready``) before the clock stops."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return first, best, out


def best_time(fn: Callable[[], Any], repeats: int = 3) -> float:
    """Best wall time of ``repeats`` warm calls of ``fn`` (after one warm-up / compile call)."""
    return timed(fn, repeats)[1]


def per_point_means(batch_sums: Callable[[Any, Any, Any], tuple[Any, Any]], points: Iterable[Any], x: Any, y: Any,
                    batch: int) -> tuple[np.ndarray, np.ndarray]:
    """The one-point-at-a-time baseline: for each weight point, ``batch_sums(params, xs, ys)`` (summed loss,
    correct count) over batches of ``batch``, read back per batch; mean loss and accuracy per point."""
    losses, accs = [], []
    for params in points:
        ls = ac = 0.0
        for s in range(0, x.shape[0], batch):
            l, c = batch_sums(params, x[s:s + batch], y[s:s + batch])
            ls += float(l)
            ac += float(c)
        losses.append(ls / x.shape[0])
        accs.append(ac / x.shape[0])
    return np.array(losses), np.array(accs)


def emit(rows: list[tuple[str, str]], ratio: float, out: str | None, header: str | None = None) -> str:
    """Print ``rows`` as a markdown table and ``RATIO``; append to ``out`` (``header`` first if it is new)."""
    table = "\n".join(["| quantity | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])
    print(table)
    print(f"RATIO {ratio:.2f}")
    if out:
        cmd = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])
        new = not os.path.exists(out)
        with open(out, "a") as f:
            if new and header:
                f.write(header)
            f.write(f"\n### {time.strftime('%Y-%m-%d')} — `{cmd}`\n\n{table}\n")
    return table


# --------------------------------------------------------------------------- paired measurement


def load_average() -> str:
    """``os.getloadavg()`` as ``"1-min, 5-min, 15-min"`` (the machine is shared: the load says how much)."""
    return ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def machine_load() -> tuple[str, str]:
    """``(machine, load average)`` for a table."""
    from stability.app.report import machine_description

    return machine_description(), load_average()


@dataclasses.dataclass
class Paired:
    """Wall times of two sides measured in alternating pairs (order swapped every pair) after warm-up calls."""

    a: list[float]
    b: list[float]
    load_before: str
    load_after: str

    @property
    def ratios(self) -> np.ndarray:
        """Per-pair ``b / a`` (> 1: side a is faster)."""
        return np.asarray(self.b) / np.asarray(self.a)

    @property
    def ratio(self) -> float:
        return float(np.median(self.ratios))

    def ratio_text(self, digits: int = 2) -> str:
        r = self.ratios
        return f"{np.median(r):.{digits}f}× (min {r.min():.{digits}f}, max {r.max():.{digits}f}; {r.size} pairs)"

    def time_text(self, side: str) -> str:
        v = np.asarray(self.a if side == "a" else self.b)
        return f"{np.median(v):.3f} s (median of {v.size}; min {v.min():.3f}, max {v.max():.3f})"

    @property
    def load(self) -> str:
        return f"{self.load_before} before, {self.load_after} after"


def paired(a: Callable[[], Any], b: Callable[[], Any], pairs: int = 7, warmup: int = 1) -> Paired:
    """Time ``a`` and ``b`` alternately: ``warmup`` calls of each (compilation), then ``pairs`` pairs, the order
    swapped every pair (a b, b a, …) so slow drifts of a shared machine hit both sides alike. Every result is
    blocked on before the clock stops."""
    if pairs < 1:
        raise ValueError(f"pairs must be >= 1, got {pairs}")
    for _ in range(warmup):
        jax.block_until_ready(a())
        jax.block_until_ready(b())
    before = load_average()
    ta, tb = [], []
    for k in range(pairs):
        for side in ((a, ta), (b, tb)) if k % 2 == 0 else ((b, tb), (a, ta)):
            t0 = time.perf_counter()
            jax.block_until_ready(side[0]())
            side[1].append(time.perf_counter() - t0)
    return Paired(ta, tb, before, load_average())


def point_loop(point: Callable[[Any], Any], batch_sums: Callable[[Any, Any, Any], tuple[Any, Any]],
               thetas: Sequence[Any], x: Any, y: Any, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """The per-point loop a competent user writes: per point a jitted ``point(theta)``, then jitted
    ``batch_sums(params, xs, ys)`` over batches of ``batch`` summed ON the device, read back once per point."""
    n = x.shape[0]
    xs = [x[s:s + batch] for s in range(0, n, batch)]
    ys = [y[s:s + batch] for s in range(0, n, batch)]
    losses, accs = [], []
    for th in thetas:
        params = point(th)
        tot = [batch_sums(params, u, v) for u, v in zip(xs, ys)]
        losses.append(sum(t[0] for t in tot))
        accs.append(sum(t[1] for t in tot))
    return np.asarray(jax.device_get(losses)) / n, np.asarray(jax.device_get(accs)) / n


def best_batch(run: Callable[[int], Any], candidates: Sequence[int], repeats: int = 2) -> tuple[int, dict[int, float]]:
    """The batch size among ``candidates`` with the smallest median time of ``run(batch)`` (after a warm-up call
    each); returns it and every candidate's time."""
    times = {}
    for b in candidates:
        jax.block_until_ready(run(b))
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(run(b))
            ts.append(time.perf_counter() - t0)
        times[b] = float(np.median(ts))
    return min(times, key=times.get), times


def matmul_tflops(n: int, repeats: int = 3) -> float:
    """Plain FP32 ``n × n`` matmul throughput of this device in this run (TFLOP/s)."""
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    f = jax.jit(lambda a: a @ a)
    return 2 * n**3 / best_time(lambda: f(a), repeats) / 1e12
