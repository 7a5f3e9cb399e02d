"""What the benchmark scripts share: timing (:func:`timed`, :func:`best_time`), the per-point baseline
loop (:func:`per_point_means`), and the output (:func:`emit`: print the result table and the ratio, and
append the table to a markdown file under a heading that names the command and date)."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Iterable

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
