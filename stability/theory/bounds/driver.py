"""Sound upper bounds of ``max_{t∈[0,1]} L(θ(t))`` over a whole :class:`~stability.core.polycurve.PolyCurve`.

:func:`max_loss_bound` keeps a partition of every piece's local time into dyadic sub-intervals,
encloses the loss on each by Taylor-model (or interval) propagation (:mod:`.program`), and
repeatedly bisects the sub-intervals with the largest upper bounds until the certified upper bound
is within ``max(atol, rtol·|lower|)`` of a rigorous lower bound (the lower end of a point enclosure at
one ``t*``) or the sub-interval budget is spent. Pieces with a PROVED claim (from
``proofs_check.certify``) are bounded from their end points instead. The argument is in
``docs/theory/bounds.md``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from stability.core import mesh as _mesh
from stability.core import nets as _nets
from stability.core.progress import get_logger
from stability.core.evaluate import padded_batches
from stability.core.hostloop import use_host_loop
from stability.core.losses import Loss, cross_entropy, get_loss
from stability.core.polycurve import PolyCurve
from stability.theory.bounds.coefficients import taylor_coefficients
from stability.theory.bounds.program import Spec, Subintervals, run_program

_log = get_logger("bounds")

__all__ = ["BoundResult", "max_loss_bound", "PROVED_CLAIMS", "Method", "Stop"]

Method = Literal["taylor", "interval"]
Stop = Literal["tolerance", "budget", "resolution"]
PieceMethod = Literal["propagation", "function_preserving", "copy_shift", "top_layer"]
PROVED_CLAIMS: tuple[str, ...] = ("function_preserving", "copy_shift", "top_layer")
"""Claims that shortcut a piece: ``function_preserving``/``copy_shift`` (f constant on the piece: the loss is
the end loss) and ``top_layer`` (only ``A_d, b_d`` move: the loss is convex in t, its max is at an end)."""

MIN_WIDTH = 2.0 ** -40
"""Sub-intervals narrower than this are not bisected (stop reason ``resolution``)."""

_LOSSES = ("cross_entropy", "squared_error")
_MEMORY_BUDGET = 128 * 2**20


@dataclasses.dataclass(frozen=True)
class BoundResult:
    """A certified enclosure of ``max_{t∈[0,1]} L(θ(t))``: ``lower ≤ max ≤ upper`` (both PROVED, float64
    with outward rounding; ``lower`` is the lower end of a point enclosure at ``t_lower``).

    ``stop``: ``tolerance`` (``upper − lower ≤ max(atol, rtol·|lower|)``), ``budget`` (``max_subintervals``
    reached first) or ``resolution`` (the worst sub-intervals are narrower than ``2⁻⁴⁰``).
    ``piece_upper``/``piece_lower``/``piece_method`` per piece; ``subintervals`` the final partition as
    rows ``(t0, t1, upper)`` in global time (a proved piece is one row); ``history`` rows
    ``(n_subintervals, n_evaluations, upper, lower, seconds)`` after every round.
    """

    upper: float
    lower: float
    t_lower: float
    n_subintervals: int
    n_evaluations: int
    stop: Stop
    seconds: float
    piece_upper: np.ndarray
    piece_lower: np.ndarray
    piece_method: tuple[str, ...]
    subintervals: np.ndarray
    history: np.ndarray
    rtol: float
    atol: float
    budget: int
    loss: str
    method: str

    @property
    def gap(self) -> float:
        return self.upper - self.lower

    @property
    def converged(self) -> bool:
        return self.stop == "tolerance"

    def describe(self) -> str:
        """One phrase for reports: ``max over every t in [lower, upper] (certified, …)``, saying when the
        budget or the resolution stopped the bisection before the tolerance."""
        flag = "" if self.converged else f"; stopped by its {self.stop} before the tolerance, gap {self.gap:.3g}"
        return (f"max over every t in [{self.lower:.4g}, {self.upper:.4g}] (certified, {self.n_subintervals} "
                f"sub-intervals, {self.seconds:.1f} s{flag})")

    def envelope(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(t0, t1, upper)`` of every sub-interval, sorted by ``t0``: the certified envelope
        ``L(θ(t)) ≤ upper`` on ``[t0, t1]`` (for shading a figure)."""
        rows = self.subintervals[np.argsort(self.subintervals[:, 0], kind="stable")]
        return rows[:, 0].copy(), rows[:, 1].copy(), rows[:, 2].copy()

    def to_dict(self) -> dict[str, Any]:
        t0, t1, up = self.envelope()
        return {
            "upper": self.upper, "lower": self.lower, "t_lower": self.t_lower, "gap": self.gap,
            "n_subintervals": self.n_subintervals, "n_evaluations": self.n_evaluations, "stop": self.stop,
            "seconds": self.seconds, "piece_upper": self.piece_upper.tolist(), "piece_lower": self.piece_lower.tolist(),
            "piece_method": list(self.piece_method), "rtol": self.rtol, "atol": self.atol, "budget": self.budget,
            "loss": self.loss, "method": self.method,
            "envelope": {"t0": t0.tolist(), "t1": t1.tolist(), "upper": up.tolist()},
            "history": {k: self.history[:, i].tolist() for i, k in
                        enumerate(("n_subintervals", "n_evaluations", "upper", "lower", "seconds"))},
        }


def _pow2(n: int, lo: int = 1) -> int:
    return max(lo, 1 << max(0, int(n) - 1).bit_length())


def _float64_leaves(tree: Any, what: str) -> Any:
    def conv(a):
        a = np.asarray(a)
        if not np.issubdtype(a.dtype, np.floating):
            raise ValueError(f"{what} must be floating point, got dtype {a.dtype}")
        b = a.astype(np.float64)
        if not np.all(np.isfinite(b)):
            raise ValueError(f"{what} contain non-finite values (NaN or inf); only finite weights can be bounded")
        tiny = (b != 0) & (np.abs(b) < np.finfo(np.float64).tiny)
        if np.any(tiny):
            raise ValueError(f"{what} contain subnormal float64 values (e.g. {b[tiny][0]!r}), which XLA flushes to "
                             "zero; round them to 0 first")
        return b
    return jax.tree_util.tree_map(conv, tree)


class _Problem:
    """Validated inputs and the per-piece data the bisection needs (host side)."""

    def __init__(self, curve: PolyCurve, x, y, loss: Loss, claims, method: str, per_round: int,
                 batch_size: int | None, sound: bool, relax: bool, mesh: Mesh | None = None) -> None:
        if not isinstance(curve, PolyCurve):
            raise ValueError(f"curve must be a stability.core.polycurve.PolyCurve, got {type(curve).__name__}")
        if not isinstance(curve.points, _nets.Net):
            raise ValueError(f"curve.points must be a stability.core.nets.Net with a leading axis of control points, got "
                             f"{type(curve.points).__name__}")
        arch = curve.points.arch
        if arch.depth < 2:
            raise ValueError(f"the net needs at least one hidden layer, got depth {arch.depth}")
        pts = _float64_leaves(curve.points, "curve.points (the control points' weights)")
        x = np.asarray(x)
        if x.ndim < 1 or tuple(x.shape[1:]) != tuple(arch.in_shape) or x.shape[0] < 1:
            raise ValueError(f"x must have shape (N ≥ 1, {', '.join(map(str, arch.in_shape))}), got {x.shape}")
        x = _float64_leaves(x, "x (the inputs)")
        C = arch.widths[-1]
        y = np.asarray(y)
        if loss.name == "cross_entropy" or np.issubdtype(y.dtype, np.integer):
            if not np.issubdtype(y.dtype, np.integer) or y.shape != (x.shape[0],):
                raise ValueError(f"y must be integer labels of shape ({x.shape[0]},), got dtype {y.dtype} shape {y.shape}")
            if y.min() < 0 or y.max() >= C:
                raise ValueError(f"labels must lie in [0, {C}) for a net with {C} outputs, got range "
                                 f"[{y.min()}, {y.max()}]")
            target = y.astype(np.int32) if loss.name == "cross_entropy" else np.eye(C)[y]
        else:
            if y.shape not in ((x.shape[0], C),) + (((x.shape[0],),) if C == 1 else ()):
                raise ValueError(f"squared-error targets must have shape ({x.shape[0]}, {C}), got {y.shape}")
            target = _float64_leaves(y.reshape(x.shape[0], C), "y (the regression targets)")
        self.arch, self.loss, self.N = arch, loss.name, int(x.shape[0])
        self.coef, self.breaks = curve.coef, curve.breaks
        J = curve.n_pieces
        if claims is None:
            claims = [None] * J
        claims = list(claims)
        if len(claims) != J:
            raise ValueError(f"certificate_claims needs one entry per piece ({J}), got {len(claims)}")
        for j, c in enumerate(claims):
            if c is not None and c not in PROVED_CLAIMS:
                raise ValueError(f"certificate_claims[{j}] = {c!r}; allowed: None or one of {PROVED_CLAIMS}")
            if c is not None and np.any(curve.coef[j, :, 2:] != 0):
                raise ValueError(f"certificate_claims[{j}] = {c!r} needs a straight piece (degree ≤ 1 in t), "
                                 f"piece {j} has degree {curve.degree}")
        self.claims = claims
        # control points padded to a power of two (fewer programs); support padded likewise
        K = curve.n_points
        Kp = _pow2(K, 4)
        pad = lambda v: _mesh.to_device(np.concatenate([v, np.zeros((Kp - K,) + v.shape[1:], v.dtype)]))  # noqa: E731
        self.pts = jax.tree_util.tree_map(pad, pts)
        support = curve.support
        Ks = _pow2(max(len(s) for s in support), 4)  # ≥ 4: segments and Bezier curves of degree ≤ 3
        M1 = _pow2(curve.degree + 1, 4)              # share one program
        self.idx = np.zeros((J, Ks), np.int32)
        self.pcoef = np.zeros((J, Ks, M1))
        for j, s in enumerate(support):
            self.idx[j, :len(s)] = s
            self.pcoef[j, :len(s), :curve.degree + 1] = curve.coef[j, s]
        self.spec = Spec(arch, loss.name, 1 if method == "taylor" else 0,
                         pairwise=loss.name == "cross_entropy" and C <= 32, sound=sound, relax=relax)
        self.host_loop = use_host_loop(curve.points)
        # batch size: per sample and sub-interval, ~16 floats per unit plus the C×C pair table
        s_max = _pow2(2 * per_round + 2, 8)
        units = sum(int(np.prod(s.shape[1:])) for s in jax.eval_shape(
            lambda n, xx: _nets.forward(n, xx), _nets.point_spec(pts), _nets.sample_spec(x)))
        per1 = 8 * (16 * units + (3 * C * C if self.spec.pairwise else 0))   # bytes per sample and sub-interval
        if batch_size is None:   # as many samples as fit s_max sub-intervals in the budget (at least one)
            batch_size = max(1, min(1024, 1 << int(math.log2(max(1, _MEMORY_BUDGET // (per1 * s_max))))))
        # one sample's s_max sub-intervals over the budget: fewer sub-intervals per call (≥ 8, one padded call)
        s_max = min(s_max, max(8, 1 << int(math.log2(max(1, _MEMORY_BUDGET // (per1 * batch_size))))))
        # the weight enclosures of every sub-interval of a call are materialised: ~(M1 + Ks + 3) copies of the net
        n_par = sum(int(np.prod(np.shape(v)[1:])) for v in jax.tree_util.tree_leaves(curve.points))
        s_max = min(s_max, max(8, 1 << int(math.log2(max(1, _MEMORY_BUDGET // (8 * n_par * (M1 + Ks + 3)))))))
        self.batch = int(min(batch_size, self.N))
        self.s_max = s_max
        xb, tb, mb = padded_batches(_mesh.to_device(x), _mesh.to_device(target), self.batch)
        self.xb, self.tb, self.mb = xb, tb, mb.astype(jnp.float64)
        self.put = lambda a: a  # noqa: E731
        if _mesh.is_sharded(mesh):  # samples split over the devices; the outward-rounded sums hold in any order
            self.batch = _mesh.round_batch(self.batch, mesh)
            xb, tb, mb = padded_batches(_mesh.to_device(x), _mesh.to_device(target), self.batch)
            self.xb, self.tb, self.mb = _mesh.shard_batches(xb, tb, mb.astype(jnp.float64), mesh=mesh)
            self.pts = _mesh.replicate(self.pts, mesh)
            self.put = functools.partial(_mesh.replicate, mesh=mesh)

    def global_t(self, j: np.ndarray, u: np.ndarray) -> np.ndarray:
        lo, hi = self.breaks[j], self.breaks[j + 1]
        return np.where(u >= 1.0, hi, lo + u * (hi - lo))

    def evaluate(self, piece: np.ndarray, u0: np.ndarray, u1: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per sub-interval ``[u0, u1]`` of ``piece`` (``u0 = u1``: a point): an upper bound of the mean loss on
        it, a lower bound at its midpoint, and the end (0: ``u0``, 1: ``u1``) where the convex majorant peaks."""
        umid, delta = (u0 + u1) * 0.5, (u1 - u0) * 0.5  # exact: dyadic end points
        ups, los, ends = [], [], []
        for s in range(0, piece.size, self.s_max):
            p, um, dl = piece[s:s + self.s_max], umid[s:s + self.s_max], delta[s:s + self.s_max]
            S = _pow2(p.size, 8)
            pad = S - p.size
            p, um, dl = (np.concatenate([v, np.repeat(v[:1], pad)]) for v in (p, um, dl))
            c, rho, sigma = taylor_coefficients(self.pcoef[p], um, dl, self.spec.sound)
            sub = self.put(Subintervals(*map(_mesh.to_device, (self.idx[p], c, rho, sigma, dl))))
            u_minus, u_plus, lo = run_program(self.spec, self.pts, self.xb, self.tb, self.mb, sub, self.host_loop)
            n = S - pad
            # an overflow (inf − inf) may leave NaN: a NaN upper bound is replaced by +inf, a lower by −inf
            u_minus, u_plus = (np.where(np.isnan(v), np.inf, v) for v in (u_minus, u_plus))
            lo = np.where(np.isnan(lo), -np.inf, lo)
            up = np.maximum(u_minus[:n], u_plus[:n]) / self.N
            ups.append(np.nextafter(up, np.inf) if self.spec.sound else up)
            low = lo[:n] / self.N
            los.append(np.nextafter(low, -np.inf) if self.spec.sound else low)
            ends.append((u_plus[:n] > u_minus[:n]).astype(np.int64))
        return np.concatenate(ups), np.concatenate(los), np.concatenate(ends)


def max_loss_bound(
    curve: PolyCurve,
    x,
    y,
    *,
    loss: Loss | str = cross_entropy,
    rtol: float = 1e-2,
    atol: float = 1e-6,
    max_subintervals: int = 512,
    certificate_claims: Sequence[str | None] | None = None,
    method: Method = "taylor",
    per_round: int = 31,
    batch_size: int | None = None,
    progress: bool = False,
    mesh: Mesh | None = None,
    _sound: bool = True,
    _relax: bool = True,
) -> BoundResult:
    """Certified ``lower ≤ max_{t∈[0,1]} L(θ(t)) ≤ upper`` for a curve of dense or conv ReLU nets.

    ``certificate_claims[j]`` (``None`` or one of :data:`PROVED_CLAIMS`) must come from a PROVED verdict
    (``proofs_check.certify``, status ``proved``) — the caller is responsible; ``proofs_check.path_bound``
    does it for a :class:`~stability.theory.paths.Path`. ``method``: ``taylor`` (first-order Taylor models in t,
    default) or ``interval``. ``max_subintervals``: the largest partition of the propagated pieces;
    ``per_round``: how many of the worst sub-intervals are bisected per round. ``_sound``/``_relax`` switch off
    the rounding margins / the ReLU relaxation — UNSOUND, for negative controls only. ``mesh``
    (:func:`stability.core.mesh.make_mesh`, one process): the samples of every batch are split over its devices
    (the batch rounded up to a multiple of the device count); each sum over samples is rounded outward with a
    margin that holds for any order of addition, so the bound stays certified.
    """
    t_start = time.perf_counter()
    lossobj = get_loss(loss) if isinstance(loss, (str, Loss)) else None
    if lossobj is None or lossobj.name not in _LOSSES:
        raise ValueError(f"loss must be one of {_LOSSES}, got {getattr(loss, 'name', loss)!r}")
    if not (isinstance(rtol, (int, float)) and math.isfinite(rtol) and rtol > 0):
        raise ValueError(f"rtol must be a finite number > 0, got {rtol!r}")
    if not (isinstance(atol, (int, float)) and math.isfinite(atol) and atol >= 0):
        raise ValueError(f"atol must be a finite number >= 0, got {atol!r}")
    if isinstance(max_subintervals, bool) or not isinstance(max_subintervals, (int, np.integer)) or max_subintervals < 1:
        raise ValueError(f"max_subintervals must be an integer >= 1, got {max_subintervals!r}")
    if isinstance(per_round, bool) or not isinstance(per_round, (int, np.integer)) or per_round < 1:
        raise ValueError(f"per_round must be an integer >= 1, got {per_round!r}")
    if method not in ("taylor", "interval"):
        raise ValueError(f"method must be 'taylor' or 'interval', got {method!r}")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    if _mesh.is_sharded(mesh) and jax.process_count() > 1:
        raise ValueError("mesh: max_loss_bound splits samples over the devices of one process")
    with jax.enable_x64(True):
        prob = _Problem(curve, x, y, lossobj, certificate_claims, method, int(per_round), batch_size, _sound, _relax,
                        mesh)
        return _bisect(prob, float(rtol), float(atol), int(max_subintervals), int(per_round), method, progress,
                       t_start)


def _distinct_ends(coef: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """``(pieces, us, rep)``: the piece ends ``(j, u ∈ {0, 1})`` with distinct weights, and for each of the ``2J``
    ends ``(0, 0), (0, 1), (1, 0), …`` the index of the listed end with the same weights. Two ends are the same
    when their combinations of the control points (``coef[j, :, 0]`` at ``u = 0``, ``Σ_m coef[j, :, m]`` at
    ``u = 1``) are equal in exact rational arithmetic, so one enclosure serves both soundly."""
    from fractions import Fraction

    seen: dict[tuple[Fraction, ...], int] = {}
    pieces: list[int] = []
    us: list[float] = []
    rep: list[int] = []
    for j in range(coef.shape[0]):
        for u in (0, 1):
            c = coef[j, :, :1] if u == 0 else coef[j]
            key = tuple(sum((Fraction(float(v)) for v in row), Fraction(0)) for row in c)
            if key not in seen:
                seen[key] = len(pieces)
                pieces.append(j)
                us.append(float(u))
            rep.append(seen[key])
    return np.array(pieces, np.int64), np.array(us, np.float64), rep


def _bisect(prob: _Problem, rtol: float, atol: float, budget: int, per_round: int, method: str, progress: bool,
            t_start: float) -> BoundResult:
    J = prob.coef.shape[0]
    prop = [j for j in range(J) if prob.claims[j] is None]
    proved = [j for j in range(J) if prob.claims[j] is not None]
    if budget < len(prop):
        raise ValueError(f"max_subintervals = {budget} is below the number of pieces bounded by propagation "
                         f"({len(prop)}); each needs at least one sub-interval")
    init = 1
    while prop and init * 2 <= 8 and init * 2 * len(prop) <= budget:
        init *= 2
    edges = np.arange(init + 1) / init
    piece = np.repeat(np.array(prop, np.int64), init)
    u0 = np.tile(edges[:-1], len(prop))
    u1 = np.tile(edges[1:], len(prop))
    # point enclosures (rigorous lower AND upper bounds at one t) at both ends of every piece; an end whose weights
    # equal those of an end already listed (a junction of a chain) is evaluated once
    points: dict[tuple[int, float], tuple[float, float]] = {}
    pp, pu, rep = _distinct_ends(prob.coef)
    ups, los, ends = prob.evaluate(np.concatenate([piece, pp]), np.concatenate([u0, pu]), np.concatenate([u1, pu]))
    n_eval = ups.size
    upper, lower_mid, side = ups[:piece.size], los[:piece.size], ends[:piece.size]
    for n, r in enumerate(rep):
        points[(n // 2, float(n % 2))] = (float(ups[piece.size + r]), float(los[piece.size + r]))
    piece_upper = np.full(J, -np.inf)
    for j in proved:
        (a_up, _), (b_up, _) = points[(j, 0.0)], points[(j, 1.0)]
        constant = prob.claims[j] in ("function_preserving", "copy_shift")
        piece_upper[j] = min(a_up, b_up) if constant else max(a_up, b_up)
    history = []
    stop: str = "budget"
    while True:
        best_lo, best_key = max((v[1], k) for k, v in points.items())
        if lower_mid.size and lower_mid.max() > best_lo:
            i = int(np.argmax(lower_mid))
            best_lo, best_key = float(lower_mid[i]), (int(piece[i]), float((u0[i] + u1[i]) * 0.5))
        top = max(float(upper.max()) if upper.size else -np.inf, max((piece_upper[j] for j in proved), default=-np.inf))
        tol = max(atol, rtol * abs(best_lo)) if np.isfinite(best_lo) else atol
        history.append((upper.size, n_eval, top, best_lo, time.perf_counter() - t_start))
        if progress:
            _log.info(f"bound: {upper.size} sub-intervals, {n_eval} evaluations, upper {top:.6g}, lower {best_lo:.6g}")
        if top - best_lo <= tol:
            stop = "tolerance"
            break
        room = budget - upper.size
        cand = np.flatnonzero((upper > best_lo + tol) & (u1 - u0 > MIN_WIDTH))
        if room <= 0 or cand.size == 0:
            stop = "budget" if room <= 0 else "resolution"
            break
        cand = cand[np.argsort(-upper[cand], kind="stable")][:min(per_round, room)]
        mid = (u0[cand] + u1[cand]) * 0.5
        cp = np.repeat(piece[cand], 2)
        c0 = np.stack([u0[cand], mid], 1).reshape(-1)
        c1 = np.stack([mid, u1[cand]], 1).reshape(-1)
        # point enclosures where the bound is likely attained: the best midpoint so far and the end of the worst
        # sub-interval where its convex majorant peaks
        w = cand[0]
        extra = [best_key, (int(piece[w]), float(u1[w] if side[w] else u0[w]))]
        extra = [k for k in dict.fromkeys(extra) if k not in points]
        cu, cl, cs = prob.evaluate(np.concatenate([cp, [k[0] for k in extra]]).astype(np.int64),
                                   np.concatenate([c0, [k[1] for k in extra]]),
                                   np.concatenate([c1, [k[1] for k in extra]]))
        n_eval += cu.size
        for k, a, b in zip(extra, cu[cp.size:], cl[cp.size:]):
            points[k] = (float(a), float(b))
        keep = np.ones(upper.size, bool)
        keep[cand] = False
        piece = np.concatenate([piece[keep], cp])
        u0 = np.concatenate([u0[keep], c0])
        u1 = np.concatenate([u1[keep], c1])
        upper = np.concatenate([upper[keep], np.minimum(cu[:cp.size], np.repeat(upper[cand], 2))])
        lower_mid = np.concatenate([lower_mid[keep], cl[:cp.size]])
        side = np.concatenate([side[keep], cs[:cp.size]])
    piece_lower = np.full(J, -np.inf)
    for (j, u), (_, lo) in points.items():
        piece_lower[j] = max(piece_lower[j], lo)
    for j in prop:
        sel = piece == j
        piece_upper[j] = float(upper[sel].max())
        piece_lower[j] = max(piece_lower[j], float(lower_mid[sel].max()))
    rows = [np.stack([prob.global_t(piece, u0), prob.global_t(piece, u1), upper], 1)]
    for j in proved:
        rows.append(np.array([[prob.breaks[j], prob.breaks[j + 1], piece_upper[j]]]))
    top = float(np.nextafter(piece_upper.max(), np.inf)) if prob.spec.sound else float(piece_upper.max())
    methods = tuple("propagation" if c is None else c for c in prob.claims)
    return BoundResult(
        upper=top, lower=float(best_lo), t_lower=float(prob.global_t(np.array([best_key[0]]), np.array([best_key[1]]))[0]),
        n_subintervals=int(upper.size), n_evaluations=int(n_eval), stop=stop, seconds=time.perf_counter() - t_start,
        piece_upper=piece_upper, piece_lower=piece_lower, piece_method=methods, subintervals=np.concatenate(rows),
        history=np.array(history, np.float64), rtol=rtol, atol=atol, budget=budget, loss=prob.loss, method=method)
