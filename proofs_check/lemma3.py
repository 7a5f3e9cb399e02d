"""Lemma 3 of Kuditipudi et al. 2019 (Appendix B), checked numerically.

Lemma 3: for an ε-noise stable net θ (Definition 4) and θ^1 = Algorithm 1 with dropout
probability ``Ω̃(1/h_min) < p ≤ 3/4`` on layers ``2..d``, with probability at least 1/4 over the
masks the whole straight segment ``θ_t = θ + t(θ^1 − θ)`` has ``L(θ_t) ≤ L(θ) + Õ(√p·ε)``, provided
every column obeys ``‖[A_i]_j‖ = O(√p)‖A_i‖_F``.

:func:`check_lemma3` draws many masks per ``p``, evaluates the loss along every segment on a ``t``
grid (one batched call: a point is ``net`` with its columns multiplied by ``1 + t(δ − 1)``), and
reports what the lemma speaks about: per ``p`` the fraction of draws whose whole segment stays
under ``L(θ) + √p·ε`` (the Õ constant taken as 1), and ``C_{1/4}``, the smallest constant ``C``
such that a quarter of the draws stay under ``L(θ) + C·√p·ε``. Its premises are reported next to
it (``p ≤ 3/4``, ``p·h_min ≥ 1`` for the ``Ω̃(1/h_min)`` lower end with constants and logs dropped,
the column condition, and Definition 4's side conditions from the :class:`~stability.cushions.Cushions`).
There is no exact claim here: this is evidence, not a certificate.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stability import cushions as _cushions
from stability import nets as _nets
from stability.evaluate import evaluate
from stability.losses import Loss, cross_entropy, get_loss

Array = jax.Array

__all__ = ["Lemma3Check", "check_lemma3", "segment_point"]


def segment_point(theta: tuple[_nets.Net, tuple[Array, ...], Array], t: Array) -> _nets.Net:
    """Point function for :func:`stability.evaluate.evaluate`: ``theta = (net, deltas, ts)`` with
    ``deltas[l]`` of shape ``(n_points, h_l)`` and ``ts`` of shape ``(n_points,)``; point ``t`` (an
    integer index ``k``) is ``θ + ts[k]·(θ^1_k − θ)``, i.e. the columns of hidden unit ``u`` scaled by
    ``1 + ts[k]·(δ_u − 1)``."""
    net, deltas, ts = theta
    k = t.astype(jnp.int32)
    layers = list(net.layers)
    for j, dl in enumerate(deltas, start=1):
        w = layers[j]["w"]
        s = (1.0 + ts[k] * (dl[k] - 1.0)).astype(w.dtype).reshape((1, -1) + (1,) * (w.ndim - 2))
        layers[j] = {**layers[j], "w": w * s}
    return _nets.Net(net.arch, tuple(layers))


@dataclasses.dataclass(frozen=True, eq=False)
class Lemma3Check:
    """Loss along ``θ → θ^1`` for ``draws`` Algorithm 1 masks per ``p``, against ``√p·ε``."""

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
    noise: dict[str, Any]       # Definition 4 side conditions of θ (from Cushions.summary())
    masks: tuple[tuple[np.ndarray, ...], ...] = ()  # per p, per hidden layer: (K, h) multipliers δ

    @property
    def draws(self) -> int:
        return int(self.losses.shape[1])

    def bound(self) -> np.ndarray:
        """``√p·ε`` per ``p``."""
        return np.sqrt(self.ps) * self.epsilon

    def max_increase(self) -> np.ndarray:
        """``max_t L(θ_t) − L(θ)`` per ``(p, draw)``."""
        return self.losses.max(axis=2) - self.base_loss

    def fraction_under(self, constant: float = 1.0) -> np.ndarray:
        """Fraction of draws whose whole segment stays ``≤ L(θ) + constant·√p·ε`` (Lemma 3 says ≥ 1/4)."""
        return np.mean(self.max_increase() <= constant * self.bound()[:, None], axis=1)

    def constant_quarter(self) -> np.ndarray:
        """``C_{1/4}``: the smallest ``C`` with a quarter of the draws under ``L(θ) + C·√p·ε``."""
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.maximum(self.max_increase(), 0.0) / self.bound()[:, None]
        k = max(1, math.ceil(self.draws / 4))
        return np.sort(ratio, axis=1)[:, k - 1]

    def premises(self) -> dict[str, Any]:
        """The lemma's premises, per ``p`` where they depend on it."""
        return {
            "p_le_3_4": [bool(p <= 0.75) for p in self.ps],
            "p_times_h_min": [float(p * self.h_min) for p in self.ps],
            "column_ratio_max": [float(np.nanmax(r)) for r in self.column_ratio],
            "rho_ge_3d": self.noise.get("side_conditions", {}).get("rho_ge_3d"),
            "inf_norm_constant_max": self.noise.get("side_conditions", {}).get("inf_norm_constant_max"),
        }

    def summary(self) -> dict[str, Any]:
        inc = self.max_increase()
        return {
            "ps": self.ps.tolist(), "ts": self.ts.tolist(), "draws": self.draws, "base_loss": self.base_loss,
            "base_acc": self.base_acc, "epsilon": self.epsilon, "sqrt_p_eps": self.bound().tolist(),
            "fraction_under_sqrt_p_eps": self.fraction_under().tolist(),
            "lemma_holds_with_constant_1": [bool(f >= 0.25) for f in self.fraction_under()],
            "C_quarter": self.constant_quarter().tolist(),
            "max_increase_median": np.median(inc, axis=1).tolist(),
            "max_increase_q25": np.quantile(inc, 0.25, axis=1).tolist(),
            "max_increase_max": inc.max(axis=1).tolist(),
            "end_loss_median": np.median(self.losses[:, :, -1], axis=1).tolist(),
            "end_acc_median": np.median(self.accs[:, :, -1], axis=1).tolist(),
            "kept_fraction_mean": self.kept_fraction.mean(axis=1).tolist(),
            "premises": self.premises(),
        }


def check_lemma3(net: _nets.Net, x, y, key: Array, *, ps: Sequence[float] = (0.1, 0.25, 0.5, 0.75),
                 draws: int = 50, n_t: int = 11, noise: _cushions.Cushions | None = None,
                 loss: Loss | str = cross_entropy, draws_noise: int = 5, **measure_kw) -> Lemma3Check:
    """Lemma 3 on the sample set ``(x, y)``: ``draws`` Algorithm 1 masks for each ``p`` in ``ps``,
    loss on ``n_t`` equally spaced points of each segment ``θ → θ^1``, compared with ``√p·ε``.

    ``noise`` is ``θ``'s :class:`~stability.cushions.Cushions` on the same ``x`` (measured here with
    ``draws_noise`` mask draws and ``measure_kw`` when not given); its ``ε`` (Definition 4) does not
    depend on ``p`` or on the masks."""
    loss = get_loss(loss)
    ps_np = np.asarray(ps, np.float64).reshape(-1)
    if ps_np.size == 0 or np.any((ps_np <= 0) | (ps_np >= 1)):
        raise ValueError(f"every p must be in (0, 1), got {ps_np.tolist()}")
    if draws < 1 or n_t < 2:
        raise ValueError(f"need draws >= 1 and n_t >= 2, got draws={draws}, n_t={n_t}")
    if net.depth < 2:
        raise ValueError("Lemma 3 needs a net with at least one hidden layer")
    k_noise, k_masks = jax.random.split(key)
    if noise is None:
        noise = _cushions.measure(net, x, k_noise, draws=draws_noise, **measure_kw)
    elif noise.n != np.shape(x)[0]:
        raise ValueError(f"noise was measured on {noise.n} samples, x has {np.shape(x)[0]}")
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
        noise=noise.summary(), masks=tuple(masks),
    )
