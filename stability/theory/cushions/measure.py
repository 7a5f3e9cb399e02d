"""``measure``: every noise-stability quantity of a net on a sample set, in equal-size jitted chunks."""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from stability.core import checks as _checks
from stability.core import mesh as _mesh
from stability.core import nets as _nets
from stability.core.chunks import padded_chunks
from stability.core.progress import Progress
from stability.core.warning_types import UnconvergedWarning
from stability.theory.cushions.operators import _div, _fro, _norm, column_ratio
from stability.theory.cushions.maps import _act, _check_x, _dims, _linear, _linearise, _sweep
from stability.theory.cushions.spectral import (_check_method, _exact_sigma, _final_sigma, _ops, _pair_arrays,
                                                _seed, _solve)
from stability.theory.cushions.smoothness import _scales, _smooth_chunk, _smoothness_part, sample_masks
from stability.theory.cushions.result import Cushions, DEFAULT_TS

Array = jax.Array


DEFAULT_MEMORY_BUDGET = 512 * 2**20
"""Bytes of intermediate values one chunk of samples may use (sets the default batch size)."""


@jax.jit
def _chunk(net: _nets.Net, x: Array, scales: tuple[Array, ...], X: tuple[Array, ...] | None,
           tol: Array) -> dict[str, Array]:
    """Every per-sample quantity of :func:`measure` for one batch ``x``: the spectral norms from the
    solver's final vectors ``X`` (:func:`_final_sigma`) and of the pairs solved exactly (:func:`_exact_sigma`),
    layer cushions, ``‖J^{i,j} x^i‖`` (one jvp
    sweep for all pairs), contraction, ``‖x^i‖``, smoothness and the ∞-norm condition.
    ``scales[k−1]`` holds the column multipliers ``t + (1−t)·δ`` of hidden layer ``k`` per
    (draw, t), shaped ``(K, T, *broadcast)``; ``()`` skips the smoothness."""
    d = net.depth
    B, dt = x.shape[0], x.dtype
    pre = _nets.forward(net, x)
    ins = [x] + [_act(net.arch, k, pre[k - 1]) for k in range(1, d)]
    pre_norm = [_norm(p) for p in pre]
    nan = jnp.asarray(jnp.nan, dt)
    out = {"layer_cushion": jnp.stack([_div(_norm(_linear(net, i, ins[i - 1])),
                                            _fro(net, i) * _norm(ins[i - 1])) for i in range(1, d + 1)], 1)}
    contraction = []
    for i in range(1, d):
        num, den = pre_norm[i - 1], _norm(jax.nn.relu(pre[i - 1]))
        contraction.append(_div(num, den, jnp.inf) + jnp.where(num > 0, 0.0, nan))  # φ(x^i) = 0: ∞ (0/0: NaN)
    contraction.append(jnp.full((B,), nan))
    out["contraction"] = jnp.stack(contraction, axis=1)
    out["pre_norm"] = jnp.stack(pre_norm, axis=1)
    jvps, vjps = _linearise(net, pre)
    if d >= 2:
        ops = _ops(net, pre)
        out["sigma"] = _final_sigma(ops, X) if X is not None else {}
        out["exact"] = _exact_sigma(ops, pre, tol)
    else:
        out["sigma"], out["exact"] = {}, {}
    jx = _sweep(jvps, d, {i: pre[i - 1][None] for i in range(1, d)})           # J^{i,j} x^i, all pairs at once
    out["jx_norm"] = jnp.stack([jnp.stack([_norm(jx[i][j][0]) if j > i else jnp.zeros((B,), dt)
                                           for j in range(1, d + 1)], 1) for i in range(1, d + 1)], 1)
    if d >= 2 and scales:
        out.update(_smoothness_part(net, x, pre, jvps, scales))
    else:
        out["smoothness"] = jnp.full((0, B, d), jnp.nan, dt)
        out["inf_norm_ratio"] = jnp.full((B, d), jnp.nan, dt)
    return out


# --------------------------------------------------------------------------- measure


def _default_batch(net: _nets.Net, n: int, kt: int, itemsize: int, budget: int) -> int:
    """Samples per chunk so that the solver state, sweep stacks and smoothness stacks fit ``budget`` bytes."""
    d = net.depth
    dims = _dims(net)
    solver = 20 * sum((d - i) * dims[i - 1] for i in range(1, d + 1))   # ~12 packed arrays, ≤ 30% padding
    sweeps = 3 * sum((k - 1) * (d - k + 1) * dims[k - 1] for k in range(2, d + 1))
    smooth = 3 * kt * sum(dims) + 10 * kt * max(dims)
    return int(max(1, min(n, budget // max(1, (solver + sweeps + smooth) * itemsize))))


def measure(net: _nets.Net, x, key: Array, *, p: float = 0.5, draws: int = 5,
            ts: Sequence[float] = DEFAULT_TS, tol: float = 1e-4, max_iter: int = 200,
            method: str = "lobpcg", masks: Sequence[np.ndarray] | None = None, batch_size: int | None = None,
            memory_budget: int = DEFAULT_MEMORY_BUDGET, unroll: int | None = None,
            progress: bool = True, mesh: Mesh | None = None) -> Cushions:
    """Every noise-stability quantity of ``net`` on the samples ``x`` (Definitions 2–4, docs/THEORY.md §6).

    ``p``/``draws``: Algorithm 1 dropout probability and the number of mask draws for the
    interlayer smoothness (``masks`` overrides them: per hidden layer an array ``(draws, h)`` of
    column multipliers); ``ts``: the ``t`` grid; ``method``/``tol``/``max_iter``: the spectral-norm
    solver (``"lobpcg"`` or ``"power"``) and its stopping rule (relative residual of ``JᵀJ``,
    see :func:`spectral_norms`; ``unroll`` iterations per jitted block). Samples are processed in
    equal-size jitted chunks (``batch_size`` or a size that fits ``memory_budget``); the mask draws
    are shared by all samples, as Definition 3 requires. ``mesh`` (:func:`stability.core.mesh.make_mesh`, one
    process): each chunk's samples are split over its devices (the chunk size rounded up to a multiple of the
    device count); every quantity is per sample, so only the rounding of the solver's reductions may differ.
    """

    t0 = time.perf_counter()
    x = _check_x(net, x)
    _checks.probability("p", p)
    _checks.positive_int("draws", draws)
    ts_np = np.asarray(ts, np.float64).reshape(-1)
    if ts_np.size == 0 or not np.all((ts_np >= 0) & (ts_np <= 1)):
        raise ValueError(f"ts must be a non-empty grid in [0, 1], got {ts_np.tolist()}")
    _checks.positive("tol", tol)
    _checks.positive_int("max_iter", max_iter)
    if batch_size is not None:
        _checks.positive_int("batch_size", batch_size)
    _check_method(method)
    k_mask, k_pow = jax.random.split(key)
    if masks is None:
        deltas = sample_masks(net, k_mask, p, draws) if net.depth > 1 else ()
    else:
        deltas = tuple(np.asarray(m, np.float64) for m in masks)
        if len(deltas) != net.depth - 1 or any(m.ndim != 2 or m.shape[1] != h for m, h in
                                               zip(deltas, _nets.widths(net))) or len({m.shape[0] for m in deltas}) > 1:
            raise ValueError("masks needs one (draws, h_k) array per hidden layer, all with the same draws")
    dtype = x.dtype
    scales = _scales(net, deltas, ts_np, dtype) if deltas else ()
    kt = scales[0].shape[0] * scales[0].shape[1] if scales else 0
    n = x.shape[0]
    bs = int(batch_size) if batch_size else _default_batch(net, n, kt, np.dtype(dtype).itemsize, memory_budget)
    bs = max(1, min(bs, n))
    if not batch_size:
        bs = -(-n // -(-n // bs))    # balanced chunks: pad at most (number of chunks − 1) samples, not bs − 1
    sharded = _mesh.is_sharded(mesh)
    if sharded:
        if jax.process_count() > 1:
            raise ValueError("mesh: cushions.measure splits samples over the devices of one process; "
                             "run it per process on that process's samples")
        bs = _mesh.round_batch(bs, mesh)
        net, scales = _mesh.replicate((net, scales), mesh)
    parts: list[dict[str, np.ndarray]] = []
    bar = Progress(n, "noise stability", unit="samples", enabled=progress)
    # padding repeats a real sample (no NaNs in the solver); padded rows are trimmed below
    for c, (xc, m) in enumerate(padded_chunks(x, bs, fill=x[:1])):
        if sharded:
            xc = _mesh.shard_rows(xc, mesh)
        st = _solve(net, xc, _seed(jax.random.fold_in(k_pow, c)), tol, max_iter, method, unroll) \
            if net.depth >= 2 else {"X": None}
        out = jax.device_get(_chunk(net, xc, scales, st["X"], jnp.asarray(tol, dtype)))
        sig, its, conv = _pair_arrays(net, bs, out.pop("sigma"), out.pop("exact"), st, max_iter)
        jxn = out.pop("jx_norm").astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            mu = jxn / (sig * out["pre_norm"][:, :, None])
        mu = np.where((sig > 0) & (out["pre_norm"][:, :, None] > 0), mu, np.nan)
        mu[:, np.arange(net.depth), np.arange(net.depth)] = np.where(out["pre_norm"] > 0, 1.0, np.nan)  # μ_{i,i} = 1
        mu[:, np.tril_indices(net.depth, -1)[0], np.tril_indices(net.depth, -1)[1]] = np.nan
        out.update(spectral_norm=sig, interlayer_cushion=mu, power_iters=its, converged=conv)
        parts.append({k: (v[:, :m] if k == "smoothness" else v[:m]) for k, v in out.items()})
        bar.advance(m)
    cat = {k: np.concatenate([p_[k] for p_ in parts], axis=1 if k == "smoothness" else 0) for k in parts[0]}
    dims = _dims(net)
    out = Cushions(
        p=float(p), ts=ts_np, tol=float(tol), max_iter=int(max_iter), method=method,
        widths=tuple(_nets.widths(net)), dims=dims,
        deltas=tuple(np.asarray(v) for v in deltas), column_ratio=column_ratio(net, p),
        seconds=float(time.perf_counter() - t0), **{k: np.asarray(v) for k, v in cat.items()},
    )
    note = out.convergence_note()
    if note is not None:
        warnings.warn(note, UnconvergedWarning, stacklevel=2)
    return out


def remeasure_smoothness(res: Cushions, net: _nets.Net, x, key: Array, p: float, *, draws: int | None = None,
                         ts: Sequence[float] | None = None, batch_size: int | None = None,
                         memory_budget: int = DEFAULT_MEMORY_BUDGET) -> Cushions:
    """``res`` with everything that depends on the dropout probability re-measured at ``p``: fresh Algorithm 1
    masks (``draws``, default ``res.draws``), Definition 3's ``ρ``, the ∞-norm condition and the column
    condition. The cushions, spectral norms and ``c`` do not depend on ``p`` and are kept (same samples ``x``)."""
    x = _check_x(net, x)
    if not 0.0 < p < 1.0:
        raise ValueError(f"dropout probability p must be in (0, 1), got {p}")
    if x.shape[0] != res.n:
        raise ValueError(f"res was measured on {res.n} samples, x has {x.shape[0]}")
    ts_np = res.ts if ts is None else np.asarray(ts, np.float64).reshape(-1)
    k = max(1, res.draws) if draws is None else int(draws)
    if k < 1:
        raise ValueError(f"draws must be >= 1, got {draws}")
    if net.depth < 2:
        return dataclasses.replace(res, p=float(p))
    deltas = sample_masks(net, key, p, k)
    scales = _scales(net, deltas, ts_np, x.dtype)
    n = x.shape[0]
    bs = int(batch_size) if batch_size else _default_batch(net, n, k * ts_np.size, np.dtype(x.dtype).itemsize,
                                                            memory_budget)
    bs = max(1, min(bs, n))
    sm, inf = [], []
    for xc, m in padded_chunks(x, bs, fill=x[:1]):
        out = jax.device_get(_smooth_chunk(net, xc, scales))
        sm.append(np.asarray(out["smoothness"])[:, :m])
        inf.append(np.asarray(out["inf_norm_ratio"])[:m])
    return dataclasses.replace(res, p=float(p), ts=ts_np, deltas=tuple(np.asarray(v) for v in deltas),
                               smoothness=np.concatenate(sm, axis=1), inf_norm_ratio=np.concatenate(inf, axis=0),
                               column_ratio=column_ratio(net, p))
