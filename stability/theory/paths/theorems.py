"""Theorem 1 (dropout stability), Lemma 3, Theorem 2 (10 segments) and Theorem 3 (13 segments).

docs/THEORY.md §4 / Appendices A–B. Each builder checks its premises and raises a ``ValueError`` that
names the premise; the returned :class:`~stability.theory.paths.path.Path` records in ``meta`` what
was drawn (Algorithm 1 masks, resamples, the narrow net's placement).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import jax
import numpy as np

from stability.core import nets as _nets
from stability.theory.cushions import column_ratio
from stability.theory.dropout import KeptSets, algorithm1, kept_sets_from_deltas, make_kept_sets
from stability.core import units as _units
from stability.core.units import EditNet, live_units, nonzero_units
from stability.theory.paths.lemma1 import lemma1
from stability.theory.paths.lemma2 import lemma2, lemma2_states
from stability.theory.paths.path import (DropoutDraw, Part, Path, Segment, Theorem1Info, Theorem2Info,
                                         Theorem3Info)

__all__ = ["theorem1", "lemma3", "theorem2", "theorem3", "embed_narrow", "narrow_widths"]


def _relabel(path: Path, old: str, new: str) -> list[Segment]:
    return [Segment(s.start, s.end, s.claim, s.label.replace(old, new, 1)) for s in path.segments]


def _parts(*named: tuple[str, int]) -> list[Part]:
    out, k = [], 0
    for name, n in named:
        out.append(Part(name, k, k + n))
        k += n
    return out


def theorem1(net_a: _nets.Net, keep_a: KeptSets | Sequence[Sequence[int]], net_b: _nets.Net,
             keep_b: KeptSets | Sequence[Sequence[int]], r: float | Sequence[float] | None = None,
             compact: bool = False) -> Path:
    """Theorem 1: Lemma 1(θ_A) + Lemma 2(θ^1_A → θ^1_B) + reversed Lemma 1(θ_B).

    Loss ≤ max{L(θ_A), L(θ_B)} + ε for ε-dropout-stable nets with these kept sets. Segment count
    ``2(6d−10)+8`` (literal) or ``2(4d−6)+8`` (``compact=True``).
    """
    _nets.check_same_arch(net_a, net_b, "Theorem 1's nets θ_A and θ_B")
    ka, kb = make_kept_sets(net_a, keep_a, r), make_kept_sets(net_b, keep_b, r)
    pa = lemma1(net_a, ka, compact=compact)
    pb = lemma1(net_b, kb, compact=compact)
    mid = lemma2(pa.end, pb.end)
    segs = (_relabel(pa, "Lemma 1,", "Lemma 1 (θ_A),") + _relabel(mid, "Lemma 2,", "Lemma 2 (θ¹_A→θ¹_B),")
            + _relabel(pb.reversed(), "Lemma 1,", "Lemma 1 (θ_B, reversed),"))
    return Path(segs, name="Theorem 1" + (" (compact)" if compact else ""),
                parts=_parts(("Lemma 1 (θ_A)", len(pa)), ("Lemma 2", len(mid)), ("Lemma 1 (θ_B) reversed", len(pb))),
                info=Theorem1Info(compact, ka.to_dict(), kb.to_dict()), check=True, connects=(net_a, net_b))


def _check_p(p: float, what: str) -> None:
    if not (0.0 < p <= 0.75):
        raise ValueError(f"{what} premise violated: needs a dropout probability 0 < p ≤ 3/4, got p = {p}")


def lemma5_min_dropped(p: float, h: int) -> int:
    """Lemma 5's event for a layer of ``h`` units: at least ``2p/3`` of them dropped, i.e. at least
    ``⌈2p·h/3⌉`` (a tolerance of 1e-9 keeps ``2p·h/3`` that is an integer up to rounding exact)."""
    return int(math.ceil(2 * p * h / 3 - 1e-9))


def lemma3(net: _nets.Net, p: float, key: jax.Array, min_dead: Sequence[int] | None = None,
           max_resamples: int = 200, what: str = "Lemma 3") -> Path:
    """Lemma 3: the single straight segment θ → θ^1 = Algorithm 1 on layers 2..d (claim
    ``dropout_interpolation``: the bound is probabilistic, only measured).

    Premise ``p ≤ 3/4`` is checked; ``Ω̃(1/h_min) < p`` is asymptotic and recorded as ``p·h_min``.
    ``min_dead[i-1]``: redraw (``fold_in(key, attempt)``) until hidden layer ``i`` has that many
    dropped columns; raise after ``max_resamples`` draws. ``meta`` holds the masks, kept sets,
    draws used and the column condition ``max_j ‖[A_i]_j‖/(√p‖A_i‖_F)`` per layer 2..d (operator norms,
    :func:`stability.theory.cushions.column_ratio`).
    """
    _check_p(p, what)
    if net.depth < 2:
        raise ValueError(f"{what} needs a net with at least one hidden layer")
    hs = _nets.widths(net)
    need = [0] * len(hs) if min_dead is None else [int(m) for m in min_dead]
    for attempt in range(max_resamples):
        k = key if attempt == 0 else jax.random.fold_in(key, attempt)
        theta1, deltas = algorithm1(net, p, k)
        dropped = [int(np.sum(np.asarray(dl) == 0)) for dl in deltas]
        if all(dr >= m for dr, m in zip(dropped, need)):
            break
    else:
        raise ValueError(
            f"{what}: no Algorithm 1 draw with p = {p} left at least {need} dropped columns per hidden layer "
            f"(widths {list(hs)}) in {max_resamples} draws; the premise 'at least that many zero columns' fails")
    draw = DropoutDraw(p=float(p), draws=attempt + 1, dropped=tuple(dropped),
                       deltas=tuple(np.asarray(x) for x in deltas), kept=kept_sets_from_deltas(deltas, p).to_dict(),
                       p_times_hmin=float(p * min(hs)), column_condition=tuple(column_ratio(net, p)[1:].tolist()))
    seg = Segment(net, theta1, "dropout_interpolation", f"{what}, θ→θ¹ (Algorithm 1, p = {p:g})")
    return Path([seg], name=what, info=draw, connects=(net, theta1))


def theorem2(net_a: _nets.Net, net_b: _nets.Net, key: jax.Array, p: float = 0.75,
             max_resamples: int = 200) -> Path:
    """Theorem 2 (10 segments): Lemma 3(θ_A) + Lemma 2(θ^1_A → θ^1_B) + reversed Lemma 3(θ_B).

    ``p = 3/4`` as in the proof; a draw that leaves fewer than ``max(⌈h_i/2⌉, ⌈2p·h_i/3⌉)`` zero
    columns in some layer is redrawn (recorded in ``info``): Lemma 2 needs half the units dead and the
    proof conditions on Lemma 5's event (at least 2p/3 dropped).
    """
    _nets.check_same_arch(net_a, net_b, "Theorem 2's nets θ_A and θ_B")
    _check_p(p, "Theorem 2")
    need = [max(math.ceil(h / 2), lemma5_min_dropped(p, h)) for h in _nets.widths(net_a)]
    ka, kb = jax.random.split(key)
    la = lemma3(net_a, p, ka, need, max_resamples, "Lemma 3 (θ_A)")
    lb = lemma3(net_b, p, kb, need, max_resamples, "Lemma 3 (θ_B)")
    mid = lemma2(la.end, lb.end)
    segs = (list(la.segments) + _relabel(mid, "Lemma 2,", "Lemma 2 (θ¹_A→θ¹_B),") + list(lb.reversed().segments))
    return Path(segs, name="Theorem 2",
                parts=_parts(("Lemma 3 (θ_A)", 1), ("Lemma 2", 8), ("Lemma 3 (θ_B) reversed", 1)),
                info=Theorem2Info(float(p), la.info, lb.info), check=True, connects=(net_a, net_b))


# --------------------------------------------------------------------------- Theorem 3


def narrow_widths(narrow: _nets.Net, arch: _nets.Arch) -> tuple[int, ...]:
    """``h*_i``: the narrow net's hidden widths (its own widths, or its nonzero units if it already
    has the wide architecture)."""
    if narrow.arch == arch:
        e = EditNet.of(narrow)
        return tuple(int(nonzero_units(e, i).size) for i in range(1, arch.depth))
    return tuple(int(h) for h in narrow.arch.widths[:-1])


def embed_narrow(narrow: _nets.Net, arch: _nets.Arch, positions: Sequence[Sequence[int]] | None = None) -> _nets.Net:
    """Place a narrow net (same architecture but hidden widths ``h*_i ≤ h_i``) into ``arch`` with zero
    units: its unit ``j`` of hidden layer ``i`` goes to ``positions[i-1][j]`` (default ``j``). A narrow
    net that already has architecture ``arch`` has its nonzero units moved to ``positions``."""
    d = arch.depth
    if narrow.arch.depth != d:
        raise ValueError(f"narrow net has depth {narrow.arch.depth}, the wide nets {d}")
    hs = narrow_widths(narrow, arch)
    if positions is None:
        positions = [np.arange(h) for h in hs]
    positions = [np.asarray(p, np.int64) for p in positions]
    if narrow.arch == arch:
        e = EditNet.of(narrow)
        out = narrow
        for i in range(1, d):
            src = nonzero_units(e, i)
            rest = np.setdiff1d(np.arange(arch.widths[i - 1]), src)
            free = np.setdiff1d(np.arange(arch.widths[i - 1]), positions[i - 1])
            perm = np.empty(arch.widths[i - 1], np.int64)
            perm[positions[i - 1]] = src
            perm[free] = rest
            out = _units.permute_units(out, i, perm)
        return out
    if dataclasses.replace(narrow.arch, widths=arch.widths) != arch:
        raise ValueError(f"the narrow net's architecture differs from the wide one beyond the hidden widths:\n"
                         f"  {narrow.arch}\n  {arch}")
    for i, (hn, hw) in enumerate(zip(hs, arch.widths[:-1]), start=1):
        if hn > hw:
            raise ValueError(f"the narrow net is wider than the wide nets in hidden layer {i}: {hn} > {hw}")
        q = positions[i - 1]
        if q.size != hn or np.unique(q).size != hn or q.max(initial=0) >= hw:
            raise ValueError(f"positions of hidden layer {i} must be {hn} distinct indices below {hw}")
    n = EditNet.of(narrow)
    dtype = n.dtype
    w = [np.zeros(s, dtype) for s in arch.weight_shapes()]
    b = [np.zeros((s[0],), dtype) if arch.bias else None for s in arch.weight_shapes()]
    e = EditNet(arch, w, b)
    for i in range(1, d + 1):
        rows = positions[i - 1] if i < d else np.arange(arch.widths[-1])
        cols = positions[i - 2] if i > 1 else None
        e.set_block(i, rows, cols, n.w[i - 1])
        e.set_bias(i, rows, n.b[i - 1])
    return e.to_net()


def theorem3(net_a: _nets.Net, net_b: _nets.Net, narrow: _nets.Net, p: float, key: jax.Array,
             max_resamples: int = 200) -> Path:
    """Theorem 3 (13 segments): θ_A → θ^1_A (Lemma 3) → 8 segments of Lemma 2 to a permutation of the
    narrow net θ* whose nonzero units avoid θ^1_B's → Lemma 2's first three segments to θ^1_B (no
    permutation) → θ_B (reversed Lemma 3).

    ``narrow``: θ* with hidden widths ``h*_i`` (its own narrow architecture, or already embedded in
    the wide one with zero units). Premise ``1.5·max_i h*_i/h_i ≤ p ≤ 3/4`` (checked); draws of
    Algorithm 1 are redrawn until every hidden layer has at least ``max(h*_i, ⌈2p·h_i/3⌉)`` zero
    columns: Lemma 2's need of ``h*_i`` free units and Lemma 5's event (at least 2p/3 dropped), on
    which the proof of Theorem 3 conditions.
    Loss ≤ max{L(θ_A)+Õ(√p ε), L(θ_B)+Õ(√p ε), L(θ*)}.
    """
    _nets.check_same_arch(net_a, net_b, "Theorem 3's nets θ_A and θ_B")
    arch = net_a.arch
    if narrow.arch != arch and dataclasses.replace(narrow.arch, widths=arch.widths) != arch:
        raise ValueError("Theorem 3: the narrow net θ* must have the wide nets' architecture up to hidden widths;"
                         f"\n  {narrow.arch}\n  {arch}")
    if jax.tree_util.tree_leaves(narrow)[0].dtype != jax.tree_util.tree_leaves(net_a)[0].dtype:
        raise ValueError("Theorem 3: the narrow net θ* has a different dtype from θ_A, θ_B")
    hs = _nets.widths(net_a)
    hstar = narrow_widths(narrow, arch)
    ratio = max(hn / h for hn, h in zip(hstar, hs))
    if not (1.5 * ratio <= p <= 0.75):
        raise ValueError(f"Theorem 3 premise 1.5·max_i h*_i/h_i ≤ p ≤ 3/4 violated: narrow widths {list(hstar)}, "
                         f"wide widths {list(hs)}, 1.5·max h*/h = {1.5 * ratio:.4g}, p = {p} "
                         f"({'the narrow net is too wide for p' if p < 1.5 * ratio else 'p > 3/4'})")
    need = [max(hn, lemma5_min_dropped(p, h)) for hn, h in zip(hstar, hs)]
    ka, kb = jax.random.split(key)
    la = lemma3(net_a, p, ka, need, max_resamples, "Lemma 3 (θ_A)")
    lb = lemma3(net_b, p, kb, need, max_resamples, "Lemma 3 (θ_B)")
    eb = EditNet.of(lb.end)
    positions = [np.setdiff1d(np.arange(h), live_units(eb, i))[: hstar[i - 1]] for i, h in enumerate(hs, start=1)]
    star = embed_narrow(narrow, arch, positions)
    ea, es = EditNet.of(la.end), EditNet.of(star)
    mid1 = lemma2_states(ea, es, permute=True, name="Lemma 2 (θ¹_A→θ*)")
    if not mid1[-1][0].equal(es):
        raise AssertionError("Theorem 3: Lemma 2 did not end exactly at the placed narrow net (bug)")
    mid2 = lemma2_states(es, eb, permute=False, name="Lemma 2 segs 1–3 (θ*→θ¹_B)")
    if not mid2[-1][0].equal(eb):
        raise AssertionError("Theorem 3: Lemma 2's first three segments did not end exactly at θ¹_B (bug)")
    seq = [la.end] + [s.to_net() for s, _, _ in mid1[:-1]] + [star] + [s.to_net() for s, _, _ in mid2[:-1]] + [lb.end]
    states = mid1 + mid2
    mids = [Segment(seq[j], seq[j + 1], c, lab) for j, (_, c, lab) in enumerate(states)]
    segs = list(la.segments) + mids + list(lb.reversed().segments)
    info = Theorem3Info(p=float(p), narrow_widths=tuple(hstar), narrow_positions=tuple(tuple(q.tolist()) for q in positions),
                        narrow_waypoint=1 + len(mid1), draw_a=la.info, draw_b=lb.info)
    return Path(segs, name="Theorem 3",
                parts=_parts(("Lemma 3 (θ_A)", 1), ("Lemma 2 → θ*", 8), ("Lemma 2 segs 1–3 → θ¹_B", 3),
                             ("Lemma 3 (θ_B) reversed", 1)), info=info, check=True, connects=(net_a, net_b))
