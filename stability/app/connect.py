"""Connectivity over k minima: every pair of nets connected by every method, one matrix per method.

For every pair ``(θ_i, θ_j)`` of ``k`` nets of one architecture, on the same training samples:

* ``line`` — the straight line θ_i → θ_j: its loss SAMPLED at ``points`` equally spaced t (a lower bound of its
  maximum over t) and, unless switched off, a CERTIFIED upper bound of ``max_t L`` over every t
  (:func:`stability.theory.bounds.max_loss_bound`, Taylor models in t with outward rounding);
* ``aligned_wm`` / ``aligned_am`` — the straight line θ_i → π(θ_j), π found by weight matching (Ainsworth et al.
  2023, Algorithm 1, :func:`stability.theory.align.weight_matching`, identity start) or by activation matching
  (Pearson correlation of hidden activations on the samples, :func:`stability.theory.align.activation_matching`).
  π(θ_j) computes the same function as θ_j (checked); the Lemma 4 path θ_j → π(θ_j)
  (:func:`stability.theory.align.permutation_path`, in the architecture widened by zero units) is built and
  certified, so the line extends to a path θ_i → θ_j with the same maximum (in the widened architecture);
* ``theorem1`` — the Theorem 1 path (Kuditipudi et al. 2019; compact Lemma 1 paths around Lemma 2) with kept sets
  from :func:`stability.theory.dropout.greedy_search`: its verdict (:func:`proofs_check.check_theorem1`: holds /
  fails / does not apply against ``max{L_i, L_j} + ε``) and the CERTIFIED bound of its maximum over every t
  (:func:`proofs_check.path_bound`: every segment is proved, so the bound is exact at the way points);
* ``theorem2`` / ``theorem3`` — the Theorem 2 (p = 3/4) and Theorem 3 (a trained narrow net θ*, p =
  1.5·max h*/h) paths: their verdicts (usually "does not apply", with the failing premise named) and the
  certified bound of their maximum over every t (their Algorithm 1 segments bounded by propagation);
* ``bezier`` (optional, it trains) — a quadratic Bezier curve trained on eq. (3) of Garipov et al. 2018: sampled
  maximum and certified bound.

Each method gives a ``level`` per pair (the certified upper bound where there is one, else the sampled maximum)
and a ``barrier`` = level − max(L_i, L_j). The matrices are symmetric by construction (entry (j, i) is the path
of (i, j) traversed backwards) with a zero barrier diagonal. The minimum spanning tree of each barrier matrix
(:func:`stability.core.graphs.spanning_tree`) joins all k minima by chains of paths whose barrier never exceeds
the tree's bottleneck.

Pairs are independent: :func:`connect_pair` computes one pair from the per-net preparations
(:func:`prepare_nets`) and explicit inputs only, so the loop in :func:`connect` can be mapped over devices.
``write_report`` writes ``report.md`` (opening with the plain-language finding), ``summary.json``,
``matrices.json`` and one heat map per method; :func:`run_command` is ``stability connect``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

from stability.core.progress import Progress, get_logger

__all__ = ["Method", "METHODS", "ConnectConfig", "Prepared", "MethodResult", "PairResult", "ConnectResult",
           "prepare_nets", "train_narrow", "pair_list", "connect_pair", "connect", "write_report", "add_arguments",
           "run_command"]

_log = get_logger("connect")

Method = Literal["line", "aligned_wm", "aligned_am", "theorem1", "theorem2", "theorem3", "bezier"]
METHODS: tuple[str, ...] = ("line", "aligned_wm", "aligned_am", "theorem1", "theorem2", "theorem3", "bezier")
TITLES: dict[str, str] = {
    "line": "straight line", "aligned_wm": "straight line after weight matching",
    "aligned_am": "straight line after activation matching (correlation)", "theorem1": "Theorem 1 path",
    "theorem2": "Theorem 2 path", "theorem3": "Theorem 3 path", "bezier": "learned Bezier curve",
}
AlignChoice = Literal["weight", "activation", "both", "none"]
ALIGN_CHOICES: tuple[str, ...] = ("weight", "activation", "both", "none")


# --------------------------------------------------------------------------- configuration


@dataclasses.dataclass(frozen=True)
class ConnectConfig:
    """Settings of :func:`connect` (every one is a ``stability connect`` option; see :func:`add_arguments`)."""

    theorems: tuple[int, ...] = (1, 2, 3)
    align: AlignChoice = "weight"
    curves: bool = False
    line_bounds: bool = True
    points: int = 25
    points_per_segment: int = 5
    p: float = 0.5
    rounds: int = 4
    noise_p: float = 0.75
    cushion_draws: int = 3
    narrow_steps: int = 1500
    curve_steps: int = 1000
    curve_lr: float = 1e-2
    curve_batch: int = 128
    bound_rtol: float = 1e-2
    bound_budget: int = 256
    seed: int = 0

    def check(self) -> None:
        """One-line ``ValueError`` naming the first bad setting."""
        if not isinstance(self.theorems, tuple) or any(t not in (1, 2, 3) for t in self.theorems) or \
                len(set(self.theorems)) != len(self.theorems):
            raise ValueError(f"theorems must be distinct values out of (1, 2, 3), got {self.theorems!r}")
        if self.align not in ALIGN_CHOICES:
            raise ValueError(f"align must be one of {ALIGN_CHOICES}, got {self.align!r}")
        ints = {"points": (self.points, 2), "points_per_segment": (self.points_per_segment, 2),
                "rounds": (self.rounds, 0), "cushion_draws": (self.cushion_draws, 1),
                "narrow_steps": (self.narrow_steps, 1), "curve_steps": (self.curve_steps, 1),
                "curve_batch": (self.curve_batch, 1), "bound_budget": (self.bound_budget, 1), "seed": (self.seed, 0)}
        for name, (v, lo) in ints.items():
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise ValueError(f"{name} must be an integer ≥ {lo}, got {v!r}")
        if not 0.0 < self.p < 1.0:
            raise ValueError(f"p (the kept-set dropout probability) must lie in (0, 1), got {self.p!r}")
        if not 0.0 < self.noise_p <= 0.75:
            raise ValueError(f"noise_p (Theorem 2's p) must lie in (0, 3/4], got {self.noise_p!r}")
        for name in ("curve_lr", "bound_rtol"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {v!r}")

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods this configuration runs, in table order."""
        out = ["line"]
        if self.align in ("weight", "both"):
            out.append("aligned_wm")
        if self.align in ("activation", "both"):
            out.append("aligned_am")
        out += [f"theorem{t}" for t in sorted(self.theorems)]
        if self.curves:
            out.append("bezier")
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["theorems"] = list(self.theorems)
        return d


# --------------------------------------------------------------------------- results


@dataclasses.dataclass
class Prepared:
    """What every pair needs from one net, computed once: its loss and accuracy on the samples, the kept sets
    of the greedy search (Theorem 1), the cushions at Theorem 2's and Theorem 3's p (Definitions 2–4)."""

    index: int
    label: str
    net: Any
    loss: float
    acc: float
    search: Any = None
    noise: dict[float, Any] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"index": self.index, "label": self.label, "loss": self.loss, "acc": self.acc}
        if self.search is not None:
            s = self.search
            d["dropout_stability"] = {"method": s.method, "epsilon": s.eps, "losses_theta_i": list(s.best.losses),
                                      "kept": s.kept.to_dict()}
        if self.noise:
            d["cushions"] = {str(p): {"epsilon": float(c.epsilon()), "converged": bool(c.epsilon_converged()),
                                     "n": int(c.n)} for p, c in self.noise.items()}
        return d


@dataclasses.dataclass(frozen=True)
class MethodResult:
    """One method on one pair. ``sampled_max``: the loss maximum on the evaluated grid (a lower bound of the
    maximum over every t); ``upper`` / ``lower``: a certified enclosure of ``max_t L`` over every t (``None``: not
    certified); ``verdict`` / ``reason`` / ``theorem_bound``: the theorem's check (theorem methods); ``error``: why
    the method has no numbers (a builder refused, e.g. a failed premise)."""

    method: str
    sampled_max: float = math.nan
    n_points: int = 0
    upper: float | None = None
    lower: float | None = None
    bound_stop: str | None = None
    end_max: float = math.nan
    verdict: str | None = None
    reason: str | None = None
    theorem_bound: float | None = None
    error: str | None = None
    seconds: float = 0.0
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def certified(self) -> bool:
        return self.upper is not None and math.isfinite(self.upper)

    @property
    def level(self) -> float:
        """The certified upper bound where there is one, else the sampled maximum (NaN: no result)."""
        return float(self.upper) if self.certified else float(self.sampled_max)

    @property
    def level_kind(self) -> str:
        if self.error is not None and not math.isfinite(self.sampled_max):
            return "none"
        return "certified" if self.certified else "sampled"

    @property
    def barrier(self) -> float:
        return self.level - self.end_max

    @property
    def consistent(self) -> bool | None:
        """``upper ≥ sampled_max`` up to float evaluation tolerance (a certified bound below a value it bounds would
        be a bug); ``None`` without both numbers."""
        if not self.certified or not math.isfinite(self.sampled_max):
            return None
        return bool(self.upper >= self.sampled_max - 1e-5 * max(1.0, abs(self.sampled_max)))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(level=self.level, level_kind=self.level_kind, barrier=self.barrier, certified=self.certified,
                 consistent=self.consistent)
        return _jsonable(d)


@dataclasses.dataclass(frozen=True)
class PairResult:
    """Every method on the pair ``(i, j)``, ``i < j``."""

    i: int
    j: int
    methods: dict[str, MethodResult]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"i": self.i, "j": self.j, "seconds": self.seconds,
                "methods": {k: v.to_dict() for k, v in self.methods.items()}}


@dataclasses.dataclass
class ConnectResult:
    """Everything :func:`connect` measured: per-net records, per-pair results, and the derived matrices and trees."""

    labels: list[str]
    nets: list[dict[str, Any]]
    pairs: list[PairResult]
    config: ConnectConfig
    data: str
    n_samples: int
    seconds: float
    narrow: dict[str, Any] | None = None

    @property
    def k(self) -> int:
        return len(self.labels)

    @property
    def methods(self) -> tuple[str, ...]:
        return self.config.methods

    @property
    def end_losses(self) -> np.ndarray:
        return np.array([n["loss"] for n in self.nets])

    def matrix(self, method: str, kind: Literal["barrier", "level", "sampled", "upper"] = "barrier") -> np.ndarray:
        """``k × k`` symmetric matrix of one method: ``barrier`` (zero diagonal), ``level`` (diagonal: the nets'
        losses), ``sampled`` or ``upper`` (diagonal: the losses; NaN where a pair has no number)."""
        if method not in self.methods:
            raise ValueError(f"method must be one of {self.methods}, got {method!r}")
        if kind not in ("barrier", "level", "sampled", "upper"):
            raise ValueError(f"kind must be barrier, level, sampled or upper, got {kind!r}")
        m = np.full((self.k, self.k), np.nan)
        np.fill_diagonal(m, 0.0 if kind == "barrier" else self.end_losses)
        for p in self.pairs:
            r = p.methods[method]
            v = {"barrier": r.barrier, "level": r.level, "sampled": r.sampled_max,
                 "upper": r.upper if r.certified else math.nan}[kind]
            m[p.i, p.j] = m[p.j, p.i] = v
        return m

    def verdicts(self, method: str) -> list[list[str]]:
        """``k × k`` verdict letters (H holds, F fails, N/A does not apply) of a theorem method, '' elsewhere."""
        short = {"holds": "H", "fails": "F", "does not apply": "N/A"}
        out = [[""] * self.k for _ in range(self.k)]
        for p in self.pairs:
            v = p.methods[method].verdict
            out[p.i][p.j] = out[p.j][p.i] = short.get(v or "", "")
        return out

    def tree(self, method: str):
        """The minimum spanning tree of the method's barrier matrix."""
        from stability.core.graphs import spanning_tree

        return spanning_tree(self.matrix(method, "barrier"), f"{method} barrier matrix")

    def method_summary(self, method: str) -> dict[str, Any]:
        """Worst and best level over the pairs, how many are certified, verdict counts, the tree's bottleneck."""
        rs = [p.methods[method] for p in self.pairs]
        lv = np.array([r.level for r in rs])
        ok = np.isfinite(lv)
        verdicts: dict[str, int] = {}
        for r in rs:
            if r.verdict is not None:
                verdicts[r.verdict] = verdicts.get(r.verdict, 0) + 1
        t = self.tree(method)
        chain = None
        if t.edges:
            level = self.matrix(method, "level")
            chain = max(float(level[i, j]) for i, j, _ in t.edges)
        return {"title": TITLES[method], "pairs": len(rs), "with_result": int(ok.sum()),
                "certified": int(sum(r.certified for r in rs)),
                "max_level": float(lv[ok].max()) if ok.any() else None,
                "min_level": float(lv[ok].min()) if ok.any() else None,
                "max_sampled": float(np.nanmax([r.sampled_max for r in rs])) if ok.any() else None,
                "max_barrier": float(np.nanmax([r.barrier for r in rs])) if ok.any() else None,
                "verdicts": verdicts, "tree": t.to_dict(), "tree_chain_level": chain,
                "inconsistent": [[p.i, p.j] for p in self.pairs if p.methods[method].consistent is False]}

    def finding(self) -> str:
        """The plain-language finding, e.g. "All 10 pairs are connected below loss X by their Theorem 1 paths
        (certified for every t) …; the straight lines reach up to Y; after weight matching up to Z." Every number
        says whether it is certified (a proved bound over every t) or sampled (a lower bound of the maximum)."""
        n = len(self.pairs)
        sums = {m: self.method_summary(m) for m in self.methods}

        def kind(s: dict[str, Any]) -> str:
            if s["certified"] == s["with_result"]:
                return "certified for every t"
            if s["certified"]:
                return f"certified for every t on {s['certified']} of them, sampled on the rest"
            return "sampled at the grid points, a lower bound of the maximum over t"

        def who(s: dict[str, Any]) -> str:
            return f"All {n} pairs are" if s["with_result"] == n else f"{s['with_result']} of {n} pairs are"

        def verdicts(m: str) -> str:
            v = sums[m]["verdicts"]
            if set(v) == {"does not apply"}:
                first = next(p.methods[m] for p in self.pairs if p.methods[m].verdict == "does not apply")
                prem = (first.detail.get("failed_premises") or [first.reason or first.error or ""])[0]
                return f"Theorem {m[-1]} does not apply to any of the {n} pairs (e.g. {_clip(prem, 160)})"
            parts = [f"{name} for {c} of {n} pairs" for name, c in sorted(v.items())]
            return f"Theorem {m[-1]}: " + ", ".join(parts)

        out = []
        for m in (m for m in self.methods if m.startswith("theorem")):
            s = sums[m]
            if s["with_result"] == 0:
                out.append(verdicts(m) + "; no path could be built.")
                continue
            if m == "theorem1":
                out.append(f"{who(s)} connected below loss {s['max_level']:.4g} by their Theorem 1 paths ({kind(s)}); "
                           f"{verdicts(m)}.")
            else:
                out.append(f"{verdicts(m)}; its paths still stay below loss {s['max_level']:.4g} ({kind(s)}).")
        lines = []
        for m, what in (("line", "the straight lines reach up to"), ("aligned_wm", "after weight matching up to"),
                        ("aligned_am", "after activation matching up to")):
            if m in sums and sums[m]["with_result"]:
                s = sums[m]
                extra = f"; sampled {s['max_sampled']:.4g}" if s["certified"] else ""
                lines.append(f"{what} {s['max_level']:.4g} ({kind(s)}{extra})")
        if lines:
            text = "; ".join(lines)
            out.append(text[0].upper() + text[1:] + ".")
        if "bezier" in sums and sums["bezier"]["with_result"]:
            s = sums["bezier"]
            out.append(f"The learned Bezier curves stay below {s['max_level']:.4g} ({kind(s)}).")
        best = self._best_chain()
        if best is not None:
            m, lvl, bott = best
            out.append(f"Along the minimum spanning tree of the {TITLES[m]} barriers, every two of the {self.k} nets "
                       f"are joined by a chain of such paths whose loss stays below {lvl:.4g} (certified; largest "
                       f"barrier on the tree {bott:.4g}).")
        return " ".join(out)

    def _best_chain(self) -> tuple[str, float, float] | None:
        best = None
        for m in self.methods:
            s = self.method_summary(m)
            certified_all = s["certified"] == s["pairs"]
            if s["tree_chain_level"] is None or not s["tree"]["connected"] or not certified_all:
                continue
            if best is None or s["tree_chain_level"] < best[1]:
                best = (m, s["tree_chain_level"], s["tree"]["bottleneck"])
        return best

    def to_dict(self) -> dict[str, Any]:
        return _jsonable({
            "labels": self.labels, "data": self.data, "n_samples": self.n_samples, "seconds": self.seconds,
            "config": self.config.to_dict(), "methods": list(self.methods), "finding": self.finding(),
            "nets": self.nets, "narrow": self.narrow,
            "summary": {m: self.method_summary(m) for m in self.methods},
            "matrices": {m: {kind: self.matrix(m, kind).tolist() for kind in ("barrier", "level", "sampled", "upper")}
                         for m in self.methods},
            "pairs": [p.to_dict() for p in self.pairs],
        })


def _clip(s: str, n: int) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    return v


# --------------------------------------------------------------------------- per net


def _check_nets(nets: Sequence[Any], labels: Sequence[str] | None) -> list[str]:
    from stability.core import nets as _nets

    nets = list(nets)
    if len(nets) < 2:
        raise ValueError(f"connect needs at least 2 nets, got {len(nets)}")
    for k, n in enumerate(nets):
        if not isinstance(n, _nets.Net):
            raise ValueError(f"nets[{k}] must be a stability.core.nets.Net, got {type(n).__name__}")
        if n.arch != nets[0].arch:
            raise ValueError(f"nets[{k}] has architecture {n.arch}, nets[0] has {nets[0].arch}; connect needs one "
                             "architecture")
    if nets[0].depth < 2:
        raise ValueError(f"connect needs nets with at least one hidden layer, got depth {nets[0].depth}")
    if labels is None:
        return [f"net{k}" for k in range(len(nets))]
    labels = [str(s) for s in labels]
    if len(labels) != len(nets) or len(set(labels)) != len(labels):
        raise ValueError(f"labels must be {len(nets)} distinct names, got {labels}")
    return labels


def train_narrow(net: Any, x, y, *, steps: int = 1500, seed: int = 0, mesh: Any = None) -> Any:
    """A narrow net θ* for Theorem 3: hidden widths ``max(1, ⌊h_i/8⌋)`` of ``net``'s architecture, trained on
    ``(x, y)`` (Adam, lr 0.01, cosine, batch 64), independent of the nets it will connect."""
    import jax

    from stability.core import nets as _nets
    from stability.core.train import TrainConfig, fit

    hs = _nets.widths(net)
    arch = dataclasses.replace(net.arch, widths=tuple(max(1, h // 8) for h in hs) + (net.arch.widths[-1],))
    narrow = _nets.init(jax.random.PRNGKey(seed + 2), arch, jax.tree_util.tree_leaves(net)[0].dtype)
    cfg = TrainConfig(steps=steps, batch_size=min(64, len(x)), optimizer="adam", lr=0.01, schedule="cosine",
                      seed=seed + 2, log_every=steps)
    narrow, _ = fit(narrow, x, y, cfg, progress=False, mesh=mesh)
    return narrow


def theorem3_p(net: Any, narrow: Any) -> float:
    """Theorem 3's smallest admissible dropout probability ``1.5·max_i h*_i/h_i`` (capped at 3/4)."""
    from stability.core import nets as _nets
    from stability.theory.paths import narrow_widths

    hs = _nets.widths(net)
    hstar = narrow_widths(narrow, net.arch)
    return float(min(0.75, 1.5 * max(a / b for a, b in zip(hstar, hs))))


def prepare_nets(nets: Sequence[Any], x, y, cfg: ConnectConfig, *, labels: Sequence[str] | None = None,
                 theorem3_p_value: float | None = None, progress: bool = True, mesh: Any = None) -> list[Prepared]:
    """Per net, once: loss and accuracy on ``(x, y)``, the greedy kept sets (Theorem 1, dropout probability
    ``cfg.p``), the cushions at ``cfg.noise_p`` (Theorem 2) and at ``theorem3_p_value`` (Theorem 3)."""
    import jax

    from stability.core.evaluate import evaluate_nets
    from stability.theory import cushions
    from stability.theory.dropout import greedy_search

    labels = _check_nets(nets, labels)
    ev = evaluate_nets(list(nets), x, y, mesh=mesh)
    out = [Prepared(k, labels[k], n, float(ev.loss[k]), float(ev.acc[k])) for k, n in enumerate(nets)]
    bar = Progress(len(out), "preparing nets (kept sets, cushions)", unit="nets", enabled=progress)
    for prep in out:
        if 1 in cfg.theorems:
            prep.search = greedy_search(prep.net, x, y, p=cfg.p, rounds=cfg.rounds)
        if 2 in cfg.theorems or 3 in cfg.theorems:
            key = jax.random.fold_in(jax.random.PRNGKey(cfg.seed + 7), prep.index)
            p0 = cfg.noise_p if 2 in cfg.theorems else float(theorem3_p_value)
            base = cushions.measure(prep.net, x, key, p=p0, draws=cfg.cushion_draws, progress=False, mesh=mesh)
            prep.noise[p0] = base
            if 3 in cfg.theorems and theorem3_p_value is not None and theorem3_p_value not in prep.noise:
                prep.noise[theorem3_p_value] = cushions.remeasure_smoothness(
                    base, prep.net, x, jax.random.fold_in(key, 3), theorem3_p_value)
        bar.advance(1)
    return out


# --------------------------------------------------------------------------- per pair


def pair_list(k: int) -> list[tuple[int, int]]:
    """Every pair ``(i, j)``, ``i < j``, in row order: the independent tasks of :func:`connect`."""
    return [(i, j) for i in range(k) for j in range(i + 1, k)]


def _bound(curve, x, y, cfg: ConnectConfig, mesh: Any = None):
    from stability.theory.bounds import max_loss_bound

    return max_loss_bound(curve, x, y, rtol=cfg.bound_rtol, max_subintervals=cfg.bound_budget, mesh=mesh)


def _line(a: Any, b: Any, x, y, cfg: ConnectConfig, end_max: float, method: str, detail: dict[str, Any],
          mesh: Any = None) -> MethodResult:
    from stability.core.evaluate import evaluate_line
    from stability.core.polycurve import PolyCurve

    t0 = time.perf_counter()
    ev = evaluate_line(a, b, cfg.points, x, y, mesh=mesh)
    detail = {**detail, "min_acc": float(ev.acc.min())}
    up = lo = stop = None
    if cfg.line_bounds:
        bd = _bound(PolyCurve.segment(a, b), x, y, cfg, mesh)
        up, lo, stop = bd.upper, bd.lower, bd.stop
    return MethodResult(method, float(ev.loss.max()), cfg.points, up, lo, stop, end_max, seconds=time.perf_counter() - t0,
                        detail=detail)


def _aligned(a: Prepared, b: Prepared, x, y, cfg: ConnectConfig, end_max: float, method: str,
             mesh: Any = None) -> MethodResult:
    from proofs_check import certify
    from stability.theory import align

    t0 = time.perf_counter()
    if method == "aligned_wm":
        res = align.weight_matching(a.net, b.net, seed=cfg.seed, x=x[:256])
    else:
        res = align.activation_matching(a.net, b.net, x, objective="correlation")
    lemma4 = align.permutation_path(b.net, res.perms, widen=True)
    cert = certify(lemma4)
    detail = {"alignment": res.method, "objective": res.objective, "objective_before": res.objective_before,
              "objective_after": res.objective_after, "iterations": res.iterations, "converged": res.converged,
              "distance_before": res.distance_before, "distance_after": res.distance_after,
              "changed_units": list(res.changed_units), "function_max_abs_diff": res.function_check.max_abs_diff,
              "lemma4_certificate": cert.headline(), "lemma4_proved": bool(cert.ok),
              "lemma4_widths": list(lemma4.info.path_widths)}
    r = _line(a.net, res.aligned, x, y, cfg, end_max, method, detail, mesh)
    return dataclasses.replace(r, seconds=time.perf_counter() - t0)


def _theorem(method: str, a: Prepared, b: Prepared, x, y, cfg: ConnectConfig, end_max: float, key,
             narrow: Any, p3: float | None) -> MethodResult:
    from proofs_check.theorems import check_theorem1, check_theorem2, check_theorem3

    t0 = time.perf_counter()
    kw = dict(points_per_segment=cfg.points_per_segment, line=False,
              bound_options=dict(rtol=cfg.bound_rtol, max_subintervals=max(cfg.bound_budget, 13)))
    try:
        if method == "theorem1":
            v = check_theorem1(a.net, a.search.kept, b.net, b.search.kept, x, y, compact=True, **kw)
        elif method == "theorem2":
            v = check_theorem2(a.net, b.net, key, x, y, p=cfg.noise_p, noise=(a.noise[cfg.noise_p], b.noise[cfg.noise_p]),
                               **kw)
        else:
            if narrow is None or p3 is None:
                raise ValueError("Theorem 3 needs a narrow net θ*")
            v = check_theorem3(a.net, b.net, narrow, p3, key, x, y, noise=(a.noise[p3], b.noise[p3]), **kw)
    except ValueError as e:  # a builder refused: a premise it checks failed
        return MethodResult(method, end_max=end_max, verdict="does not apply", reason=_clip(str(e), 400),
                            error=_clip(str(e), 400), seconds=time.perf_counter() - t0)
    bd = v.certified_max  # proofs_check.path_bound on the same data, inside the check
    detail = {"n_segments": v.n_segments, "certificate": v.certificate.headline(), "epsilon": v.epsilon,
              "max_loss_check": v.max_loss, "max_loss_kind": v.max_loss_kind, "min_acc": v.evaluation.min_acc,
              "premises_held": sum(q.status == "held" for q in v.premises),
              "premises_other": [q.to_dict() for q in v.premises if q.status != "held"],
              "failed_premises": [q.short() for q in v.premises if q.status == "failed"]}
    if v.noise is not None:
        detail["vacuity_ratio"] = v.noise.get("vacuity_ratio")
    return MethodResult(method, float(v.evaluation.loss.max()), int(v.evaluation.loss.size), bd.upper, bd.lower,
                        bd.stop, end_max, v.verdict, _clip(v.reason, 400), v.bound, None,
                        time.perf_counter() - t0, detail)


def _bezier(a: Prepared, b: Prepared, x, y, cfg: ConnectConfig, end_max: float, seed: int,
            mesh: Any = None) -> MethodResult:
    from stability.core import nets as _nets
    from stability.core.evaluate import evaluate
    from stability.core.train import TrainConfig
    from stability.curves import curve as curves

    t0 = time.perf_counter()
    tc = TrainConfig(steps=cfg.curve_steps, batch_size=min(cfg.curve_batch, len(x)), optimizer="adam", lr=cfg.curve_lr,
                     schedule="cosine", seed=seed, log_every=max(1, cfg.curve_steps // 4))
    curve, hist = curves.train_curve(curves.bezier(a.net, b.net, 1), _nets.apply, x, y, tc, progress=False,
                                     mesh=mesh)
    ev = evaluate(curves.curve_point, curve, np.linspace(0.0, 1.0, cfg.points), x, y, mesh=mesh)
    up = lo = stop = None
    if cfg.line_bounds:
        bd = _bound(curves.as_polycurve(curve), x, y, cfg, mesh)
        up, lo, stop = bd.upper, bd.lower, bd.stop
    return MethodResult("bezier", float(ev.loss.max()), cfg.points, up, lo, stop, end_max,
                        seconds=time.perf_counter() - t0,
                        detail={"min_acc": float(ev.acc.min()), "steps": cfg.curve_steps, "final_eq3_loss": hist.loss[-1]})


def connect_pair(a: Prepared, b: Prepared, x, y, cfg: ConnectConfig, *, narrow: Any = None,
                 p3: float | None = None, mesh: Any = None) -> PairResult:
    """Every method of ``cfg.methods`` between ``a.net`` and ``b.net`` on ``(x, y)`` (a pure function of its
    inputs: its random draws come from ``cfg.seed`` and the pair's indices, so pairs may run in any order or
    on any device). ``mesh`` (:func:`stability.core.mesh.make_mesh`) splits the samples of the lines, the
    Bezier curve and their certified bounds over its devices; the theorem checks run on one device."""
    import jax

    t0 = time.perf_counter()
    end_max = max(a.loss, b.loss)
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(cfg.seed), a.index), b.index)
    out: dict[str, MethodResult] = {}
    for m in cfg.methods:
        if m == "line":
            out[m] = _line(a.net, b.net, x, y, cfg, end_max, m, {}, mesh)
        elif m.startswith("aligned"):
            out[m] = _aligned(a, b, x, y, cfg, end_max, m, mesh)
        elif m.startswith("theorem"):
            out[m] = _theorem(m, a, b, x, y, cfg, end_max, jax.random.fold_in(key, int(m[-1])), narrow, p3)
        else:
            out[m] = _bezier(a, b, x, y, cfg, end_max, cfg.seed + 1000 * a.index + b.index, mesh)
        bad = out[m].consistent
        if bad is False:
            _log.warning(f"pair ({a.index}, {b.index}), {m}: certified upper {out[m].upper} is below the sampled "
                         f"maximum {out[m].sampled_max} (a bound must never be: report this)")
    return PairResult(a.index, b.index, out, time.perf_counter() - t0)


def connect(nets: Sequence[Any], x, y, cfg: ConnectConfig = ConnectConfig(), *, labels: Sequence[str] | None = None,
            narrow: Any = None, data: str = "", progress: bool = True, mesh: Any = None) -> ConnectResult:
    """Connect every pair of ``nets`` (one architecture, ≥ 2) by every method of ``cfg`` on the samples
    ``(x, y)``; see the module docstring. ``narrow``: Theorem 3's θ* (default: :func:`train_narrow` on
    ``(x, y)``)."""
    cfg.check()
    labels = _check_nets(nets, labels)
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2 or tuple(x.shape[1:]) != tuple(nets[0].arch.in_shape) or y.shape[:1] != x.shape[:1] or len(x) < 2:
        raise ValueError(f"x must have shape (N ≥ 2, {', '.join(map(str, nets[0].arch.in_shape))}) and y N labels, "
                         f"got {x.shape} and {y.shape}")
    t0 = time.perf_counter()
    narrow_info, p3 = None, None
    if 3 in cfg.theorems:
        if narrow is None:
            _log.info(f"training the narrow net θ* for Theorem 3 ({cfg.narrow_steps} steps)")
            narrow = train_narrow(nets[0], x, y, steps=cfg.narrow_steps, seed=cfg.seed, mesh=mesh)
        p3 = theorem3_p(nets[0], narrow)
        from stability.core import nets as _nets
        from stability.core.evaluate import evaluate_nets

        narrow_info = {"widths": list(_nets.widths(narrow)), "p": p3,
                       "loss": float(evaluate_nets([narrow], x, y, mesh=mesh).loss[0])}
    prepared = prepare_nets(nets, x, y, cfg, labels=labels, theorem3_p_value=p3, progress=progress, mesh=mesh)
    tasks = pair_list(len(prepared))
    bar = Progress(len(tasks), "connecting pairs", unit="pairs", enabled=progress)
    pairs = []
    for i, j in tasks:  # independent tasks: a device mesh may map connect_pair over them
        pairs.append(connect_pair(prepared[i], prepared[j], x, y, cfg, narrow=narrow, p3=p3, mesh=mesh))
        bar.advance(1, pair=f"{labels[i]}–{labels[j]}")
    return ConnectResult(labels, [p.to_dict() for p in prepared], pairs, cfg, data, int(len(x)),
                         time.perf_counter() - t0, narrow_info)


# --------------------------------------------------------------------------- report


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_report(result: ConnectResult, out: str | Path, *, command: str | None = None, report: Any = None) -> Path:
    """``report.md`` (opening with the finding), ``summary.json``, ``matrices.json`` and a heat map per method.

    ``report``: an :class:`~stability.app.report.Report` already open on ``out`` (the command opens it before the
    work, so a failed run leaves its report marked INCOMPLETE); without one a new report is opened and finished."""
    from stability.app.report import Report
    from stability.plots.connect import pair_heatmap

    out = Path(out)
    title = f"Connectivity of {result.k} minima ({', '.join(result.labels)})"
    own = report is None
    if own:
        report = Report(out, title=title)
        report.started -= result.seconds  # the wall time in the header includes the computation
    report.title = title
    if command:
        report.meta["command"] = command
    report.meta.update(seed=result.config.seed, data=result.data, n_samples=result.n_samples,
                       seconds=round(result.seconds, 2))
    sums = {m: result.method_summary(m) for m in result.methods}

    sec = report.section("finding", "Finding")
    sec.text(f"**{result.finding()}**")
    sec.text(f"Every loss is the mean cross-entropy on the same {result.n_samples} samples ({result.data}). "
             f"*Certified* means a proved upper bound of the loss maximum over every t of the path "
             f"(`proofs_check.path_bound` / `stability.theory.bounds`, float64 with outward rounding); *sampled* means "
             f"the maximum over the evaluated points only — a lower bound of the true maximum. Barrier = level − "
             f"max(L_i, L_j), level = the certified bound where there is one, else the sampled maximum.")
    rows = []
    for m, s in sums.items():
        v = ", ".join(f"{k}: {c}" for k, c in sorted(s["verdicts"].items())) or "–"
        rows.append([TITLES[m], f"{s['with_result']}/{s['pairs']}", f"{s['certified']}/{s['pairs']}",
                     _fmt(s["max_level"]), _fmt(s["min_level"]), _fmt(s["max_sampled"]), _fmt(s["max_barrier"]), v,
                     _fmt(s["tree"]["bottleneck"]), _fmt(s["tree_chain_level"])])
    sec.table(["method", "pairs with a result", "certified", "worst level", "best level", "worst sampled max",
               "worst barrier", "verdicts", "tree bottleneck (barrier)", "tree chain level"], rows)
    sec.data.update(finding=result.finding(), summary=sums)
    report.add(sec)

    sec = report.section("nets", "The nets")
    rows = []
    for n in result.nets:
        ds = n.get("dropout_stability") or {}
        cu = n.get("cushions") or {}
        rows.append([n["label"], f"{n['loss']:.4g}", f"{100 * n['acc']:.2f}%", _fmt(ds.get("epsilon")),
                     ", ".join(f"p={p}: {_fmt(c['epsilon'])}" for p, c in cu.items()) or "–"])
    sec.table(["net", "loss", "accuracy", "ε (Definition 1, greedy kept sets)", "ε (Definition 4)"], rows)
    if result.narrow:
        sec.text(f"Theorem 3's narrow net θ*: hidden widths {result.narrow['widths']}, loss {result.narrow['loss']:.4g}, "
                 f"p = 1.5·max h*/h = {result.narrow['p']:.4g}.")
    c = result.config
    sec.text(f"Settings: {c.points} points on every straight line and curve; {c.points_per_segment} points per segment "
             f"on the theorem paths; kept sets: greedy search, p = {c.p}, {c.rounds} rounds; Theorem 2 at p = "
             f"{c.noise_p}; certified bounds with rtol {c.bound_rtol} and at most {c.bound_budget} sub-intervals "
             f"({'on' if c.line_bounds else 'off'} for lines and curves). Alignment: "
             f"{ {'weight': 'weight matching', 'activation': 'activation matching', 'both': 'weight and activation matching', 'none': 'none'}[c.align] }. "
             f"Wall time {result.seconds:.1f} s.")
    sec.data.update(nets=result.nets, narrow=result.narrow, config=c.to_dict())
    report.add(sec)

    sec = report.section("matrices", "Matrices and spanning trees, one per method")
    sec.text("Cells: the level of each pair's path (diagonal: the nets' own losses); outlined cells: the edges of the "
             "minimum spanning tree of the barrier matrix. Theorem cells carry the verdict (H holds, F fails, N/A does "
             "not apply).")
    for m in result.methods:
        s = sums[m]
        level = result.matrix(m, "level")
        marks = result.verdicts(m) if m.startswith("theorem") else None
        kind = ("certified upper bound of max_t L" if s["certified"] == s["pairs"] else
                "max_t L (certified where available, else sampled)")
        fig = pair_heatmap(level, result.labels, title=f"{TITLES[m]}: {kind}", value_label="loss level",
                           tree=s["tree"]["edges"], marks=marks)
        report.figure(sec, fig, f"heatmap_{m}.png", f"{TITLES[m]}: level per pair; outlined: spanning tree")
        b = result.matrix(m, "barrier")
        sec.table([f"{TITLES[m]}: barrier"] + result.labels,
                  [[result.labels[i]] + [_fmt(float(v)) for v in b[i]] for i in range(result.k)])
        t = s["tree"]
        edges = "; ".join(f"{result.labels[i]}–{result.labels[j]} ({w:.4g})" for i, j, w in t["edges"])
        sec.text(f"Spanning tree ({len(t['edges'])} edges{'' if t['connected'] else ', a forest: some pairs have no result'}): "
                 f"{edges or '–'}.")
    sec.data.update(trees={m: sums[m]["tree"] for m in result.methods})
    report.add(sec)

    sec = report.section("pairs", "Every pair")
    rows = []
    for p in result.pairs:
        for m, r in p.methods.items():
            note = r.error or r.reason or ""
            if m.startswith("aligned"):
                d = r.detail
                how = (f"weight matching: {d['iterations']} sweep(s), converged {d['converged']}"
                       if d["alignment"] == "weight_matching" else "activation matching (correlation)")
                note = (f"{how}, distance {d['distance_before']:.4g} → {d['distance_after']:.4g}; Lemma 4 path "
                        f"θ_j → π(θ_j) in widths {d['lemma4_widths']}: {d['lemma4_certificate']}")
            rows.append([f"{result.labels[p.i]}–{result.labels[p.j]}", TITLES[m], _fmt(r.sampled_max), _fmt(r.upper),
                         r.level_kind, _fmt(r.barrier), r.verdict or "–", _fmt(r.theorem_bound), _clip(note, 260)])
    sec.table(["pair", "method", "sampled max", "certified ≤", "level", "barrier", "verdict", "theorem's bound",
               "note"], rows)
    sec.data.update(pairs=[p.to_dict() for p in result.pairs])
    report.add(sec)
    report.write_json("matrices.json", {"labels": result.labels, "methods": list(result.methods),
                                        **result.to_dict()["matrices"]})
    if own:
        report.finish()
    return out / "report.md"


# --------------------------------------------------------------------------- command line


def _int_list(s: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in s.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    return vals


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``stability connect`` (each with its default in the help)."""
    d = ConnectConfig()
    p.add_argument("checkpoints", nargs="+", help="two or more checkpoints of one architecture (.npz, `stability train`)")
    p.add_argument("--out", required=True, help="output directory (report.md, summary.json, matrices.json, heat maps)")
    p.add_argument("--data", help="dataset: digits | mnist | cifar10 | teacher (default: the 'data' recorded in the "
                                  "checkpoints' metadata, else digits)")
    p.add_argument("--source", help="data directory (MNIST IDX files, CIFAR-10 python batches; default: none)")
    p.add_argument("--n", type=int, default=2048, help="training samples behind every loss, drawn with --seed "
                                                       "(default 2048; all if the split is smaller)")
    p.add_argument("--theorems", type=_int_list, default=d.theorems,
                   help="theorem paths to build, comma-separated out of 1,2,3; empty string: none (default 1,2,3)")
    p.add_argument("--align", choices=ALIGN_CHOICES, default=d.align,
                   help="alignment before the aligned straight line: weight matching, activation matching "
                        "(correlation), both, or none (default weight)")
    p.add_argument("--curves", action="store_true", help="also train a quadratic Bezier curve per pair (default off)")
    p.add_argument("--curve-steps", type=int, default=d.curve_steps, help=f"Bezier training steps (default {d.curve_steps})")
    p.add_argument("--curve-lr", type=float, default=d.curve_lr, help=f"Bezier Adam learning rate, cosine (default {d.curve_lr})")
    p.add_argument("--points", type=int, default=d.points,
                   help=f"evaluation points on every straight line and curve (default {d.points})")
    p.add_argument("--points-per-segment", type=int, default=d.points_per_segment,
                   help=f"evaluation points per segment of the theorem paths (default {d.points_per_segment})")
    p.add_argument("--no-line-bounds", action="store_true",
                   help="skip the certified bounds of straight lines and curves: sampled maxima only (default: certify)")
    p.add_argument("--bound-rtol", type=float, default=d.bound_rtol,
                   help=f"relative gap at which a certified bound stops refining (default {d.bound_rtol})")
    p.add_argument("--bound-budget", type=int, default=d.bound_budget,
                   help=f"most sub-intervals of t per certified bound (default {d.bound_budget})")
    p.add_argument("--p", type=float, default=d.p, help=f"Theorem 1 kept sets: dropout probability (default {d.p})")
    p.add_argument("--rounds", type=int, default=d.rounds, help=f"greedy kept-set search rounds (default {d.rounds})")
    p.add_argument("--noise-p", type=float, default=d.noise_p, help=f"Theorem 2's dropout probability (default {d.noise_p})")
    p.add_argument("--narrow", help="checkpoint of Theorem 3's narrow net θ* (default: train one, hidden widths h/8)")
    p.add_argument("--narrow-steps", type=int, default=d.narrow_steps,
                   help=f"training steps of the narrow net when none is given (default {d.narrow_steps})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed of the samples, kept-set and mask draws (default {d.seed})")
    return p


def _load_data(arch: Any, name: str, source: str | None):
    from stability import data

    kw: dict[str, Any] = {}
    if name in ("digits", "mnist", "cifar10"):
        kw["layout"] = "image" if arch.n_conv else "flat"
    if source:
        kw["source"] = source
    if name == "mnist" and arch.n_conv and arch.in_shape[0] == 32:
        kw["pad_to"] = 32
    return data.load(name, **kw)


def run_command(args: argparse.Namespace, on_start: Callable[[], None] | None = None, mesh: Any = None) -> int:
    """``stability connect A.npz B.npz … --out DIR``: load, connect, write the report."""
    from stability.app.report import Report, check_out_dir
    from stability.core import checkpoint

    check_out_dir(args.out, "--out")
    cfg = ConnectConfig(theorems=tuple(args.theorems), align=args.align, curves=bool(args.curves),
                        line_bounds=not args.no_line_bounds, points=args.points,
                        points_per_segment=args.points_per_segment, p=args.p, rounds=args.rounds, noise_p=args.noise_p,
                        narrow_steps=args.narrow_steps, curve_steps=args.curve_steps, curve_lr=args.curve_lr,
                        bound_rtol=args.bound_rtol, bound_budget=args.bound_budget, seed=args.seed)
    cfg.check()
    if len(args.checkpoints) < 2:
        raise ValueError(f"connect needs at least 2 checkpoints, got {len(args.checkpoints)}")
    if isinstance(args.n, bool) or args.n < 2:
        raise ValueError(f"--n must be an integer ≥ 2, got {args.n}")
    loaded = [checkpoint.load(p, with_meta=True) for p in args.checkpoints]
    nets = [n for n, _ in loaded]
    stems = [Path(p).stem for p in args.checkpoints]
    labels = stems if len(set(stems)) == len(stems) else [f"{k}:{s}" for k, s in enumerate(stems)]
    _check_nets(nets, labels)
    name = args.data
    if name is None:
        recorded = {m.get("data") for _, m in loaded if isinstance(m.get("data"), str)}
        if len(recorded) > 1:
            raise ValueError(f"the checkpoints record different datasets {sorted(recorded)}; pass --data")
        name = recorded.pop() if recorded else "digits"
    ds = _load_data(nets[0].arch, name, args.source)
    if tuple(ds.input_shape) != tuple(nets[0].arch.in_shape):
        raise ValueError(f"the nets read inputs of shape {nets[0].arch.in_shape}, dataset {name!r} has {ds.input_shape}")
    n = min(args.n, len(ds.x_train))
    idx = np.sort(np.random.default_rng(args.seed).choice(len(ds.x_train), n, replace=False))
    x, y = ds.x_train[idx], ds.y_train[idx]
    narrow = checkpoint.load(args.narrow) if args.narrow else None
    what = f"{name}, {n} of {len(ds.x_train)} training samples"
    _log.info(f"connect: {len(nets)} nets, {len(nets) * (len(nets) - 1) // 2} pairs, methods {', '.join(cfg.methods)}; "
              f"data {what}")
    report = Report(args.out, title=f"Connectivity of {len(nets)} minima ({', '.join(labels)})")
    command = "stability " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if "connect" in sys.argv[1:] else None
    if command:
        report.meta["command"] = command
    if on_start is not None:
        on_start()
    with report.running():
        res = connect(nets, x, y, cfg, labels=labels, narrow=narrow, data=what, mesh=mesh)
        path = write_report(res, args.out, command=command, report=report)
    _log.info(f"wrote {path}, {Path(args.out) / 'summary.json'}, {Path(args.out) / 'matrices.json'} and heat maps")
    return 0
