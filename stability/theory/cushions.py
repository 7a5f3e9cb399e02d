"""Noise stability of a ReLU net (Kuditipudi et al. 2019, Definitions 2–4; docs/THEORY.md §6).

For a sample set ``S`` and a net with pre-activations ``x^1 … x^d`` (``x^d = f(x)``) this
module measures, **per sample** and per layer (or layer pair):

* layer cushion ``μ_i = ‖A_i h^{i−1}‖ / (‖A_i‖_F ‖h^{i−1}‖)`` (Definition 2), ``h^{i−1}`` the actual
  input of layer ``i`` (``x^0`` for ``i = 1``, else ``P(φ(x^{i−1}))`` with the net's pooling ``P``)
  and ``‖A_i‖_F`` the Frobenius norm of layer ``i`` as a *linear operator* on that input
  (:func:`operator_fro_norm`: for a same-padded conv the border taps count fewer positions);
* interlayer cushion ``μ_{i,j} = ‖J^{i,j} x^i‖ / (‖J^{i,j}‖_2 ‖x^i‖)`` with the SPECTRAL norm (the
  paper's change from Arora et al.), ``μ_{i,i} = 1``, and ``μ_{i→} = min_{i≤j≤d} μ_{i,j}``;
* activation contraction ratio ``‖x^i‖ / ‖φ(x^i)‖`` for hidden layers (``c`` is its max);
* interlayer smoothness ``ρ`` (Definition 3) under Algorithm 1 masks, on a grid of ``t``, for
  several mask draws (per draw, per sample and per layer ``i``; the median over draws);
* Definition 4's ``ε = c·d^{3/2}·max_x‖f(x)‖ / (h_min^{1/2} · min_{2≤i≤d} μ_i μ_{i→})`` with its side
  conditions (``h_min``, ``ρ ≥ 3d``, the ``∞``-norm condition) and Lemma 3's column condition.

``J^{i,j}`` is the Jacobian at ``x^i`` of the map ``M^{i,j}: x^i ↦ x^j``. No Jacobian is ever
materialised: spectral norms come from LOBPCG (default; a three-term Krylov/Lanczos-type method)
or power iteration on ``JᵀJ``, applied through ``jax.linearize`` (jvp) and ``jax.vjp`` of the
per-layer maps, vmapped over samples and over all pairs ``(i, j)`` at once: ONE upward sweep
carries every pair's vector (a vector joins the stack at its start layer ``i`` and leaves it at its
end layer ``j``) and one downward sweep the transposes, so an iteration costs ``2(d−1)`` batched
layer applications. Every entry stops at a relative residual ``‖JᵀJv − σ²v‖ ≤ tol·σ²``; the
iteration count and convergence flag of every (sample, pair) are reported. The iteration runs in
jitted blocks driven from the host (XLA:CPU executes ``while_loop`` bodies far slower than the same
ops unrolled), and a batch whose samples have mostly converged continues on a quarter of them.

Mask draws come from :func:`stability.dropout.algorithm1_deltas` (Algorithm 1: columns of
``A_2..A_d``, whole channels for conv nets); one draw is shared by every sample, as Definition 3
requires, and ``θ^i`` uses the draw's masks of layers ``2..i``.

Deviations and choices, stated once:

* **Biases.** The paper's nets are bias-free, where ``M^{i,j}(x^i) = J^{i,j} x^i``. With biases the
  smoothness test uses the linearisation error ``‖M(x̂) − M(x^i) − J(x̂ − x^i)‖`` (identical to the
  paper's ``‖M(x̂) − J x̂‖`` without biases), and cushions use the linear parts only.
* **Conv nets** (channel-wise, Remark 1): a hidden unit is a channel. ``h_i`` in ``h_min``, in the
  ``∞``-norm condition and in Algorithm 1 counts channels; the ``∞``-norm of ``φ(x̂)`` is taken over
  per-channel blocks (``max_c ‖φ(x̂)_c‖``), which is the ordinary ``∞``-norm for dense layers; a
  "column" in the column condition is the whole input-channel block of the operator.
* **Numerically exact linearity.** A linearisation error within ``100·eps`` of the magnitudes
  involved (no activation crossed zero) counts as 0, i.e. ``ρ = ∞`` for that term.
* Undefined entries (below the diagonal, ``φ(x^i) = 0``, ``J = 0``) are NaN (or ``inf``).

Every per-layer array has a last axis of length ``d`` indexed by paper layer ``i − 1``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stability.core import nets as _nets
from stability.core.io import atomic_write
from stability.core.nets import layer_apply, pool2 as _pool2

Array = jax.Array

__all__ = [
    "Cushions", "measure", "load", "sample_masks", "operator_fro_norm", "column_norms", "column_ratio",
    "interlayer_jvps", "spectral_norms", "remeasure_smoothness", "UnconvergedWarning", "DEFAULT_TS",
    "DEFAULT_MEMORY_BUDGET",
]

DEFAULT_TS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
"""The ``t`` grid of Definition 3 (``t = 1`` is the unperturbed net, trivially smooth)."""

DEFAULT_MEMORY_BUDGET = 512 * 2**20
"""Bytes of intermediate values one chunk of samples may use (sets the default batch size)."""

_FORMAT = "stability-cushions"
_VERSION = 1


# --------------------------------------------------------------------------- operators


def _spatial_in(arch: _nets.Arch, l: int) -> tuple[int, int]:
    """(H, W) of the input of 0-based conv layer ``l`` (after the pools of the layers before it)."""
    h, w = arch.in_shape[0], arch.in_shape[1]
    for q in range(l):
        if arch.pool[q] is not None:
            h, w = h // 2, w // 2
    return h, w


def _tap_counts(arch: _nets.Arch, l: int) -> np.ndarray:
    """For a same-padded conv layer: how many output positions read an in-bounds input through
    each kernel tap, ``(k, k)``: ``‖A‖_F² = Σ_{o,c,tap} w² · count(tap)``."""
    h, w = _spatial_in(arch, l)
    k = arch.kernel
    pad = (k - 1) // 2
    cy = np.array([max(0, h - abs(dy - pad)) for dy in range(k)], dtype=np.float64)
    cx = np.array([max(0, w - abs(dx - pad)) for dx in range(k)], dtype=np.float64)
    return np.outer(cy, cx)


def _weight_sq(net: _nets.Net, i: int) -> Array:
    """Squared operator entries of layer ``i`` summed per (output unit, input unit): ``(out, in)``."""
    arch = net.arch
    l = i - 1
    w = net.A(i)
    kind = arch.kinds[l]
    if kind == "conv":
        counts = jnp.asarray(_tap_counts(arch, l), w.dtype)
        return jnp.sum(w * w * counts, axis=(2, 3))
    if kind == "flatten":
        return jnp.sum(w * w, axis=(2, 3))
    if kind == "gap":
        hh, ww, _ = arch.feature_shape()
        return w * w / (hh * ww)
    return w * w


def _fro(net: _nets.Net, i: int) -> Array:
    return jnp.sqrt(jnp.sum(_weight_sq(net, i)))


def operator_fro_norm(net: _nets.Net, i: int) -> Array:
    """``‖A_i‖_F`` of layer ``i`` (1-based) as a linear operator on its whole input: the kernel norm
    weighted by in-bounds positions for a same-padded conv, ``‖w‖/√(HW)`` for global average
    pooling, ``‖w‖_F`` for dense and flatten layers (docs/THEORY.md §6)."""
    if not 1 <= i <= net.depth:
        raise IndexError(f"layer index must be in 1..{net.depth}, got {i}")
    return _fro_jit(net, i)


def column_norms(net: _nets.Net, i: int) -> Array:
    """Operator norm of every column block ``[A_i]_u`` (one per input unit/channel) of layer ``i ≥ 2``."""
    if not 2 <= i <= net.depth:
        raise IndexError(f"column norms are defined for layers 2..{net.depth}, got {i}")
    return _cols_jit(net, i)


_fro_jit = jax.jit(_fro, static_argnums=1)
_cols_jit = jax.jit(lambda net, i: jnp.sqrt(jnp.sum(_weight_sq(net, i), axis=0)), static_argnums=1)


@jax.jit
def _column_ratios(net: _nets.Net) -> Array:
    return jnp.stack([jnp.max(jnp.sqrt(jnp.sum(_weight_sq(net, i), axis=0))) / _fro(net, i)
                      for i in range(2, net.depth + 1)])


def column_ratio(net: _nets.Net, p: float) -> np.ndarray:
    """Lemma 3's column condition ``max_j ‖[A_i]_j‖ / (√p ‖A_i‖_F)`` per layer: shape ``(d,)``, NaN at
    layer 1 (Algorithm 1 never touches ``A_1``). Conv columns are operator input-channel blocks."""
    out = np.full(net.depth, np.nan)
    if net.depth > 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            out[1:] = np.asarray(_column_ratios(net), np.float64) / math.sqrt(p)
    return out


# --------------------------------------------------------------------------- per-layer maps


def _act(arch: _nets.Arch, k: int, xk: Array) -> Array:
    """Input of layer ``k+1`` from the pre-activation ``x^k`` (``k ≥ 1``): ``P(φ(x^k))``."""
    h = jax.nn.relu(xk)
    if k - 1 < arch.n_conv and arch.pool[k - 1] is not None:
        h = _pool2(h, arch.pool[k - 1])
    return h


def _linear(net: _nets.Net, k: int, h: Array) -> Array:
    """``A_k h`` (no bias) on a batch."""
    return layer_apply(net.arch, k - 1, net.A(k), None, h)


def _affine(net: _nets.Net, k: int, h: Array) -> Array:
    """``A_k h + b_k`` on a batch."""
    return layer_apply(net.arch, k - 1, net.A(k), net.bias(k), h)


def _step(net: _nets.Net, k: int, x_prev: Array) -> Array:
    """``M^{k−1,k}``: ``x^{k−1} ↦ x^k`` (``k ≥ 2``)."""
    return _affine(net, k, _act(net.arch, k - 1, x_prev))


def _step_linear(net: _nets.Net, k: int, x_prev: Array) -> Array:
    """The bias-free part of ``M^{k−1,k}`` (same Jacobian, cheaper residuals)."""
    return _linear(net, k, _act(net.arch, k - 1, x_prev))


def _norm(a: Array, lead: int = 1) -> Array:
    """Euclidean norm over all but the first ``lead`` axes."""
    return jnp.sqrt(jnp.sum(a * a, axis=tuple(range(lead, a.ndim))))


def _div(num: Array, den: Array, fill: float = float("nan")) -> Array:
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), fill)


def _linearise(net: _nets.Net, pre: Sequence[Array]):
    """Per layer ``k = 2..d`` the jvp and the vjp of ``M^{k−1,k}`` at the sample's ``x^{k−1}``
    (batched over samples; vmap them over stacks of vectors)."""
    jvps, vjps = {}, {}
    for k in range(2, net.depth + 1):
        g = functools.partial(_step_linear, net, k)
        _, jvps[k] = jax.linearize(g, pre[k - 2])
        _, vjp = jax.vjp(g, pre[k - 2])
        vjps[k] = lambda c, vjp=vjp: vjp(c)[0]
    return jvps, vjps


def _sweep(maps, d: int, inject: dict[int, Array]) -> dict[int, dict[int, Array]]:
    """Carry stacks through layers in ONE upward sweep: ``inject[i]`` (``(S_i, B, *shape of x^i)``)
    joins at layer ``i``; returns ``out[i][j]`` = the stack after layer ``j`` for every ``j > i``.

    ``maps[k]`` maps a batch ``(B, …)`` at layer ``k−1`` to layer ``k`` (a jvp or ``M^{k−1,k}``);
    all starts share each layer's vmapped call, so a sweep costs ``d − 1`` calls, not ``O(d²)``."""
    out: dict[int, dict[int, Array]] = {i: {} for i in inject}
    T, segs = None, []
    for k in range(2, d + 1):
        if k - 1 in inject:
            v = inject[k - 1]
            T = v if T is None else jnp.concatenate([T, v], axis=0)
            segs.append((k - 1, v.shape[0]))
        if T is None:
            continue
        T = jax.vmap(maps[k])(T)
        off = 0
        for i, n in segs:
            out[i][k] = T[off:off + n]
            off += n
    return out


def interlayer_jvps(net: _nets.Net, x: Array) -> list[list[Array]]:
    """``out[i−1] = [J^{i,i} x^i, …, J^{i,d} x^i]`` for every start layer ``i`` at the batch ``x``
    (one upward sweep of jvps). For a bias-free net this is ``[x^i, …, x^d]`` (homogeneity)."""
    x = _check_x(net, x)
    flat = _interlayer_jvps(net, x)
    d, out, r = net.depth, [], 0
    for i in range(1, d + 1):
        out.append(list(flat[r:r + d - i + 1]))
        r += d - i + 1
    return out


@jax.jit
def _interlayer_jvps(net: _nets.Net, x: Array) -> tuple[Array, ...]:
    d = net.depth
    pre = _nets.forward(net, x)
    jvps, _ = _linearise(net, pre)
    sw = _sweep(jvps, d, {i: pre[i - 1][None] for i in range(1, d)})
    return tuple(a for i in range(1, d + 1) for a in [pre[i - 1]] + [sw[i][j][0] for j in range(i + 1, d + 1)])


# --------------------------------------------------------------------------- spectral norms (LOBPCG, power iteration)


def _pair_forward(jvps, d: int, V: Sequence[Array]) -> dict[tuple[int, int], Array]:
    """``J^{i,j} V_i[j−i−1]`` for every pair ``i < j`` in one upward sweep; ``V[i−1]`` is
    ``(d−i, B, *shape of x^i)``. The stack stays sorted by end layer ``j``: after layer ``k`` the
    entries with ``j = k`` are at its front and leave it."""
    out = {}
    T, tags = None, []
    for k in range(2, d + 1):
        new = [(k - 1, j) for j in range(k, d + 1)]
        cat = V[k - 2] if T is None else jnp.concatenate([T, V[k - 2]], axis=0)
        tags = tags + new
        perm = sorted(range(len(tags)), key=lambda r: (tags[r][1], tags[r][0]))
        if perm != list(range(len(tags))):
            cat = cat[np.asarray(perm)]
            tags = [tags[r] for r in perm]
        T = jax.vmap(jvps[k])(cat)
        n_end = sum(1 for t in tags if t[1] == k)
        for r in range(n_end):
            out[tags[r]] = T[r]
        T, tags = T[n_end:], tags[n_end:]
    return out


def _pair_backward(vjps, d: int, U: dict[tuple[int, int], Array]) -> dict[tuple[int, int], Array]:
    """``(J^{i,j})ᵀ U[i, j]`` for every pair in one downward sweep (``U[i, j]`` lives at layer ``j``);
    the stack stays sorted by start layer, descending, so finished entries leave from its front."""
    out = {}
    T, tags = None, []
    for k in range(d, 1, -1):
        new = [(i, k) for i in range(1, k)]
        fresh = jnp.stack([U[t] for t in new])
        cat = fresh if T is None else jnp.concatenate([T, fresh], axis=0)
        tags = tags + new
        perm = sorted(range(len(tags)), key=lambda r: (-tags[r][0], tags[r][1]))
        if perm != list(range(len(tags))):
            cat = cat[np.asarray(perm)]
            tags = [tags[r] for r in perm]
        T = jax.vmap(vjps[k])(cat)                       # now at layer k − 1
        n_done = sum(1 for t in tags if t[0] == k - 1)
        for r in range(n_done):
            out[tags[r]] = T[r]
        T, tags = T[n_done:], tags[n_done:]
    return out


def _start_vectors(shape: tuple[int, ...], seed: Array, dtype) -> Array:
    """Pseudo-random solver start vectors in ``[−½, ½)``: the murmur3 finaliser of
    ``index + seed`` (threefry would add seconds of XLA compile time on CPU for no benefit here)."""
    h = jnp.arange(math.prod(shape), dtype=jnp.uint32).reshape(shape) * jnp.uint32(0x9E3779B9) + seed
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    h = h ^ (h >> 16)
    return ((h >> 8).astype(jnp.float32) * (1.0 / 2**24) - 0.5).astype(dtype)


def _expand(a: Array, like: Array) -> Array:
    return a.reshape(a.shape + (1,) * (like.ndim - a.ndim))


def _unit(v: Array, fallback: Array | None = None) -> tuple[Array, Array]:
    """``v/‖v‖`` per entry (``fallback`` or 0 where ``‖v‖ = 0``) and ``‖v‖``."""
    n = _norm(v, 2)
    ok = n > 0
    u = v / _expand(jnp.where(ok, n, 1), v)
    return jnp.where(_expand(ok, v), u, 0 if fallback is None else fallback), n


# Packed layout: every pair (i, j), i < j, owns one row of a (rows, B, n) array holding its vector
# (of the shape of x^i, flattened and zero-padded to the group's largest n). Start layers are
# grouped so that padding adds at most 30% (an MLP of equal widths is one group, VGG-11 about five):
# the solvers' bookkeeping (inner products, Rayleigh–Ritz) runs once per group, not once per start
# layer (fewer ops to compile), and the padding changes no inner product.

_PAD_SLACK = 1.3


def _groups(pre: Sequence[Array]) -> list[dict[str, Any]]:
    """``[{"starts": [i…], "rows": [(i, j)…], "n": n_max, "sizes": {i: n_i}, "shapes": {i: shape}}]``."""
    d = len(pre)
    info = sorted(((math.prod(pre[i - 1].shape[1:]), i) for i in range(1, d)), reverse=True)
    groups: list[dict[str, Any]] = []
    for n, i in info:
        g = groups[-1] if groups else None
        if g is not None:
            real = sum((d - k) * g["sizes"][k] for k in g["starts"]) + (d - i) * n
            if (sum(d - k for k in g["starts"]) + d - i) * g["n"] <= _PAD_SLACK * real:
                g["starts"].append(i)
                g["sizes"][i], g["shapes"][i] = n, tuple(pre[i - 1].shape)
                continue
        groups.append({"starts": [i], "n": n, "sizes": {i: n}, "shapes": {i: tuple(pre[i - 1].shape)}})
    for g in groups:
        g["starts"].sort()
        g["rows"] = [(i, j) for i in g["starts"] for j in range(i + 1, d + 1)]
    return groups


def _pack(parts: dict[int, Array], pre: Sequence[Array]) -> tuple[Array, ...]:
    """Per-start stacks ``{i: (d−i, B, *shape of x^i)}`` → one packed ``(rows, B, n)`` array per group."""
    out = []
    for g in _groups(pre):
        blocks = []
        for i in g["starts"]:
            v = parts[i].reshape(parts[i].shape[:2] + (g["sizes"][i],))
            blocks.append(jnp.pad(v, ((0, 0), (0, 0), (0, g["n"] - g["sizes"][i]))) if g["sizes"][i] < g["n"] else v)
        out.append(jnp.concatenate(blocks, axis=0) if len(blocks) > 1 else blocks[0])
    return tuple(out)


def _unpack(X: Sequence[Array], pre: Sequence[Array]) -> tuple[Array, ...]:
    """Packed groups → per-start stacks ``(d−i, B, *shape of x^i)`` in start order ``i = 1..d−1``."""
    d = len(pre)
    out = {}
    for g, Xg in zip(_groups(pre), X):
        off = 0
        for i in g["starts"]:
            out[i] = Xg[off:off + d - i, :, :g["sizes"][i]].reshape((d - i,) + g["shapes"][i])
            off += d - i
    return tuple(out[i] for i in range(1, d))


def _init_vectors(pre: Sequence[Array], seed: Array) -> tuple[Array, ...]:
    """Packed unit start vectors (pseudo-random, see :func:`_start_vectors`)."""
    out = []
    for k, g in enumerate(_groups(pre)):
        v = _start_vectors((len(g["rows"]), pre[0].shape[0], g["n"]), seed + jnp.uint32(7919 * k), pre[0].dtype)
        if any(g["sizes"][i] < g["n"] for i in g["starts"]):
            lim = np.concatenate([np.full(len(pre) - i, g["sizes"][i]) for i in g["starts"]])
            v = v * (jnp.arange(g["n"])[None, None, :] < jnp.asarray(lim)[:, None, None]).astype(v.dtype)
        out.append(v / jnp.linalg.norm(v, axis=-1, keepdims=True))
    return tuple(out)


def _gram_apply(jvps, vjps, pre: Sequence[Array], X: Sequence[Array]) -> tuple[Array, ...]:
    """``(J^{i,j})ᵀ J^{i,j} v`` for every pair's packed vector: one upward jvp sweep, one downward vjp sweep."""
    d = len(pre)
    Y = _pair_forward(jvps, d, _unpack(X, pre))
    G = _pair_backward(vjps, d, Y)
    return _pack({i: jnp.stack([G[i, j] for j in range(i + 1, d + 1)]) for i in range(1, d)}, pre)


def _final_sigma(jvps, vjps, pre: Sequence[Array], X: Sequence[Array]) -> dict[tuple[int, int], Array]:
    """``σ ≈ ‖Jᵀu‖`` with ``u = Jv/‖Jv‖`` from a fresh sweep: a lower bound of ``‖J‖₂`` (no drift of
    the recurrences can make it an over-estimate) that is at least the Rayleigh value ``‖Jv‖``.
    Per pair ``(i, j)``: ``(B,)``."""
    d = len(pre)
    Y = _pair_forward(jvps, d, _unpack(X, pre))
    U = {t: _unit(y[None])[0][0] for t, y in Y.items()}
    G = _pair_backward(vjps, d, U)
    return {(i, j): _norm(G[i, j]) for i in range(1, d) for j in range(i + 1, d + 1)}


# Solvers. Each is (init, step) on a packed state (a tuple of groups per quantity): ``init`` builds
# it, ``step`` advances every entry that has not converged by one iteration (one application of
# ``JᵀJ`` = one upward jvp sweep + one downward vjp sweep over all pairs). The iteration is driven
# from the host in jitted blocks of a few unrolled steps (:func:`_solve`): XLA:CPU runs
# ``while_loop`` bodies an order of magnitude slower than the same ops unrolled, and the state
# stays on the device between blocks. ``N`` counts iterations, ``D`` marks finished entries
# (converged, or stopped at ``max_iter``).


def _power_init(jvps, vjps, pre: Sequence[Array], seed: Array) -> dict[str, tuple[Array, ...]]:
    X = _init_vectors(pre, seed)
    return {"X": X, "N": tuple(jnp.zeros(v.shape[:2], jnp.int32) for v in X),
            "D": tuple(jnp.zeros(v.shape[:2], bool) for v in X)}


def _power_step(jvps, vjps, pre: Sequence[Array], st: dict, it: Array, tol: Array, max_iter: Array) -> dict:
    """Power iteration on ``A = JᵀJ``: ``v ← Av/‖Av‖``; done when ``‖Av − λv‖ ≤ tol·λ``
    (``λ = vᵀAv``)."""
    AV = _gram_apply(jvps, vjps, pre, st["X"])
    out = {"X": [], "N": [], "D": []}
    for X, A, N, D in zip(st["X"], AV, st["N"], st["D"]):
        lam = jnp.sum(X * A, -1)
        done = D | (jnp.linalg.norm(A - lam[..., None] * X, axis=-1) <= tol * lam) | (it >= max_iter)
        na = jnp.linalg.norm(A, axis=-1, keepdims=True)
        Xn = jnp.where(na > 0, A / jnp.where(na > 0, na, 1), X)
        out["X"].append(jnp.where(done[..., None], X, Xn))
        out["N"].append(jnp.where(done, N, it + 1))
        out["D"].append(done)
    return {k: tuple(v) for k, v in out.items()}


def _lobpcg_init(jvps, vjps, pre: Sequence[Array], seed: Array) -> dict[str, tuple[Array, ...]]:
    X = _init_vectors(pre, seed)
    AX = _gram_apply(jvps, vjps, pre, X)
    return {"X": X, "AX": AX, "P": tuple(jnp.zeros_like(v) for v in X), "AP": tuple(jnp.zeros_like(v) for v in X),
            "L": tuple(jnp.sum(a * b, -1) for a, b in zip(X, AX)),
            "N": tuple(jnp.zeros(v.shape[:2], jnp.int32) for v in X),
            "D": tuple(jnp.zeros(v.shape[:2], bool) for v in X)}


def _top_eigvec_psd(H: Array, squarings: int = 12) -> Array:
    """Unit top eigenvector of symmetric PSD 3×3 matrices ``(…, 3, 3)`` with elementwise ops only:
    ``2^squarings``-th power by repeated normalised squaring, then its largest column (a LAPACK
    ``eigh`` custom call per step deadlocked XLA:CPU's runtime in unrolled programs). Near-equal top
    eigenvalues give a vector of their span, which is as good for the Ritz step; ``H = 0`` gives
    ``e_0`` (keep ``x``)."""
    tr = jnp.trace(H, axis1=-2, axis2=-1)[..., None, None]
    M = H / jnp.where(tr > 0, tr, 1)
    for _ in range(squarings):
        M = jnp.einsum("...ij,...jk->...ik", M, M)
        t = jnp.trace(M, axis1=-2, axis2=-1)[..., None, None]
        M = M / jnp.where(t > 0, t, 1)
    k = jnp.argmax(jnp.diagonal(M, axis1=-2, axis2=-1), axis=-1)
    v = jnp.take_along_axis(M, k[..., None, None], axis=-1)[..., 0]
    n = jnp.linalg.norm(v, axis=-1, keepdims=True)
    e0 = jnp.zeros_like(v).at[..., 0].set(1.0)
    return jnp.where(n > 0, v / jnp.where(n > 0, n, 1), e0)


def _lobpcg_step(jvps, vjps, pre: Sequence[Array], st: dict, it: Array, tol: Array, max_iter: Array) -> dict:
    """One LOBPCG step for the top eigenpair of ``A = JᵀJ`` on every entry.

    ``A`` is applied once, to the residual direction ``w``; the 3×3 Rayleigh–Ritz problem on
    ``span{x, w, p}`` (``p``: the previous step) gives the new ``x``: a locally optimal three-term
    Krylov (Lanczos-type) recurrence that converges like conjugate gradients where power iteration
    crawls (nearly equal top singular values). ``p`` is dropped when it is numerically inside
    ``span{x, w}``; an entry is done when ``‖Ax − λx‖ ≤ tol·λ``."""
    Ws, dones = [], []
    for X, AX, L, D in zip(st["X"], st["AX"], st["L"], st["D"]):
        R = AX - L[..., None] * X
        dones.append(D | (jnp.linalg.norm(R, axis=-1) <= tol * L) | (it >= max_iter))
        R = R - jnp.sum(X * R, -1, keepdims=True) * X
        nr = jnp.linalg.norm(R, axis=-1, keepdims=True)
        Ws.append(R / jnp.where(nr > 0, nr, 1))
    AWs = _gram_apply(jvps, vjps, pre, Ws)
    out = {k: [] for k in st}
    for g in range(len(Ws)):
        X, AX, P, AP, L, N = (st[k][g] for k in ("X", "AX", "P", "AP", "L", "N"))
        W, AW, done = Ws[g], AWs[g], dones[g]
        keep_tol = jnp.sqrt(jnp.finfo(X.dtype).eps)
        cx, cw, p0 = jnp.sum(X * P, -1, keepdims=True), jnp.sum(W * P, -1, keepdims=True), jnp.linalg.norm(P, axis=-1)
        P, AP = P - cx * X - cw * W, AP - cx * AX - cw * AW
        pn = jnp.linalg.norm(P, axis=-1)
        scale = jnp.where(pn > keep_tol * p0, 1 / jnp.where(pn > 0, pn, 1), 0.0)[..., None]
        P, AP = P * scale, AP * scale
        S, AS = (X, W, P), (AX, AW, AP)
        # explicit terms: on XLA:CPU a reduction over a stacked basis axis is an order of magnitude slower
        h = {(a, b): jnp.sum(S[a] * AS[b], -1) for a in range(3) for b in range(a, 3)}
        H = jnp.stack([jnp.stack([h[min(a, b), max(a, b)] for b in range(3)], -1) for a in range(3)], -2)
        cv = _top_eigvec_psd(H)                                                    # (rows, B, 3)
        c = [cv[..., k, None] for k in range(3)]
        Xn, AXn = c[0] * X + c[1] * W + c[2] * P, c[0] * AX + c[1] * AW + c[2] * AP
        Pn, APn = c[1] * W + c[2] * P, c[1] * AW + c[2] * AP
        nx = jnp.linalg.norm(Xn, axis=-1)
        upd = (nx > 0.5) & ~done                                                   # a unit Ritz vector (else keep x)
        inv = (1 / jnp.where(nx > 0.5, nx, 1))[..., None]
        u = upd[..., None]
        Xn, AXn = Xn * inv, AXn * inv
        out["X"].append(jnp.where(u, Xn, X))
        out["AX"].append(jnp.where(u, AXn, AX))
        out["P"].append(jnp.where(u, Pn, st["P"][g]))
        out["AP"].append(jnp.where(u, APn, st["AP"][g]))
        out["L"].append(jnp.where(upd, jnp.sum(Xn * AXn, -1), L))                 # Rayleigh quotient
        out["N"].append(jnp.where(done, N, it + 1))
        out["D"].append(done)
    return {k: tuple(v) for k, v in out.items()}


_METHODS = {"lobpcg": (_lobpcg_init, _lobpcg_step), "power": (_power_init, _power_step)}


@functools.partial(jax.jit, static_argnames=("method", "steps"))
def _solver_run(net: _nets.Net, x: Array, st: dict, it: Array, seed: Array, tol: Array, max_iter: Array,
                method: str, steps: int) -> tuple[dict, Array]:
    """``steps`` unrolled iterations from the state ``st`` (built here when ``it == 0``; ``st`` is then
    a placeholder of the right shapes); also returns whether every entry is done."""
    pre = _nets.forward(net, x)
    jvps, vjps = _linearise(net, pre)
    init, step = _METHODS[method]
    st = jax.lax.cond(it == 0, lambda: init(jvps, vjps, pre, seed), lambda: st)
    for k in range(steps):
        st = step(jvps, vjps, pre, st, it + k, tol, max_iter)
    return st, jnp.all(jnp.stack([jnp.all(v) for v in st["D"]]))


def _check_method(method: str) -> None:
    if method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}")


_UNROLL_WORK = 1_000_000
"""Vector entries per iteration (batch × Σ_i (d−i)·dim x^i) from which blocks unroll 4 iterations."""


def _auto_unroll(net: _nets.Net, batch: int) -> int:
    """Iterations per jitted block: 1 unless the problem is large (then the per-block overhead of
    re-linearising matters more than compiling a 4× larger program), else 4."""
    dims = _dims(net)
    work = batch * sum((net.depth - i) * dims[i - 1] for i in range(1, net.depth + 1))
    return 1 if work < _UNROLL_WORK else 4


_COMPACT_MIN = 64
"""Batches at least this large are compacted (see :func:`_solve`)."""
_COMPACT_FACTOR = 4
"""Compaction shrinks the batch by this factor once at most that fraction of samples is unfinished."""


def _solve(net: _nets.Net, x: Array, seed: Array, tol: float, max_iter: int, method: str,
           unroll: int | None = None) -> dict:
    """Run the solver on one batch from the host, in jitted blocks; returns its final state.

    The loop runs until every (sample, pair) entry is done, so its cost is set by the slowest
    entry. Compaction: once at most a quarter of the current samples have an unfinished pair, the
    batch shrinks to a quarter (the finished samples' state is parked), so the long tail runs on
    B/4, B/16, … samples (one compile per size; only for batches of at least ``_COMPACT_MIN``)."""
    unroll = unroll or _auto_unroll(net, x.shape[0])
    tol_a, mi = jnp.asarray(tol, x.dtype), jnp.int32(max_iter)
    shapes = jax.eval_shape(lambda net, x: (lambda pre: _METHODS[method][0](*_linearise(net, pre), pre, seed))(
        _nets.forward(net, x)), net, x)
    st = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)    # placeholder for it == 0
    full, idx, xs = None, None, x
    it = 0
    while it < max_iter:
        st, done = _solver_run(net, xs, st, jnp.int32(it), seed, tol_a, mi, method=method, steps=unroll)
        it += unroll
        if bool(done):
            break
        b = xs.shape[0]
        if b >= _COMPACT_MIN:
            sample_done = np.asarray(jnp.all(jnp.concatenate(st["D"], axis=0), axis=0))
            active = np.flatnonzero(~sample_done)
            nb = b // _COMPACT_FACTOR
            if active.size <= nb:
                keep = np.concatenate([active, np.flatnonzero(sample_done)[:nb - active.size]])
                if full is None:
                    full, idx = st, np.arange(b)
                else:
                    full = jax.tree_util.tree_map(lambda f, v: f.at[:, idx].set(v), full, st)
                st = jax.tree_util.tree_map(lambda v: v[:, keep], st)
                xs, idx = xs[keep], idx[keep]
    if full is not None:
        st = jax.tree_util.tree_map(lambda f, v: f.at[:, idx].set(v), full, st)
    return st


def _pair_arrays(pre_shapes: Sequence[Array], B: int, final: dict, st: dict, max_iter: int):
    """``(sigma, iterations, converged)``, each ``(B, d, d)`` with the pairs ``i < j`` filled in
    (diagonal: ``σ = 1``, 0 iterations, converged; below it: NaN, 0, True)."""
    d = len(pre_shapes)
    sig = np.full((B, d, d), np.nan)
    sig[:, np.arange(d), np.arange(d)] = 1.0
    its = np.zeros((B, d, d), np.int64)
    conv = np.ones((B, d, d), bool)
    if d < 2:
        return sig, its, conv
    for g, N, D in zip(_groups(pre_shapes), st["N"], st["D"]):
        N, D = np.asarray(N), np.asarray(D)
        for r, (i, j) in enumerate(g["rows"]):
            sig[:, i - 1, j - 1], its[:, i - 1, j - 1] = np.asarray(final[i, j]), N[r]
            # entries stopped by max_iter are marked done; converged means the residual test held
            conv[:, i - 1, j - 1] = D[r] & (N[r] < max_iter)
    return sig, its, conv


# --------------------------------------------------------------------------- one jitted chunk


def _unit_block_max(arch: _nets.Arch, k: int, a: Array) -> Array:
    """``max_u ‖a_u‖`` over the units of hidden layer ``k``: channels of a conv feature map
    ``(…, H, W, C)``, single coordinates of a dense layer ``(…, h)``."""
    if k <= arch.n_conv:
        return jnp.max(jnp.sqrt(jnp.sum(a * a, axis=(-3, -2))), axis=-1)
    return jnp.max(jnp.abs(a), axis=-1)


def _smoothness_part(net: _nets.Net, x: Array, pre: list[Array], jvps, scales: tuple[Array, ...]):
    """Definition 3 (and Definition 4's ∞-norm condition) for one batch and every (draw, t).

    ``scales[k−1]`` is ``(K, T, *broadcast)``. Returns ``smoothness`` ``(K, B, d)`` (min over ``t``,
    over ``j > i`` and over both perturbed points ``x̂^i_i(t)``, ``x̂^i_{i−1}(t)``) and
    ``inf_norm_ratio`` ``(B, d)``: ``√h_i·max_u‖a_u‖/‖a‖`` for ``a = P(φ(x̂^i))``, the input of layer ``i+1``
    (after its pooling), max over draws and ``t``, the unperturbed point included."""
    arch = net.arch
    d = arch.depth
    B, dt = x.shape[0], x.dtype
    K, T = scales[0].shape[:2]
    flat = tuple(s.reshape((K * T,) + s.shape[2:]) for s in scales)
    pre_norm = [_norm(p) for p in pre]
    # One forward per (draw, t) with every layer 2..d interpolated gives x̂^i_i(t) for all i at
    # once: the layers above i do not touch layer i.
    pre_hat = jax.vmap(lambda s: _nets.forward(net, x, list(s)))(flat)
    tiny = 100 * jnp.finfo(dt).eps
    rho = jnp.full((K, B, d), jnp.nan, dt).at[:, :, d - 1].set(jnp.inf)     # ρ_d: only j = d, M = J = id
    Zs, Ds = {}, {}
    for i in range(2, d):
        za = pre_hat[i - 1]                                                   # x̂^i_i(t)
        if i == 2:                                                            # θ^1 = θ: x̂^2_1(t) = x^2
            zb = jnp.broadcast_to(pre[1], za.shape)
        else:                                                                 # x̂^i_{i−1}(t): A_i unmasked
            zb = jax.vmap(functools.partial(_step, net, i))(pre_hat[i - 2])
        # stack element 0 is x^i itself, so M^{i,j}(x^i) comes from the same computation as M^{i,j}(x̂)
        Zs[i] = jnp.concatenate([pre[i - 1][None], za, zb], axis=0)         # (1 + 2·K·T, B, …)
        Ds[i] = Zs[i][1:] - pre[i - 1]
    if Zs:
        steps = {k: functools.partial(_step, net, k) for k in range(2, d + 1)}
        Ms = _sweep(steps, d, Zs)                                           # M^{i,j}(·), all i at once
        JDs = _sweep(jvps, d, Ds)                                           # J^{i,j}(x̂ − x^i)
    for i in Zs:
        dist = _norm(Ds[i], 2)
        worst = jnp.full(dist.shape, jnp.inf, dt)
        for j in range(i + 1, d + 1):
            h, jd = Ms[i][j], JDs[i][j]
            dm = h[1:] - h[:1]
            err = _norm(dm - jd, 2)                                         # ‖M(x̂) − M(x^i) − J(x̂ − x^i)‖
            # rounding-level errors (no activation crossed zero) count as exact linearity
            exact = err <= tiny * (_norm(dm, 2) + _norm(jd, 2) + pre_norm[j - 1])
            num = dist * pre_norm[j - 1]
            den = pre_norm[i - 1] * err
            ratio = jnp.where(den > 0, num / jnp.where(den > 0, den, 1), jnp.where(num > 0, jnp.inf, 0.0))
            worst = jnp.minimum(worst, jnp.where(exact, jnp.inf, ratio))
        rho = rho.at[:, :, i - 1].set(worst.reshape(2, K, T, B).min(axis=(0, 2)))
    cols = []
    for i in range(1, d):
        # the input of layer i + 1 (after pooling): the vector Lemma 5's ∞-norm condition is about
        a = jax.vmap(functools.partial(_act, arch, i))(jnp.concatenate([pre[i - 1][None], pre_hat[i - 1]], axis=0))
        val = _div(math.sqrt(arch.widths[i - 1]) * _unit_block_max(arch, i, a), _norm(a, 2), 0.0)
        cols.append(jnp.max(val, axis=0))
    cols.append(jnp.full((B,), jnp.nan, dt))
    return {"smoothness": rho, "inf_norm_ratio": jnp.stack(cols, axis=1)}


@jax.jit
def _chunk(net: _nets.Net, x: Array, scales: tuple[Array, ...], X: tuple[Array, ...] | None) -> dict[str, Array]:
    """Every per-sample quantity of :func:`measure` for one batch ``x``: the spectral norms from the
    solver's final vectors ``X`` (:func:`_final_sigma`), layer cushions, ``‖J^{i,j} x^i‖`` (one jvp
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
    out["sigma"] = _final_sigma(jvps, vjps, pre, X) if d >= 2 else {}
    jx = _sweep(jvps, d, {i: pre[i - 1][None] for i in range(1, d)})           # J^{i,j} x^i, all pairs at once
    out["jx_norm"] = jnp.stack([jnp.stack([_norm(jx[i][j][0]) if j > i else jnp.zeros((B,), dt)
                                           for j in range(1, d + 1)], 1) for i in range(1, d + 1)], 1)
    if d >= 2 and scales:
        out.update(_smoothness_part(net, x, pre, jvps, scales))
    else:
        out["smoothness"] = jnp.full((0, B, d), jnp.nan, dt)
        out["inf_norm_ratio"] = jnp.full((B, d), jnp.nan, dt)
    return out


@jax.jit
def _smooth_chunk(net: _nets.Net, x: Array, scales: tuple[Array, ...]) -> dict[str, Array]:
    """Only Definition 3's smoothness and the ∞-norm condition for one batch (no spectral norms)."""
    pre = _nets.forward(net, x)
    jvps, _ = _linearise(net, pre)
    return _smoothness_part(net, x, pre, jvps, scales)


def spectral_norms(net: _nets.Net, x: Array, key: Array, *, tol: float = 1e-4, max_iter: int = 200,
                   method: str = "lobpcg", unroll: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``‖J^{i,j}‖_2`` for every sample and ``1 ≤ i ≤ j ≤ d`` from jvp/vjp only (no materialised
    Jacobian), by LOBPCG (default) or power iteration on ``JᵀJ``, all pairs and samples at once;
    an entry stops at the relative residual ``‖JᵀJv − σ²v‖ ≤ tol·σ²``. The returned ``σ`` is
    ``‖Jᵀu‖``, ``u = Jv/‖Jv‖``, from a fresh sweep: a lower bound of ``‖J‖₂``. ``unroll``:
    iterations per jitted block (default: 1 for tiny problems, else 4).
    Returns ``(sigma, iterations, converged)``, each ``(N, d, d)``: NaN below the diagonal, 1 on it."""
    _check_method(method)
    x = _check_x(net, x)
    d = net.depth
    st = _solve(net, x, _seed(key), tol, max_iter, method, unroll) if d >= 2 else {"X": None}
    pre = jax.eval_shape(lambda x: _nets.forward(net, x), x)
    return _pair_arrays(pre, x.shape[0], _chunk(net, x, (), st["X"])["sigma"], st, max_iter)


def _seed(key: Array) -> Array:
    """A ``uint32`` seed for :func:`_start_vectors` drawn from ``key``."""
    return jnp.asarray(jax.random.bits(key, (), jnp.uint32))


# --------------------------------------------------------------------------- masks


def sample_masks(net: _nets.Net, key: Array, p: float, draws: int) -> tuple[np.ndarray, ...]:
    """``draws`` independent Algorithm 1 draws: per hidden layer ``k`` an array ``(draws, h_k)`` of
    column multipliers ``δ ∈ {0, 1/(1−p)}`` for ``A_{k+1}`` (whole channels for conv nets)."""
    from stability.theory.dropout import algorithm1_deltas

    if draws < 1:
        raise ValueError(f"need at least one mask draw, got {draws}")
    rows = [algorithm1_deltas(k, net, p) for k in jax.random.split(key, draws)]
    return tuple(np.stack([np.asarray(r[l]) for r in rows]) for l in range(net.depth - 1))


def _scales(net: _nets.Net, deltas: Sequence[np.ndarray], ts: np.ndarray, dtype) -> tuple[Array, ...]:
    """Column multipliers of ``t·θ + (1−t)·θ^d`` for every (draw, t), broadcastable to ``φ(x^k)``."""
    arch = net.arch
    out = []
    for k, dl in enumerate(deltas, start=1):
        dl = np.asarray(dl, np.float64)
        s = ts[None, :, None] + (1.0 - ts[None, :, None]) * dl[:, None, :]      # (K, T, h)
        K, T, h = s.shape
        shape = (K, T, 1, 1, 1, h) if k <= arch.n_conv else (K, T, 1, h)
        out.append(jnp.asarray(s.reshape(shape), dtype))
    return tuple(out)


# --------------------------------------------------------------------------- result


def _nanmin(a: np.ndarray, axis=None):
    """``np.nanmin`` that returns NaN for all-NaN slices without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmin(np.asarray(a, dtype=np.float64), axis=axis)


@dataclasses.dataclass(frozen=True, eq=False)
class Cushions:
    """Per-sample noise-stability quantities of one net on a sample set (Definitions 2–4).

    Per-layer arrays have a last axis of length ``d`` (index ``i − 1`` for paper layer ``i``);
    pair arrays are ``(N, d, d)`` with ``[:, i−1, j−1]`` for the pair ``(i, j)``. Undefined
    entries are NaN. ``smoothness`` is ``(draws, N, d)``: per mask draw, sample and start layer
    ``i`` the largest ``ρ`` satisfying Definition 3's inequalities for every ``j ≥ i`` and ``t``.
    """

    p: float
    ts: np.ndarray
    tol: float
    max_iter: int
    widths: tuple[int, ...]            # hidden units per layer (channels for conv layers)
    dims: tuple[int, ...]              # size of x^i per sample, i = 1..d
    deltas: tuple[np.ndarray, ...]     # Algorithm 1 multipliers, per hidden layer (draws, h)
    layer_cushion: np.ndarray          # (N, d)      μ_i
    interlayer_cushion: np.ndarray     # (N, d, d)   μ_{i,j}
    spectral_norm: np.ndarray          # (N, d, d)   ‖J^{i,j}‖_2
    power_iters: np.ndarray            # (N, d, d)   solver iterations used (LOBPCG or power iteration)
    converged: np.ndarray              # (N, d, d)   reached the tolerance
    contraction: np.ndarray            # (N, d)      ‖x^i‖/‖φ(x^i)‖, NaN at layer d
    smoothness: np.ndarray             # (K, N, d)   ρ per draw, NaN at layer 1, inf at layer d
    inf_norm_ratio: np.ndarray         # (N, d)      √h_i·max_u‖a_u‖/‖a‖, a = P(φ(x̂^i)), max over draws and t
    pre_norm: np.ndarray               # (N, d)      ‖x^i‖
    column_ratio: np.ndarray           # (d,)        max_j ‖[A_i]_j‖/(√p‖A_i‖_F), NaN at layer 1
    seconds: float = float("nan")
    method: str = "lobpcg"             # spectral-norm solver

    # ---- derived per-sample values

    @property
    def depth(self) -> int:
        return len(self.dims)

    @property
    def n(self) -> int:
        return int(self.layer_cushion.shape[0])

    @property
    def draws(self) -> int:
        return int(self.smoothness.shape[0])

    @property
    def h_min(self) -> int:
        """Smallest hidden width (units that Algorithm 1 drops independently)."""
        return int(min(self.widths)) if self.widths else 0

    @property
    def interlayer_min(self) -> np.ndarray:
        """``μ_{i→} = min_{i≤j≤d} μ_{i,j}`` per sample, ``(N, d)`` (pairs with ``J = 0`` are skipped)."""
        d = self.depth
        m = np.where(np.triu(np.ones((d, d), bool))[None], self.interlayer_cushion, np.nan)
        return _nanmin(m, axis=2)

    @property
    def output_norm(self) -> np.ndarray:
        """``‖f(x)‖`` per sample."""
        return self.pre_norm[:, -1]

    @property
    def smoothness_median(self) -> np.ndarray:
        """Median over mask draws of the per-sample, per-layer ``ρ``: ``(N, d)``."""
        with np.errstate(all="ignore"):
            return np.median(self.smoothness, axis=0)

    # ---- Definition 2–4 summaries (min / max over the sample set)

    def rho(self) -> float:
        """Definition 3: the largest ``ρ`` that holds for every sample, layer pair and ``t`` in at
        least half of the mask draws (the ``⌈K/2⌉``-th largest per-draw minimum)."""
        if self.draws == 0 or self.depth < 3:
            return float("inf")
        per_draw = np.array([np.nanmin(np.where(np.isnan(s), np.inf, s)) for s in self.smoothness])
        return float(np.sort(per_draw)[::-1][math.ceil(self.draws / 2) - 1])

    def c(self) -> float:
        """Activation contraction ``c = max_{x, i} ‖x^i‖/‖φ(x^i)‖`` (hidden layers)."""
        return float(np.nanmax(self.contraction)) if self.depth > 1 else 1.0

    def epsilon(self, q: float | None = None) -> float:
        """Definition 4's ``ε = c·d^{3/2}·max_x‖f(x)‖ / (h_min^{1/2} · min_{2≤i≤d} μ_i μ_{i→})``.

        ``q=None`` is the paper's (minima and maxima over the sample set). ``q`` in (0, 0.5) gives a
        robust variant (not the paper's) with ``q``-quantiles in place of minima and ``1−q`` in place
        of maxima, per quantity."""
        d = self.depth
        if d < 2:
            return float("nan")
        lc, im = self.layer_cushion[:, 1:], self.interlayer_min[:, 1:]
        with np.errstate(all="ignore"):
            if q is None:
                c, fmax = self.c(), float(np.nanmax(self.output_norm))
                mu, mu_to = np.nanmin(lc, axis=0), np.nanmin(im, axis=0)
            else:
                if not 0.0 < q < 0.5:
                    raise ValueError(f"quantile q must be in (0, 0.5), got {q}")
                # order statistics (no interpolation: contraction may be ∞ where φ(x^i) = 0)
                c = float(np.nanquantile(np.nanmax(self.contraction[:, :-1], axis=1), 1 - q, method="higher"))
                fmax = float(np.nanquantile(self.output_norm, 1 - q, method="higher"))
                mu = np.nanquantile(lc, q, axis=0, method="lower")
                mu_to = np.nanquantile(im, q, axis=0, method="lower")
            den = math.sqrt(self.h_min) * float(np.nanmin(mu * mu_to))
        return float(c * d ** 1.5 * fmax / den) if den > 0 else float("inf")

    # ---- convergence of the spectral-norm solver (σ is a lower bound of ‖J‖₂ until it converges)

    def unconverged_fraction(self) -> np.ndarray:
        """``(d, d)``: per pair ``(i, j)``, ``i < j``, the fraction of samples whose ``‖J^{i,j}‖₂`` did not reach
        the solver tolerance (NaN on and below the diagonal)."""
        d = self.depth
        out = np.full((d, d), np.nan)
        iu = np.triu_indices(d, 1)
        if self.n:
            out[iu] = np.mean(~self.converged[:, iu[0], iu[1]], axis=0)
        return out

    def epsilon_converged(self) -> bool:
        """Whether every spectral norm entering ``μ_{i→}`` for ``i ≥ 2`` (hence ``ε``) converged. An unconverged
        ``σ`` under-estimates ``‖J‖₂``, so ``μ_{i→}`` is over-estimated and ``ε`` under-estimated."""
        d = self.depth
        rows = [(i, j) for i in range(1, d) for j in range(i + 1, d)]  # 0-based (i, j): paper 2 ≤ i < j ≤ d
        return bool(all(self.converged[:, i, j].all() for i, j in rows)) if rows else True

    def convergence_note(self) -> str | None:
        """``None`` when every spectral norm converged, else one line for reports and verdicts."""
        frac = self.unconverged_fraction()
        if not np.any(frac[np.isfinite(frac)] > 0):
            return None
        worst = np.nanmax(frac)
        i, j = np.unravel_index(int(np.nanargmax(frac)), frac.shape)
        msg = (f"UNCONVERGED: {np.nanmean(np.where(np.isfinite(frac), frac, np.nan)) * 100:.1f}% of the spectral norms "
               f"(worst pair ({i + 1}, {j + 1}): {worst * 100:.1f}% of samples) did not reach tol = {self.tol:g} in "
               f"{self.max_iter} iterations; σ is then a lower bound, so μ_(i→) may be over- and ε under-estimated")
        return msg + ("" if self.epsilon_converged() else "; ε is computed from unconverged entries")

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers: Definition 2–4 scalars, side conditions, per-layer distributions."""
        d = self.depth

        def per_layer(a: np.ndarray) -> dict[str, list[float | None]]:
            out: dict[str, list[float | None]] = {"min": [], "median": [], "max": []}
            for i in range(d):
                col = np.asarray(a[..., i], np.float64).reshape(-1)
                col = col[np.isfinite(col)]
                for k, f in (("min", np.min), ("median", np.median), ("max", np.max)):
                    out[k].append(float(f(col)) if col.size else None)
            return out

        rho = self.rho()
        finite = self.converged[:, np.triu_indices(d, 1)[0], np.triu_indices(d, 1)[1]] if d > 1 else np.ones(1, bool)
        iters = self.power_iters[:, np.triu_indices(d, 1)[0], np.triu_indices(d, 1)[1]] if d > 1 else np.zeros(1)
        return {
            "n": self.n, "depth": d, "p": self.p, "ts": self.ts.tolist(), "draws": self.draws,
            "widths": list(self.widths), "h_min": self.h_min,
            "c": self.c(), "rho": rho, "epsilon": self.epsilon(), "epsilon_q05": self.epsilon(0.05),
            "mu_min": [None if not np.isfinite(v) else float(v) for v in _nanmin(self.layer_cushion, axis=0)],
            "mu_to_min": [None if not np.isfinite(v) else float(v) for v in _nanmin(self.interlayer_min, axis=0)],
            "max_output_norm": float(np.nanmax(self.output_norm)),
            "side_conditions": {
                "h_min": self.h_min, "rho_ge_3d": bool(rho >= 3 * d), "three_d": 3 * d,
                "inf_norm_constant_max": float(np.nanmax(self.inf_norm_ratio)) if d > 1 else None,
                "inf_norm_constant_per_layer": per_layer(self.inf_norm_ratio)["max"][:-1],
                "column_ratio": [None if not np.isfinite(v) else float(v) for v in self.column_ratio],
                "column_ratio_max": float(np.nanmax(self.column_ratio)) if d > 1 else None,
            },
            "solver": {"method": self.method, "tol": self.tol, "max_iter": self.max_iter,
                       "converged_fraction": float(np.mean(finite)),
                       "unconverged_fraction_per_pair": self.unconverged_fraction().tolist(),
                       "epsilon_converged": self.epsilon_converged(), "note": self.convergence_note(),
                       "iterations_median": float(np.median(iters)), "iterations_max": int(np.max(iters))},
            "epsilon_flag": None if self.epsilon_converged() else "computed from unconverged spectral norms "
                                                                   "(may be under-estimated)",
            "layer_cushion": per_layer(self.layer_cushion),
            "interlayer_min": per_layer(self.interlayer_min),
            "contraction": per_layer(self.contraction),
            "smoothness_median": per_layer(self.smoothness_median),
            "seconds": self.seconds,
        }

    # ---- persistence

    _ARRAYS = ("ts", "layer_cushion", "interlayer_cushion", "spectral_norm", "power_iters", "converged",
               "contraction", "smoothness", "inf_norm_ratio", "pre_norm", "column_ratio")

    def save(self, path: str | os.PathLike) -> Path:
        """Write every array and setting to one ``.npz`` (atomically); :func:`load` reads it back."""
        header = {"format": _FORMAT, "version": _VERSION, "p": self.p, "tol": self.tol, "max_iter": self.max_iter,
                  "widths": list(self.widths), "dims": list(self.dims), "seconds": self.seconds,
                  "method": self.method}
        arrays = {"__header__": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
        arrays.update({k: np.asarray(getattr(self, k)) for k in self._ARRAYS})
        arrays.update({f"deltas{l}": np.asarray(v) for l, v in enumerate(self.deltas)})
        return atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Cushions":
        with np.load(Path(path), allow_pickle=False) as z:
            if "__header__" not in z.files:
                raise ValueError(f"{path} is not a saved Cushions result")
            header = json.loads(bytes(z["__header__"]).decode())
            if header.get("format") != _FORMAT or header.get("version") != _VERSION:
                raise ValueError(f"{path} has format {header.get('format')!r} v{header.get('version')}, "
                                 f"expected {_FORMAT!r} v{_VERSION}")
            arrays = {k: z[k] for k in cls._ARRAYS}
            deltas = tuple(z[f"deltas{l}"] for l in range(len(header["widths"])))
        return cls(p=float(header["p"]), tol=float(header["tol"]), max_iter=int(header["max_iter"]),
                   widths=tuple(header["widths"]), dims=tuple(header["dims"]), deltas=deltas,
                   seconds=float(header["seconds"]) if header["seconds"] is not None else float("nan"),
                   method=header.get("method", "lobpcg"), **arrays)


def load(path: str | os.PathLike) -> Cushions:
    """Read a :class:`Cushions` written by :meth:`Cushions.save`."""
    return Cushions.load(path)


# --------------------------------------------------------------------------- measure


def _check_x(net: _nets.Net, x) -> Array:
    dtype = jax.tree_util.tree_leaves(net)[0].dtype
    x = jnp.asarray(x, dtype)
    if tuple(x.shape[1:]) != net.arch.in_shape or x.shape[0] == 0:
        raise ValueError(f"x must have shape (N > 0, {', '.join(map(str, net.arch.in_shape))}), got {tuple(x.shape)}")
    return x


def _dims(net: _nets.Net) -> tuple[int, ...]:
    """Size of ``x^i`` per sample, ``i = 1..d``."""
    dtype = jax.tree_util.tree_leaves(net)[0].dtype
    shapes = jax.eval_shape(lambda x: _nets.forward(net, x), jax.ShapeDtypeStruct((1,) + net.arch.in_shape, dtype))
    return tuple(int(np.prod(s.shape[1:])) for s in shapes)


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
            memory_budget: int = DEFAULT_MEMORY_BUDGET, unroll: int | None = None, log=None) -> Cushions:
    """Every noise-stability quantity of ``net`` on the samples ``x`` (Definitions 2–4, docs/THEORY.md §6).

    ``p``/``draws``: Algorithm 1 dropout probability and the number of mask draws for the
    interlayer smoothness (``masks`` overrides them: per hidden layer an array ``(draws, h)`` of
    column multipliers); ``ts``: the ``t`` grid; ``method``/``tol``/``max_iter``: the spectral-norm
    solver (``"lobpcg"`` or ``"power"``) and its stopping rule (relative residual of ``JᵀJ``,
    see :func:`spectral_norms`; ``unroll`` iterations per jitted block). Samples are processed in
    equal-size jitted chunks (``batch_size`` or a size that fits ``memory_budget``); the mask draws
    are shared by all samples, as Definition 3 requires.
    """
    import time

    t0 = time.perf_counter()
    x = _check_x(net, x)
    if not 0.0 < p < 1.0:
        raise ValueError(f"dropout probability p must be in (0, 1), got {p}")
    ts_np = np.asarray(ts, np.float64).reshape(-1)
    if ts_np.size == 0 or np.any((ts_np < 0) | (ts_np > 1)):
        raise ValueError(f"ts must be a non-empty grid in [0, 1], got {ts_np.tolist()}")
    if tol <= 0 or max_iter < 1:
        raise ValueError(f"need tol > 0 and max_iter >= 1, got tol={tol}, max_iter={max_iter}")
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
    parts: list[dict[str, np.ndarray]] = []
    n_chunks = -(-n // bs)
    for c in range(n_chunks):
        xc = x[c * bs:(c + 1) * bs]
        m = xc.shape[0]
        if m < bs:  # pad with real samples (no NaNs in the solver); trimmed below
            xc = jnp.concatenate([xc, jnp.repeat(x[:1], bs - m, axis=0)])
        st = _solve(net, xc, _seed(jax.random.fold_in(k_pow, c)), tol, max_iter, method, unroll) \
            if net.depth >= 2 else {"X": None}
        out = jax.device_get(_chunk(net, xc, scales, st["X"]))
        sig, its, conv = _pair_arrays(jax.eval_shape(lambda x: _nets.forward(net, x), xc), bs, out.pop("sigma"), st,
                                      max_iter)
        jxn = out.pop("jx_norm").astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            mu = jxn / (sig * out["pre_norm"][:, :, None])
        mu = np.where((sig > 0) & (out["pre_norm"][:, :, None] > 0), mu, np.nan)
        mu[:, np.arange(net.depth), np.arange(net.depth)] = np.where(out["pre_norm"] > 0, 1.0, np.nan)  # μ_{i,i} = 1
        mu[:, np.tril_indices(net.depth, -1)[0], np.tril_indices(net.depth, -1)[1]] = np.nan
        out.update(spectral_norm=sig, interlayer_cushion=mu, power_iters=its, converged=conv)
        parts.append({k: (v[:, :m] if k == "smoothness" else v[:m]) for k, v in out.items()})
        if log is not None:
            log(f"  cushions: {min(n, (c + 1) * bs)}/{n} samples ({time.perf_counter() - t0:.1f} s)")
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
        if log is not None:
            log(f"  cushions: {note}")
    return out


class UnconvergedWarning(RuntimeWarning):
    """Some spectral norms of :func:`measure` did not reach the solver tolerance (their ``σ`` is a lower bound)."""


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
    for c in range(-(-n // bs)):
        xc = x[c * bs:(c + 1) * bs]
        m = xc.shape[0]
        if m < bs:
            xc = jnp.concatenate([xc, jnp.repeat(x[:1], bs - m, axis=0)])
        out = jax.device_get(_smooth_chunk(net, xc, scales))
        sm.append(np.asarray(out["smoothness"])[:, :m])
        inf.append(np.asarray(out["inf_norm_ratio"])[:m])
    return dataclasses.replace(res, p=float(p), ts=ts_np, deltas=tuple(np.asarray(v) for v in deltas),
                               smoothness=np.concatenate(sm, axis=1), inf_norm_ratio=np.concatenate(inf, axis=0),
                               column_ratio=column_ratio(net, p))
