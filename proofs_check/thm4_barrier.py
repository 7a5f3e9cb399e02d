"""Theorem 4 (Kuditipudi et al. 2019, Appendix C): a PROVED lower bound on the barrier of every path
between the teacher and the student minimizer (docs/THEORY.md §7; the argument is written out in
``docs/theory/theorem4_barrier.md``).

**Crossing set.** With output weights ``w(t)`` along a continuous path from the teacher (``w_2 = −1``)
to the student (all ``w_u = 1``), ``t ↦ min_u w_u(t)`` is continuous, negative at 0 and positive at 1,
so it vanishes somewhere: the path meets ``S = {(A, w) : w ≥ 0, min_u w_u = 0}``. On S the unit with
``w_p = 0`` is silent and ``w_u φ(a_u·x) = φ(w_u a_u·x)`` for ``w_u ≥ 0`` (positive homogeneity), so
``L(S) = {F(B) : B ∈ R^{(h−1)×(h+2)}}`` with ``F(B) = (1/n) Σ_i ½ (Σ_j φ(b_j·x_i) − y_i)²``, and
``barrier ≥ L* := min_B F(B)`` for every path (both end losses are exactly 0).

**Computing L* rigorously** (:func:`prove_barrier_bound`, :func:`crossing_set_minimum`):

* a witness ``B₀`` (local search) gives ``L* ≤ U := F(B₀)``, computed in exact rationals; every ``B``
  with ``F(B) ≤ U`` lies in an explicit box (a sample ``−a·e_c`` bounds ``b_jc`` below, a non-negative
  sample bounds it above), so only the box matters;
* rows with ``y_i ≤ 0`` are convex in ``B`` (``½(Σ_j z_j − y)²`` is non-decreasing in each
  ``z_j = φ(·) ≥ 0``), rows with ``y_i > 0`` are branched on: a node fixes the activation of some
  (row, unit) pairs; the others are relaxed to the ReLU's convex hull on the box (``z ≥ 0``,
  ``z ≥ pre``, ``z ≤`` the chord). Each node is a convex QP; interchangeable units (equal status
  columns) are branched jointly (first ``t`` of them active, ``t = 0..|class|``), which is exact up to
  relabelling the units;
* each node's QP is solved approximately (a small primal–dual interior-point method), and its value is
  bounded from below by a **dual certificate** evaluated in exact integer/rational arithmetic
  (:func:`verify_certificate`): for any ``ν`` and any ``λ ≥ 0``, every feasible ``v`` in the box
  satisfies ``½‖Mv − c‖²_W ≥ νᵀc − ½ νᵀW⁻¹ν − λᵀh − Σ_k |(Mᵀν − Gᵀλ)_k| V_k``;
* nodes are closed when their certified bound reaches ``U·(1 − rel_gap)`` (or every status is
  fixed); the proved bound is the minimum of the certified bounds of the closed (and, if a limit
  stops the search, the open) nodes, rounded DOWN to a float.

Numerically solved QPs only choose the certificates; no float result is trusted. The solver is NumPy/SciPy:
thousands of tiny QPs whose shapes change from node to node (a jitted solver would compile per shape).
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import itertools
import math
import time
from fractions import Fraction
from typing import Any, Callable, Literal, Sequence

import numpy as np

from stability.core import nets as _nets
from stability.core.progress import get_logger
from stability.theory import counterexample as ce

__all__ = [
    "CrossingProblem", "RegionCertificate", "CertificateError", "BarrierBound", "crossing_problem",
    "crossing_loss", "crossing_loss_exact", "crossing_net", "certify_node", "verify_certificate",
    "crossing_set_minimum", "prove_barrier_bound", "check_coverage", "local_search",
]

_BITS = 24        # box bounds live on the grid 2^-24 (rounded outward)
_SHIFT = 2 * _BITS  # constraint rows are integers after scaling by 2^48
_K = 52           # dual certificates live on the grid 2^-52

StopReason = Literal["closed", "max_nodes", "time_limit"]


class CertificateError(ValueError):
    """A region certificate that does not prove what it claims (negative multipliers, wrong sizes,
    or a claimed bound above the exactly recomputed one)."""


# --------------------------------------------------------------------------- exact helpers


def _dyadic_floor(x: Fraction) -> Fraction:
    return Fraction(math.floor(x * (1 << _BITS)), 1 << _BITS)


def _dyadic_ceil(x: Fraction) -> Fraction:
    return Fraction(math.ceil(x * (1 << _BITS)), 1 << _BITS)


def _sqrt_up(x: Fraction) -> Fraction:
    """A dyadic ``e ≥ √x`` (checked exactly: ``e² ≥ x``)."""
    e = _dyadic_ceil(Fraction(math.sqrt(float(x))) if x > 0 else Fraction(0))
    while e * e < x:
        e += Fraction(1, 1 << _BITS)
    return e


def _float_down(x: Fraction) -> float:
    f = float(x)
    return math.nextafter(f, -math.inf) if Fraction(f) > x else f


def _float_up(x: Fraction) -> float:
    f = float(x)
    return math.nextafter(f, math.inf) if Fraction(f) < x else f


def _as_fraction(v: Any, name: str) -> Fraction:
    f = float(v)
    if not math.isfinite(f):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return Fraction(v) if isinstance(v, (int, np.integer, Fraction)) else Fraction(f)


# --------------------------------------------------------------------------- the problem


@dataclasses.dataclass(frozen=True)
class CrossingProblem:
    """``min_B F(B)``, ``F(B) = (1/n) Σ_i ½ (Σ_{j<units} φ(b_j·x_i) − y_i)²``, as exact data.

    ``rows`` are the distinct samples (integers) with multiplicities ``weights`` and targets ``targets``
    (exact rationals); ``upper`` is the exact loss of a witness (``L* ≤ upper``); every ``B`` with
    ``F(B) ≤ upper`` satisfies ``b_lo ≤ b_jc ≤ b_hi`` (dyadic, rounded outward), hence
    ``pre_lo[r] ≤ b_j·x_r ≤ pre_hi[r]``. ``branch`` lists the rows with a positive target.
    """

    rows: np.ndarray
    weights: tuple[int, ...]
    targets: tuple[Fraction, ...]
    n: int
    units: int
    upper: Fraction
    b_lo: tuple[Fraction, ...]
    b_hi: tuple[Fraction, ...]
    pre_lo: tuple[Fraction, ...]
    pre_hi: tuple[Fraction, ...]
    branch: tuple[int, ...]

    @property
    def dim(self) -> int:
        return int(self.rows.shape[1])

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "distinct_rows": int(self.rows.shape[0]), "units": self.units, "dim": self.dim,
                "branch_rows": len(self.branch), "upper": float(self.upper),
                "b_lo": [float(b) for b in self.b_lo], "b_hi": [float(b) for b in self.b_hi]}


def _check_data(X: Any, y: Any, units: Any) -> tuple[np.ndarray, list[Fraction], int]:
    if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or int(units) < 1:
        raise ValueError(f"units must be an integer >= 1, got {units!r}")
    Xa = np.asarray(X)
    if Xa.ndim != 2 or Xa.shape[0] < 1 or Xa.shape[1] < 1:
        raise ValueError(f"X must be a non-empty 2-D array (samples × features), got shape {Xa.shape}")
    if not np.issubdtype(Xa.dtype, np.number) or not np.all(np.isfinite(Xa)):
        raise ValueError("X must be finite numbers")
    Xi = np.rint(Xa).astype(np.int64)
    if not np.array_equal(Xi, Xa):
        raise ValueError("X must have integer entries (the certificates are exact integer arithmetic)")
    ya = np.asarray(y)
    if ya.shape != (Xa.shape[0],):
        raise ValueError(f"y must have shape ({Xa.shape[0]},) to match X, got {ya.shape}")
    return Xi, [_as_fraction(v, "y") for v in ya.tolist()], int(units)


def crossing_loss(B: Any, X: Any, y: Any) -> float:
    """``F(B)`` in float64 (the loss of the width-``h`` net :func:`crossing_net` of ``B``)."""
    B, X, y = np.asarray(B, np.float64), np.asarray(X, np.float64), np.asarray(y, np.float64)
    return float(0.5 * np.mean((np.maximum(X @ B.T, 0.0).sum(axis=1) - y) ** 2))


def crossing_loss_exact(B: Any, X: Any, y: Any) -> Fraction:
    """``F(B)`` exactly (each float entry of ``B`` read as the rational it is)."""
    Xi, yf, _ = _check_data(X, y, 1)
    Bf = [[Fraction(float(v)) for v in row] for row in np.atleast_2d(np.asarray(B, np.float64))]
    total = Fraction(0)
    for xi, yi in zip(Xi.tolist(), yf):
        p = sum((max(sum((Fraction(a) * b for a, b in zip(xi, bj) if a), Fraction(0)), Fraction(0)) for bj in Bf),
                Fraction(0))
        total += (p - yi) ** 2
    return total / (2 * len(yf))


def crossing_net(B: Any, h: int | None = None) -> _nets.Net:
    """The point of S whose loss is ``F(B)``: width ``h = units + 1``, ``A = [B; 0]``, output weights
    ``(1, …, 1, 0)`` (float64)."""
    import jax.numpy as jnp

    B = np.atleast_2d(np.asarray(B, np.float64))
    h = B.shape[0] + 1 if h is None else int(h)
    if B.shape != (h - 1, h + 2):
        raise ValueError(f"B must have shape (h−1, h+2) = ({h - 1}, {h + 2}), got {B.shape}")
    A = np.concatenate([B, np.zeros((1, h + 2))], axis=0)
    w = np.concatenate([np.ones((1, h - 1)), np.zeros((1, 1))], axis=1)
    return _nets.Net(ce.arch(h), ({"w": jnp.asarray(A, jnp.float64)}, {"w": jnp.asarray(w, jnp.float64)}))


def crossing_problem(X: Any, y: Any, units: int, upper: Fraction | float) -> CrossingProblem:
    """Exact data of ``min_B F(B)`` and the box holding every ``B`` with ``F(B) ≤ upper``.

    Bounds (for ``F(B) ≤ U``: ``|p_r − y_r| ≤ ε_r = √(2nU/w_r)`` at every distinct row ``r`` of
    multiplicity ``w_r``, ``p_r = Σ_j φ(b_j·x_r)``): a row ``x_r = −a·e_c`` (``a > 0``) gives
    ``φ(−a b_jc) ≤ p_r ≤ y_r + ε_r``, so ``b_jc ≥ −max(y_r + ε_r, 0)/a``; a row ``x_r ≥ 0`` with
    ``x_rc > 0`` gives ``b_j·x_r ≤ φ(b_j·x_r) ≤ y_r + ε_r``, so
    ``b_jc ≤ (y_r + ε_r + Σ_{c'≠c} x_rc'·(−b_lo,c'))/x_rc``. Raises if a feature lacks either kind of row.
    """
    Xi, yf, units = _check_data(X, y, units)
    U = Fraction(upper)
    if U < 0:
        raise ValueError(f"upper must be >= 0 (a loss), got {upper!r}")
    n, d = Xi.shape
    groups: dict[tuple, list[int]] = {}
    for i in range(n):
        groups.setdefault((tuple(Xi[i].tolist()), yf[i]), []).append(i)
    keys = list(groups)
    rows = np.array([k[0] for k in keys], np.int64)
    targets = tuple(k[1] for k in keys)
    weights = tuple(len(groups[k]) for k in keys)
    eps = [_sqrt_up(2 * n * U / w) for w in weights]
    lo: list[Fraction | None] = [None] * d
    for r, x in enumerate(rows.tolist()):
        nz = [c for c in range(d) if x[c] != 0]
        if len(nz) == 1 and x[nz[0]] < 0:
            c = nz[0]
            cand = -max(targets[r] + eps[r], Fraction(0)) / (-x[c])
            lo[c] = cand if lo[c] is None else max(lo[c], cand)
    if any(b is None for b in lo):
        missing = [c + 1 for c in range(d) if lo[c] is None]
        raise ValueError(f"X has no sample −a·e_c for features {missing}: the box bound b_jc ≥ … needs one "
                         "per feature")
    b_lo = [_dyadic_floor(b) for b in lo]  # type: ignore[arg-type]
    hi: list[Fraction | None] = [None] * d
    for r, x in enumerate(rows.tolist()):
        if min(x) < 0:
            continue
        for c in range(d):
            if x[c] > 0:
                rest = sum((x[c2] * -b_lo[c2] for c2 in range(d) if c2 != c), Fraction(0))
                cand = (targets[r] + eps[r] + rest) / x[c]
                hi[c] = cand if hi[c] is None else min(hi[c], cand)
    if any(b is None for b in hi):
        missing = [c + 1 for c in range(d) if hi[c] is None]
        raise ValueError(f"X has no non-negative sample with a positive entry in features {missing}: "
                         "the box bound b_jc ≤ … needs one per feature")
    b_hi = [max(_dyadic_ceil(b), b_lo[c]) for c, b in enumerate(hi)]  # type: ignore[arg-type]
    pre_lo = tuple(sum((min(a * lo_, a * hi_) for a, lo_, hi_ in zip(x, b_lo, b_hi)), Fraction(0))
                   for x in rows.tolist())
    pre_hi = tuple(sum((max(a * lo_, a * hi_) for a, lo_, hi_ in zip(x, b_lo, b_hi)), Fraction(0))
                   for x in rows.tolist())
    branch = tuple(r for r in range(len(keys)) if targets[r] > 0)
    return CrossingProblem(rows, weights, targets, n, units, U, tuple(b_lo), tuple(b_hi), pre_lo, pre_hi, branch)


# --------------------------------------------------------------------------- node relaxation


Status = tuple[tuple[int, ...], ...]  # status[a][j] ∈ {+1 active, −1 inactive, 0 relaxed} for branch row a, unit j


@dataclasses.dataclass(frozen=True)
class _Relaxation:
    """``min ½ (Mv − c)ᵀ W (Mv − c)`` s.t. ``G v ≤ h``; exact data scaled to integers
    (``G = G_int / 2^48``, ``h = h_int / 2^48``, ``|v_k| ≤ V_int[k] / 2^24`` on the feasible set)."""

    M: np.ndarray       # (rows, N) int64
    G_int: np.ndarray   # (m, N) int64
    h_int: np.ndarray   # (m,) int64
    V_int: np.ndarray   # (N,) int64
    zcols: dict         # (row, unit) -> column of the relaxed output z
    n_b: int


def _check_status(problem: CrossingProblem, status: Any) -> Status:
    try:
        st = tuple(tuple(int(s) for s in row) for row in status)
    except (TypeError, ValueError):
        raise ValueError(f"status must be a sequence of rows of ints, got {status!r}") from None
    if len(st) != len(problem.branch) or any(len(r) != problem.units for r in st) or any(
            s not in (-1, 0, 1) for r in st for s in r):
        raise ValueError(f"status must be {len(problem.branch)} rows of {problem.units} entries in {{−1, 0, 1}}, "
                         f"got {status!r}")
    return st


def _int(v: Fraction | int) -> int:
    """An exactly integral value that fits int64 (the relaxation's scaled data)."""
    f = Fraction(v)
    if f.denominator != 1 or abs(f.numerator) >= 1 << 62:
        raise ValueError(f"scaled relaxation entry {f} is not an int64 integer; the data or the box is too large")
    return int(f.numerator)


@dataclasses.dataclass(frozen=True)
class _RowData:
    """One distinct row's relaxation coefficients, scaled to integers (computed once per problem)."""

    x_one: np.ndarray            # x · 2^48
    top_one: int                 # max(pre_hi, 0) · 2^48
    top_v: int                   # max(pre_hi, 0) · 2^24
    chord: tuple[np.ndarray, int, int] | None  # (−hi·x·2^48, (hi − lo)·2^48, −hi·lo·2^48) when lo < 0 < hi
    always_active: bool          # lo ≥ 0


_ROW_CACHE: dict[int, tuple[CrossingProblem, list[_RowData], np.ndarray]] = {}


def _row_data(problem: CrossingProblem) -> tuple[list[_RowData], np.ndarray]:
    """Scaled per-row data and the box's ``V`` entries for ``B`` (cached per problem object)."""
    hit = _ROW_CACHE.get(id(problem))
    if hit is not None and hit[0] is problem:
        return hit[1], hit[2]
    one = 1 << _SHIFT
    out = []
    for r, x in enumerate(problem.rows.tolist()):
        lo, hi = problem.pre_lo[r], problem.pre_hi[r]
        top = max(hi, Fraction(0))
        chord = None
        if lo < 0 < hi:
            chord = (np.array([_int(-hi * xc * one) for xc in x], np.int64), _int((hi - lo) * one),
                     _int(-hi * lo * one))
        out.append(_RowData(np.array([_int(xc * one) for xc in x], np.int64), _int(top * one),
                            _int(top * (1 << _BITS)), chord, lo >= 0))
    vb = np.array([_int(max(abs(a), abs(b)) * (1 << _BITS)) for a, b in zip(problem.b_lo, problem.b_hi)], np.int64)
    if len(_ROW_CACHE) > 8:
        _ROW_CACHE.clear()
    _ROW_CACHE[id(problem)] = (problem, out, vb)
    return out, vb


def _relaxation(problem: CrossingProblem, status: Status) -> _Relaxation:
    """The node's convex relaxation, which contains ``(B, z = φ(pre))`` for every point ``B`` of the node
    inside the box: statused (row, unit) pairs keep their sign constraint (active: the output is the
    pre-activation, ``pre ≥ 0``; inactive: output 0, ``pre ≤ 0``); the other pairs get an output variable
    ``z`` with ``z ≥ 0``, ``z ≥ pre``, ``z ≤ max(pre_hi, 0)`` and the chord ``(hi − lo) z ≤ hi (pre − lo)``
    when ``lo < 0 < hi`` (or ``z ≤ pre`` when ``lo ≥ 0``); the box bounds every ``b_jc``."""
    R, d, u = problem.rows, problem.dim, problem.units
    data, vb = _row_data(problem)
    n_b = u * d
    mode: dict[tuple[int, int], int] = {}
    for a, r in enumerate(problem.branch):
        for j in range(u):
            mode[(r, j)] = status[a][j]
    zcols: dict[tuple[int, int], int] = {}
    n_g = 2 * n_b
    for r in range(R.shape[0]):
        for j in range(u):
            if mode.get((r, j), 0) == 0:
                zcols[(r, j)] = n_b + len(zcols)
                n_g += 3 + (data[r].chord is not None or data[r].always_active)
            else:
                n_g += 1
    N = n_b + len(zcols)
    one = 1 << _SHIFT
    M = np.zeros((R.shape[0], N), np.int64)
    G = np.zeros((n_g, N), np.int64)
    h = np.zeros(n_g, np.int64)
    V = np.zeros(N, np.int64)
    V[:n_b] = np.tile(vb, u)
    i = 0
    for r in range(R.shape[0]):
        rd = data[r]
        for j in range(u):
            sl = slice(j * d, (j + 1) * d)
            z = zcols.get((r, j))
            if z is not None:
                M[r, z] = 1
                V[z] = rd.top_v
                G[i, z] = -one                                                  # z ≥ 0
                G[i + 1, sl] = rd.x_one; G[i + 1, z] = -one                     # z ≥ b_j·x
                G[i + 2, z] = one; h[i + 2] = rd.top_one                        # z ≤ max(hi, 0)
                i += 3
                if rd.chord is not None:                                        # (hi−lo) z ≤ hi (pre − lo)
                    G[i, sl] = rd.chord[0]; G[i, z] = rd.chord[1]; h[i] = rd.chord[2]
                    i += 1
                elif rd.always_active:                                          # lo ≥ 0: z ≤ pre
                    G[i, sl] = -rd.x_one; G[i, z] = one
                    i += 1
            else:
                s = mode[(r, j)]
                if s == 1:
                    M[r, sl] = R[r]
                G[i, sl] = -s * rd.x_one                                        # s·(b_j·x) ≥ 0
                i += 1
    for k in range(n_b):
        c = k % d
        G[i, k] = one; h[i] = _int(problem.b_hi[c] * one)
        G[i + 1, k] = -one; h[i + 1] = _int(-problem.b_lo[c] * one)
        i += 2
    assert i == n_g
    return _Relaxation(M, G, h, V, zcols, n_b)


# --------------------------------------------------------------------------- certificates


@dataclasses.dataclass(frozen=True)
class RegionCertificate:
    """Dual certificate for one node: ``ν = nu / 2^52``, ``λ = lam / 2^52`` (``lam ≥ 0``), and the bound it
    proves (an exact rational; :func:`verify_certificate` recomputes it from the node's status)."""

    status: Status
    nu: tuple[int, ...]
    lam: tuple[int, ...]
    bound: Fraction


def _exact_bound(problem: CrossingProblem, rel: _Relaxation, nu: Sequence[int], lam: Sequence[int]) -> Fraction:
    """``νᵀc − ½ Σ_r (n/w_r) ν_r² − λᵀh − Σ_k |(Mᵀν − Gᵀλ)_k| V_k`` exactly."""
    if len(nu) != rel.M.shape[0] or len(lam) != rel.G_int.shape[0]:
        raise CertificateError(f"certificate sizes (nu {len(nu)}, lam {len(lam)}) do not match the node "
                               f"({rel.M.shape[0]} rows, {rel.G_int.shape[0]} constraints)")
    if any(int(v) < 0 for v in lam):
        raise CertificateError("certificate has a negative multiplier lam (weak duality needs lam >= 0)")
    nu_o = np.array([int(v) for v in nu], dtype=object)
    lam_o = np.array([int(v) for v in lam], dtype=object)
    rho = (rel.M.T.astype(object) @ nu_o) * (1 << _SHIFT) - rel.G_int.T.astype(object) @ lam_o  # · 2^(K+SHIFT)
    t1 = sum((Fraction(int(v)) * t for v, t in zip(nu_o, problem.targets)), Fraction(0)) / (1 << _K)
    t2 = sum((Fraction(problem.n * int(v) * int(v), w) for v, w in zip(nu_o, problem.weights)), Fraction(0)) \
        / (1 << (2 * _K + 1))
    t3 = Fraction(int(sum(lam_o * rel.h_int.astype(object))), 1 << (_K + _SHIFT))
    t4 = Fraction(int(sum(abs(r) * int(v) for r, v in zip(rho, rel.V_int))), 1 << (_K + _SHIFT + _BITS))
    return t1 - t2 - t3 - t4


def verify_certificate(problem: CrossingProblem, cert: RegionCertificate) -> Fraction:
    """Recompute the node bound exactly from the node's status and ``(ν, λ)``; raise
    :class:`CertificateError` if it is below the claimed ``cert.bound``. Returns the recomputed bound,
    or 0 where that is larger (every loss is ≥ 0)."""
    st = _check_status(problem, cert.status)
    got = max(_exact_bound(problem, _relaxation(problem, st), cert.nu, cert.lam), Fraction(0))
    if Fraction(cert.bound) > got:
        raise CertificateError(f"claimed bound {float(cert.bound)!r} exceeds the certified {float(got)!r}")
    return got


def _qp_ipm(Q: np.ndarray, q: np.ndarray, G: np.ndarray, h: np.ndarray,
            lbfun: Callable[[np.ndarray, np.ndarray], float],
            const: float, tol: float = 1e-11, maxit: int = 60, delta: float = 1e-9,
            ) -> tuple[np.ndarray, np.ndarray, bool]:
    """``min ½vᵀQv + qᵀv`` s.t. ``Gv ≤ h`` by a Mehrotra primal–dual interior-point method on the slightly
    relaxed ``Gv ≤ h + δ(1 + |h|)`` (strictly feasible). Only used to CHOOSE a certificate: returns the
    iterate ``(v, λ)`` with the best float dual bound ``lbfun`` and whether the float gap closed."""
    from scipy.linalg import cho_factor, cho_solve

    N, m = Q.shape[0], G.shape[0]
    h = h + delta * (1.0 + np.abs(h))
    v, s, lam = np.zeros(N), np.ones(m), np.ones(m)
    best = (-np.inf, v, lam)
    converged = False
    with np.errstate(all="ignore"):
        for _ in range(maxit):
            rd = Q @ v + q + G.T @ lam
            rp = G @ v + s - h
            mu = s @ lam / m
            lb = lbfun(v, lam)
            if lb > best[0]:
                best = (lb, v.copy(), lam.copy())
            obj = 0.5 * v @ Q @ v + q @ v + const
            if (G @ v - h).max() <= 1e-9 and obj - best[0] <= tol * (1.0 + abs(obj)):
                converged = True
                break
            D = lam / s
            K = Q + G.T @ (D[:, None] * G)
            if not np.all(np.isfinite(K)):
                break
            try:
                L = cho_factor(K)
            except np.linalg.LinAlgError:
                try:
                    L = cho_factor(K + 1e-12 * np.trace(K) / N * np.eye(N))
                except np.linalg.LinAlgError:
                    break

            def direction(rc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
                dv = cho_solve(L, -rd - G.T @ (D * rp - rc / s))
                dl = D * (G @ dv + rp) - rc / s
                return dv, dl, -(rc + s * dl) / lam

            def step(x: np.ndarray, dx: np.ndarray) -> float:
                neg = dx < 0
                return float(min(1.0, (-x[neg] / dx[neg]).min(initial=np.inf)))

            dv, dl, ds = direction(s * lam)
            a = min(step(s, ds), step(lam, dl))
            sigma = (((s + a * ds) @ (lam + a * dl) / m) / mu) ** 3
            dv, dl, ds = direction(s * lam + ds * dl - sigma * mu)
            a = 0.99 * min(step(s, ds), step(lam, dl))
            if not (np.isfinite(a) and np.all(np.isfinite(dv)) and np.all(np.isfinite(dl))):
                break
            v, s, lam = v + a * dv, s + a * ds, lam + a * dl
    return best[1], best[2], converged


@dataclasses.dataclass(frozen=True)
class _NodeResult:
    cert: RegionCertificate
    B: np.ndarray          # the relaxation's minimiser's B part (a candidate point)
    violation: np.ndarray  # (branch rows, units): w_r (z − φ(pre)) at the relaxed solution
    converged: bool


def certify_node(problem: CrossingProblem, status: Any) -> _NodeResult:
    """Solve the node's relaxation approximately and return an exactly verified certificate of a lower
    bound on ``F`` over the node's points in the box (0 where the dual bound is negative)."""
    st = _check_status(problem, status)
    rel = _relaxation(problem, st)
    M = rel.M.astype(np.float64)
    G = rel.G_int.astype(np.float64) / float(1 << _SHIFT)
    h = rel.h_int.astype(np.float64) / float(1 << _SHIFT)
    V = rel.V_int.astype(np.float64) / float(1 << _BITS)
    W = np.array(problem.weights, np.float64) / problem.n
    c = np.array([float(t) for t in problem.targets])
    Q = M.T @ (W[:, None] * M)
    q = -M.T @ (W * c)

    def lbfun(v: np.ndarray, lam: np.ndarray) -> float:
        nu = W * (c - M @ v)
        rho = M.T @ nu - G.T @ lam
        return float(nu @ c - 0.5 * np.sum(nu * nu / W) - lam @ h - np.abs(rho) @ V)

    v, lam, converged = _qp_ipm(Q, q, G, h, lbfun, const=float(0.5 * np.sum(W * c * c)))
    nu = W * (c - M @ v)
    nu_i = tuple(int(round(x * 2.0 ** _K)) for x in nu)
    lam_i = tuple(max(0, int(round(x * 2.0 ** _K))) for x in np.nan_to_num(lam, nan=0.0, posinf=0.0))
    bound = max(_exact_bound(problem, rel, nu_i, lam_i), Fraction(0))
    B = v[: rel.n_b].reshape(problem.units, problem.dim)
    viol = np.zeros((len(problem.branch), problem.units))
    for a, r in enumerate(problem.branch):
        for j in range(problem.units):
            z = rel.zcols.get((r, j))
            if z is not None:
                viol[a, j] = problem.weights[r] * (v[z] - max(0.0, float(problem.rows[r] @ B[j])))
    return _NodeResult(RegionCertificate(st, nu_i, lam_i, bound), B, viol, converged)


# --------------------------------------------------------------------------- search


def _lbfgs(Xf: np.ndarray, yf: np.ndarray, B0: np.ndarray, maxiter: int = 3000) -> tuple[float, np.ndarray]:
    """L-BFGS on ``F`` from ``B0`` (a local search; its result is only ever used as a witness)."""
    from scipy.optimize import minimize

    units, d = B0.shape

    def fun(b: np.ndarray) -> tuple[float, np.ndarray]:
        P = Xf @ b.reshape(units, d).T
        r = np.maximum(P, 0.0).sum(axis=1) - yf
        return float(0.5 * np.mean(r * r)), (((r[:, None] * (P > 0)).T @ Xf) / len(yf)).ravel()

    res = minimize(fun, B0.ravel(), jac=True, method="L-BFGS-B",
                   options={"maxiter": maxiter, "gtol": 1e-12, "ftol": 1e-15})
    return float(res.fun), res.x.reshape(units, d)


def local_search(X: Any, y: Any, units: int, restarts: int = 32, seed: int = 0) -> np.ndarray:
    """Best ``B`` found by L-BFGS from ``restarts`` random starts and the zero net (a witness: an UPPER bound
    on ``L*``)."""
    Xf, yf = np.asarray(X, np.float64), np.asarray(y, np.float64)
    d = Xf.shape[1]
    rng = np.random.default_rng(seed)
    best = (crossing_loss(np.zeros((units, d)), Xf, yf), np.zeros((units, d)))
    for _ in range(int(restarts)):
        cand = _lbfgs(Xf, yf, rng.normal(size=(units, d)) * rng.choice([0.1, 0.3, 1.0]))
        if cand[0] < best[0]:
            best = cand
    return best[1]


@dataclasses.dataclass(frozen=True)
class BarrierBound:
    """Result of :func:`crossing_set_minimum` / :func:`prove_barrier_bound`.

    ``lower_bound`` (float, rounded down from the exact ``lower_bound_exact``) is PROVED:
    ``min_S L ≥ lower_bound`` — and hence every continuous path from the teacher to the student
    minimizer has barrier ≥ ``lower_bound`` — whenever the search ``finished`` or not (an unfinished
    search reports the minimum over its open nodes, also certified, usually weak). ``upper_bound`` is
    the exact loss of ``minimiser`` (rounded up), a point of S: ``min_S L ≤ upper_bound``.
    """

    h: int | None
    sizes: dict[str, int] | None
    units: int
    n: int
    lower_bound: float
    lower_bound_exact: Fraction
    upper_bound: float
    upper_bound_exact: Fraction
    minimiser: np.ndarray
    finished: bool
    stop_reason: StopReason
    nodes_solved: int
    nodes_closed_by_bound: int
    leaves: int
    nodes_open: int
    unconverged_solves: int
    patterns: int
    rel_gap: float
    seconds: float
    box: tuple[tuple[float, ...], tuple[float, ...]]
    problem: CrossingProblem
    certificates: tuple[RegionCertificate, ...] = ()

    @property
    def gap(self) -> float:
        return self.upper_bound - self.lower_bound

    def claim(self) -> str:
        where = f"h = {self.h}" if self.h is not None else f"{self.units} units"
        status = "search finished" if self.finished else f"search stopped ({self.stop_reason}); bound is weak"
        return (f"{where}: every path from the teacher to the student minimizer has barrier ≥ {self.lower_bound:.6g} "
                f"(proved; {status}); a point of S has loss {self.upper_bound:.6g}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "h": self.h, "sizes": self.sizes, "units": self.units, "n": self.n,
            "lower_bound": self.lower_bound, "lower_bound_exact": str(self.lower_bound_exact),
            "upper_bound": self.upper_bound, "gap": self.gap, "minimiser": np.asarray(self.minimiser).tolist(),
            "finished": self.finished, "stop_reason": self.stop_reason, "nodes_solved": self.nodes_solved,
            "nodes_closed_by_bound": self.nodes_closed_by_bound, "leaves": self.leaves,
            "nodes_open": self.nodes_open, "unconverged_solves": self.unconverged_solves,
            "patterns": self.patterns, "rel_gap": self.rel_gap, "seconds": self.seconds,
            "box": {"b_lo": list(self.box[0]), "b_hi": list(self.box[1])},
            "label": "PROVED lower bound on min over the crossing set S (exact dual certificates)",
        }


def _classes(status: Status, units: int) -> list[list[int]]:
    """Units with identical status columns (interchangeable at this node)."""
    out: dict[tuple[int, ...], list[int]] = {}
    for j in range(units):
        out.setdefault(tuple(row[j] for row in status), []).append(j)
    return list(out.values())


def _children(status: Status, units: int, violation: np.ndarray) -> list[Status]:
    """Branch one branch row for one class of interchangeable units that is relaxed there (the one with the
    largest relaxation violation): child ``t`` makes the class's first ``t`` units active, the rest inactive."""
    best: tuple[float, int, list[int]] | None = None
    for cls in _classes(status, units):
        for a, row in enumerate(status):
            if row[cls[0]] == 0:
                score = float(violation[a, cls].sum())
                if best is None or score > best[0]:
                    best = (score, a, cls)
    if best is None:
        return []
    _, a, cls = best
    kids = []
    for t in range(len(cls) + 1):
        rows = [list(r) for r in status]
        for i, j in enumerate(cls):
            rows[a][j] = 1 if i < t else -1
        kids.append(tuple(tuple(r) for r in rows))
    return kids


@contextlib.contextmanager
def _one_blas_thread():
    """Small dense solves are fastest (and do not oversubscribe a shared CPU) on one BLAS thread."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


def crossing_set_minimum(X: Any, y: Any, units: int, *, witness: Any = None, restarts: int = 32, seed: int = 0,
                         rel_gap: float = 1e-6, max_nodes: int = 200_000, time_limit: float = 600.0,
                         keep_certificates: bool = False, progress: bool = True,
                         progress_every: int = 500, h: int | None = None, sizes: dict[str, int] | None = None,
                         ) -> BarrierBound:
    """Proved lower bound on ``min_B F(B)`` (``units`` ReLU units with unit output weights; Appendix C's S
    has ``units = h − 1``) by branch and bound over activation patterns with exact dual certificates.

    ``witness`` (a ``(units, d)`` array; default: :func:`local_search` with ``restarts``; ``"zero"``: the
    zero net, no local search) fixes the box; every node's relaxed point is also tried as a witness;
    better points found during the search only tighten the closing test. Nodes
    close once their certified bound is ≥ ``U·(1 − rel_gap)`` (U = best exact witness loss). The search
    stops at ``max_nodes`` solved nodes or ``time_limit`` seconds (then ``finished`` is False and the bound,
    still proved, is the minimum over the open nodes too). with ``progress`` a line goes to the ``stability.thm4_barrier``
    logger every ``progress_every`` nodes; ``keep_certificates`` keeps every closed (and open) node's certificate.
    """
    Xi, yf, units = _check_data(X, y, units)
    for name, v, ok in (("rel_gap", rel_gap, 0 <= rel_gap < 1), ("max_nodes", max_nodes, max_nodes >= 1),
                        ("time_limit", time_limit, time_limit > 0), ("restarts", restarts, restarts >= 0),
                        ("progress_every", progress_every, progress_every >= 1)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not ok:
            raise ValueError(f"{name} out of range, got {v!r}")
    with _one_blas_thread():
        return _search(Xi, yf, units, witness=witness, restarts=restarts, seed=seed, rel_gap=rel_gap,
                       max_nodes=max_nodes, time_limit=time_limit, keep_certificates=keep_certificates, progress=progress,
                       progress_every=progress_every, h=h, sizes=sizes)


def _search(Xi: np.ndarray, yf: list[Fraction], units: int, *, witness: Any, restarts: int, seed: int,
            rel_gap: float, max_nodes: int, time_limit: float, keep_certificates: bool,
            progress: bool, progress_every: int, h: int | None, sizes: dict[str, int] | None,
            ) -> BarrierBound:
    t0 = time.perf_counter()
    d = Xi.shape[1]
    if witness is None:
        B0 = local_search(Xi, np.array([float(t) for t in yf]), units, restarts=restarts, seed=seed)
    elif isinstance(witness, str):
        if witness != "zero":
            raise ValueError(f"witness must be an array, None or 'zero', got {witness!r}")
        B0 = np.zeros((units, d))
    else:
        B0 = np.asarray(witness, np.float64)
        if B0.shape != (units, d) or not np.all(np.isfinite(B0)):
            raise ValueError(f"witness must be a finite ({units}, {d}) array, got shape {B0.shape}")
    yarr = [float(t) for t in yf]
    U_exact = crossing_loss_exact(B0, Xi, yarr)
    problem = crossing_problem(Xi, yf, units, U_exact)
    best_B, best_U = B0, U_exact
    emit = get_logger("thm4_barrier").info if progress else (lambda s: None)

    nodes = closed_by_bound = leaves = unconverged = 0
    closed_min: Fraction | None = None
    certs: list[RegionCertificate] = []
    heap: list[tuple[float, int, Status, np.ndarray, RegionCertificate]] = []
    counter = itertools.count()
    stop: StopReason = "closed"

    def threshold() -> Fraction:
        return best_U * (1 - Fraction(rel_gap))

    def close(bound: Fraction, cert: RegionCertificate) -> None:
        nonlocal closed_min
        closed_min = bound if closed_min is None else min(closed_min, bound)
        if keep_certificates:
            certs.append(cert)

    def evaluate(status: Status) -> None:
        nonlocal nodes, leaves, unconverged, closed_by_bound, best_B, best_U
        res = certify_node(problem, status)
        nodes += 1
        unconverged += not res.converged
        cand, B = crossing_loss(res.B, Xi, yarr), res.B  # the relaxation's point is a point of S too
        if cand < float(best_U) * (1 - 1e-12):
            exact = crossing_loss_exact(B, Xi, yarr)
            if exact < best_U:
                best_B, best_U = np.array(B), exact
        bound = res.cert.bound
        if all(s != 0 for row in status for s in row):
            leaves += 1
            close(bound, res.cert)
        elif bound >= threshold():
            closed_by_bound += 1
            close(bound, res.cert)
        else:
            heapq.heappush(heap, (float(bound), next(counter), status, res.violation, res.cert))

    root = tuple(tuple(0 for _ in range(units)) for _ in problem.branch)
    evaluate(root)
    last = 0
    while heap:
        if nodes >= max_nodes:
            stop = "max_nodes"
            break
        if time.perf_counter() - t0 > time_limit:
            stop = "time_limit"
            break
        _, _, status, viol, cert = heapq.heappop(heap)
        if cert.bound >= threshold():
            closed_by_bound += 1
            close(cert.bound, cert)
            continue
        for kid in _children(status, units, viol):
            evaluate(kid)
        if nodes - last >= progress_every:
            last = nodes
            front = min(b for b in (closed_min, heap[0][4].bound if heap else None) if b is not None)
            emit(f"  crossing-set search: {nodes} nodes, {len(heap)} open, proved bound so far "
                 f"{float(front):.6g}, best point of S {float(best_U):.6g}, {time.perf_counter() - t0:.1f} s")
    if keep_certificates:
        certs.extend(e[4] for e in heap)
    candidates = [b for b in [closed_min] if b is not None] + [e[4].bound for e in heap]
    lower = min(candidates)
    if lower > best_U:
        raise RuntimeError(f"internal error: certified bound {float(lower)} above a point of S with loss "
                           f"{float(best_U)}")
    return BarrierBound(
        h=h, sizes=sizes, units=units, n=problem.n, lower_bound=_float_down(lower), lower_bound_exact=lower,
        upper_bound=_float_up(best_U), upper_bound_exact=best_U, minimiser=np.asarray(best_B),
        finished=not heap, stop_reason=stop if heap else "closed", nodes_solved=nodes,
        nodes_closed_by_bound=closed_by_bound, leaves=leaves, nodes_open=len(heap),
        unconverged_solves=unconverged, patterns=2 ** (len(problem.branch) * units), rel_gap=float(rel_gap),
        seconds=round(time.perf_counter() - t0, 3),
        box=(tuple(float(b) for b in problem.b_lo), tuple(float(b) for b in problem.b_hi)), problem=problem,
        certificates=tuple(certs) if keep_certificates else ())


def prove_barrier_bound(h: int, k: int | None = None, l: int | None = None, m: int | None = None,
                        n: int | None = None, **kw: Any) -> BarrierBound:
    """:func:`crossing_set_minimum` for Appendix C's dataset (``units = h − 1``): a proved lower bound on the
    barrier of every continuous path from :func:`~stability.theory.counterexample.teacher_minimizer` to
    :func:`~stability.theory.counterexample.student_minimizer` (any permutation of it)."""
    try:
        s = ce.sizes(h, k, l, m, n)
    except TypeError as e:  # a non-integer size: refuse like any other bad size
        raise ValueError(str(e)) from None
    X, y = ce.dataset(*s, dtype=np.int64)
    return crossing_set_minimum(X, y, s.h - 1, h=s.h, sizes={"k": s.k, "l": s.l, "m": s.m, "n": s.n}, **kw)


def check_coverage(problem: CrossingProblem, statuses: Sequence[Status]) -> bool:
    """Brute-force check (small cases only) that the node statuses cover every full activation pattern of
    the branch rows up to relabelling the units: for each assignment of a sign to every (row, unit), some
    status agrees with it (``0`` agrees with both signs) after permuting the units."""
    nb, u = len(problem.branch), problem.units
    if nb * u > 20:
        raise ValueError(f"check_coverage enumerates 2^{nb * u} patterns; only for branch rows · units ≤ 20")
    P = np.array(list(itertools.product((-1, 1), repeat=nb * u)), np.int8).reshape(-1, nb, u)
    covered = np.zeros(P.shape[0], bool)
    for st in statuses:
        S = np.array(_check_status(problem, st), np.int8)
        for perm in itertools.permutations(range(u)):
            Sp = S[:, list(perm)]
            covered |= np.all((Sp[None] == 0) | (P == Sp[None]), axis=(1, 2))
    return bool(covered.all())
