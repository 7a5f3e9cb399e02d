"""Dropout stability (Definition 1), Algorithm 1, fixed-count dropout and searches for kept sets.

Kuditipudi et al. 2019, docs/THEORY.md §1. Everything goes through the hidden-unit view of
:mod:`stability.core.nets`: dropping hidden unit ``u`` of layer ``i`` scales its *column*
(``A_{i+1}[:, u]``, i.e. axis 1 of its weight), so dense and channel-wise conv
nets (Remark 1: a unit is a channel) share one implementation.

* :class:`KeptSets` — one kept set ``K_i`` and one rescale ``r_i > 0`` per hidden layer.
* :func:`theta_i` — the paper's ``θ^i``: for ``j = i..d−1``, ``A_{j+1}[:, K_j] *= r_j`` and
  ``A_{j+1}[:, D_j] = 0``. As in the proof of Lemma 1 ("without loss of generality") ONE
  kept set per layer serves every ``θ^i``.
* :func:`dropout_stability` — the measured ``ε = max_i L(θ^i) − L(θ)``.
* :func:`algorithm1` — Algorithm 1 on layers ``2..d`` (never ``A_1``): i.i.d. column
  multipliers ``δ_j ∈ {0, 1/(1−p)}``; whole input channels for conv nets.
* :func:`fixed_count` — Appendix D.1: exactly ``⌊h(1−p)⌋`` random units kept, rescaled by ``1/(1−p)``.
* :func:`best_of_n` (the paper's best of 20 draws) and :func:`greedy_search` (unit importance,
  then importance-guided swaps and a rescale line search), reported side by side by the demo.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stability.core import checks as _checks
from stability.core import mesh as _mesh
from stability.core import nets as _nets
from stability.core import units as _units
from stability.core.evaluate import evaluate
from stability.core.losses import Loss, check_targets, cross_entropy, get_loss

Array = jax.Array

__all__ = [
    "KeptSets", "make_kept_sets", "column_scales", "theta_i", "thetas", "Stability", "dropout_stability",
    "evaluate_kept_sets", "algorithm1", "algorithm1_deltas", "kept_sets_from_deltas", "fixed_count",
    "unit_importance", "importance_kept_sets", "SearchResult", "best_of_n", "greedy_search",
    "scaled_point",
]


# --------------------------------------------------------------------------- kept sets


@dataclasses.dataclass(frozen=True, eq=False)
class KeptSets:
    """Kept units ``K_i`` (sorted, unique) and rescales ``r_i`` for hidden layers ``i = 1..d−1``.

    ``keep[i-1]`` and ``r[i-1]`` belong to hidden layer ``i`` (paper numbering). Definition 1
    asks ``|K_i| ≤ ⌊h_i/2⌋``; :meth:`check` enforces it when ``definition1=True`` (the
    experiments' fixed-count dropout keeps more, e.g. ``⌊0.8·h⌋``).
    """

    keep: tuple[np.ndarray, ...]
    r: tuple[float, ...]
    mask_sizes: tuple[int | None, ...] = ()
    """Per layer, the length of the boolean mask it was given as (``None``: given as indices); checked
    against the width by :meth:`check`."""

    def __post_init__(self) -> None:
        keep, sizes = [], []
        for i, k in enumerate(self.keep, start=1):
            idx, size = _kept_indices(k, i)
            keep.append(idx)
            sizes.append(size)
        keep = tuple(keep)
        if not self.mask_sizes:
            object.__setattr__(self, "mask_sizes", tuple(sizes))
        r = tuple(float(v) for v in self.r)
        if len(r) != len(keep):
            raise ValueError(f"KeptSets needs one rescale per hidden layer: {len(keep)} kept sets, {len(r)} rescales")
        for i, v in enumerate(r, start=1):
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"rescale r_{i} must be a finite positive number, got {v}")
        object.__setattr__(self, "keep", keep)
        object.__setattr__(self, "r", r)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(int(k.size) for k in self.keep)

    def dropped(self, net: _nets.Net) -> tuple[np.ndarray, ...]:
        """The complements ``D_i``."""
        return tuple(np.setdiff1d(np.arange(h), k) for h, k in zip(_nets.widths(net), self.keep))

    def check(self, net: _nets.Net, definition1: bool = True, what: str = "kept sets") -> None:
        """Raise a ``ValueError`` naming the violated premise (layer count, index range, Definition 1 size)."""
        hs = _nets.widths(net)
        if len(self.keep) != len(hs):
            raise ValueError(f"{what}: need one kept set per hidden layer ({len(hs)}), got {len(self.keep)}")
        for i, (h, size) in enumerate(zip(hs, self.mask_sizes), start=1):
            if size is not None and size != h:
                raise ValueError(f"{what}: the boolean mask of hidden layer {i} has {size} entries, the layer has "
                                 f"{h} units")
        for i, (h, k) in enumerate(zip(hs, self.keep), start=1):
            if k.size and (k[0] < 0 or k[-1] >= h):
                raise ValueError(f"{what}: kept set of hidden layer {i} has indices outside 0..{h - 1}: {k.tolist()}")
            if definition1 and k.size > h // 2:
                raise ValueError(
                    f"{what}: Definition 1 premise |K_{i}| ≤ ⌊h_{i}/2⌋ violated in hidden layer {i}: "
                    f"|K_{i}| = {k.size} > ⌊{h}/2⌋ = {h // 2}")

    def to_dict(self) -> dict[str, Any]:
        return {"keep": [k.tolist() for k in self.keep], "r": list(self.r)}


def _kept_indices(k: Any, i: int) -> tuple[np.ndarray, int | None]:
    """One layer's kept set as sorted unique int64 indices, and the mask length when ``k`` is a boolean mask.

    Accepted: integer indices (no negatives, no duplicates) or a boolean mask (what Algorithm 1 draws). Float,
    negative or duplicate indices are refused with a message naming the hidden layer ``i``."""
    a = np.asarray(k)
    if a.ndim != 1 and a.size:
        raise ValueError(f"kept set of hidden layer {i}: expected a 1-D list of unit indices or a boolean mask, "
                         f"got an array of shape {a.shape}")
    a = a.reshape(-1)
    if a.dtype == bool:
        return np.flatnonzero(a).astype(np.int64), int(a.size)
    if a.size == 0:
        return np.zeros(0, np.int64), None
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"kept set of hidden layer {i}: unit indices must be integers (or a boolean mask), got "
                         f"{a.dtype} values {a[:6].tolist()}")
    if a.min() < 0:
        raise ValueError(f"kept set of hidden layer {i}: unit indices must be >= 0, got {a[a < 0][:6].tolist()}")
    u, counts = np.unique(a, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"kept set of hidden layer {i}: duplicate unit indices {u[counts > 1][:6].tolist()}")
    return u.astype(np.int64), None


def make_kept_sets(net: _nets.Net, keep: KeptSets | Sequence[Sequence[int]],
                   r: float | Sequence[float] | None = None) -> KeptSets:
    """Normalise ``keep`` (a :class:`KeptSets`, or per hidden layer a list of unit indices or a boolean mask)
    and ``r`` (a number, one per hidden layer, or ``None`` = take it from ``keep`` / default 2); index ranges
    and mask lengths are checked against ``net`` (Definition 1's size limit is checked by the builders)."""
    n_hidden = net.depth - 1
    if isinstance(keep, KeptSets):
        if r is None:
            keep.check(net, definition1=False)
            return keep
        sets, sizes = keep.keep, keep.mask_sizes
    else:
        if isinstance(keep, np.ndarray) and keep.ndim == 2 and keep.dtype == bool:
            keep = list(keep)
        sets, sizes = tuple(keep), ()
    if r is None:
        r = 2.0
    rs = (float(r),) * n_hidden if np.isscalar(r) else tuple(float(v) for v in r)
    if len(sets) != n_hidden or len(rs) != n_hidden:
        raise ValueError(f"need one kept set and one rescale per hidden layer ({n_hidden}); "
                         f"got {len(sets)} kept sets and {len(rs)} rescales")
    ks = KeptSets(tuple(sets), rs, sizes)
    ks.check(net, definition1=False)
    return ks


def column_scales(net: _nets.Net, ks: KeptSets, i: int) -> list[np.ndarray]:
    """Per hidden layer ``j`` the column multipliers of ``θ^i``: ``r_j`` on ``K_j``, 0 on ``D_j``
    for ``j ≥ i``; all ones for ``j < i``."""
    out = []
    for j, (h, k, r) in enumerate(zip(_nets.widths(net), ks.keep, ks.r), start=1):
        s = np.ones(h, dtype=np.float64)
        if j >= i:
            s[:] = 0.0
            s[k] = r
        out.append(s)
    return out


_scale_cols = _units.scale_cols
_scale_cols_jit = jax.jit(_units.scale_cols)


def theta_i(net: _nets.Net, keep: KeptSets | Sequence[Sequence[int]], i: int,
            r: float | Sequence[float] | None = None) -> _nets.Net:
    """``θ^i`` of Definition 1: dropout on hidden layers ``i..d−1`` with ONE kept set per layer
    (the same ``K_j`` for every ``θ^i``, as the proof of Lemma 1 assumes)."""
    ks = make_kept_sets(net, keep, r)
    ks.check(net, definition1=False)
    if not 1 <= i < net.depth:
        raise IndexError(f"θ^i needs 1 ≤ i < d = {net.depth}, got i = {i}")
    return _scale_cols_jit(net, column_scales(net, ks, i))


def thetas(net: _nets.Net, keep: KeptSets | Sequence[Sequence[int]],
           r: float | Sequence[float] | None = None) -> list[_nets.Net]:
    """``[θ^1, …, θ^{d−1}]`` (one kept set per layer for all of them)."""
    return [theta_i(net, keep, i, r) for i in range(1, net.depth)]


def scaled_point(theta: tuple[_nets.Net, tuple[Array, ...]], t: Array) -> _nets.Net:
    """Point function: ``theta = (net, scales)`` with ``scales[j]`` of shape ``(n_points, h_j)``;
    point ``t`` (an integer index) is ``net`` with its columns multiplied by ``scales[·][t]``."""
    net, scales = theta
    k = t.astype(jnp.int32)
    return _scale_cols(net, [s[k] for s in scales])


def _eval_scales(net: _nets.Net, scale_rows: list[list[np.ndarray]], x, y, loss: Loss, **kw):
    """Evaluate many column-scalings of one net in one batched call (no stack of nets materialised)."""
    stacked = tuple(_mesh.to_device(np.stack([row[j] for row in scale_rows]), jax.tree_util.tree_leaves(net)[0].dtype)
                    for j in range(net.depth - 1))
    return evaluate(scaled_point, (net, stacked), np.arange(len(scale_rows), dtype=np.float64), x, y,
                    loss=loss, **kw)


@dataclasses.dataclass(frozen=True)
class Stability:
    """Measured dropout stability: ``eps = max_i L(θ^i) − L(θ)`` (Definition 1)."""

    base_loss: float
    base_acc: float
    losses: tuple[float, ...]   # L(θ^i), i = 1..d−1
    accs: tuple[float, ...]
    kept: KeptSets

    @property
    def eps(self) -> float:
        return float(max(self.losses) - self.base_loss) if self.losses else 0.0

    @property
    def worst_i(self) -> int:
        return int(np.argmax(self.losses)) + 1

    def to_dict(self) -> dict[str, Any]:
        return {"eps": self.eps, "base_loss": self.base_loss, "base_acc": self.base_acc,
                "theta_i_loss": list(self.losses), "theta_i_acc": list(self.accs), "worst_i": self.worst_i,
                "kept_sizes": list(self.kept.sizes), "r": list(self.kept.r)}


def evaluate_kept_sets(net: _nets.Net, candidates: Sequence[KeptSets], x, y, loss: Loss | str = cross_entropy,
                       **kw) -> list[Stability]:
    """:func:`dropout_stability` of many candidate kept sets in ONE batched evaluation."""
    loss = get_loss(loss)
    d = net.depth
    rows = [[np.ones(h) for h in _nets.widths(net)]]
    for ks in candidates:
        ks.check(net, definition1=False)
        rows += [column_scales(net, ks, i) for i in range(1, d)]
    res = _eval_scales(net, rows, x, y, loss, **kw)
    out = []
    for c, ks in enumerate(candidates):
        sl = slice(1 + c * (d - 1), 1 + (c + 1) * (d - 1))
        out.append(Stability(float(res.loss[0]), float(res.acc[0]), tuple(float(v) for v in res.loss[sl]),
                             tuple(float(v) for v in res.acc[sl]), ks))
    return out


def dropout_stability(net: _nets.Net, keep: KeptSets | Sequence[Sequence[int]], x, y,
                      r: float | Sequence[float] | None = None, loss: Loss | str = cross_entropy,
                      **kw) -> Stability:
    """Measured ε-dropout stability of ``net`` for one kept set per layer: ``L(θ)`` and every ``L(θ^i)``."""
    return evaluate_kept_sets(net, [make_kept_sets(net, keep, r)], x, y, loss, **kw)[0]


# --------------------------------------------------------------------------- Algorithm 1


def algorithm1_deltas(key: Array, net: _nets.Net, p: float) -> tuple[np.ndarray, ...]:
    """The multipliers of Algorithm 1 for the columns of ``A_2..A_d``: per hidden layer ``i``,
    i.i.d. ``δ_j = 0`` w.p. ``p`` and ``1/(1−p)`` w.p. ``1−p`` (independent keys per layer)."""
    _checks.number("p", p, lo=0.0, hi=1.0, lo_open=True, hi_open=True,
                   allowed="a dropout probability in (0, 1) (Algorithm 1)")
    dtype = jax.tree_util.tree_leaves(net)[0].dtype
    keys = jax.random.split(key, max(1, net.depth - 1))
    out = []
    for i, h in enumerate(_nets.widths(net)):
        keep = np.asarray(jax.random.bernoulli(keys[i], 1.0 - p, (h,)))
        out.append(np.where(keep, np.asarray(1.0 / (1.0 - p), dtype), np.asarray(0.0, dtype)))
    return tuple(out)


def algorithm1(net: _nets.Net, p: float, key: Array) -> tuple[_nets.Net, tuple[np.ndarray, ...]]:
    """Algorithm 1 (``Dropout(A_i, p)``) applied to layers ``2..d`` (never ``A_1``, footnote 3).

    Returns ``(θ̂, deltas)``. Columns are hidden units, so for conv nets whole input channels are
    dropped (Remark 1). Only columns change: a dropped unit is *dead* (its row stays)."""
    deltas = algorithm1_deltas(key, net, p)
    return _scale_cols_jit(net, deltas), deltas


def kept_sets_from_deltas(deltas: Sequence[np.ndarray], p: float) -> KeptSets:
    """The kept sets ``{j : δ_j ≠ 0}`` of an Algorithm 1 draw, with ``r = 1/(1−p)``."""
    _checks.probability("p", p)
    return KeptSets(tuple(np.flatnonzero(np.asarray(d) != 0) for d in deltas), (1.0 / (1.0 - p),) * len(deltas))


# --------------------------------------------------------------------------- fixed-count dropout and searches


def _fixed_size(h: int, p: float) -> int:
    return int(math.floor(h * (1.0 - p) + 1e-9))


def fixed_count(net: _nets.Net, p: float, key: Array) -> KeptSets:
    """Appendix D.1: keep exactly ``⌊h_i(1−p)⌋`` uniformly random units per hidden layer, ``r = 1/(1−p)``."""
    _checks.number("p", p, lo=0.0, hi=1.0, lo_open=True, hi_open=True,
                   allowed="a dropout probability in (0, 1) (fixed-count dropout)")
    keys = jax.random.split(key, max(1, net.depth - 1))
    keep = []
    for i, h in enumerate(_nets.widths(net)):
        perm = np.asarray(jax.random.permutation(keys[i], h))
        keep.append(np.sort(perm[:_fixed_size(h, p)]))
    return KeptSets(tuple(keep), (1.0 / (1.0 - p),) * len(keep))


_forward_jit = jax.jit(_nets.forward)


def unit_importance(net: _nets.Net, x, max_samples: int = 2048) -> list[np.ndarray]:
    """Per hidden layer, ``importance_u = E_x[φ(x^i)_u] · ‖column_u‖`` (mean activation over samples
    and positions times the Frobenius norm of the unit's outgoing column)."""
    _checks.positive_int("max_samples", max_samples)
    x = jnp.asarray(x)[:max_samples]
    pre = _forward_jit(net, x)
    out = []
    for i in range(1, net.depth):
        act = np.asarray(jax.nn.relu(pre[i - 1]), dtype=np.float64)
        mean_act = act.reshape(-1, act.shape[-1]).mean(axis=0)
        out.append(mean_act * _units.col_norms(net, i))
    return out


def importance_kept_sets(net: _nets.Net, x, p: float = 0.5, r: float | None = None) -> KeptSets:
    """Keep the ``⌊h_i(1−p)⌋`` most important units of every hidden layer (:func:`unit_importance`)."""
    _checks.probability("p", p)
    if r is not None:
        _checks.positive("r", r)
    imp = unit_importance(net, x)
    keep = [np.sort(np.argsort(-s, kind="stable")[:_fixed_size(s.size, p)]) for s in imp]
    return KeptSets(tuple(keep), (r if r is not None else 1.0 / (1.0 - p),) * len(keep))


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """Best kept sets a search found, their stability, and the ε of every candidate it tried."""

    method: str
    best: Stability
    tried_eps: tuple[float, ...]
    evaluations: int

    @property
    def kept(self) -> KeptSets:
        return self.best.kept

    @property
    def eps(self) -> float:
        return self.best.eps

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "eps": self.eps, "evaluations": self.evaluations,
                "best": self.best.to_dict(), "tried_eps_min": float(min(self.tried_eps)),
                "tried_eps_median": float(np.median(self.tried_eps))}


def best_of_n(net: _nets.Net, x, y, key: Array, p: float = 0.5, n: int = 20, loss: Loss | str = cross_entropy,
              **kw) -> SearchResult:
    """The paper's search (Figure 2 left): ``n`` fixed-count draws, keep the one with the smallest ε
    (``ε = max_i L(θ^i) − L(θ)``), evaluated in one batched call."""
    _checks.probability("p", p)
    _checks.positive_int("n", n)
    check_targets(y, net.arch.widths[-1], loss, "y")
    cands = [fixed_count(net, p, k) for k in jax.random.split(key, n)]
    stabs = evaluate_kept_sets(net, cands, x, y, loss, **kw)
    eps = [s.eps for s in stabs]
    return SearchResult(f"best of {n} random draws", stabs[int(np.argmin(eps))], tuple(eps), n * (net.depth - 1))


def greedy_search(net: _nets.Net, x, y, p: float = 0.5, rounds: int = 8, pool: int = 4,
                  rescales: Sequence[float] = (0.8, 0.9, 1.0, 1.1, 1.25), loss: Loss | str = cross_entropy,
                  **kw) -> SearchResult:
    """Greedy kept-set search by unit importance (the "smarter search" of docs/THEORY.md §1).

    1. Start from the ``⌊h_i(1−p)⌋`` most important units per layer (:func:`unit_importance`).
    2. Steepest descent on ``max_i L(θ^i)``: each round tries, in every layer, swapping one of the
       ``pool`` least important kept units with one of the ``pool`` most important dropped units
       (all candidates in ONE batched evaluation) and accepts the best improving swap.
    3. Line search of one common factor on the rescales ``r_i = c/(1−p)``, ``c ∈ rescales``.
    """
    _checks.probability("p", p)
    _checks.nonneg_int("rounds", rounds)
    _checks.positive_int("pool", pool)
    if len(rescales) == 0:
        raise ValueError("rescales must hold at least one factor > 0, got ()")
    for c in rescales:
        _checks.positive("rescales", c)
    loss = get_loss(loss)
    check_targets(y, net.arch.widths[-1], loss, "y")
    imp = unit_importance(net, x)
    cur = importance_kept_sets(net, x, p)
    best = evaluate_kept_sets(net, [cur], x, y, loss, **kw)[0]
    tried = [best.eps]
    evals = net.depth - 1
    for _ in range(rounds):
        cands = []
        for li, (k, s) in enumerate(zip(cur.keep, imp)):
            dropped = np.setdiff1d(np.arange(s.size), k)
            if k.size == 0 or dropped.size == 0:
                continue
            worst_kept = k[np.argsort(s[k], kind="stable")[:pool]]
            best_dropped = dropped[np.argsort(-s[dropped], kind="stable")[:pool]]
            for a in worst_kept:
                for b in best_dropped:
                    keep = list(cur.keep)
                    keep[li] = np.sort(np.append(k[k != a], b))
                    cands.append(KeptSets(tuple(keep), cur.r))
        if not cands:
            break
        stabs = evaluate_kept_sets(net, cands, x, y, loss, **kw)
        evals += len(cands) * (net.depth - 1)
        tried += [s.eps for s in stabs]
        j = int(np.argmin([s.eps for s in stabs]))
        if stabs[j].eps < best.eps:
            best, cur = stabs[j], stabs[j].kept
        else:
            break
    base_r = 1.0 / (1.0 - p)
    cands = [KeptSets(cur.keep, (base_r * c,) * len(cur.keep)) for c in rescales]
    stabs = evaluate_kept_sets(net, cands, x, y, loss, **kw)
    evals += len(cands) * (net.depth - 1)
    tried += [s.eps for s in stabs]
    j = int(np.argmin([s.eps for s in stabs]))
    if stabs[j].eps < best.eps:
        best = stabs[j]
    return SearchResult("greedy (importance + swaps + rescale)", best, tuple(tried), evals)
