"""Loss and accuracy of many weight points over a dataset in one jitted call.

Every object this library evaluates — a stack of nets, the straight line between two
nets, a constructed path, a learned curve — is a *point function*
``point_fn(theta, t) -> params`` of an explicit pytree ``theta`` and a scalar ``t``.
:func:`evaluate` maps it over a chunk of ``t`` with ``vmap`` and over the data with
``lax.scan`` (fixed-size batches, padding masked out), so one compiled program serves
every chunk. Per-batch partial sums are reduced by addition, so the batch axis can be
sharded over devices with ``jax.sharding`` without changing this code.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stability.core import nets as _nets
from stability.core.chunks import padded_chunks
from stability.core.progress import Progress
from stability.core.hostloop import use_host_loop
from stability.core.losses import Loss, accuracy, check_targets, cross_entropy, get_loss

Array = jax.Array
PointFn = Callable[[Any, Array], Any]
ApplyFn = Callable[[Any, Array], Array]

__all__ = ["EvalResult", "evaluate", "evaluate_nets", "evaluate_line", "line_point", "stack_point",
           "choose_sizes", "padded_batches", "DEFAULT_MEMORY_BUDGET"]

DEFAULT_MEMORY_BUDGET = 512 * 2**20
"""Bytes of activations + materialised points one chunk may use (override per call)."""


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Per-point mean ``loss`` and ``acc`` (NaN for regression targets) at ``ts``."""

    ts: np.ndarray
    loss: np.ndarray
    acc: np.ndarray

    def to_dict(self) -> dict[str, list[float]]:
        return {"t": self.ts.tolist(), "loss": self.loss.tolist(), "acc": self.acc.tolist()}


def line_point(theta: tuple[Any, Any], t: Array) -> Any:
    """Point function of the straight segment ``(1−t)·θ_0 + t·θ_1``."""
    return _nets.lerp(theta[0], theta[1], t)


def stack_point(theta: Any, t: Array) -> Any:
    """Point function of a stack of nets: ``t`` is the (integer-valued) index."""
    k = t.astype(jnp.int32)
    return jax.tree_util.tree_map(lambda a: a[k], theta)


def _activation_size(params: Any, apply_fn: ApplyFn, x1: Array) -> int:
    """Floats of intermediate values per sample (estimated from the net's pre-activations)."""
    if isinstance(params, _nets.Net):
        shapes = jax.eval_shape(lambda p, x: _nets.forward(p, x), params, x1)
        return int(sum(np.prod(s.shape[1:]) for s in shapes)) * 3
    out = jax.eval_shape(apply_fn, params, x1)
    return int(np.prod(out.shape[1:])) * 8 + int(np.prod(x1.shape[1:]))


def choose_sizes(
    params: Any, apply_fn: ApplyFn, x: Array, n_points: int, *, batch_size: int | None = None,
    chunk: int | None = None, memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> tuple[int, int]:
    """Pick ``(batch_size, chunk)`` so ``chunk × batch × activations + chunk × params`` fits the budget."""
    itemsize = np.dtype(jax.tree_util.tree_leaves(params)[0].dtype).itemsize
    n_param = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(params))
    act = max(1, _activation_size(params, apply_fn, x[:1]))
    n = x.shape[0]
    if batch_size is None:
        batch_size = int(min(n, max(32, 2 ** int(math.log2(max(1, memory_budget // (8 * act * itemsize)))))))
        batch_size = max(1, min(batch_size, 4096, n))
    if chunk is None:
        per_point = itemsize * (batch_size * act + 2 * n_param)
        chunk = int(max(1, min(n_points, memory_budget // max(1, per_point))))
    return int(batch_size), int(chunk)


def _output_sums(loss: Loss, classify: bool, out: Array, ys: Array, ms: Array) -> tuple[Array, Array]:
    """Sums of the loss and of correct predictions of one point's outputs over a (masked) batch."""
    l = loss(out, ys)
    acc = accuracy(out, ys) if classify else jnp.zeros_like(l)
    return jnp.sum(l * ms), jnp.sum(acc * ms)


def _batch_sums(apply_fn: ApplyFn, loss: Loss, classify: bool, points: Any, xs: Array, ys: Array,
                ms: Array) -> tuple[Array, Array]:
    """Per-point :func:`_output_sums` of every stacked point over one batch (vmapped)."""
    out = jax.vmap(lambda p: apply_fn(p, xs))(points)
    return jax.vmap(lambda o: _output_sums(loss, classify, o, ys, ms))(out)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _eval_chunk(point_fn: PointFn, apply_fn: ApplyFn, loss: Loss, classify: bool,
                theta: Any, ts: Array, xb: Array, yb: Array, mb: Array) -> tuple[Array, Array]:
    points = jax.vmap(lambda t: point_fn(theta, t))(ts)

    def body(carry, batch):
        ls, acs = _batch_sums(apply_fn, loss, classify, points, *batch)
        return (carry[0] + ls, carry[1] + acs), None

    dtype = jax.tree_util.tree_leaves(points)[0].dtype
    zeros = jnp.zeros(ts.shape[:1], dtype)
    (ls, acs), _ = jax.lax.scan(body, (zeros, zeros), (xb, yb, mb))
    return ls, acs


@functools.partial(jax.jit, static_argnums=0)
def _chunk_points(point_fn: PointFn, theta: Any, ts: Array) -> Any:
    return jax.vmap(lambda t: point_fn(theta, t))(ts)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _point_batch_sums(apply_fn: ApplyFn, loss: Loss, classify: bool, points: Any, k: Array, xs: Array, ys: Array,
                      ms: Array) -> tuple[Array, Array]:
    """Loss and correct-prediction sums of point ``k`` of the stacked ``points`` over one (masked) batch."""
    return _output_sums(loss, classify, apply_fn(jax.tree_util.tree_map(lambda a: a[k], points), xs), ys, ms)


def _eval_chunk_host(point_fn: PointFn, apply_fn: ApplyFn, loss: Loss, classify: bool,
                     theta: Any, ts: Array, xb: Array, yb: Array, mb: Array) -> tuple[Array, Array]:
    """:func:`_eval_chunk` with the point and batch loops in Python: conv nets on CPU, where convolutions
    inside ``lax.scan`` and convolutions vmapped over kernels are several times slower (:mod:`stability.core.hostloop`)."""
    points = _chunk_points(point_fn, theta, ts)
    ls, acs = [], []
    for k in range(ts.shape[0]):
        kk = jnp.asarray(k, jnp.int32)
        sums = [_point_batch_sums(apply_fn, loss, classify, points, kk, xb[b], yb[b], mb[b]) for b in range(xb.shape[0])]
        ls.append(sum(v[0] for v in sums))
        acs.append(sum(v[1] for v in sums))
    return jnp.stack(ls), jnp.stack(acs)


def padded_batches(x: Array, y: Array, batch_size: int) -> tuple[Array, Array, Array]:
    """``(xb, yb, mask)``: ``x`` and ``y`` cut into ``(n_batches, batch_size, …)``, the last batch zero-padded
    and its padding marked 0 in ``mask``."""
    n = x.shape[0]
    nb = -(-n // batch_size)
    pad = nb * batch_size - n
    mask = jnp.concatenate([jnp.ones((n,)), jnp.zeros((pad,))])
    xp = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)])
    yp = jnp.concatenate([y, jnp.zeros((pad,) + y.shape[1:], y.dtype)])
    return (xp.reshape((nb, batch_size) + x.shape[1:]), yp.reshape((nb, batch_size) + y.shape[1:]),
            mask.reshape(nb, batch_size))


def evaluate(
    point_fn: PointFn,
    theta: Any,
    ts: Sequence[float] | Array,
    x: Array,
    y: Array,
    *,
    apply_fn: ApplyFn = _nets.apply,
    loss: Loss | str = cross_entropy,
    batch_size: int | None = None,
    chunk: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    progress: bool = False,
) -> EvalResult:
    """Mean loss and accuracy of ``apply_fn(point_fn(theta, t), ·)`` on ``(x, y)`` for every ``t``.

    ``point_fn`` and ``apply_fn`` must be hashable module-level functions (they are static
    arguments of the compiled program); ``theta`` is traced, so new weights never recompile.
    """
    loss = get_loss(loss)
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x and y must hold the same non-zero number of samples, got {x.shape[0]} and {y.shape[0]}")
    ts_np = np.asarray(ts, dtype=np.float64).reshape(-1)
    if ts_np.size == 0:
        raise ValueError("no points to evaluate (empty ts)")
    if not np.all(np.isfinite(ts_np)):
        raise ValueError("ts contains NaN or inf")
    classify = bool(jnp.issubdtype(y.dtype, jnp.integer))
    sample = point_fn(theta, jnp.asarray(ts_np[0], jax.tree_util.tree_leaves(theta)[0].dtype))
    if loss.name in ("cross_entropy", "squared_error"):
        n_out = (sample.arch.widths[-1] if isinstance(sample, _nets.Net)
                 else int(jax.eval_shape(apply_fn, sample, x[:1]).shape[-1]))
        check_targets(y, n_out, loss, "y")
    batch_size, chunk = choose_sizes(sample, apply_fn, x, ts_np.size, batch_size=batch_size, chunk=chunk,
                                     memory_budget=memory_budget)
    xb, yb, mb = padded_batches(x, y, batch_size)
    dtype = jax.tree_util.tree_leaves(sample)[0].dtype
    mb = mb.astype(dtype)
    losses, accs = [], []
    run_chunk = _eval_chunk_host if use_host_loop(sample) else _eval_chunk
    bar = Progress(ts_np.size, "evaluation", unit="points", enabled=progress)
    # balanced chunks: pad at most (number of chunks − 1) points, not chunk − 1
    for padded, m in padded_chunks(ts_np, chunk, balanced=True):
        ls, acs = run_chunk(point_fn, apply_fn, loss, classify, theta, jnp.asarray(padded, dtype), xb, yb, mb)
        losses.append(np.asarray(ls)[:m])
        accs.append(np.asarray(acs)[:m])
        bar.advance(m)
    n = x.shape[0]
    loss_arr = np.concatenate(losses) / n
    acc_arr = np.concatenate(accs) / n if classify else np.full(ts_np.size, np.nan)
    if not np.all(np.isfinite(loss_arr)):
        bad = ts_np[~np.isfinite(loss_arr)]
        raise FloatingPointError(f"non-finite loss at t = {bad[:5].tolist()} (weights or data contain NaN/inf?)")
    return EvalResult(ts_np, loss_arr, acc_arr)


def evaluate_nets(nets: Sequence[_nets.Net] | _nets.Net, x: Array, y: Array, **kw) -> EvalResult:
    """Evaluate a list of nets (or one already stacked net with a leading axis)."""
    stacked = nets if isinstance(nets, _nets.Net) else _nets.stack(list(nets))
    n = jax.tree_util.tree_leaves(stacked)[0].shape[0]
    return evaluate(stack_point, stacked, np.arange(n, dtype=np.float64), x, y, **kw)


def evaluate_line(a: _nets.Net, b: _nets.Net, ts: Sequence[float] | Array | int, x: Array, y: Array,
                  **kw) -> EvalResult:
    """Evaluate the straight segment between ``a`` and ``b`` (``ts`` or a number of equally spaced points)."""
    _nets.check_same_arch(a, b, "the segment's end points")
    if isinstance(ts, int):
        ts = np.linspace(0.0, 1.0, ts)
    return evaluate(line_point, (a, b), ts, x, y, **kw)
