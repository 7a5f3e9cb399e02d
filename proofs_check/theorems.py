"""Executable theorem statements: build the path, certify it, measure it, compare with the bound.

Each ``check_*`` returns a :class:`TheoremVerdict`: whether every exact claim is certified
(:func:`proofs_check.certify`), whether the numbers agree with the claims on a dense grid of t
per segment (function-preserving segments: ``max |f_t(x) − f_0(x)|`` on data; top-layer
segments: loss ≤ max of the two end losses), and whether the maximum loss along the path is
within the theorem's bound plus a stated float tolerance:

* Lemma 1: ``L(θ) + ε`` with ε measured (``max_i L(θ^i) − L(θ)``, clipped at 0).
* Lemma 2: ``max{L(θ), L(θ′)}``.
* Theorem 1: ``max{L(θ_A), L(θ_B)} + ε``, ``ε = max(ε_A, ε_B, 0)``.
* Theorems 2 / 3: the bound involves the noise-stability ε of SPEC §6 (``Õ(√p·ε)``), which this
  suite does not compute yet: the verdict reports the measured excess over
  ``max{L(θ_A), L(θ_B)}`` (Theorem 3: also ``L(θ*)``) and leaves ``noise_stability_bound = None``
  (so ``holds`` is ``None``); the exact sub-claim of the Lemma 2 part (loss ≤ max of its ends)
  is checked.

Tolerances: losses ``1e-5·max(1, |bound|)`` in float32 and ``1e-10·max(1, |bound|)`` in float64;
function changes ``1e-5·max(1, max|f|)`` (float32) and ``1e-12·max(1, max|f|)`` (float64).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stability import nets as _nets
from stability.dropout import KeptSets, dropout_stability, make_kept_sets
from stability.evaluate import EvalResult, choose_sizes, evaluate_line
from stability.losses import Loss, cross_entropy, get_loss
from stability.paths import Path, PathEval, lemma1, lemma2, path_point, theorem1, theorem2, theorem3

from .certificates import Certificate, certify

__all__ = ["SegmentCheck", "TheoremVerdict", "check_path", "check_lemma1", "check_lemma2", "check_theorem1",
           "check_theorem2", "check_theorem3", "function_changes", "tolerances"]


def tolerances(dtype) -> tuple[float, float]:
    """``(loss rtol, function rtol)`` for a dtype (see the module docstring)."""
    return (1e-10, 1e-12) if np.dtype(dtype) == np.float64 else (1e-5, 1e-5)


@dataclasses.dataclass(frozen=True)
class SegmentCheck:
    """Numerical check of one segment on the grid: ``ok`` is ``None`` where no exact claim applies."""

    index: int
    label: str
    claim: str
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
    holds: bool | None
    certified: bool
    numerics_ok: bool
    bound: float | None
    bound_kind: str
    tol: float
    max_loss: float
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
    noise_stability_bound: float | None = None
    line: EvalResult | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def n_segments(self) -> int:
        return self.path.n_segments

    @property
    def line_max_loss(self) -> float | None:
        return None if self.line is None else float(self.line.loss.max())

    @property
    def line_barrier(self) -> float | None:
        """Straight line between the same end points: max loss − max end loss."""
        if self.line is None:
            return None
        return float(self.line.loss.max() - max(self.line.loss[0], self.line.loss[-1]))

    def summary(self) -> str:
        b = "n/a" if self.bound is None else f"{self.bound:.6g}"
        s = (f"{self.name}: {self.n_segments} segments, certified={self.certified}, numerics_ok={self.numerics_ok}, "
             f"max loss {self.max_loss:.6g} (segment {self.worst_segment}: {self.worst_label}, t={self.worst_t:.4f}), "
             f"bound [{self.bound_kind}] {b}, holds={self.holds}")
        if self.line is not None:
            s += f"; straight line max loss {self.line_max_loss:.6g} (barrier {self.line_barrier:.6g})"
        return s

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "holds": self.holds, "certified": self.certified, "numerics_ok": self.numerics_ok,
            "bound": self.bound, "bound_kind": self.bound_kind, "tol": self.tol, "max_loss": self.max_loss,
            "margin": self.margin, "worst_segment": self.worst_segment, "worst_t": self.worst_t,
            "worst_label": self.worst_label, "measured_excess": self.measured_excess,
            "endpoint_losses": self.endpoint_losses, "epsilon": self.epsilon,
            "noise_stability_bound": self.noise_stability_bound, "n_segments": self.n_segments,
            "segment_max_loss": self.segment_max_loss, "min_acc": self.evaluation.min_acc,
            "segment_checks": [c.to_dict() for c in self.segment_checks],
            "certificate": {"ok": self.certificate.ok, "counts": self.certificate.counts(),
                            "failures": [str(v) for v in self.certificate.failures()]},
            "line_max_loss": self.line_max_loss, "line_barrier": self.line_barrier,
            "extra": _jsonable(self.extra),
        }


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
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
    outs = []
    for c in range(0, s.size, chunk):
        part = s[c:c + chunk]
        pad = np.concatenate([part, np.full(chunk - part.size, part[-1])])
        outs.append(np.asarray(_outputs_at(stacked, jnp.asarray(pad, dtype), x))[: part.size])
    out = np.concatenate(outs).reshape(len(segments), t.size, x.shape[0], -1).astype(np.float64)
    change = np.abs(out - out[:, :1]).reshape(len(segments), -1).max(axis=1)
    scale = np.abs(out[:, 0]).reshape(len(segments), -1).max(axis=1)
    return change, scale


def check_path(path: Path, x, y, *, name: str = "path", bound: float | None = None, bound_kind: str = "",
               epsilon: float | None = None, endpoint_losses: dict[str, float] | None = None,
               points_per_segment: int = 61, loss: Loss | str = cross_entropy, fn_samples: int = 256,
               line: bool = True, tol: float | None = None, extra: dict[str, Any] | None = None,
               reference: float | None = None) -> TheoremVerdict:
    """Certify ``path``, evaluate it on ``points_per_segment`` points of every segment, check every
    segment numerically against its claim and the maximum loss against ``bound`` (+ ``tol``).

    ``reference`` is the loss the excess is measured from (default: the larger end loss)."""
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
    for k, seg in enumerate(path.segments):
        l0, l1, lm = float(ev.loss[k, 0]), float(ev.loss[k, -1]), float(ev.loss[k].max())
        if seg.claim == "top_layer":
            seg_tol = rtol * max(1.0, abs(l0), abs(l1))
            ok, note = lm <= max(l0, l1) + seg_tol, f"max loss ≤ max(end losses) + {seg_tol:.2g}"
            checks.append(SegmentCheck(k, seg.label, seg.claim, l0, l1, lm, None, ok, note))
        elif k in fn:
            c, s = fn[k]
            lim = ftol * max(1.0, s)
            ok = c <= lim
            checks.append(SegmentCheck(k, seg.label, seg.claim, l0, l1, lm, c, ok,
                                       f"max |f_t − f_0| ≤ {lim:.2g} on {min(fn_samples, len(x))} samples"))
        else:
            checks.append(SegmentCheck(k, seg.label, seg.claim, l0, l1, lm, None, None,
                                       f"no exact claim; excess over the start {lm - l0:+.4g}"))
    numerics_ok = all(c.ok is not False for c in checks)
    k, tl, tg = ev.worst()
    bound_holds = None if bound is None else bool(ev.max_loss <= bound + tol)
    holds = None if bound_holds is None else bool(cert.ok and numerics_ok and bound_holds)
    line_res = None
    if line:
        line_res = evaluate_line(path.start, path.end, ev.t.size * path.n_segments, x, y, loss=loss)
    return TheoremVerdict(
        name=name, holds=holds, certified=cert.ok, numerics_ok=numerics_ok, bound=bound, bound_kind=bound_kind,
        tol=float(tol), max_loss=ev.max_loss, margin=None if bound is None else float(bound + tol - ev.max_loss),
        worst_segment=k, worst_t=tg, worst_label=path.segments[k].label, measured_excess=float(ev.max_loss - ref),
        endpoint_losses=dict(endpoint_losses or {"start": float(ev.loss[0, 0]), "end": float(ev.loss[-1, -1])}),
        epsilon=epsilon, segment_max_loss=[float(v) for v in ev.segment_max()], segment_checks=checks,
        certificate=cert, evaluation=ev, path=path, line=line_res, extra=dict(extra or {}),
    )


def _waypoint_losses(ev: PathEval) -> np.ndarray:
    """Loss at the ``n+1`` way points (starts of the segments, then the end)."""
    return np.concatenate([ev.loss[:, 0], ev.loss[-1:, -1]])


def _part_max(ev: PathEval, parts: Sequence[tuple[str, int, int]]) -> dict[str, float]:
    return {name: float(ev.loss[a:b].max()) for name, a, b in parts}


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
    diffs = {k: float(abs(wl[j] - stab.losses[k - 1])) for k, j in path.meta["theta_k"].items()}
    ok = all(dv <= rtol * max(1.0, abs(stab.losses[k - 1])) for k, dv in diffs.items())
    v.extra.update(stability=stab.to_dict(), theta_k_vs_theta_i=diffs, theta_k_match=ok)
    v.numerics_ok = v.numerics_ok and ok
    if v.holds is not None:
        v.holds = v.holds and ok
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
    from stability.evaluate import evaluate_nets

    r = evaluate_nets([a, b], x, y, loss=loss)
    return float(r.loss[0]), float(r.loss[1])


def check_theorem1(net_a: _nets.Net, keep_a: KeptSets | Sequence[Sequence[int]], net_b: _nets.Net,
                   keep_b: KeptSets | Sequence[Sequence[int]], x, y, *, r: float | Sequence[float] | None = None,
                   compact: bool = False, loss: Loss | str = cross_entropy, **kw) -> TheoremVerdict:
    """Theorem 1: the path θ_A → θ_B stays below ``max{L(θ_A), L(θ_B)} + ε`` with
    ``ε = max(ε_A, ε_B, 0)`` measured for the given kept sets."""
    ka, kb = make_kept_sets(net_a, keep_a, r), make_kept_sets(net_b, keep_b, r)
    sa = dropout_stability(net_a, ka, x, y, loss=loss)
    sb = dropout_stability(net_b, kb, x, y, loss=loss)
    path = theorem1(net_a, ka, net_b, kb, compact=compact)
    eps = max(sa.eps, sb.eps, 0.0)
    ends = max(sa.base_loss, sb.base_loss)
    v = check_path(path, x, y, name="Theorem 1" + (" (compact)" if compact else ""), bound=ends + eps,
                   bound_kind="max{L(θ_A), L(θ_B)} + ε", epsilon=eps, reference=ends,
                   endpoint_losses={"L(θ_A)": sa.base_loss, "L(θ_B)": sb.base_loss}, loss=loss, **kw)
    v.extra.update(stability_a=sa.to_dict(), stability_b=sb.to_dict(),
                   part_max_loss=_part_max(v.evaluation, path.meta["parts"]))
    return v


def _lemma2_part(v: TheoremVerdict, first: int, last: int) -> tuple[bool, float, float]:
    """Exact sub-claim: segments ``first..last−1`` (Lemma 2 parts) stay below the max of their ends."""
    ev = v.evaluation
    m = float(ev.loss[first:last].max())
    wl = _waypoint_losses(ev)
    ends = float(max(wl[first:last + 1]))
    return m <= ends + v.tol, m, ends


def check_theorem2(net_a: _nets.Net, net_b: _nets.Net, key: jax.Array, x, y, *, p: float = 0.75,
                   loss: Loss | str = cross_entropy, **kw) -> TheoremVerdict:
    """Theorem 2 (10 segments): measured excess over ``max{L(θ_A), L(θ_B)}``; the Õ(√p·ε) bound needs the
    noise-stability ε (SPEC §6), not available yet: ``noise_stability_bound = None``, ``holds = None``."""
    path = theorem2(net_a, net_b, key, p=p)
    la, lb = _pair_losses(net_a, net_b, x, y, loss)
    v = check_path(path, x, y, name="Theorem 2", bound=None,
                   bound_kind="max{L(θ_A), L(θ_B)} + Õ(√p·ε) (ε: SPEC §6)",
                   endpoint_losses={"L(θ_A)": la, "L(θ_B)": lb}, loss=loss, **kw)
    ok, m, ends = _lemma2_part(v, 1, 9)
    wl = _waypoint_losses(v.evaluation)
    v.extra.update(lemma2_part_holds=ok, lemma2_part_max=m, lemma2_part_bound=ends,
                   theta1_losses={"L(θ¹_A)": float(wl[1]), "L(θ¹_B)": float(wl[9])},
                   part_max_loss=_part_max(v.evaluation, path.meta["parts"]), p=p,
                   draws={"A": path.meta["lemma3_a"]["draws"], "B": path.meta["lemma3_b"]["draws"]},
                   column_condition={"A": path.meta["lemma3_a"]["column_condition"],
                                     "B": path.meta["lemma3_b"]["column_condition"]})
    v.numerics_ok = v.numerics_ok and ok
    return v


def check_theorem3(net_a: _nets.Net, net_b: _nets.Net, narrow: _nets.Net, p: float, key: jax.Array, x, y, *,
                   loss: Loss | str = cross_entropy, **kw) -> TheoremVerdict:
    """Theorem 3 (13 segments): measured excess over ``max{L(θ_A), L(θ_B), L(θ*)}``; the Õ(√p·ε) terms need
    the noise-stability ε (SPEC §6): ``noise_stability_bound = None``, ``holds = None``."""
    path = theorem3(net_a, net_b, narrow, p, key)
    la, lb = _pair_losses(net_a, net_b, x, y, loss)
    # L(θ*) is the loss at the narrow way point (same function as θ*)
    v = check_path(path, x, y, name="Theorem 3", bound=None,
                   bound_kind="max{L(θ_A)+Õ(√p·ε), L(θ_B)+Õ(√p·ε), L(θ*)} (ε: SPEC §6)", loss=loss, **kw)
    wl = _waypoint_losses(v.evaluation)
    lstar = float(wl[path.meta["narrow_waypoint"]])
    ref = max(la, lb, lstar)
    v.measured_excess = float(v.max_loss - ref)
    v.endpoint_losses = {"L(θ_A)": la, "L(θ_B)": lb, "L(θ*)": lstar}
    ok, m, ends = _lemma2_part(v, 1, 12)
    v.extra.update(lemma2_part_holds=ok, lemma2_part_max=m, lemma2_part_bound=ends,
                   theta1_losses={"L(θ¹_A)": float(wl[1]), "L(θ¹_B)": float(wl[12])},
                   part_max_loss=_part_max(v.evaluation, path.meta["parts"]), p=p,
                   narrow_widths=path.meta["narrow_widths"],
                   draws={"A": path.meta["lemma3_a"]["draws"], "B": path.meta["lemma3_b"]["draws"]})
    v.numerics_ok = v.numerics_ok and ok
    return v
