"""When to drive a loop from Python instead of ``lax.scan`` (a measured XLA:CPU limitation).

XLA's CPU backend runs convolutions inside a compiled while loop (``lax.scan`` / ``lax.map``)
far slower than the same convolution at the top level of a jitted program: on a 2-core CPU a
training step of a small MNIST conv net took 0.29 s inside ``lax.scan`` against 0.025 s as a
jitted step called from Python (11.7×), and a forward pass over a batch 0.043 s against 0.0066 s
(``benchmarks/bench_hostloop.py``, table in ``benchmarks/results/bench_hostloop_cpu.md``).
Convolutions vmapped over a stack of kernels (many weight points at once) are slow there too, so
the evaluator also loops over points. Dense nets do not suffer from it, and GPUs do not either. So
on CPU, for parameter pytrees that hold a 4-D leaf (a conv kernel), :func:`fit`, curve training and
the batched evaluator step through minibatches with one jitted call each; everywhere else they
keep the single compiled ``lax.scan`` program.

``STABILITY_HOST_LOOP=1`` / ``=0`` forces the choice (tests compare both paths).
"""

from __future__ import annotations

import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["use_host_loop", "run_steps"]


def use_host_loop(params: Any) -> bool:
    """True on the CPU backend when ``params`` holds a conv kernel (a 4-D leaf), or when forced by env."""
    forced = os.environ.get("STABILITY_HOST_LOOP")
    if forced is not None and forced.strip() != "":
        if forced.strip() not in ("0", "1"):
            raise ValueError(f"STABILITY_HOST_LOOP must be 0 or 1, got {forced!r}")
        return forced.strip() == "1"
    if jax.default_backend() != "cpu":
        return False
    return any(np.ndim(leaf) == 4 for leaf in jax.tree_util.tree_leaves(params))


def run_steps(block: Callable[[Any, Any], tuple[Any, Any]], step: Callable[[Any, Any], tuple[Any, Any]],
              carry: Any, xs: Any, host_loop: bool) -> tuple[Any, Any]:
    """``block(carry, xs)``, the compiled ``lax.scan`` of ``step`` over the leading axis of ``xs``; or, with
    ``host_loop``, the jitted ``step(carry, xs[j])`` called from Python for each ``j``. Returns
    ``(carry, stacked outputs)`` either way."""
    if not host_loop:
        return block(carry, xs)
    outs = []
    for j in range(jax.tree_util.tree_leaves(xs)[0].shape[0]):
        carry, out = step(carry, jax.tree_util.tree_map(lambda a: a[j], xs))
        outs.append(out)
    return carry, jnp.stack(outs)
