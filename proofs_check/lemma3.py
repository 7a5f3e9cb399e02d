"""Lemma 3 of Kuditipudi et al. 2019 (Appendix B), checked on many Algorithm 1 draws.

Lemma 3: for an ε-noise stable net θ (Definition 4) and θ^1 = Algorithm 1 with dropout probability
``Ω̃(1/h_min) < p ≤ 3/4`` on layers ``2..d``, with probability at least 1/4 over the masks the whole straight
segment ``θ_t = θ + t(θ^1 − θ)`` has ``L(θ_t) ≤ L(θ) + Õ(√p·ε)``, provided every column obeys
``‖[A_i]_j‖ = O(√p)‖A_i‖_F``.

:func:`check_lemma3` draws many masks per ``p``, evaluates the loss along every segment on a ``t`` grid (one
batched call: a point is ``net`` with its columns multiplied by ``1 + t(δ − 1)``) and decides, PER p:

* the explicit bound ``L(θ) + e(p)`` of :mod:`proofs_check.noise_bound` (every constant of the proof; the
  premises — ρ ≥ 3d, ε′ ≤ 1, converged spectral norms — MEASURED AT THAT p, with masks drawn at that p);
* the verdict: ``does not apply`` (a premise fails, named), ``holds`` (at least a quarter of the draws stay
  under the bound at every sampled t), ``fails`` (the 95% Clopper–Pearson upper limit of the success
  probability is below 1/4) or ``inconclusive`` (too few draws to tell);
* the empirical constant ``C_1/4``: the smallest ``C`` with a quarter of the draws under ``L(θ) + C·√p·ε``,
  and the vacuity of the paper's scale ``√p·ε``.

The segment's loss is SAMPLED at ``n_t`` points of t: a lower bound of its maximum. Evidence about a
probabilistic statement, not a certificate.
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
from stability.core import units as _units
from stability.core.evaluate import evaluate
from stability.core.losses import Loss, cross_entropy, get_loss

from .noise_bound import Lemma3Bound, lemma3_bound, zero_output_loss

Array = jax.Array

__all__ = ["Lemma3Check", "LemmaVerdict", "check_lemma3", "segment_point", "clopper_pearson"]


def segment_point(theta: tuple[_nets.Net, tuple[Array, ...], Array], t: Array) -> _nets.Net:
    """Point function for :func:`stability.core.evaluate.evaluate`: ``theta = (net, deltas, ts)`` with
    ``deltas[l]`` of shape ``(n_points, h_l)`` and ``ts`` of shape ``(n_points,)``; point ``t`` (an
    integer index ``k``) is ``θ + ts[k]·(θ^1_k − θ)``, i.e. the columns of hidden unit ``u`` scaled by
    ``1 + ts[k]·(δ_u − 1)``."""
    net, deltas, ts = theta
    k = t.astype(jnp.int32)
    return _units.scale_cols(net, [1.0 + ts[k] * (dl[k] - 1.0) for dl in deltas])


LemmaVerdict = Literal["holds", "fails", "inconclusive", "does not apply"]


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Two-sided ``level`` confidence interval of a binomial success probability from ``k`` of ``n``."""
    from scipy.stats import beta

    a = (1.0 - level) / 2.0
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1.0 - a, k + 1, n - k))
    return lo, hi


@dataclasses.dataclass(frozen=True, eq=False)
class Lemma3Check:
    """Loss along ``θ → θ^1`` for ``draws`` Algorithm 1 masks per ``p``, against Lemma 3's explicit bound."""

    ps: np.ndarray              # (P,)
    ts: np.ndarray              # (T,)
    base_loss: float            # L(θ)
    base_acc: float
    epsilon: float              # Definition 4's ε of θ on the same samples
    losses: np.ndarray          # (P, K, T) L(θ_t)
    accs: np.ndarray            # (P, K, T)
    kept_fraction: np.ndarray   # (P, K) fraction of hidden units Algorithm 1 kept
    column_ratio: np.ndarray    # (P, d) max_j ‖[A_i]_j‖ / (√p ‖A_i‖_F), NaN at layer 1
    h_min: int
    bounds: tuple[Lemma3Bound, ...] = ()   # per p: the explicit bound with its premises measured at that p
    masks: tuple[tuple[np.ndarray, ...], ...] = ()  # per p, per hidden layer: (K, h) multipliers δ
    zero_output_loss: float = float("nan")  # the loss of f ≡ 0: the top of the loss range

    @property
    def draws(self) -> int:
        return int(self.losses.shape[1])

    def scale(self) -> np.ndarray:
        """``√p·ε`` per ``p`` (the paper's scale of the excess)."""
        return np.sqrt(self.ps) * self.epsilon

    def max_increase(self) -> np.ndarray:
        """``max_t L(θ_t) − L(θ)`` per ``(p, draw)`` (sampled t)."""
        return self.losses.max(axis=2) - self.base_loss

    def fraction_under(self, excess: np.ndarray | float) -> np.ndarray:
        """Per ``p``, the fraction of draws whose whole (sampled) segment stays ``≤ L(θ) + excess[p]``."""
        excess = np.broadcast_to(np.asarray(excess, np.float64), self.ps.shape)
        return np.mean(self.max_increase() <= excess[:, None], axis=1)

    def constant_quarter(self) -> np.ndarray:
        """``C_{1/4}``: the smallest ``C`` with a quarter of the draws under ``L(θ) + C·√p·ε``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.maximum(self.max_increase(), 0.0) / self.scale()[:, None]
        k = max(1, math.ceil(self.draws / 4))
        return np.sort(ratio, axis=1)[:, k - 1]

    def verdicts(self) -> list[tuple[LemmaVerdict, str]]:
        """Per ``p``: the verdict and its one-line reason (see the module docstring)."""
        out: list[tuple[LemmaVerdict, str]] = []
        for a, b in enumerate(self.bounds):
            if not b.applies:
                out.append(("does not apply", "premise failed: " + "; ".join(q.short() for q in b.failed)))
                continue
            k = int(np.sum(self.max_increase()[a] <= b.excess))
            lo, hi = clopper_pearson(k, self.draws)
            if k / self.draws >= 0.25:
                out.append(("holds", f"{k} of {self.draws} draws stay under L(θ) + {b.excess:.4g} at every sampled t "
                                     f"(≥ 1/4 needed)"))
            elif hi < 0.25:
                out.append(("fails", f"{k} of {self.draws} draws under the bound; 95% upper limit {hi:.3f} < 1/4"))
            else:
                out.append(("inconclusive", f"{k} of {self.draws} draws under the bound; 95% interval "
                                            f"[{lo:.3f}, {hi:.3f}] contains 1/4"))
        return out

    def summary(self) -> dict[str, Any]:
        inc = self.max_increase()
        rng = self.zero_output_loss - self.base_loss
        ex = np.array([b.excess for b in self.bounds]) if self.bounds else np.full(self.ps.shape, np.nan)
        verdicts = self.verdicts()
        return {
            "ps": self.ps.tolist(), "ts": self.ts.tolist(), "draws": self.draws, "base_loss": self.base_loss,
            "base_acc": self.base_acc, "epsilon": self.epsilon, "sqrt_p_eps": self.scale().tolist(),
            "explicit_excess": ex.tolist(), "fraction_under_explicit_bound": self.fraction_under(ex).tolist(),
            "verdict": [v for v, _ in verdicts], "reason": [r for _, r in verdicts],
            "C_quarter": self.constant_quarter().tolist(),
            "loss_range": float(rng) if rng > 0 else None,
            "vacuity_ratio": (self.scale() / rng).tolist() if rng > 0 else None,
            "max_increase_median": np.median(inc, axis=1).tolist(),
            "max_increase_q25": np.quantile(inc, 0.25, axis=1).tolist(),
            "max_increase_max": inc.max(axis=1).tolist(),
            "end_loss_median": np.median(self.losses[:, :, -1], axis=1).tolist(),
            "end_acc_median": np.median(self.accs[:, :, -1], axis=1).tolist(),
            "kept_fraction_mean": self.kept_fraction.mean(axis=1).tolist(),
            "premises": [[q.to_dict() for q in b.premises] for b in self.bounds],
            "bounds": [b.to_dict() for b in self.bounds],
        }


def check_lemma3(net: _nets.Net, x, y, key: Array, *, ps: Sequence[float] = (0.1, 0.25, 0.5, 0.75),
                 draws: int = 50, n_t: int = 11, noise: _cushions.Cushions | None = None,
                 loss: Loss | str = cross_entropy, draws_noise: int = 5, **measure_kw) -> Lemma3Check:
    """Lemma 3 on the sample set ``(x, y)``: ``draws`` Algorithm 1 masks for each ``p`` in ``ps``, loss on
    ``n_t`` equally spaced points of each segment ``θ → θ^1``, against the explicit bound at that ``p``.

    ``noise`` is ``θ``'s :class:`~stability.theory.cushions.Cushions` on the same ``x`` (measured here with
    ``draws_noise`` mask draws and ``measure_kw`` when not given); what depends on ``p`` (ρ, the ∞-norm and
    column conditions) is re-measured at every ``p`` with ``draws_noise`` fresh draws."""
    loss = get_loss(loss)
    ps_np = np.asarray(ps, np.float64).reshape(-1)
    if ps_np.size == 0 or np.any((ps_np <= 0) | (ps_np >= 1)):
        raise ValueError(f"ps: every p must be in (0, 1), got {ps_np.tolist()}")
    if draws < 1 or n_t < 2:
        raise ValueError(f"need draws >= 1 and n_t >= 2, got draws={draws}, n_t={n_t}")
    if net.depth < 2:
        raise ValueError("Lemma 3 needs a net with at least one hidden layer")
    k_noise, k_masks, k_smooth = jax.random.split(key, 3)
    if noise is None:
        noise = _cushions.measure(net, x, k_noise, p=float(ps_np[0]), draws=draws_noise, **measure_kw)
    elif noise.n != np.shape(x)[0]:
        raise ValueError(f"noise was measured on {noise.n} samples, x has {np.shape(x)[0]}")
    bounds = []
    for a, p in enumerate(ps_np):
        at_p = noise if noise.p == p else _cushions.remeasure_smoothness(
            noise, net, x, jax.random.fold_in(k_smooth, a), float(p), draws=draws_noise)
        bounds.append(lemma3_bound(net, at_p, x, y, loss=loss))
    ts = np.linspace(0.0, 1.0, n_t)
    masks = [_cushions.sample_masks(net, k, float(p), draws)
             for k, p in zip(jax.random.split(k_masks, ps_np.size), ps_np)]
    dtype = jax.tree_util.tree_leaves(net)[0].dtype
    # points: (p, draw, t) flattened, plus one unperturbed point at the end
    n_pts = ps_np.size * draws * n_t
    deltas = []
    for l in range(net.depth - 1):
        rows = np.concatenate([np.repeat(m[l], n_t, axis=0) for m in masks])            # (n_pts, h_l)
        deltas.append(jnp.asarray(np.concatenate([rows, np.ones((1, rows.shape[1]))]), dtype))
    tvec = jnp.asarray(np.concatenate([np.tile(ts, ps_np.size * draws), [0.0]]), dtype)
    res = evaluate(segment_point, (net, tuple(deltas), tvec), np.arange(n_pts + 1, dtype=np.float64),
                   x, y, loss=loss)
    shape = (ps_np.size, draws, n_t)
    kept = np.stack([np.mean(np.concatenate([m[l] != 0 for l in range(net.depth - 1)], axis=1), axis=1)
                     for m in masks])
    return Lemma3Check(
        ps=ps_np, ts=ts, base_loss=float(res.loss[-1]), base_acc=float(res.acc[-1]), epsilon=noise.epsilon(),
        losses=res.loss[:-1].reshape(shape), accs=res.acc[:-1].reshape(shape), kept_fraction=kept,
        column_ratio=np.stack([_cushions.column_ratio(net, float(p)) for p in ps_np]), h_min=noise.h_min,
        bounds=tuple(bounds), masks=tuple(masks), zero_output_loss=zero_output_loss(loss, y, net.arch.widths[-1]),
    )
