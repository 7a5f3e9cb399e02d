"""Outward rounding in float64: the error model every bound of :mod:`stability.theory.bounds` rests on.

Model (IEEE-754 binary64, round to nearest, unit roundoff ``u = 2⁻⁵³``): every ``+ − × /`` returns
the exact result times ``(1 + ε)``, ``|ε| ≤ u``, plus an absolute error below ``2⁻¹⁰²²`` when the
result underflows — XLA's CPU backend flushes subnormal results AND operands to zero (measured:
``1e-300 · 1e-10`` gives ``0``), which this absolute term covers. Consequences used here:

* one operation: the exact result lies in ``[down(fl), up(fl)]`` with :func:`up` ``(v) =
  nextafter(v, +∞) + ETA`` and :func:`down` ``(v) = nextafter(v, −∞) − ETA``, ``ETA = 2⁻¹⁰²⁰``
  (a normal number, so flushing cannot swallow it);
* a dot product of ``n`` terms, in ANY summation order, with or without FMA:
  ``|fl(Σ) − Σ| ≤ γ_n Σ|terms| + n·ETA`` with ``γ_n = n·u / (1 − n·u)`` (Higham, *Accuracy and
  Stability of Numerical Algorithms*, §3.1 and Lemma 3.1);
* an expression of depth ``D`` in nonnegative operands (``+``, ``×``, dot products of nonnegative
  arrays) computes at least ``exact·(1 − u)^D − D·ETA``, so :func:`inflate` ``(r̂, D) ≥ exact``;
* ``exp`` and ``log`` are not correctly rounded: we ASSUME a relative error below ``2⁻⁴⁴``
  (``≈ 512`` units of ``u``; measured on XLA:CPU against 60-digit decimal references: ``exp``
  ≤ 1.8·u, ``log`` ≤ 1.0·u) and widen every result by ``2⁻⁴³`` relative.

:class:`Rounding` bundles these with a switch ``sound``: ``Rounding(False)`` turns every margin into
the identity — it exists only for the negative control that shows the margins are needed.
"""

from __future__ import annotations

import dataclasses
import math

import jax.numpy as jnp

__all__ = ["U", "ETA", "FN_REL", "gamma", "Rounding"]

U = 2.0 ** -53
"""Unit roundoff of float64 (round to nearest)."""

ETA = 2.0 ** -1020
"""Absolute margin per operation for underflow / flush-to-zero (≥ 4 × the smallest normal number)."""

FN_REL = 2.0 ** -43
"""Relative widening of ``exp`` / ``log`` results (twice the assumed error bound ``2⁻⁴⁴``)."""


def _up(v: float) -> float:
    return math.nextafter(v, math.inf)


def gamma(n: int) -> float:
    """``γ_n = n·u / (1 − n·u)``, rounded up (a Python float ≥ the exact value)."""
    n = int(n)
    if n <= 0:
        return 0.0
    if n * U >= 0.5:
        raise ValueError(f"a dot product of length {n} is too long for the γ_n error bound")
    return _up(_up(_up(n * U) / (1.0 - n * U)))


def inflation(depth: int) -> float:
    """``c ≥ (1 − u)^{−depth}`` with room for the rounding of ``r̂·c`` itself: ``1 + γ_{depth+2}`` rounded up."""
    return _up(1.0 + gamma(int(depth) + 2))


@dataclasses.dataclass(frozen=True)
class Rounding:
    """Directed-rounding helpers for traced float64 arrays (``sound=False``: every margin is zero)."""

    sound: bool = True

    def gamma(self, n: int) -> float:
        return gamma(n) if self.sound else 0.0

    def up(self, v):
        """``≥`` the exact result of the one operation that produced ``v``: ``v + (2u·|v| + ETA)`` — the
        step is at least one ulp of ``v`` (and ``ETA`` near 0), so the rounded sum is ``≥ nextafter(v, +∞)``."""
        return v + (jnp.abs(v) * (2 * U) + ETA) if self.sound else v

    def down(self, v):
        """``≤`` the exact result of the one operation that produced ``v`` (mirror of :meth:`up`)."""
        return v - (jnp.abs(v) * (2 * U) + ETA) if self.sound else v

    def inflate(self, r, depth: int):
        """An upper bound of a NONNEGATIVE expression of depth ``≤ depth`` whose computed value is ``r``:
        ``r·(1 + γ_{depth+4}) + 2(depth+2)·ETA``; the two roundings of this formula are inside the margin."""
        if not self.sound:
            return r
        return r * inflation(depth + 2) + float(2 * (depth + 2)) * ETA

    def sum_up(self, v, axis):
        """Upper bound of the exact sum of NONNEGATIVE ``v`` along ``axis``."""
        n = v.shape[axis] if isinstance(axis, int) else math.prod(v.shape[a] for a in axis)
        return self.inflate(jnp.sum(v, axis=axis), n + 1)

    def sum_down(self, v, axis):
        """Lower bound of the exact sum of NONNEGATIVE ``v`` along ``axis`` (clipped at 0)."""
        if not self.sound:
            return jnp.sum(v, axis=axis)
        n = v.shape[axis] if isinstance(axis, int) else math.prod(v.shape[a] for a in axis)
        s = jnp.sum(v, axis=axis)
        return jnp.maximum(self.down(self.down(s * (1.0 - gamma(n + 2))) - (n + 1) * ETA), 0.0)

    def exp_up(self, v):
        """``≥ exp(v)`` for the exact real ``v`` (``exp`` is increasing)."""
        return self.up(jnp.exp(v) * (1.0 + FN_REL)) if self.sound else jnp.exp(v)

    def exp_down(self, v):
        """``≤ exp(v)``, nonnegative."""
        return jnp.maximum(self.down(jnp.exp(v) * (1.0 - FN_REL)), 0.0) if self.sound else jnp.exp(v)

    def log_up(self, s):
        """``≥ log(s)`` for ``s ≥ 1`` (the result is ``≥ 0``)."""
        return self.up(jnp.log(s) * (1.0 + FN_REL)) if self.sound else jnp.log(s)

    def log_down(self, s):
        """``≤ log(s)`` for ``s ≥ 1``, clipped at 0 (``log s ≥ 0`` there)."""
        return jnp.maximum(self.down(jnp.log(s) * (1.0 - FN_REL)), 0.0) if self.sound else jnp.log(s)
