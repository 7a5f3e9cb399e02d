"""Sound per-batch loss sums from the enclosure of the last hidden layer (cross-entropy, squared error).

For each sub-interval the program returns three sums over the batch: upper bounds of a CONVEX
majorant ``Σ_i g_i(s)`` of the summed loss at ``s = −δ`` and ``s = +δ`` (its maximum over
``[−δ, δ]`` is at an end, so their max bounds the loss on the whole sub-interval), and a lower
bound of the summed loss at ``s = 0`` (the sub-interval's midpoint).

* Cross-entropy: ``CE = log Σ_j exp(d_j)``, ``d_j = z_j − z_y`` (``d_y = 0``), increasing in every
  ``d_j``. The differences are enclosed directly from the last hidden layer,
  ``d_j = (W_j − W_y)·h + (β_j − β_y)``, so what ``W_j`` and ``W_y`` share cancels (``pairwise``);
  ``g_i(s) = log Σ_j exp(a_j + b_j s + r_j)`` is a log-sum-exp of affine functions: convex.
* Squared error: ``½ Σ_j (z_j − t_j)² ≤ ½ Σ_j (|a_j + b_j s| + r_j)²``, convex in ``s``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from stability.theory.bounds.rounding import ETA, U, Rounding
from stability.theory.bounds.taylor import TM, Op, linear

Array = jax.Array

__all__ = ["cross_entropy_sums", "squared_error_sums"]


def _abs_affine_up(a: Array, b: Array | None, sigma: float | Array, delta: Array, r: Array, rnd: Rounding) -> Array:
    """Upper bound of ``|a + b·σ| + r`` (``|σ| ≤ δ``)."""
    if b is None:
        return rnd.inflate(jnp.abs(a) + r, 2)
    x = a + b * sigma
    return rnd.inflate(jnp.abs(x) + rnd.gamma(2) * (jnp.abs(a) + delta * jnp.abs(b)) + r, 8)


def _lse_up(v: Array, rnd: Rounding) -> Array:
    """``≥ log Σ_j exp(v_j)`` along the last axis when some ``v_j = 0`` exactly (so the sum is ≥ 1)."""
    m = jnp.max(v, axis=-1, keepdims=True)
    s = rnd.sum_up(rnd.exp_up(rnd.up(v - m)), -1)
    return rnd.up(m[..., 0] + rnd.log_up(jnp.maximum(s, 1.0)))


def _lse_down(v: Array, rnd: Rounding) -> Array:
    """``≤ log Σ_j exp(v_j)`` (the exact sum of ``exp(v_j − m)`` is ≥ 1 at the maximiser)."""
    m = jnp.max(v, axis=-1, keepdims=True)
    s = rnd.sum_down(rnd.exp_down(rnd.down(v - m)), -1)
    return rnd.down(m[..., 0] + rnd.log_down(jnp.maximum(s, 1.0)))


def _centre(op: Op, A: Array, B: Array | None, bias: TM | None, h: TM) -> tuple[Array, Array | None]:
    az = op(A, h.a)
    bz = None
    if h.b is not None or B is not None:
        bz = op(A, h.b) if B is None else (op(B, h.a) if h.b is None else op(A, h.b) + op(B, h.a))
    if bias is not None:
        az = az + bias.a
        if bias.b is not None:
            bz = bias.b if bz is None else bz + bias.b
    return az, bz


def _own_error(op: Op, n: int, W: TM, bias: TM | None, h: TM, delta: Array, rnd: Rounding) -> Array:
    """Per output: rounding of the centre and slope, and the weight remainder ``R_W``: everything of
    :func:`taylor.linear`'s radius that is not carried by ``|A|·r``, ``|B|·(δ r + δ²|b|)``."""
    A, B, RW = W
    g = rnd.gamma(2 * n + 1)
    eta = ETA if rnd.sound else 0.0  # see taylor.linear
    abs_a = jnp.abs(h.a)
    abs_b = None if h.b is None else jnp.abs(h.b)
    q = op(jnp.abs(A), (g * abs_a if abs_b is None else g * (abs_a + delta * abs_b)) + eta)
    if B is not None:
        q = q + op(jnp.abs(B), g * delta * abs_a + eta)
    q = q + op(RW, (abs_a + h.r if abs_b is None else abs_a + delta * abs_b + h.r) + eta)
    if bias is not None:
        q = q + bias.r + g * jnp.abs(bias.a)
        if bias.b is not None:
            q = q + g * delta * jnp.abs(bias.b)
    return q


def _pair_radius(op: Op, W: TM, h: TM, y: Array, delta: Array, eta: float) -> Array:
    """``Σ_k (|A_j − A_y| + δ|B_j − B_y|)_k r_k + δ²|B_j − B_y|_k |b_k|`` for every sample's label ``y``:
    ``(batch, classes)``. ``eta`` covers differences flushed to zero."""
    A, B, _ = W
    C = A.shape[0]
    dA = jnp.abs(A[:, None] - A[None, :]) + eta  # [j, y, ...]
    P1 = dA if B is None else dA + delta * jnp.abs(B[:, None] - B[None, :])
    t = op(P1.reshape((C * C,) + A.shape[1:]), h.r)
    if B is not None and h.b is not None:
        P2 = delta * delta * jnp.abs(B[:, None] - B[None, :]) + eta
        t = t + op(P2.reshape((C * C,) + A.shape[1:]), jnp.abs(h.b) + eta)
    t = t.reshape(t.shape[0], C, C)  # [i, j, y]
    return jnp.take_along_axis(t, y[:, None, None].astype(jnp.int32), axis=2)[..., 0]


def cross_entropy_sums(op: Op, n: int, W: TM, bias: TM | None, h: TM, y: Array, mask: Array, delta: Array,
                       rnd: Rounding, pairwise: bool) -> tuple[Array, Array, Array]:
    """``(Σ_i g_i(−δ), Σ_i g_i(+δ), Σ_i CE_i(0))``: upper, upper, lower (masked samples count 0)."""
    az, bz = _centre(op, W.a, W.b, bias, h)
    yi = y[:, None].astype(jnp.int32)
    ad = az - jnp.take_along_axis(az, yi, axis=1)
    bd = None if bz is None else bz - jnp.take_along_axis(bz, yi, axis=1)
    if pairwise:
        q = _own_error(op, n, W, bias, h, delta, rnd)
        main = _pair_radius(op, W, h, y, delta, ETA if rnd.sound else 0.0)
        rad = main + q + jnp.take_along_axis(q, yi, axis=1)
    else:
        rz = linear(op, n, W, bias, h, delta, rnd).r
        rad = rz + jnp.take_along_axis(rz, yi, axis=1)
    sub = 2 * U * (jnp.abs(ad) if bd is None else jnp.abs(ad) + delta * jnp.abs(bd)) if rnd.sound else 0.0
    rd = rnd.inflate(rad + sub, 3 * n + 48)
    is_y = jnp.arange(ad.shape[1])[None, :] == yi
    lo = jnp.where(is_y, 0.0, rnd.down(ad - rd))
    lower = _lse_down(lo, rnd)
    if bd is None:
        up = _lse_up(jnp.where(is_y, 0.0, rnd.up(ad + rd)), rnd)
        ups = (up, up)
    else:
        ups = tuple(_lse_up(jnp.where(is_y, 0.0, rnd.up(ad + rnd.up(rnd.up(bd * sg) + rd))), rnd)
                    for sg in (-delta, delta))
    return (rnd.sum_up(ups[0] * mask, 0), rnd.sum_up(ups[1] * mask, 0), rnd.sum_down(lower * mask, 0))


def squared_error_sums(op: Op, n: int, W: TM, bias: TM | None, h: TM, target: Array, mask: Array, delta: Array,
                       rnd: Rounding) -> tuple[Array, Array, Array]:
    """``(Σ_i φ_i(−δ), Σ_i φ_i(+δ), Σ_i SE_i(0))`` with ``φ_i(s) = ½ Σ_j (|a_j + b_j s| + r_j)²``."""
    z = linear(op, n, W, bias, h, delta, rnd)
    a = z.a - target
    r = rnd.inflate(z.r + 2 * U * jnp.abs(a), 4) if rnd.sound else z.r
    ups = []
    for sg in (-delta, delta):
        w = _abs_affine_up(a, z.b, sg, delta, r, rnd)
        ups.append(rnd.up(rnd.sum_up(rnd.up(w * w), -1) * 0.5))
    lo = jnp.maximum(rnd.down(jnp.abs(a) - r), 0.0)
    lower = rnd.down(rnd.sum_down(rnd.down(lo * lo), -1) * 0.5)
    return (rnd.sum_up(ups[0] * mask, 0), rnd.sum_up(ups[1] * mask, 0), rnd.sum_down(lower * mask, 0))
