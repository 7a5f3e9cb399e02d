"""Executable theorem statements: build the path, certify it, measure it, decide the theorem's verdict.

Each ``check_*`` returns a :class:`TheoremVerdict` whose ``verdict`` is one of

* ``"holds"`` — every segment is proved or measured (none refuted), every exact claim also checks out
  numerically, every premise holds, and the loss along the path is within the theorem's bound plus a stated
  float tolerance — for every t when ``holds_for_every_t`` is ``True`` (certified), otherwise at the
  evaluated points only (the finding says which);
* ``"fails"`` — a segment or the path is refuted, a proved claim fails numerically, or the loss exceeds the
  bound at a sampled point or, certified, somewhere in t (for a bound that holds only with some probability over Algorithm 1 masks, "fails" is about THIS
  draw of masks: Lemma 3 allows it with probability up to 3/4 per end);
* ``"does not apply"`` — a premise fails; the failing premises are named in ``reason`` and ``premises``.

What the loss along the path is: when every segment is PROVED (Theorem 1, Lemmas 1 and 2) its maximum over
all ``t`` is at a way point (top-layer segments: the loss is ≤ the larger end loss; function-preserving
segments: it is constant), so the check's maximum is exact up to the float evaluation of the way-point
losses. Otherwise (Algorithm 1 segments of Theorems 2/3, free segments) the maximum is SAMPLED at
``points_per_segment`` points per segment: a lower bound of the maximum over t, and said so.

The CERTIFIED maximum (``certified_max``, on by default): :func:`proofs_check.path_bounds.path_bound`
encloses ``max_{t∈[0,1]} L(path(t))`` on the same data, ``lower ≤ max ≤ upper``, both proved (float64,
outward rounding; docs/theory/bounds.md). ``holds_for_every_t`` is ``True`` when ``upper ≤ bound + tol``
(the statement is then proved for every t, not only at the samples), ``False`` when ``lower > bound + tol``
(the bound is exceeded somewhere, proved), and ``None`` when the enclosure does not settle it, no bound
applies, or the certified maximum was not asked for.

Bounds:

* Lemma 1: ``L(θ) + ε`` with ε measured (``max_i L(θ^i) − L(θ)``, clipped at 0; Definition 1).
* Lemma 2: ``max{L(θ), L(θ′)}``. Inside Theorems 1–3 the Lemma 2 part is checked against the same bound
  with ITS two ends, ``max{L(θ¹_A), L(θ¹_B)}`` (as Lemma 2 states), not against its intermediate way points.
* Theorem 1: ``max{L(θ_A), L(θ_B)} + ε``, ``ε = max(ε_A, ε_B, 0)``.
* Theorems 2 / 3: ``max{L(θ_A) + e_A, L(θ_B) + e_B}`` (Theorem 3: and ``L(θ*)``), ``e`` the explicit Lemma 3
  excess of :mod:`proofs_check.noise_bound` computed from Definition 4's ε measured by
  :func:`stability.theory.cushions.measure` on the same data. Every premise (ρ ≥ 3d, ε′ ≤ 1, converged spectral norms,
  Lemma 5's dropped fraction on the draws used, …) is reported as held / failed with its number. The verdict
  also reports the empirical constant ``(max loss − max end loss)/(√p·ε)`` and the vacuity ratio
  ``√p·ε / loss range`` (loss range: the loss of the zero-output predictor minus the larger end loss), so a
  reader sees whether the bound is informative.

Tolerances: losses ``1e-5·max(1, |bound|)`` in float32 and ``1e-10·max(1, |bound|)`` in float64; function
changes ``1e-5·max(1, max|f|)`` (float32) and ``1e-12·max(1, max|f|)`` (float64).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stability.theory import cushions as _cushions
from stability.core import nets as _nets
from stability.theory.dropout import KeptSets, dropout_stability, make_kept_sets
from stability.core.chunks import padded_chunks
from stability.core.evaluate import EvalResult, choose_sizes, evaluate_line, evaluate_nets
from stability.core.losses import Loss, cross_entropy, get_loss
from stability.theory.bounds import BoundResult
from stability.theory.paths import lemma1
from stability.theory.paths import lemma2
from stability.theory.paths import (DropoutDraw, Path, PathEval, Theorem2Info, Theorem3Info, lemma5_min_dropped,
                                    path_point, theorem1, theorem2, theorem3)

from .certificates import Certificate, certify
from .path_bounds import bound_certified_path
from .noise_bound import Lemma3Bound, Premise, lemma3_bound, zero_output_loss

__all__ = ["Verdict", "SegmentCheck", "TheoremVerdict", "check_path", "check_lemma1", "check_lemma2",
           "check_theorem1", "check_theorem2", "check_theorem3", "check_theorem1_path", "check_theorem2_path",
           "check_theorem3_path", "function_changes", "tolerances", "zero_output_loss"]

Verdict = Literal["holds", "fails", "does not apply"]


def tolerances(dtype) -> tuple[float, float]:
    """``(loss rtol, function rtol)`` for a dtype (see the module docstring)."""
    return (1e-10, 1e-12) if np.dtype(dtype) == np.float64 else (1e-5, 1e-5)


@dataclasses.dataclass(frozen=True)
class SegmentCheck:
    """Numerical check of one segment on the grid: ``ok`` is ``None`` where no exact claim applies (the
    segment is measured only)."""

    index: int
    label: str
    claim: str
    status: str
    start_loss: float
    end_loss: float
    max_loss: float
    max_fn_change: float | None
    ok: bool | None
    note: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class TheoremVerdict:
    """Structured verdict of a theorem check (see the module docstring)."""

    name: str
    verdict: Verdict
    reason: str
    numerics_ok: bool
    bound: float | None
    bound_kind: str
    tol: float
    max_loss: float
    max_loss_kind: str
    margin: float | None
    worst_segment: int
    worst_t: float
    worst_label: str
    measured_excess: float
    endpoint_losses: dict[str, float]
    epsilon: float | None
    segment_max_loss: list[float]
    segment_checks: list[SegmentCheck]
    certificate: Certificate
    evaluation: PathEval
    path: Path
    premises: list[Premise] = dataclasses.field(default_factory=list)
    noise: dict[str, Any] | None = None
    line: EvalResult | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    certified_max: BoundResult | None = None

    @property
    def n_segments(self) -> int:
        return self.path.n_segments

    @property
    def certified(self) -> bool:
        """Every segment proved exactly and nothing refuted (``certificate.ok``)."""
        return self.certificate.ok

    @property
    def line_max_loss(self) -> float | None:
        return None if self.line is None else float(self.line.loss.max())

    @property
    def line_barrier(self) -> float | None:
        """Straight line between the same end points: max loss − max end loss (sampled)."""
        if self.line is None:
            return None
        return float(self.line.loss.max() - max(self.line.loss[0], self.line.loss[-1]))

    @property
    def holds_for_every_t(self) -> bool | None:
        """``True``: ``certified upper ≤ bound + tol`` (proved for every t); ``False``: ``certified lower >
        bound + tol`` (proved exceeded); ``None``: not settled, no bound, a premise failed, or not computed."""
        cb = self.certified_max
        if cb is None or self.bound is None or any(q.status == "failed" for q in self.premises):
            return None
        if cb.upper <= self.bound + self.tol:
            return True
        return False if cb.lower > self.bound + self.tol else None

    def certified_phrase(self) -> str:
        """How the certified maximum reads: ``max over every t ∈ [lower, upper] (certified, …)``."""
        cb = self.certified_max
        return "max over every t not certified (not computed)" if cb is None else cb.describe()

    def finding(self) -> str:
        """One plain sentence: the verdict, the numbers behind it and what kind of maximum they are."""
        b = "no bound" if self.bound is None else f"bound {self.bound:.4g} ({self.bound_kind})"
        every = self.holds_for_every_t
        scope = {True: " for every t (certified)", False: "", None: ""}[every]
        if self.verdict == "holds" and every is None and self.certified_max is not None and self.bound is not None:
            scope = " at the sampled points (the certified maximum does not settle every t)"
        s = (f"{self.name} {self.verdict}{scope}: max loss {self.max_loss:.4g} ({self.max_loss_kind}); "
             f"{self.certified_phrase()}; against {b}")
        s += "" if self.verdict == "holds" else f" — {self.reason}"
        return s + f"; certificate: {self.certificate.headline()}."

    def summary(self) -> str:
        s = (f"{self.name}: {self.n_segments} segments, {self.certificate.headline()}, "
             f"numerics_ok={self.numerics_ok}, max loss {self.max_loss:.6g} (segment {self.worst_segment}: "
             f"{self.worst_label}, t={self.worst_t:.4f}; {self.max_loss_kind}), "
             f"bound [{self.bound_kind}] {'n/a' if self.bound is None else f'{self.bound:.6g}'}: {self.verdict}"
             f" ({self.reason})")
        if self.line is not None:
            s += f"; straight line max loss {self.line_max_loss:.6g} (barrier {self.line_barrier:.6g})"
        return s

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "verdict": self.verdict, "reason": self.reason, "finding": self.finding(),
            "certified": self.certified, "numerics_ok": self.numerics_ok,
            "bound": self.bound, "bound_kind": self.bound_kind, "tol": self.tol, "max_loss": self.max_loss,
            "max_loss_kind": self.max_loss_kind, "margin": self.margin, "worst_segment": self.worst_segment,
            "worst_t": self.worst_t, "worst_label": self.worst_label, "measured_excess": self.measured_excess,
            "endpoint_losses": self.endpoint_losses, "epsilon": self.epsilon, "n_segments": self.n_segments,
            "segment_max_loss": self.segment_max_loss, "min_acc": self.evaluation.min_acc,
            "segment_checks": [c.to_dict() for c in self.segment_checks],
            "certificate": {"ok": self.certificate.ok, "no_refuted": self.certificate.no_refuted,
                            "counts": self.certificate.counts(), "headline": self.certificate.headline(),
                            "failures": [str(v) for v in self.certificate.failures()],
                            "junctions": list(self.certificate.junctions),
                            "endpoints": list(self.certificate.endpoints)},
            "premises": [q.to_dict() for q in self.premises], "noise": _jsonable(self.noise),
            "line_max_loss": self.line_max_loss, "line_barrier": self.line_barrier,
            "certified_max": None if self.certified_max is None else _bound_summary(self.certified_max),
            "holds_for_every_t": self.holds_for_every_t,
            "extra": _jsonable(self.extra),
        }


def _bound_summary(cb: BoundResult) -> dict[str, Any]:
    """The certified maximum for ``summary.json``: the enclosure, how it stopped, its cost and its envelope."""
    d = cb.to_dict()
    return {k: d[k] for k in ("upper", "lower", "t_lower", "gap", "n_subintervals", "n_evaluations", "stop",
                              "seconds", "rtol", "atol", "budget", "piece_upper", "piece_method", "envelope")}


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if dataclasses.is_dataclass(v) and hasattr(v, "to_dict"):
        return v.to_dict()
    return v


@jax.jit
def _outputs_at(waypoints: _nets.Net, s: jax.Array, x: jax.Array) -> jax.Array:
    return jax.vmap(lambda si: _nets.apply(path_point(waypoints, si), x))(s)


def function_changes(path: Path, segments: Sequence[int], t: np.ndarray, x) -> tuple[np.ndarray, np.ndarray]:
    """``max_{t, x} |f_t(x) − f_0(x)|`` and ``max_x |f_0(x)|`` for the given segments, on the local
    grid ``t`` (must contain 0), in fixed-size jitted chunks of points."""
    segments = list(segments)
    if not segments:
        return np.zeros(0), np.zeros(0)
    if t[0] != 0.0:
        raise ValueError("the grid must start at t = 0")
    stacked = path.stacked()
    dtype = jax.tree_util.tree_leaves(stacked)[0].dtype
    x = jnp.asarray(x, dtype)
    s = (np.asarray(segments)[:, None] + t[None, :]).reshape(-1)
    _, chunk = choose_sizes(path.start, _nets.apply, x, s.size, batch_size=x.shape[0])
    outs = [np.asarray(_outputs_at(stacked, jnp.asarray(pad, dtype), x))[:m] for pad, m in padded_chunks(s, chunk)]
    out = np.concatenate(outs).reshape(len(segments), t.size, x.shape[0], -1).astype(np.float64)
    change = np.abs(out - out[:, :1]).reshape(len(segments), -1).max(axis=1)
    scale = np.abs(out[:, 0]).reshape(len(segments), -1).max(axis=1)
    return change, scale


def _waypoint_losses(ev: PathEval) -> np.ndarray:
    """Loss at the ``n+1`` way points (starts of the segments, then the end)."""
    return np.concatenate([ev.loss[:, 0], ev.loss[-1:, -1]])


def _decide(cert: Certificate, numerics_ok: bool, premises: Sequence[Premise], max_loss: float,
            bound: float | None, tol: float, what_fails: str = "",
            certified: BoundResult | None = None) -> tuple[Verdict, str]:
    """The three-valued verdict and its one-line reason (see the module docstring)."""
    if not cert.no_refuted:
        bad = cert.failures()
        where = (f"segment {bad[0].index} ({bad[0].label}) is refuted" if bad
                 else (cert.junctions + cert.endpoints)[0])
        return "fails", f"the certificate refutes the path: {where}"
    if not numerics_ok:
        return "fails", "a proved claim does not check out numerically (see segment_checks)"
    failed = [q for q in premises if q.status == "failed"]
    if failed:
        return "does not apply", "premise failed: " + "; ".join(q.short() for q in failed)
    if bound is None:
        return "does not apply", "no bound was given"
    if max_loss > bound + tol:
        return "fails", f"max loss {max_loss:.6g} > bound {bound:.6g} + tolerance {tol:.2g}" + what_fails
    if certified is not None and certified.lower > bound + tol:
        return "fails", (f"the certified maximum over t is at least {certified.lower:.6g} (t = "
                         f"{certified.t_lower:.4g}) > bound {bound:.6g} + tolerance {tol:.2g}, although the samples "
                         "stay below" + what_fails)
    if certified is not None and certified.upper <= bound + tol:
        return "holds", (f"the loss is ≤ {certified.upper:.6g} for every t (certified) ≤ bound {bound:.6g} + "
                         f"tolerance {tol:.2g}")
    return "holds", f"max loss {max_loss:.6g} ≤ bound {bound:.6g} + tolerance {tol:.2g}"


def check_path(path: Path, x, y, *, name: str = "path", bound: float | None = None, bound_kind: str = "",
               epsilon: float | None = None, endpoint_losses: dict[str, float] | None = None,
               points_per_segment: int = 61, loss: Loss | str = cross_entropy, fn_samples: int = 256,
               line: bool = True, tol: float | None = None, extra: dict[str, Any] | None = None,
               reference: float | None = None, premises: Sequence[Premise] = (),
               what_fails: str = "", certified_max: bool = True,
               bound_options: dict[str, Any] | None = None) -> TheoremVerdict:
    """Certify ``path``, evaluate it on ``points_per_segment`` points of every segment, check every proved
    segment numerically against its claim, and decide the verdict against ``bound`` (+ ``tol``) and the
    ``premises``. ``reference`` is the loss the excess is measured from (default: the larger end loss).

    ``certified_max``: also enclose the maximum over every t (:func:`proofs_check.path_bound`, options
    ``bound_options``: ``rtol``, ``atol``, ``max_subintervals``, ``method``); a certified lower end above the
    bound makes the verdict "fails" (proved exceeded)."""
    loss = get_loss(loss)
    dtype = jax.tree_util.tree_leaves(path.start)[0].dtype
    rtol, ftol = tolerances(dtype)
    cert = certify(path, loss)
    ev = path.evaluate(x, y, points_per_segment, loss=loss)
    fp = [k for k, c in enumerate(path.claims) if c in ("function_preserving", "copy_shift")]
    change, scale = function_changes(path, fp, ev.t, np.asarray(x)[:fn_samples])
    fn = {k: (float(c), float(s)) for k, c, s in zip(fp, change, scale)}
    ends = max(float(ev.loss[0, 0]), float(ev.loss[-1, -1]))
    ref = ends if reference is None else reference
    scale_b = max(1.0, abs(bound) if bound is not None else abs(ends))
    tol = rtol * scale_b if tol is None else tol
    checks = []
    for k, (seg, v) in enumerate(zip(path.segments, cert.verdicts)):
        l0, l1, lm = float(ev.loss[k, 0]), float(ev.loss[k, -1]), float(ev.loss[k].max())
        if seg.claim == "top_layer" and v.status != "measured":
            seg_tol = rtol * max(1.0, abs(l0), abs(l1))
            ok, note = lm <= max(l0, l1) + seg_tol, f"max loss ≤ max(end losses) + {seg_tol:.2g}"
        elif k in fn:
            c, s = fn[k]
            lim = ftol * max(1.0, s)
            ok, note = c <= lim, f"max |f_t − f_0| ≤ {lim:.2g} on {min(fn_samples, len(x))} samples"
        else:
            ok, note = None, f"measured only (no exact claim); excess over the start {lm - l0:+.4g}"
        checks.append(SegmentCheck(k, seg.label, seg.claim, v.status, l0, l1, lm, c if k in fn else None, ok, note))
    numerics_ok = all(c.ok is not False for c in checks)
    k, tl, tg = ev.worst()
    if cert.ok:
        max_loss = float(_waypoint_losses(ev).max())
        max_kind = ("every t: every segment is proved, so the maximum over t is at a way point "
                    f"(way-point losses evaluated in {np.dtype(dtype).name})")
        max_loss = max(max_loss, ev.max_loss)  # identical up to rounding; the grid never lowers it
    else:
        max_loss = ev.max_loss
        max_kind = (f"sampled at {points_per_segment} points per segment: a lower bound of the maximum over t "
                    f"on the {len(cert.measured())} measured segment(s)")
    cb = None
    if certified_max and not cert.junctions:
        cb = bound_certified_path(path, cert, x, y, loss=loss, **dict(bound_options or {}))
    verdict, reason = _decide(cert, numerics_ok, premises, max_loss, bound, tol, what_fails, cb)
    line_res = None
    if line:
        line_res = evaluate_line(path.start, path.end, ev.t.size * path.n_segments, x, y, loss=loss)
    return TheoremVerdict(
        name=name, verdict=verdict, reason=reason, numerics_ok=numerics_ok, bound=bound, bound_kind=bound_kind,
        tol=float(tol), max_loss=max_loss, max_loss_kind=max_kind,
        margin=None if bound is None else float(bound + tol - max_loss),
        worst_segment=k, worst_t=tg, worst_label=path.segments[k].label, measured_excess=float(max_loss - ref),
        endpoint_losses=dict(endpoint_losses or {"start": float(ev.loss[0, 0]), "end": float(ev.loss[-1, -1])}),
        epsilon=epsilon, segment_max_loss=[float(v) for v in ev.segment_max()], segment_checks=checks,
        certificate=cert, evaluation=ev, path=path, premises=list(premises), line=line_res, extra=dict(extra or {}),
        certified_max=cb,
    )


def _part_max(ev: PathEval, parts: Sequence[tuple[str, int, int]]) -> dict[str, float]:
    return {name: float(ev.loss[a:b].max()) for name, a, b in parts}


def _lemma2_part(v: TheoremVerdict, first: int, last: int) -> dict[str, Any]:
    """Lemma 2 as stated, on segments ``first..last−1``: loss ≤ max{L(its start), L(its end)} + tolerance.

    The bound uses the part's TWO ENDS only (θ¹_A and θ¹_B, or θ* for Theorem 3's parts), never its
    intermediate way points: a detour through a bad net inside the part must fail this check."""
    ev = v.evaluation
    wl = _waypoint_losses(ev)
    m = float(max(ev.loss[first:last].max(), wl[first:last + 1].max()))
    bound = float(max(wl[first], wl[last]))
    return {"holds": bool(m <= bound + v.tol), "max": m, "bound": bound, "segments": [first, last]}


def _apply_lemma2_parts(v: TheoremVerdict, parts: Sequence[tuple[int, int]]) -> None:
    """Check every Lemma 2 part as stated; a failing part makes the verdict fail (it is an exact claim)."""
    results = [_lemma2_part(v, a, b) for a, b in parts]
    v.extra["lemma2_parts"] = results
    v.extra["lemma2_part_holds"] = all(r["holds"] for r in results)
    bad = [r for r in results if not r["holds"]]
    if bad and v.verdict != "fails":
        r = bad[0]
        v.verdict = "fails"
        v.reason = (f"the Lemma 2 part (segments {r['segments'][0]}–{r['segments'][1] - 1}) reaches {r['max']:.6g} > "
                    f"max of its two ends {r['bound']:.6g} + tolerance {v.tol:.2g}")


def check_lemma1(net: _nets.Net, keep: KeptSets | Sequence[Sequence[int]], x, y, *,
                 r: float | Sequence[float] | None = None, compact: bool = False, loss: Loss | str = cross_entropy,
                 **kw) -> TheoremVerdict:
    """Lemma 1: the path θ → θ_1 stays below ``L(θ) + ε`` (ε measured with the same kept sets).
    Also checks that the way points ``θ_k`` have the loss of ``θ^k`` (same function)."""
    ks = make_kept_sets(net, keep, r)
    stab = dropout_stability(net, ks, x, y, loss=loss)
    path = lemma1(net, ks, compact=compact)
    eps = max(stab.eps, 0.0)
    v = check_path(path, x, y, name="Lemma 1" + (" (compact)" if compact else ""), bound=stab.base_loss + eps,
                   bound_kind="L(θ) + ε", epsilon=stab.eps, reference=stab.base_loss,
                   endpoint_losses={"L(θ)": stab.base_loss, "L(θ_1)": stab.losses[0]}, loss=loss, **kw)
    wl = _waypoint_losses(v.evaluation)
    rtol, _ = tolerances(jax.tree_util.tree_leaves(net)[0].dtype)
    diffs = {k: float(abs(wl[j] - stab.losses[k - 1])) for k, j in path.info.theta_k.items()}
    ok = all(dv <= rtol * max(1.0, abs(stab.losses[k - 1])) for k, dv in diffs.items())
    v.extra.update(stability=stab.to_dict(), theta_k_vs_theta_i=diffs, theta_k_match=ok)
    if not ok:
        v.numerics_ok = False
        if v.verdict != "fails":
            v.verdict, v.reason = "fails", "a way point θ_k does not have the loss of θ^k (same function)"
    return v


def check_lemma2(net: _nets.Net, net2: _nets.Net, x, y, *, loss: Loss | str = cross_entropy,
                 **kw) -> TheoremVerdict:
    """Lemma 2: the 8-segment path θ → θ′ stays below ``max{L(θ), L(θ′)}``."""
    path = lemma2(net, net2)
    ends = _pair_losses(net, net2, x, y, loss)
    return check_path(path, x, y, name="Lemma 2", bound=max(ends), bound_kind="max{L(θ), L(θ′)}",
                      endpoint_losses={"L(θ)": ends[0], "L(θ′)": ends[1]}, loss=loss, **kw)


def _pair_losses(a: _nets.Net, b: _nets.Net, x, y, loss) -> tuple[float, float]:
    """Losses of two nets (one batched call)."""
    r = evaluate_nets([a, b], x, y, loss=loss)
    return float(r.loss[0]), float(r.loss[1])


def _part_range(path: Path, name_prefix: str) -> tuple[int, int]:
    q = path.part(name_prefix)
    return q.start, q.stop


def check_theorem1(net_a: _nets.Net, keep_a: KeptSets | Sequence[Sequence[int]], net_b: _nets.Net,
                   keep_b: KeptSets | Sequence[Sequence[int]], x, y, *, r: float | Sequence[float] | None = None,
                   compact: bool = False, loss: Loss | str = cross_entropy, **kw) -> TheoremVerdict:
    """Theorem 1: the path θ_A → θ_B stays below ``max{L(θ_A), L(θ_B)} + ε`` with
    ``ε = max(ε_A, ε_B, 0)`` measured for the given kept sets; its Lemma 2 part stays below
    ``max{L(θ¹_A), L(θ¹_B)}``."""
    ka, kb = make_kept_sets(net_a, keep_a, r), make_kept_sets(net_b, keep_b, r)
    path = theorem1(net_a, ka, net_b, kb, compact=compact)
    return check_theorem1_path(path, net_a, ka, net_b, kb, x, y, loss=loss, **kw)


def check_theorem1_path(path: Path, net_a: _nets.Net, keep_a: KeptSets, net_b: _nets.Net, keep_b: KeptSets, x, y,
                        *, loss: Loss | str = cross_entropy, **kw) -> TheoremVerdict:
    """:func:`check_theorem1` on an already built path (its ``parts`` name the Lemma 2 part)."""
    sa = dropout_stability(net_a, keep_a, x, y, loss=loss)
    sb = dropout_stability(net_b, keep_b, x, y, loss=loss)
    eps = max(sa.eps, sb.eps, 0.0)
    ends = max(sa.base_loss, sb.base_loss)
    v = check_path(path, x, y, name=path.name, bound=ends + eps,
                   bound_kind="max{L(θ_A), L(θ_B)} + ε", epsilon=eps, reference=ends,
                   endpoint_losses={"L(θ_A)": sa.base_loss, "L(θ_B)": sb.base_loss}, loss=loss, **kw)
    v.extra.update(stability_a=sa.to_dict(), stability_b=sb.to_dict(),
                   part_max_loss=_part_max(v.evaluation, path.parts))
    _apply_lemma2_parts(v, [_part_range(path, "Lemma 2")])
    return v


# --------------------------------------------------------------------------- Theorems 2 and 3


def _noise(net: _nets.Net, x, key, p: float, given: _cushions.Cushions | None, measure_kw: dict) -> _cushions.Cushions:
    """Cushions of ``net`` on ``x`` with Definition 3's masks at ``p`` (re-measuring only what depends on p
    when ``given`` was measured at another p)."""
    if given is None:
        return _cushions.measure(net, x, key, p=p, **measure_kw)
    if given.n != len(x):
        raise ValueError(f"the given cushions were measured on {given.n} samples, x has {len(x)}: ε must come "
                         f"from the same data as the loss")
    if given.p != p:
        return _cushions.remeasure_smoothness(given, net, x, key, p)
    return given


def _lemma5_premises(draw: DropoutDraw, p: float, tag: str, need: Sequence[int], need_what: str) -> list[Premise]:
    """Lemma 5 (≥ 2p/3 of the columns dropped) and the builder's requirement, checked on the draws used."""
    dropped = [int(v) for v in draw.dropped]
    widths = [len(dl) for dl in draw.deltas]
    frac = [dr / h for dr, h in zip(dropped, widths)]
    ok5 = all(dr >= lemma5_min_dropped(p, h) for dr, h in zip(dropped, widths))
    okb = all(dr >= n for dr, n in zip(dropped, need))
    return [
        Premise(f"Lemma 5: at least 2p/3 of the columns dropped (θ_{tag}'s draw)", "held" if ok5 else "failed",
                float(min(frac)), f"≥ 2p/3 = {2 * p / 3:.3g} in every layer 2..d",
                f"dropped fractions {', '.join(f'{f:.3g}' for f in frac)} (draw {draw.draws})"),
        Premise(f"{need_what} (θ_{tag}'s draw)", "held" if okb else "failed", str(dropped),
                f"≥ {list(need)} zero columns", f"the builder redrew {draw.draws - 1} time(s) until it held"),
    ]


def _noise_verdict(v: TheoremVerdict, bounds: dict[str, Lemma3Bound], extra_terms: dict[str, float],
                   end_losses: dict[str, float], loss: Loss, y, n_out: int, p: float) -> None:
    """Attach the Lemma 3 bounds of both ends: bound, premises, ε, empirical constant, vacuity ratio; decide."""
    terms = {f"L(θ_{t}) + e_{t}": end_losses[f"L(θ_{t})"] + b.excess for t, b in bounds.items()}
    terms.update(extra_terms)
    bound = max(terms.values())
    eps = max(b.epsilon for b in bounds.values())
    sqrt_p_eps = math.sqrt(p) * eps
    ends = max(end_losses.values())
    zero = zero_output_loss(loss, y, n_out)
    rng = zero - ends
    v.bound, v.margin = float(bound), float(bound + v.tol - v.max_loss)
    v.epsilon = float(eps)
    premises = list(v.premises)
    for t, b in bounds.items():
        premises += [dataclasses.replace(q, name=f"{q.name} [θ_{t}]") for q in b.premises]
    v.premises = premises
    v.noise = {
        "p": p, "epsilon": {t: b.epsilon for t, b in bounds.items()}, "sqrt_p_eps": sqrt_p_eps,
        "explicit_excess": {t: b.excess for t, b in bounds.items()},
        "explicit_constant": {t: b.constant for t, b in bounds.items()},
        "bound_terms": terms,
        "empirical_constant": float((v.max_loss - ends) / sqrt_p_eps) if sqrt_p_eps > 0 else float("nan"),
        "loss_range": float(rng), "zero_output_loss": zero,
        # no range when an end net is no better than f ≡ 0: the ratio is undefined (None), not "informative"
        "vacuity_ratio": float(sqrt_p_eps / rng) if rng > 0 else None,
        "explicit_vacuity_ratio": float(max(b.excess for b in bounds.values()) / rng) if rng > 0 else None,
        "lemma3": {t: b.to_dict() for t, b in bounds.items()},
    }
    v.verdict, v.reason = _decide(v.certificate, v.numerics_ok, v.premises, v.max_loss, v.bound, v.tol,
                                  " for this draw of masks (Lemma 3 holds with probability ≥ 1/4 per end)",
                                  v.certified_max)
    v.bound_kind = "max{" + ", ".join(terms) + "} (e: the explicit Lemma 3 excess, docs/THEORY.md)"


def check_theorem2(net_a: _nets.Net, net_b: _nets.Net, key: jax.Array, x, y, *, p: float = 0.75,
                   loss: Loss | str = cross_entropy, noise: tuple[_cushions.Cushions, _cushions.Cushions] | None = None,
                   measure_kw: dict[str, Any] | None = None, **kw) -> TheoremVerdict:
    """Theorem 2 (10 segments): ``max{L(θ_A) + e_A, L(θ_B) + e_B}`` with the explicit Lemma 3 excesses ``e``
    from Definition 4's ε measured on ``(x, y)`` (``noise``: the cushions of θ_A and θ_B on ``x``, measured
    here when not given; ``measure_kw`` go to :func:`stability.theory.cushions.measure`)."""
    path = theorem2(net_a, net_b, key, p=p)
    return check_theorem2_path(path, net_a, net_b, jax.random.fold_in(key, 7), x, y, loss=loss, noise=noise,
                               measure_kw=measure_kw, **kw)


def check_theorem2_path(path: Path, net_a: _nets.Net, net_b: _nets.Net, key: jax.Array, x, y, *,
                        loss: Loss | str = cross_entropy,
                        noise: tuple[_cushions.Cushions, _cushions.Cushions] | None = None,
                        measure_kw: dict[str, Any] | None = None, **kw) -> TheoremVerdict:
    """:func:`check_theorem2` on an already built Theorem 2 path (``key`` draws the Definition 3 masks)."""
    loss = get_loss(loss)
    info: Theorem2Info = path.info
    p = info.p
    la, lb = _pair_losses(net_a, net_b, x, y, loss)
    hs = _nets.widths(net_a)
    need = [math.ceil(h / 2) for h in hs]
    premises = (_lemma5_premises(info.draw_a, p, "A", need, "Lemma 2: at least ⌈h_i/2⌉ zero columns")
                + _lemma5_premises(info.draw_b, p, "B", need, "Lemma 2: at least ⌈h_i/2⌉ zero columns"))
    v = check_path(path, x, y, name="Theorem 2", bound=None, endpoint_losses={"L(θ_A)": la, "L(θ_B)": lb},
                   loss=loss, premises=premises, **kw)
    ka, kb = jax.random.split(key)
    na = _noise(net_a, x, ka, p, None if noise is None else noise[0], dict(measure_kw or {}))
    nb = _noise(net_b, x, kb, p, None if noise is None else noise[1], dict(measure_kw or {}))
    bounds = {"A": lemma3_bound(net_a, na, x, y, loss=loss), "B": lemma3_bound(net_b, nb, x, y, loss=loss)}
    wl = _waypoint_losses(v.evaluation)
    v.extra.update(theta1_losses={"L(θ¹_A)": float(wl[1]), "L(θ¹_B)": float(wl[9])},
                   part_max_loss=_part_max(v.evaluation, path.parts), p=p,
                   draws={"A": info.draw_a.draws, "B": info.draw_b.draws},
                   column_condition={"A": list(info.draw_a.column_condition), "B": list(info.draw_b.column_condition)})
    _noise_verdict(v, bounds, {}, {"L(θ_A)": la, "L(θ_B)": lb}, loss, y, net_a.arch.widths[-1], p)
    _apply_lemma2_parts(v, [_part_range(path, "Lemma 2")])
    return v


def check_theorem3(net_a: _nets.Net, net_b: _nets.Net, narrow: _nets.Net, p: float, key: jax.Array, x, y, *,
                   loss: Loss | str = cross_entropy, noise: tuple[_cushions.Cushions, _cushions.Cushions] | None = None,
                   measure_kw: dict[str, Any] | None = None, **kw) -> TheoremVerdict:
    """Theorem 3 (13 segments): ``max{L(θ_A) + e_A, L(θ_B) + e_B, L(θ*)}`` with the explicit Lemma 3 excesses
    (see :func:`check_theorem2`)."""
    path = theorem3(net_a, net_b, narrow, p, key)
    return check_theorem3_path(path, net_a, net_b, jax.random.fold_in(key, 7), x, y, loss=loss, noise=noise,
                               measure_kw=measure_kw, **kw)


def check_theorem3_path(path: Path, net_a: _nets.Net, net_b: _nets.Net, key: jax.Array, x, y, *,
                        loss: Loss | str = cross_entropy,
                        noise: tuple[_cushions.Cushions, _cushions.Cushions] | None = None,
                        measure_kw: dict[str, Any] | None = None, **kw) -> TheoremVerdict:
    """:func:`check_theorem3` on an already built Theorem 3 path (``key`` draws the Definition 3 masks)."""
    loss = get_loss(loss)
    info: Theorem3Info = path.info
    p = info.p
    la, lb = _pair_losses(net_a, net_b, x, y, loss)
    hs, hstar = _nets.widths(net_a), list(info.narrow_widths)
    ratio = max(a / b for a, b in zip(hstar, hs))
    premises = [Premise("1.5·max_i h*_i/h_i ≤ p ≤ 3/4 (Theorem 3)", "held" if 1.5 * ratio <= p <= 0.75 else "failed",
                        p, f"{1.5 * ratio:.4g} ≤ p ≤ 0.75")]
    premises += (_lemma5_premises(info.draw_a, p, "A", hstar, "Lemma 2 with θ*: at least h*_i zero columns")
                 + _lemma5_premises(info.draw_b, p, "B", hstar, "Lemma 2 with θ*: at least h*_i zero columns"))
    v = check_path(path, x, y, name="Theorem 3", bound=None, loss=loss, premises=premises, **kw)
    wl = _waypoint_losses(v.evaluation)
    lstar = float(wl[info.narrow_waypoint])  # the narrow way point computes θ*'s function
    v.endpoint_losses = {"L(θ_A)": la, "L(θ_B)": lb, "L(θ*)": lstar}
    v.measured_excess = float(v.max_loss - max(la, lb, lstar))
    ka, kb = jax.random.split(key)
    na = _noise(net_a, x, ka, p, None if noise is None else noise[0], dict(measure_kw or {}))
    nb = _noise(net_b, x, kb, p, None if noise is None else noise[1], dict(measure_kw or {}))
    bounds = {"A": lemma3_bound(net_a, na, x, y, loss=loss), "B": lemma3_bound(net_b, nb, x, y, loss=loss)}
    v.extra.update(theta1_losses={"L(θ¹_A)": float(wl[1]), "L(θ¹_B)": float(wl[12])},
                   part_max_loss=_part_max(v.evaluation, path.parts), p=p, narrow_widths=list(hstar),
                   draws={"A": info.draw_a.draws, "B": info.draw_b.draws})
    _noise_verdict(v, bounds, {"L(θ*)": lstar}, {"L(θ_A)": la, "L(θ_B)": lb}, loss, y, net_a.arch.widths[-1], p)
    n = info.narrow_waypoint
    _apply_lemma2_parts(v, [(1, n), (n, 12)])
    return v
