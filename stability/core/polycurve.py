"""Weight curves that are polynomial combinations of control points — the algebra of a path, stated once.

Every curve this library evaluates or bounds in ``t`` — a straight segment, a constructed path
(one straight piece per segment), a Bezier curve, a polygonal chain — is, on each of its pieces,

    θ(t) = Σ_k p_{j,k}(u) · θ_k,     u = (t − breaks[j]) / (breaks[j+1] − breaks[j]) ∈ [0, 1],

with ``K`` control points ``θ_k`` (one pytree with a leading axis ``K``) and polynomials ``p_{j,k}`` in
the power basis of the piece's local time ``u``: ``coef[j, k, m]`` is the coefficient of ``u^m``.
:class:`PolyCurve` is that declarative description (no pattern matching on code): a consumer can
form ``Σ_k c_k (W_k x)`` for a first layer, or enclose the weights of a ``t``-interval exactly.

The coefficients are small exact rationals (Bernstein expansions, ``1 − u`` / ``u``); at ``u = 0`` and
``u = 1`` the only nonzero coefficient of a piece's end control point is exactly 1, so a consumer that
forms ``Σ_k p_k(u)·θ_k`` gets the end points bit for bit.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

__all__ = ["PolyCurve", "Combination", "segment_coef", "bezier_coef", "poly_eval"]


def segment_coef() -> np.ndarray:
    """``(2, 2)``: ``1 − u`` and ``u`` in the power basis (rows: control point, columns: power)."""
    return np.array([[1.0, -1.0], [0.0, 1.0]])


def bezier_coef(degree: int) -> np.ndarray:
    """``(degree+1, degree+1)``: Bernstein polynomials ``C(n, i) u^i (1−u)^{n−i}`` in the power basis."""
    n = int(degree)
    if n < 1:
        raise ValueError(f"a Bezier curve has degree >= 1, got {degree}")
    out = np.zeros((n + 1, n + 1))
    for i in range(n + 1):
        for m in range(n - i + 1):
            out[i, i + m] = math.comb(n, i) * math.comb(n - i, m) * (-1) ** m
    return out


def poly_eval(coef: np.ndarray, u: np.ndarray | float) -> np.ndarray:
    """``Σ_m coef[..., m]·u^m`` for every ``u`` (Horner): shape ``coef.shape[:-1] + np.shape(u)``."""
    u = np.asarray(u, np.float64)
    out = np.zeros(coef.shape[:-1] + u.shape)
    for m in range(coef.shape[-1] - 1, -1, -1):
        out = out * u + coef[..., m].reshape(coef.shape[:-1] + (1,) * u.ndim)
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class PolyCurve:
    """``θ(t)`` on ``[breaks[0], breaks[-1]] = [0, 1]``: piece ``j`` is ``Σ_k p_{j,k}(u)·points[k]``.

    ``points``: a pytree whose leaves have a leading axis ``K`` (the control points); ``coef``:
    ``(J, K, M+1)`` power-basis coefficients per piece; ``breaks``: ``(J+1,)`` increasing global times
    of the piece boundaries. ``support[j]`` lists the control points piece ``j`` uses (nonzero rows).
    """

    points: Any
    coef: np.ndarray
    breaks: np.ndarray

    def __post_init__(self) -> None:
        import jax

        coef = np.asarray(self.coef, np.float64)
        breaks = np.asarray(self.breaks, np.float64).reshape(-1)
        if coef.ndim != 3:
            raise ValueError(f"coef must have shape (pieces, control points, powers), got {coef.shape}")
        if breaks.size != coef.shape[0] + 1 or breaks[0] != 0.0 or breaks[-1] != 1.0 or np.any(np.diff(breaks) <= 0):
            raise ValueError(f"breaks must rise strictly from 0 to 1 with one more entry than pieces "
                             f"({coef.shape[0]}), got {breaks.tolist()}")
        leaves = jax.tree_util.tree_leaves(self.points)
        if not leaves or any(np.shape(a)[0] != coef.shape[1] for a in leaves):
            raise ValueError(f"every leaf of points needs a leading axis of {coef.shape[1]} control points")
        object.__setattr__(self, "coef", coef)
        object.__setattr__(self, "breaks", breaks)

    @property
    def n_pieces(self) -> int:
        return int(self.coef.shape[0])

    @property
    def n_points(self) -> int:
        return int(self.coef.shape[1])

    @property
    def degree(self) -> int:
        return int(self.coef.shape[2]) - 1

    @property
    def support(self) -> tuple[np.ndarray, ...]:
        return tuple(np.flatnonzero(np.any(c != 0, axis=1)) for c in self.coef)

    def locate(self, ts: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Global ``t`` → ``(piece, local u)``; a break belongs to the piece it starts (the last one to the
        last piece), so ``u ∈ [0, 1)`` except ``u = 1`` at ``t = 1``."""
        t = np.asarray(ts, np.float64).reshape(-1)
        if np.any(~np.isfinite(t)) or np.any((t < 0) | (t > 1)):
            raise ValueError(f"t must lie in [0, 1], got {t[(t < 0) | (t > 1) | ~np.isfinite(t)][:5].tolist()}")
        j = np.clip(np.searchsorted(self.breaks, t, side="right") - 1, 0, self.n_pieces - 1)
        lo, hi = self.breaks[j], self.breaks[j + 1]
        u = np.where(t == hi, 1.0, (t - lo) / (hi - lo))
        return j, u

    def weights(self, ts: np.ndarray | float) -> np.ndarray:
        """``(n, K)``: the coefficient of every control point at every ``t`` (exact 0/1 at the breaks)."""
        j, u = self.locate(ts)
        out = np.einsum("nkm,nm->nk", self.coef[j], u[:, None] ** np.arange(self.degree + 1)[None, :])
        # exact end points: at u = 0 / u = 1 the polynomial values are exact integers already in exact
        # arithmetic; rounding them removes the last-bit noise of the power-basis sum
        ends = (u == 0.0) | (u == 1.0)
        out[ends] = np.round(out[ends])
        return out

    def combination(self, ts: np.ndarray | float) -> "Combination":
        """The :class:`Combination` of the points at ``ts``: the control points and :meth:`weights`."""
        return Combination(self.points, self.weights(ts))

    def point(self, t: float) -> Any:
        """``θ(t)`` as a pytree (host-side NumPy arithmetic, float64 coefficients cast to each leaf's dtype)."""
        return _combine(self.points, self.weights(t)[0])

    @classmethod
    def segment(cls, a: Any, b: Any) -> "PolyCurve":
        """The straight segment ``(1−t)·a + t·b``."""
        import jax

        pts = jax.tree_util.tree_map(lambda u, v: np.stack([np.asarray(u), np.asarray(v)]), a, b)
        return cls(pts, segment_coef()[None], np.array([0.0, 1.0]))

    @classmethod
    def chain(cls, points: Any, breaks: np.ndarray | None = None) -> "PolyCurve":
        """The polygonal chain through ``K`` stacked points (a constructed path's way points, or a polychain's
        control points): piece ``j`` is the segment ``points[j] → points[j+1]``; equal pieces by default."""
        import jax

        K = int(np.shape(jax.tree_util.tree_leaves(points)[0])[0])
        if K < 2:
            raise ValueError(f"a chain needs at least 2 points, got {K}")
        coef = np.zeros((K - 1, K, 2))
        for j in range(K - 1):
            coef[j, j:j + 2] = segment_coef()
        return cls(points, coef, np.linspace(0.0, 1.0, K) if breaks is None else breaks)

    @classmethod
    def bezier(cls, points: Any) -> "PolyCurve":
        """The Bezier curve of ``K`` stacked control points (degree ``K − 1``), one piece."""
        import jax

        K = int(np.shape(jax.tree_util.tree_leaves(points)[0])[0])
        return cls(points, bezier_coef(K - 1)[None], np.array([0.0, 1.0]))


@dataclasses.dataclass(frozen=True, eq=False)
class Combination:
    """Evaluated points that are linear combinations of control points: ``θ_n = Σ_k coef[n, k]·points[k]``.

    The description an evaluator needs to use the algebra of a curve: ``points`` is a pytree whose leaves have a
    leading axis ``K`` (host or device arrays); ``coef`` is ``(n, K)`` (float64 on the host). A straight line, a
    constructed path and a polygonal chain use 2 control points per point, a Bezier curve all of its control
    points, a plane 3 (its origin and two directions, ``θ(α, β) = 1·o + α·u + β·v``). Because every layer's
    weight and bias are the same combination, the first layer's pre-activation is
    ``A(θ_n) x + b(θ_n) = Σ_k coef[n, k]·(A_k x + b_k)``: one product per control point instead of one per point.
    A row whose only nonzero coefficient is exactly 1 IS that control point (end points of segments and curves).
    """

    points: Any
    coef: np.ndarray

    def __post_init__(self) -> None:
        import jax

        coef = np.asarray(self.coef, np.float64)
        if coef.ndim != 2 or coef.shape[0] == 0 or coef.shape[1] == 0:
            raise ValueError(f"coef must have shape (points > 0, control points > 0), got {coef.shape}")
        if not np.all(np.isfinite(coef)):
            raise ValueError("coef contains NaN or inf")
        leaves = jax.tree_util.tree_leaves(self.points)
        if not leaves or any(np.ndim(a) < 1 or np.shape(a)[0] != coef.shape[1] for a in leaves):
            raise ValueError(f"every leaf of points needs a leading axis of {coef.shape[1]} control points")
        object.__setattr__(self, "coef", coef)

    @property
    def n_points(self) -> int:
        return int(self.coef.shape[0])

    @property
    def n_control(self) -> int:
        return int(self.coef.shape[1])

    def support(self, n: int) -> np.ndarray:
        """Indices of the control points point ``n`` uses (nonzero coefficients)."""
        return np.flatnonzero(self.coef[n])

    def rows(self, idx: np.ndarray) -> "Combination":
        """The combination of the points ``idx`` only (same control points)."""
        return Combination(self.points, self.coef[np.asarray(idx, np.int64)])

    def point(self, n: int) -> Any:
        """``θ_n`` as a pytree (host-side NumPy; a single unit coefficient returns that control point exactly)."""
        return _combine(self.points, self.coef[n])


def _combine(points: Any, w: np.ndarray) -> Any:
    """``Σ_k w[k]·points[k]`` leaf by leaf on the host (NumPy; float64 coefficients cast to each leaf's dtype);
    a single unit coefficient returns that control point exactly."""
    import jax

    nz = np.flatnonzero(w)

    def leaf(a):
        a = np.asarray(a)
        if nz.size == 1 and w[nz[0]] == 1.0:
            return a[nz[0]].copy()
        acc = np.zeros(a.shape[1:], a.dtype)
        for k in nz:
            acc = acc + a.dtype.type(w[k]) * a[k]
        return acc

    return jax.tree_util.tree_map(leaf, points)
