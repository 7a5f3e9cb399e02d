"""First-order Taylor models in one variable and the sound operations of a ReLU net on them.

On a sub-interval ``[u_mid − δ, u_mid + δ]`` of a piece's local time, write ``s = u − u_mid``. A
quantity ``v(s)`` is enclosed by the Taylor model ``TM(a, b, r)`` when, for EVERY ``s ∈ [−δ, δ]``,
``v(s) = a + b·s + e(s)`` with ``|e(s)| ≤ r`` — ``a``, ``b`` are float64 numbers taken as exact
reals, ``r`` is an upper bound that absorbs every rounding error (:mod:`.rounding`). ``b = None``
is an interval (``v ∈ a ± r``): the same code then does plain midpoint–radius interval arithmetic.

Every function below maps enclosures of its inputs to an enclosure of its output (the arguments
are written out in ``docs/theory/bounds.md``). Arrays here are one sub-interval's (the program
``vmap`` s them over sub-intervals).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from stability.theory.bounds.rounding import ETA, U, Rounding

Array = jax.Array
Op = Callable[[Array, Array], Array]

__all__ = ["TM", "poly_combination", "to_interval", "linear", "relu", "max_pool", "avg_pool", "mean_hw"]


class TM(NamedTuple):
    """``v(s) ∈ a + b·s + [−r, r]`` for all ``s ∈ [−δ, δ]`` (``b = None``: an interval ``a ± r``)."""

    a: Array
    b: Array | None
    r: Array


def _abs_b_delta(b: Array | None, delta: Array, rnd: Rounding) -> Array:
    return 0.0 if b is None else rnd.up(jnp.abs(b) * delta)


def poly_combination(V: Array, E: Array | None, c: Array, rho: Array, sigma: Array, delta: Array,
                     rnd: Rounding, order: int) -> TM:
    """Enclose ``Σ_k p_k(u_mid + s)·V_k`` where ``p_k(u_mid + s) = Σ_m c[k, m]·s^m`` exactly up to the
    coefficient errors folded into ``rho``/``sigma``, and the exact ``V_k`` lie within ``E_k`` of the
    stored ones (``E = None``: exact).

    ``a = Σ_k c[k,0] V_k``, ``b = Σ_k c[k,1] V_k`` and ``r = Σ_{m≥2} δ^m |Σ_k c[k,m] V_k| +
    Σ_k ρ_k |V_k| + Σ_k σ_k E_k`` with ``ρ_k = Σ_m δ^m (ε_{k,m} + γ_K |c_{k,m}|)`` (coefficient and
    summation errors) and ``σ_k = Σ_m δ^m (|c_{k,m}| + ε_{k,m})`` — computed on the host.
    """
    K, M1 = c.shape
    C = jnp.tensordot(c.T, V, axes=1)  # (M1, ...): Σ_k c[k, m] V_k
    a = C[0]
    b = C[1] if M1 > 1 else jnp.zeros_like(a)
    r = jnp.tensordot(rho, jnp.abs(V), axes=1)
    if E is not None:
        r = r + jnp.tensordot(sigma, E, axes=1)
    dm = delta
    for m in range(2, M1):
        dm = dm * delta
        r = r + dm * jnp.abs(C[m])
    r = rnd.inflate(r, 2 * K + 2 * M1 + 4)
    tm = TM(a, b, r)
    return to_interval(tm, delta, rnd) if order == 0 else tm


def to_interval(h: TM, delta: Array, rnd: Rounding) -> TM:
    """Fold the linear term into the radius: ``a ± (r + |b|·δ)``."""
    if h.b is None:
        return h
    return TM(h.a, None, rnd.up(h.r + _abs_b_delta(h.b, delta, rnd)))


def linear(op: Op, n: int, W: TM, bias: TM | None, h: TM, delta: Array, rnd: Rounding) -> TM:
    """Enclose ``W(s)·h(s) + bias(s)`` for a bilinear ``op`` (dense, conv, flatten) of fan-in ``n``.

    With ``W = A + B s + E_W``, ``h = a + b s + e``: the centre ``A a``, the slope ``A b + B a``; the
    remainder ``δ²|B||b| + (|A| + δ|B|) r + R_W (|a| + δ|b| + r)`` plus the rounding of the centre and
    slope, ``γ_{2n+1}(|A||a| + δ|A||b| + δ|B||a| + |α| + δ|β|)``. Six products of ``op``.
    """
    A, B, RW = W
    a, b, r = h
    g = rnd.gamma(2 * n + 1)
    abs_a = jnp.abs(a)
    abs_b = None if b is None else jnp.abs(b)
    az = op(A, a)
    if b is None and B is None:
        bz = None
    else:
        bz = op(A, b) if B is None else (op(B, a) if b is None else op(A, b) + op(B, a))
    # ``+ eta``: each factor below is an upper bound even if one of its few products underflowed
    # (flushed results are off by < 2⁻¹⁰²² each and are multiplied only by factors ≤ 1 inside it)
    eta = ETA if rnd.sound else 0.0
    x1 = r + g * abs_a if abs_b is None else r + g * (abs_a + delta * abs_b)
    rz = op(jnp.abs(A), x1 + eta)
    if B is not None:
        x2 = g * delta * abs_a + delta * r
        if abs_b is not None:
            x2 = x2 + delta * delta * abs_b
        rz = rz + op(jnp.abs(B), x2 + eta)
    x3 = abs_a + r if abs_b is None else abs_a + delta * abs_b + r
    rz = rz + op(RW, x3 + eta)
    if bias is not None:
        alpha, beta, rb = bias
        az = az + alpha
        if beta is not None:
            bz = beta if bz is None else bz + beta
            rz = rz + g * delta * jnp.abs(beta)
        rz = rz + rb + g * jnp.abs(alpha)
    return TM(az, bz, rnd.inflate(rz, 3 * n + 32))


def relu(h: TM, delta: Array, rnd: Rounding, relax: bool = True) -> TM:
    """Enclose ``max(v, 0)``: exact where the enclosure ``[lo, hi]`` of ``v`` is one-signed; where it
    crosses 0, ``relu(v) = λ·v + q`` with ``λ = hi/(hi − lo)`` and ``q ∈ [0, M]``,
    ``M = max((1 − λ)·hi, −λ·lo)`` (valid for any float ``λ ∈ [0, 1]``). Intervals: ``[relu(lo), relu(hi)]``.

    ``relax=False`` is the UNSOUND negative control: crossing units are linearised at the centre
    (kept when ``a ≥ 0``, dropped otherwise) — tests show it misses the maximum.
    """
    a, b, r = h
    w = rnd.up(_abs_b_delta(b, delta, rnd) + r) if b is not None else r
    lo = rnd.down(a - w)
    hi = rnd.up(a + w)
    active = lo >= 0
    dead = hi <= 0
    zero = jnp.zeros_like(a)
    if not relax:
        keep = a >= 0
        return TM(jnp.where(keep, a, zero), None if b is None else jnp.where(keep, b, zero), jnp.where(keep, r, zero))
    if b is None:
        l0, h0 = jnp.maximum(lo, 0.0), jnp.maximum(hi, 0.0)
        mid = (l0 + h0) * 0.5
        rad = jnp.maximum(rnd.up(h0 - mid), rnd.up(mid - l0))
        return TM(jnp.where(active, a, mid), None, jnp.where(active, r, rad))
    cross = ~(active | dead)
    span = jnp.where(cross, hi - lo, 1.0)
    lam = jnp.clip(jnp.where(cross, hi / span, 0.0), 0.0, 1.0)
    M = jnp.maximum(rnd.up(rnd.up(1.0 - lam) * hi), rnd.up(lam * (-lo)))
    half = rnd.up(M * 0.5)
    a_new = lam * a + half
    b_new = lam * b
    err = rnd.gamma(3) * (lam * jnp.abs(a) + half) + U * delta * lam * jnp.abs(b) if rnd.sound else 0.0
    r_new = rnd.inflate(lam * r + half + err, 12)
    a_out = jnp.where(active, a, jnp.where(dead, zero, a_new))
    b_out = jnp.where(active, b, jnp.where(dead, zero, b_new))
    r_out = jnp.where(active, r, jnp.where(dead, zero, r_new))
    return TM(a_out, b_out, r_out)


def _windows(v: Array) -> Array:
    """``(H, W, C)`` per sample → 2×2 windows on a trailing axis of 4 (odd edges dropped, as ``nets.pool2``)."""
    n, hh, ww, c = v.shape
    v = v[:, : hh - hh % 2, : ww - ww % 2, :].reshape(n, hh // 2, 2, ww // 2, 2, c)
    return jnp.moveaxis(v, (2, 4), (4, 5)).reshape(n, hh // 2, ww // 2, c, 4)


def max_pool(h: TM, delta: Array, rnd: Rounding) -> TM:
    """2×2 max pooling. Taylor models: pick ``k`` = the window entry with the largest centre; then
    ``max_j v_j − v_k ∈ [0, U]``, ``U = max_{j≠k}((a_j − a_k) + |b_j − b_k|·δ + r_j + r_k)⁺``, so the
    max is ``v_k + U/2 ± (r_k + U/2)``. Intervals: ``[max lo, max hi]``."""
    a4, r4 = _windows(h.a), _windows(h.r)
    if h.b is None:
        lo = jnp.max(rnd.down(a4 - r4), axis=-1)
        hi = jnp.max(rnd.up(a4 + r4), axis=-1)
        mid = (lo + hi) * 0.5
        return TM(mid, None, jnp.maximum(rnd.up(hi - mid), rnd.up(mid - lo)))
    b4 = _windows(h.b)
    k = jnp.argmax(a4, axis=-1)[..., None]
    ak, bk, rk = (jnp.take_along_axis(v, k, axis=-1) for v in (a4, b4, r4))
    diff = rnd.up(rnd.up(a4 - ak) + rnd.up(rnd.up(jnp.abs(b4 - bk)) * delta))
    Uj = rnd.up(diff + rnd.up(r4 + rk))
    Uj = jnp.where(jnp.arange(4) == k, 0.0, Uj)
    Umax = jnp.maximum(jnp.max(Uj, axis=-1, keepdims=True), 0.0)
    half = rnd.up(Umax * 0.5)
    a_new = ak + half
    err = rnd.up(jnp.abs(a_new) * (2 * U)) if rnd.sound else 0.0
    r_new = rnd.up(rnd.up(rk + half) + err)
    return TM(a_new[..., 0], bk[..., 0], r_new[..., 0])


def avg_pool(h: TM, delta: Array, rnd: Rounding) -> TM:
    """2×2 average pooling (linear: the centre, slope and radius are averaged; rounding ``γ_3``)."""
    a4, r4 = _windows(h.a), _windows(h.r)
    g = rnd.gamma(4)
    a = jnp.sum(a4, axis=-1) * 0.25
    rad = jnp.sum(r4, axis=-1) * 0.25 + g * jnp.sum(jnp.abs(a4), axis=-1) * 0.25
    b = None
    if h.b is not None:
        b4 = _windows(h.b)
        b = jnp.sum(b4, axis=-1) * 0.25
        rad = rad + g * delta * jnp.sum(jnp.abs(b4), axis=-1) * 0.25
    return TM(a, b, rnd.inflate(rad, 16))


def mean_hw(h: TM, delta: Array, rnd: Rounding) -> TM:
    """Global average over the spatial axes (``gap`` head): ``(B, H, W, C) → (B, C)``, rounding ``γ_{HW+1}``."""
    hw = h.a.shape[1] * h.a.shape[2]
    g = rnd.gamma(hw + 1)
    a = jnp.mean(h.a, axis=(1, 2))
    rad = jnp.mean(h.r, axis=(1, 2)) + g * jnp.mean(jnp.abs(h.a), axis=(1, 2))
    b = None
    if h.b is not None:
        b = jnp.mean(h.b, axis=(1, 2))
        rad = rad + g * delta * jnp.mean(jnp.abs(h.b), axis=(1, 2))
    return TM(a, b, rnd.inflate(rad, hw + 12))
