"""Definition 3's interlayer smoothness ρ and Definition 4's ∞-norm condition under Algorithm 1 masks."""

from __future__ import annotations

import functools
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stability.core import nets as _nets
from stability.theory.cushions.operators import _div, _norm
from stability.theory.cushions.maps import _act, _linearise, _step, _sweep

Array = jax.Array


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
def _smooth_chunk(net: _nets.Net, x: Array, scales: tuple[Array, ...]) -> dict[str, Array]:
    """Only Definition 3's smoothness and the ∞-norm condition for one batch (no spectral norms)."""
    pre = _nets.forward(net, x)
    jvps, _ = _linearise(net, pre)
    return _smoothness_part(net, x, pre, jvps, scales)


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
