"""Loss and accuracy of many weight points over a dataset in one jitted call.

Every object this library evaluates — a stack of nets, the straight line between two
nets, a constructed path, a learned curve — is a *point function*
``point_fn(theta, t) -> params`` of an explicit pytree ``theta`` and a scalar ``t``.
:func:`evaluate` maps it over a chunk of ``t`` with ``vmap`` and over the data with
``lax.scan`` (fixed-size batches, padding masked out), so one compiled program serves
every chunk. Per-batch partial sums are reduced by addition, so the batch axis can be
sharded over devices with ``jax.sharding`` without changing this code.

**The algebra of a path.** Most point functions are linear combinations of a few control points:
``θ(t) = Σ_k c_k(t)·θ_k`` (2 for a segment, ``bends + 2`` for a Bezier curve, 3 for a plane; a
:class:`stability.core.polycurve.Combination` states it). A point function declares this with
:func:`describes`; for nets applied with :func:`stability.core.nets.apply` the evaluator then computes the
pre-activations of the first layer that differs between the control points ONCE per control point,
``A_k h + b_k``, and combines them per ``t`` (``Σ_k c_k(t)·(A_k h + b_k)``, dense and conv layers), and the
layers below it — identical at every control point — once per batch (:func:`evaluate_combination`). Only the
layers above it are evaluated per point: on CPU one point (or a few) after another on cache-sized batches
(:data:`CPU_POINT_BYTES`), on a GPU all points of a chunk at once (vmapped). The summation order changes, so
results agree with the per-point evaluation to rounding (float32: relative loss difference
≤ ``ALGEBRA_RTOL[float32]``, asserted by the tests).

**Precision.** ``precision="fp32"`` (default) runs every matmul and convolution in full FP32;
``"tf32"`` / ``"bf16"`` use TF32 / bfloat16 inputs with FP32 accumulation on a GPU (XLA:CPU has only FP32,
so they are refused there); their measured loss error is in ``benchmarks/results/``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
from typing import Any, Callable, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from stability.core import nets as _nets
from stability.core import mesh as _mesh
from stability.core.chunks import padded_batches, padded_chunks
from stability.core.progress import Progress
from stability.core.hostloop import use_host_loop
from stability.core.losses import Loss, accuracy, check_targets, cross_entropy, get_loss
from stability.core.polycurve import Combination

Array = jax.Array
PointFn = Callable[[Any, Array], Any]
ApplyFn = Callable[[Any, Array], Array]

Precision = Literal["fp32", "tf32", "bf16"]
Algebra = Literal["auto", "off", "require"]

__all__ = ["EvalResult", "evaluate", "evaluate_nets", "evaluate_line", "evaluate_combination", "line_point",
           "stack_point", "describes", "describe", "choose_sizes", "padded_batches", "DEFAULT_MEMORY_BUDGET",
           "Precision", "Algebra", "PRECISIONS", "ALGEBRA_RTOL", "first_varying_layer"]

PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16")
"""Matmul/convolution precisions: full FP32 (default), TF32 or bfloat16 inputs with FP32 accumulation (GPU)."""

_MATMUL_PRECISION = {"fp32": "highest", "tf32": "TF32_TF32_F32", "bf16": "BF16_BF16_F32"}

ALGEBRA_RTOL = {"float32": 1e-5, "float64": 1e-12}
"""Largest relative difference of a mean loss between the algebraic and the per-point evaluation that the tests
accept (``|Δ| ≤ rtol·max(1, |loss|)``): only the summation order of the first varied layer differs."""

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


Describe = Callable[[Any, np.ndarray], "Combination | None"]


def describes(describe: Describe) -> Callable[[Callable], Callable]:
    """Decorator: declare a point function a linear combination of control points.

    ``describe(theta, ts)`` returns the :class:`~stability.core.polycurve.Combination` of the points
    ``point_fn(theta, t)`` for the host array ``ts`` (or ``None`` where it does not apply, e.g. ``t`` outside the
    curve's domain). It is stored on the function as ``point_fn.combination``: a declaration, read by
    :func:`describe`, never inferred from the function's code."""
    def mark(fn: Callable) -> Callable:
        fn.combination = describe
        return fn
    return mark


def describe(point_fn: PointFn, theta: Any, ts: np.ndarray) -> Combination | None:
    """The declared :class:`~stability.core.polycurve.Combination` of ``point_fn`` at ``ts`` (``None``: none)."""
    d = getattr(point_fn, "combination", None)
    return None if d is None else d(theta, np.asarray(ts, np.float64).reshape(-1))


def _line_combination(theta: tuple[Any, Any], ts: np.ndarray) -> Combination:
    pts = jax.tree_util.tree_map(_nets.stack_leaves, theta[0], theta[1])
    return Combination(pts, np.stack([1.0 - ts, ts], axis=1))


@describes(_line_combination)
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
    act = max(1, _activation_size(params, apply_fn, _nets.sample_spec(x)))
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


# --------------------------------------------------------------------------- the algebraic evaluator


@dataclasses.dataclass(frozen=True)
class _AlgSpec:
    """Static part of one algebraic program: the architecture, the first varied layer ``l0`` (0-based, every layer
    below it is identical at all control points of a chunk), the loss, and how many points the layers above ``l0``
    take at a time (``group``: ``0`` = all points of the chunk at once, vmapped; ``g ≥ 1`` = ``lax.map`` over
    groups of ``g``; see :data:`CPU_POINT_BYTES`)."""

    arch: _nets.Arch
    l0: int
    loss: Loss
    classify: bool
    group: int = 0


CPU_POINT_BYTES = 2 * 2**20
"""On CPU the algebraic evaluator runs the layers above the first varied one ONE POINT AFTER ANOTHER (``lax.map``
over the points inside the batch loop; narrow nets: a few points at a time, vmapped) on batches whose widest
layer output at one point (group of points) is about this many bytes (2048 samples × 256 units × 4 bytes).
Vmapping the points instead multiplies the live activations by the number of points and ran those layers at about
half the per-point loop's rate on the 2-core benchmark machine; one point at a time on cache-sized batches runs
them at the loop's rate (``benchmarks/bench_evaluate.py``)."""


def _alg_sequential() -> bool:
    """True where the algebraic program evaluates its points one after another (the CPU backend)."""
    return jax.default_backend() == "cpu"


def _alg_sizes(sample: _nets.Net, x: Array, n_rows: int, *, batch_size: int | None, chunk: int | None,
               memory_budget: int) -> tuple[int, int, int]:
    """``(batch_size, chunk, group)`` of the algebraic program. Vmapped points (GPU) and the Python loop of conv
    nets on CPU (:mod:`stability.core.hostloop`): :func:`choose_sizes`, ``group = 0`` (every point of a chunk at
    once). Dense nets on CPU: batches whose widest layer output at one point is about :data:`CPU_POINT_BYTES`,
    ``group`` points at a time with about that many bytes together (narrow nets: several), and chunks bounded by
    the combined weights every point of the chunk holds (``chunk × parameters`` within half the memory budget)."""
    if not _alg_sequential() or use_host_loop(sample):       # vmapped points, or conv nets' Python loop (CPU)
        return choose_sizes(sample, _nets.apply, x, n_rows, batch_size=batch_size, chunk=chunk,
                            memory_budget=memory_budget) + (0,)
    itemsize = np.dtype(jax.tree_util.tree_leaves(sample)[0].dtype).itemsize
    n = x.shape[0]
    shapes = jax.eval_shape(lambda p, xx: _nets.forward(p, xx), sample, _nets.sample_spec(x))
    widest = max(int(np.prod(s.shape[1:])) for s in shapes) * itemsize
    if batch_size is None:
        batch_size = max(1, min(n, max(32, 2 ** int(math.log2(max(1, CPU_POINT_BYTES // widest))))))
    if chunk is None:
        n_param = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(sample))
        chunk = int(max(1, min(n_rows, memory_budget // max(1, 2 * itemsize * n_param))))
    group = 2 ** int(math.log2(max(1, CPU_POINT_BYTES // (widest * batch_size))))
    return int(batch_size), int(chunk), int(group)


def _layer_input(arch: _nets.Arch, l: int, pre: Array) -> Array:
    """The input of 0-based layer ``l ≥ 1`` from the pre-activation of layer ``l − 1``: ``P(φ(·))``."""
    h = jax.nn.relu(pre)
    if l - 1 < arch.n_conv and arch.pool[l - 1] is not None:
        h = _nets.pool2(h, arch.pool[l - 1])
    return h


def _combine(c: Array, stack: Array) -> Array:
    """``Σ_k c[…, k]·stack[k]`` in full precision (combining control points is not one of the net's matmuls)."""
    return jnp.tensordot(c.astype(stack.dtype), stack, axes=(c.ndim - 1, 0), precision=jax.lax.Precision.HIGHEST)


def _alg_parts(spec: _AlgSpec, points: _nets.Net, sel: Array, C: Array):
    """Per-chunk constants: the shared layers below ``l0`` (those of control point ``sel[0]``), layer ``l0`` at the
    chunk's control points ``sel`` (``(Kc, …)``) and the combined layers above it at every point (``(T, …)``)."""
    def at(i: int, idx):
        b = points.bias(i)
        return points.A(i)[idx], None if b is None else b[idx]

    shared = tuple(at(i, sel[0]) for i in range(1, spec.l0 + 1))
    ctrl = at(spec.l0 + 1, sel)
    upper = tuple(tuple(None if a is None else _combine(C, a) for a in at(i, sel))
                  for i in range(spec.l0 + 2, spec.arch.depth + 1))
    return shared, ctrl, upper


def _alg_ctrl(spec: _AlgSpec, shared, ctrl, xs: Array) -> Array:
    """Pre-activations of layer ``l0`` at every control point of the chunk, ``(Kc, B, …)``: the shared layers
    below it once, then one product per control point (conv kernels stacked along the output channels)."""
    arch = spec.arch
    h = xs
    for l, (w, b) in enumerate(shared):
        if l > 0:
            h = _layer_input(arch, l, h)
        h = _nets.layer_apply(arch, l, w, b, h)
    if spec.l0 > 0:
        h = _layer_input(arch, spec.l0, h)
    w, b = ctrl
    if b is None:
        return jax.vmap(lambda wk: _nets.layer_apply(arch, spec.l0, wk, None, h))(w)
    return jax.vmap(lambda wk, bk: _nets.layer_apply(arch, spec.l0, wk, bk, h))(w, b)


def _alg_rest(spec: _AlgSpec, z: Array, upper) -> Array:
    """The layers above ``l0`` at one point, from its layer-``l0`` pre-activation ``z``: the outputs."""
    arch, pre = spec.arch, z
    for l, (w, b) in zip(range(spec.l0 + 1, arch.depth), upper):
        pre = _nets.layer_apply(arch, l, w, b, _layer_input(arch, l, pre))
    return pre


@functools.partial(jax.jit, static_argnums=0)
def _alg_chunk(spec: _AlgSpec, points: _nets.Net, sel: Array, C: Array, xb: Array, yb: Array,
               mb: Array) -> tuple[Array, Array]:
    """Loss and correct sums of the ``T`` points ``Σ_k C[t, k]·points[sel[k]]`` over all batches (one program)."""
    shared, ctrl, upper = _alg_parts(spec, points, sel, C)

    def body(carry, batch):
        xs, ys, ms = batch
        Z = _alg_ctrl(spec, shared, ctrl, xs)                                   # (Kc, B, …)

        def point(cu):                                                           # one point: Σ_k c_k·Z_k, then up
            c, up = cu
            return _output_sums(spec.loss, spec.classify, _alg_rest(spec, _combine(c, Z), up), ys, ms)

        if spec.group and spec.group < C.shape[0]:
            ls, acs = jax.lax.map(point, (C, upper), batch_size=None if spec.group == 1 else spec.group)
        else:
            ls, acs = jax.vmap(point)((C, upper))
        return (carry[0] + ls, carry[1] + acs), None

    zeros = jnp.zeros(C.shape[:1], mb.dtype)
    (ls, acs), _ = jax.lax.scan(body, (zeros, zeros), (xb, yb, mb))
    return ls, acs


_alg_parts_jit = jax.jit(_alg_parts, static_argnums=0)
_alg_ctrl_jit = jax.jit(_alg_ctrl, static_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def _alg_point_sums(spec: _AlgSpec, C: Array, Z: Array, upper, k: Array, ys: Array, ms: Array) -> tuple[Array, Array]:
    """Loss and correct sums of point ``k`` of the chunk over one batch, from the control points' ``Z``."""
    up = jax.tree_util.tree_map(lambda a: a[k], upper)
    return _output_sums(spec.loss, spec.classify, _alg_rest(spec, _combine(C[k], Z), up), ys, ms)


def _alg_chunk_host(spec: _AlgSpec, points: _nets.Net, sel: Array, C: Array, xb: Array, yb: Array,
                    mb: Array) -> tuple[Array, Array]:
    """:func:`_alg_chunk` with the batch and point loops in Python (conv nets on CPU, see
    :mod:`stability.core.hostloop`): per batch the control points' layer ``l0`` once, then one call per point."""
    shared, ctrl, upper = _alg_parts_jit(spec, points, sel, C)
    T = C.shape[0]
    ls: list[Any] = [0.0] * T
    acs: list[Any] = [0.0] * T
    for b in range(xb.shape[0]):
        Z = _alg_ctrl_jit(spec, shared, ctrl, xb[b])
        for k in range(T):
            l, a = _alg_point_sums(spec, C, Z, upper, jnp.asarray(k, jnp.int32), yb[b], mb[b])
            ls[k] = ls[k] + l
            acs[k] = acs[k] + a
    return jnp.stack(ls), jnp.stack(acs)


def _layer_digests(points: _nets.Net) -> np.ndarray:
    """``(K, d)`` digests of every control point's layer (weight and bias bytes): equal digests = identical layers."""
    host = jax.device_get(points)
    K = int(np.shape(host.A(1))[0])
    out = np.empty((K, host.depth), dtype=object)
    for i in range(1, host.depth + 1):
        w, b = np.asarray(host.A(i)), host.bias(i)
        for k in range(K):
            h = hashlib.blake2b(np.ascontiguousarray(w[k]).tobytes(), digest_size=16)
            if b is not None:
                h.update(np.ascontiguousarray(np.asarray(b)[k]).tobytes())
            out[k, i - 1] = h.digest()
    return out


def first_varying_layer(digests: np.ndarray, members: Sequence[int]) -> int:
    """0-based index of the first layer that differs between the control points ``members`` (``depth``: none does),
    from :func:`_layer_digests`."""
    members = list(members)
    d = digests.shape[1]
    for l in range(d):
        if any(digests[m, l] != digests[members[0], l] for m in members[1:]):
            return l
    return d


def _plan_rows(comb: Combination, digests: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray, list]:
    """``(coef, inverse, groups)``: the distinct rows to evaluate (rows equal to one control point reduced to a unit
    row), the row of every original point, and the groups ``(l0, rows)`` of distinct rows that share every layer
    below ``l0`` (all their control points identical there, coefficients summing to 1)."""
    coef = comb.coef.copy()
    l0s = np.zeros(coef.shape[0], np.int64)
    cls_of = np.zeros(coef.shape[0], np.int64)
    for n in range(coef.shape[0]):
        sup = np.flatnonzero(coef[n])
        if sup.size == 0:
            continue
        affine = abs(float(np.sum(coef[n])) - 1.0) <= 1e-12
        l0 = first_varying_layer(digests, sup) if affine else 0
        if l0 >= depth:                        # every control point used is the same net: that net, exactly
            coef[n] = 0.0
            coef[n, sup[0]] = 1.0
            l0 = 0
        l0s[n] = l0
        cls_of[n] = sup[0]
    uniq, first, inverse = np.unique(coef, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    groups: dict[tuple[int, int], list[int]] = {}
    reps: dict[int, list[int]] = {}
    for u, n in enumerate(first):
        l0 = int(l0s[n])
        rep = int(cls_of[n])
        cands = reps.setdefault(l0, [])
        key = next((r for r in cands if all(digests[r, l] == digests[rep, l] for l in range(l0))), None)
        if key is None:
            cands.append(rep)
            key = rep
        groups.setdefault((l0, key), []).append(u)
    order = sorted(groups.items(), key=lambda kv: min(first[r] for r in kv[1]))
    return uniq, inverse, [(l0, np.array(sorted(rows, key=lambda r: first[r]))) for (l0, _), rows in order]


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "fp32" and jax.default_backend() == "cpu":
        raise ValueError(f"precision {precision!r} needs a GPU: XLA:CPU computes every matmul in FP32 "
                         f"(use precision='fp32')")
    return _MATMUL_PRECISION[precision]


def evaluate_combination(
    comb: Combination,
    x: Array,
    y: Array,
    *,
    ts: Sequence[float] | np.ndarray | None = None,
    loss: Loss | str = cross_entropy,
    batch_size: int | None = None,
    chunk: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    precision: Precision = "fp32",
    progress: bool = False,
    mesh: Mesh | None = None,
) -> EvalResult:
    """Mean loss and accuracy of every point ``Σ_k comb.coef[n, k]·comb.points[k]`` (nets applied with
    :func:`stability.core.nets.apply`) on ``(x, y)``, using the algebra of the combination.

    Points that share their layers below ``l0`` (identical at every control point they use, coefficients summing
    to 1) are evaluated together: those layers once per batch, layer ``l0`` once per control point and combined
    per point (``Σ_k c_k·(A_k h + b_k)``), the layers above per point. A point equal to one control point is
    evaluated as that net, and equal points once. ``ts`` labels the points in the result (default ``0..n−1``).
    ``mesh``: split the batch axis over its devices (:mod:`stability.core.mesh`; ``None``: one device)."""
    points = comb.points
    if not isinstance(points, _nets.Net):
        raise ValueError(f"comb.points must be a stacked stability.core.nets.Net, got {type(points).__name__}")
    matmul = _check_precision(precision)
    loss = get_loss(loss)
    x, y = _mesh.to_device(x), _mesh.to_device(y)
    n_pts = comb.n_points
    ts_np = np.arange(n_pts, dtype=np.float64) if ts is None else np.asarray(ts, np.float64).reshape(-1)
    if ts_np.size != n_pts:
        raise ValueError(f"ts must label the {n_pts} points of the combination, got {ts_np.size} values")
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x and y must hold the same non-zero number of samples, got {x.shape[0]} and {y.shape[0]}")
    points = jax.tree_util.tree_map(_mesh.to_device, points)
    sample = _nets.point_spec(points)
    _nets._check_input(sample.arch, x)
    dtype = jax.tree_util.tree_leaves(points)[0].dtype
    classify = bool(jnp.issubdtype(y.dtype, jnp.integer))
    arch = sample.arch
    if loss.name in ("cross_entropy", "squared_error"):
        check_targets(y, arch.widths[-1], loss, "y")
    coef, inverse, groups = _plan_rows(comb, _layer_digests(points), arch.depth)
    n_rows = coef.shape[0]
    batch_size, chunk, group = _alg_sizes(sample, x, n_rows, batch_size=batch_size, chunk=chunk,
                                          memory_budget=memory_budget)
    xb, yb, mb, n, points, put = _data_batches(x, y, batch_size, mesh, points, dtype)
    host = use_host_loop(sample)
    run = _alg_chunk_host if host else _alg_chunk
    # chunks: T rows of one group; Kc control points, padded to the largest Kc of the same l0 (one program each)
    pieces = []
    for l0, rows in groups:
        n_chunks = -(-rows.size // chunk)
        size = -(-rows.size // n_chunks)
        for c in range(n_chunks):
            part = rows[c * size:(c + 1) * size]
            pieces.append((l0, part, np.flatnonzero(np.any(coef[part] != 0, axis=0))))
    T = max(p[1].size for p in pieces)
    kc = {}
    for l0, _, sel in pieces:
        kc[l0] = max(kc.get(l0, 1), sel.size)
    loss_u = np.empty(n_rows)
    acc_u = np.empty(n_rows)
    bar = Progress(n_rows, "evaluation", unit="points", enabled=progress)
    with jax.default_matmul_precision(matmul):
        for l0, part, sel in pieces:
            spec = _AlgSpec(arch, int(l0), loss, classify, group)
            sel_p = np.concatenate([sel, np.full(kc[l0] - sel.size, sel[0])])
            rows_p = np.concatenate([part, np.full(T - part.size, part[-1])])
            C = np.zeros((T, kc[l0]))
            C[:, :sel.size] = coef[rows_p][:, sel]
            ls, acs = run(spec, points, put(_mesh.to_device(sel_p, jnp.int32)), put(_mesh.to_device(C, dtype)), xb, yb, mb)
            loss_u[part] = _mesh.to_host(ls)[:part.size]
            acc_u[part] = _mesh.to_host(acs)[:part.size]
            bar.advance(part.size)
    loss_arr = loss_u[inverse] / n
    acc_arr = acc_u[inverse] / n if classify else np.full(n_pts, np.nan)
    if not np.all(np.isfinite(loss_arr)):
        bad = ts_np[~np.isfinite(loss_arr)]
        raise FloatingPointError(f"non-finite loss at t = {bad[:5].tolist()} (weights or data contain NaN/inf?)")
    return EvalResult(ts_np, loss_arr, acc_arr)


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
    algebra: Algebra = "auto",
    precision: Precision = "fp32",
    mesh: Mesh | None = None,
) -> EvalResult:
    """Mean loss and accuracy of ``apply_fn(point_fn(theta, t), ·)`` on ``(x, y)`` for every ``t``.

    ``point_fn`` and ``apply_fn`` must be hashable module-level functions (they are static
    arguments of the compiled program); ``theta`` is traced, so new weights never recompile.
    ``algebra``: ``"auto"`` uses :func:`evaluate_combination` when ``point_fn`` declares its combination
    (:func:`describes`) over nets applied with :func:`stability.core.nets.apply`; ``"off"`` evaluates every point
    as a whole net; ``"require"`` raises if the algebra does not apply. ``precision``: see :data:`PRECISIONS`.
    ``mesh`` (:func:`stability.core.mesh.make_mesh`): the batch axis is split over its devices, ``theta`` is
    replicated; under several processes ``x`` and ``y`` are this process's rows (:func:`stability.core.mesh.batches`).
    ``None`` or one device: the one-device program.
    """
    if algebra not in ("auto", "off", "require"):
        raise ValueError(f"algebra must be 'auto', 'off' or 'require', got {algebra!r}")
    matmul = _check_precision(precision)
    loss = get_loss(loss)
    x = _mesh.to_device(x)
    y = _mesh.to_device(y)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x and y must hold the same non-zero number of samples, got {x.shape[0]} and {y.shape[0]}")
    ts_np = np.asarray(ts, dtype=np.float64).reshape(-1)
    if ts_np.size == 0:
        raise ValueError("no points to evaluate (empty ts)")
    if not np.all(np.isfinite(ts_np)):
        raise ValueError("ts contains NaN or inf")
    classify = bool(jnp.issubdtype(y.dtype, jnp.integer))
    if algebra != "off":
        comb = describe(point_fn, theta, ts_np) if apply_fn is _nets.apply else None
        if comb is not None and isinstance(comb.points, _nets.Net):
            return evaluate_combination(comb, x, y, ts=ts_np, loss=loss, batch_size=batch_size, chunk=chunk,
                                        memory_budget=memory_budget, precision=precision, progress=progress,
                                        mesh=mesh)
        if algebra == "require":
            raise ValueError("algebra='require' but the point function declares no combination of nets applied "
                             "with stability.core.nets.apply (see stability.core.evaluate.describes)")
    # the point's structure, shapes and dtypes (traced, not computed)
    sample = jax.eval_shape(point_fn, theta, jax.ShapeDtypeStruct((), jax.tree_util.tree_leaves(theta)[0].dtype))
    if loss.name in ("cross_entropy", "squared_error"):
        n_out = (sample.arch.widths[-1] if isinstance(sample, _nets.Net)
                 else int(jax.eval_shape(apply_fn, sample, _nets.sample_spec(x)).shape[-1]))
        check_targets(y, n_out, loss, "y")
    batch_size, chunk = choose_sizes(sample, apply_fn, x, ts_np.size, batch_size=batch_size, chunk=chunk,
                                     memory_budget=memory_budget)
    dtype = jax.tree_util.tree_leaves(sample)[0].dtype
    xb, yb, mb, n, theta, put = _data_batches(x, y, batch_size, mesh, theta, dtype)
    losses, accs = [], []
    run_chunk = _eval_chunk_host if use_host_loop(sample) else _eval_chunk
    bar = Progress(ts_np.size, "evaluation", unit="points", enabled=progress)
    # balanced chunks: pad at most (number of chunks − 1) points, not chunk − 1
    with jax.default_matmul_precision(matmul):
        for padded, m in padded_chunks(ts_np, chunk, balanced=True):
            ls, acs = run_chunk(point_fn, apply_fn, loss, classify, theta, put(_mesh.to_device(padded, dtype)), xb, yb, mb)
            losses.append(_mesh.to_host(ls)[:m])
            accs.append(_mesh.to_host(acs)[:m])
            bar.advance(m)
    loss_arr = np.concatenate(losses) / n
    acc_arr = np.concatenate(accs) / n if classify else np.full(ts_np.size, np.nan)
    if not np.all(np.isfinite(loss_arr)):
        bad = ts_np[~np.isfinite(loss_arr)]
        raise FloatingPointError(f"non-finite loss at t = {bad[:5].tolist()} (weights or data contain NaN/inf?)")
    return EvalResult(ts_np, loss_arr, acc_arr)


def _identity(a: Any) -> Any:
    return a


def _data_batches(x: Array, y: Array, batch_size: int, mesh: Mesh | None, weights: Any, dtype
                  ) -> tuple[Array, Array, Array, int, Any, Callable[[Any], Any]]:
    """``(xb, yb, mb, n, weights, put)``: the data in padded batches (mask ``mb`` in ``dtype``), the sample count
    ``n``, and — with a sharded ``mesh`` — the batch axis split over its devices (the batch rounded to them), the
    weights replicated and ``put`` replicating further arrays (else ``put`` is the identity)."""
    if _mesh.is_sharded(mesh):
        batch_size = _mesh.agree_min(_mesh.round_batch(batch_size, mesh))
        xb, yb, mb, n = _mesh.batches(x, y, batch_size, mesh)
        return (xb, yb, mb.astype(dtype), n, _mesh.replicate(weights, mesh),
                functools.partial(_mesh.replicate, mesh=mesh))
    xb, yb, mb = padded_batches(x, y, batch_size)
    return xb, yb, mb.astype(dtype), x.shape[0], weights, _identity


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
