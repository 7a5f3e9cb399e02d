"""Host-side Taylor coefficients of a piece's polynomials at sub-interval midpoints, with error bounds.

A piece's weights are ``Σ_k p_k(u) θ_k`` with ``p_k(u) = Σ_n coef[k, n] uⁿ``. Around ``u_mid``,
``p_k(u_mid + s) = Σ_m c_{k,m} s^m`` with ``c_{k,m} = Σ_{n≥m} coef[k,n]·C(n, m)·u_mid^{n−m}`` (an exact
identity). The float64 ``ĉ_{k,m}`` computed here satisfy ``|ĉ − c| ≤ ε = γ_{2M+4}·Σ_n |coef[k,n] C(n,m)|
|u_mid|^{n−m}`` (per term one rounding for ``coef·C(n, m)``, ``M − 1`` for the power, one for the product;
``M`` for the sum: at most ``2M + 1``). The midpoints and half-widths of
bisected sub-intervals of ``[0, 1]`` are dyadic and exact.
"""

from __future__ import annotations

import math

import numpy as np

from stability.theory.bounds.rounding import ETA, gamma

__all__ = ["taylor_coefficients"]

_SLACK = 1.0 + 2.0 ** -40
"""Covers the host's own rounding of the (≤ 4M + 8 operation) error-weight formulas below."""


def _powers(v: np.ndarray, n: int) -> np.ndarray:
    """``(len(v), n)``: ``v^0 … v^{n−1}``, each one multiplication (one rounding) after the previous."""
    out = np.ones((v.size, n))
    for p in range(1, n):
        out[:, p] = out[:, p - 1] * v
    return out


def taylor_coefficients(coef: np.ndarray, umid: np.ndarray, delta: np.ndarray, sound: bool = True
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(c, rho, sigma)`` for ``coef (S, K, M1)`` at midpoints ``umid (S,)`` with half-widths ``delta (S,)``.

    ``rho[s, k] = Σ_m δ^m (ε_{k,m} + γ_K |ĉ_{k,m}|)`` (the coefficient errors and the rounding of the
    ``K``-term weight combination) and ``sigma[s, k] = Σ_m δ^m (|ĉ_{k,m}| + ε_{k,m})`` (what multiplies an
    error ``E_k`` of the combined quantity), both rounded up; with ``sound=False`` every error is 0.
    """
    S, K, M1 = coef.shape
    M = M1 - 1
    binom = np.array([[math.comb(n, m) if n >= m else 0 for m in range(M1)] for n in range(M1)], np.float64)
    powers = _powers(umid, M1)  # (S, M1): u_mid^p by repeated (correctly rounded) multiplication
    c = np.zeros((S, K, M1))
    t = np.zeros((S, K, M1))
    for m in range(M1):
        for n in range(m, M1):
            q = coef[:, :, n] * binom[n, m]
            c[:, :, m] += q * powers[:, None, n - m]
            t[:, :, m] += np.abs(q) * np.abs(powers[:, None, n - m])
    if not sound:
        return c, np.zeros((S, K)), np.einsum("sm,skm->sk", _powers(delta, M1), np.abs(c))
    eps = np.nextafter(gamma(2 * M + 4) * t * _SLACK, np.inf)
    dpow = np.nextafter(_powers(delta, M1) * _SLACK, np.inf)
    rho = np.einsum("sm,skm->sk", dpow, eps + gamma(K + 1) * np.abs(c)) * _SLACK
    sigma = np.einsum("sm,skm->sk", dpow, np.abs(c) + eps) * _SLACK
    # XLA treats subnormal operands as 0: lift positive weights below the normal range to ETA
    rho, sigma = (np.where(v > 0, np.maximum(np.nextafter(v, np.inf), ETA), 0.0) for v in (rho, sigma))
    return c, rho, sigma
