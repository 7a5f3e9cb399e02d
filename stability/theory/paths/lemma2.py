"""Lemma 4 (permuting units, 5 segments) and Lemma 2 (connecting two half-zero nets, 8 segments).

Appendix A with index sets, docs/THEORY.md §3, including its two fixes to the proofs:

* Lemma 4, S5 also zeroes every stale row left on a slot that is not a target (the proof
  forgets them; without this the end point is not exactly the permuted net).
* Lemma 2 accepts end points with *dead-but-not-zero* units (Algorithm 1 zeroes columns only):
  their rows are zeroed inside Seg 1 and the target's dead rows are restored inside the last
  (b) segment, so the count stays 8.

Everything is written on the hidden-unit view (rows = axis 0 of ``layers[i-1]``, columns =
axis 1 of ``layers[i]``), so dense and conv nets share the code.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

from stability.core import nets as _nets
from stability.core import units as _units
from stability.core.units import EditNet, live_units, nonzero_units
from stability.theory.paths.path import Lemma4Info, Path, Segment

__all__ = ["lemma4", "lemma2", "lemma2_states", "lemma4_states", "live_units", "nonzero_units", "free_sigma"]

_SUB = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def free_sigma(L: np.ndarray, Lp: np.ndarray, h: int) -> np.ndarray:
    """A one-to-one ``σ : L′ → complement(L)``: ``σ(v) = v`` where ``v`` is free, otherwise the next
    free slot not used by ``L′`` itself (exists iff ``|L| + |L′| ≤ h``)."""
    comp = np.setdiff1d(np.arange(h), L)
    stay = ~np.isin(Lp, L)
    pool = np.setdiff1d(comp, Lp)
    need = int((~stay).sum())
    if pool.size < need:
        raise ValueError(f"no one-to-one σ into the free slots: |K| + |K′| = {L.size + Lp.size} > h = {h}")
    sigma = Lp.copy()
    sigma[~stay] = pool[:need]
    return sigma


# --------------------------------------------------------------------------- Lemma 4


def lemma4_states(cur: EditNet, N: Mapping[int, np.ndarray], tau: Mapping[int, np.ndarray],
                  restore: tuple[EditNet, Mapping[int, np.ndarray]] | None = None,
                  name: str = "Lemma 4") -> list[tuple[EditNet, str, str]]:
    """The five Lemma 4 segments moving the nonzero units ``N[i]`` (all other units zero) to
    ``tau[i]`` (aligned with ``N[i]``), in every hidden layer at once.

    ``restore = (source, {i: units})`` writes ``source``'s rows of those units inside S5 (Lemma 2's
    dead rows of θ′). Returns ``(end state, claim, label)`` per segment.
    """
    d = cur.depth
    P: dict[int, np.ndarray] = {}
    inside: dict[int, np.ndarray] = {}
    for i in range(1, d):
        h = cur.width(i)
        n, t = np.asarray(N[i], np.int64), np.asarray(tau[i], np.int64)
        if n.size != t.size or np.unique(t).size != t.size or (t.size and (t.min() < 0 or t.max() >= h)):
            raise ValueError(f"{name}: the target map of hidden layer {i} must be one-to-one into 0..{h - 1}")
        ins = np.isin(t, n)
        free = np.setdiff1d(np.setdiff1d(np.arange(h), n), t[~ins])
        if free.size < int(ins.sum()):
            raise ValueError(f"{name} premise violated in hidden layer {i}: {n.size} nonzero units of {h} "
                             f"(needs at least ⌈h/2⌉ = {math.ceil(h / 2)} zero units)")
        p = t.copy()
        p[ins] = free[: int(ins.sum())]
        P[i], inside[i] = p, ins
    out: list[tuple[EditNet, str, str]] = []
    s = cur.copy()
    for i in range(1, d):
        s.copy_rows(i, N[i], P[i])
    out.append((s, "function_preserving", f"{name}, S1 (b): copy each nonzero row u onto the zero slot π′(u)"))
    s = s.copy()
    for i in range(1, d):
        s.move_cols(i, N[i], P[i])
    out.append((s, "copy_shift", f"{name}, S2 (copy-shift): column u → π′(u) (rows u, π′(u) equal)"))
    s = s.copy()
    for i in range(1, d):
        s.copy_rows(i, P[i][inside[i]], np.asarray(tau[i])[inside[i]])
    out.append((s, "function_preserving", f"{name}, S3 (b): row τ(u) := row π′(u) where τ(u) is a nonzero slot"))
    s = s.copy()
    for i in range(1, d):
        s.move_cols(i, P[i][inside[i]], np.asarray(tau[i])[inside[i]])
    out.append((s, "copy_shift", f"{name}, S4 (copy-shift): column π′(u) → τ(u) (rows equal)"))
    s = s.copy()
    for i in range(1, d):
        s.zero_rows(i, P[i][inside[i]])
        s.zero_rows(i, np.setdiff1d(N[i], tau[i]))
        if restore is not None and np.size(restore[1].get(i, [])):
            s.set_rows_from(i, restore[1][i], restore[0], restore[1][i])
    tail = " and restore θ′'s dead rows" if restore is not None else ""
    out.append((s, "function_preserving", f"{name}, S5 (b): zero the stale rows (copies and non-target slots){tail}"))
    return out


def _perm_targets(net: _nets.Net, perm) -> dict[int, np.ndarray]:
    """``perm`` (one permutation per hidden layer, ``nets.permute_units`` convention: new unit ``k``
    is old unit ``perm[k]``; a dict may omit layers) → the inverse maps ``τ`` (old → new)."""
    d = net.depth
    if isinstance(perm, Mapping):
        perms = {i: perm.get(i) for i in range(1, d)}
    else:
        perm = list(perm)
        if len(perm) != d - 1:
            raise ValueError(f"lemma4 needs one permutation per hidden layer ({d - 1}), got {len(perm)}")
        perms = {i: perm[i - 1] for i in range(1, d)}
    out = {}
    for i, p in perms.items():
        h = _units.num_units(net, i)
        p = np.arange(h) if p is None else np.asarray(p, np.int64)
        if sorted(p.tolist()) != list(range(h)):
            raise ValueError(f"lemma4: perm of hidden layer {i} must be a permutation of range({h}), got {p.tolist()}")
        out[i] = np.argsort(p)
    return out


def lemma4(net: _nets.Net, perm: Sequence[Sequence[int] | None] | Mapping[int, Sequence[int]]) -> Path:
    """Lemma 4: 5 segments, constant function, from ``net`` to ``permute_units(net, i, perm[i])`` for
    every hidden layer ``i`` (new unit ``k`` = old unit ``perm[i][k]``).

    Premise: at least ``⌈h_i/2⌉`` zero units (row and column 0) in every hidden layer.
    """
    if net.depth < 2:
        raise ValueError("Lemma 4 needs a net with at least one hidden layer")
    e = EditNet.of(net)
    tau_all = _perm_targets(net, perm)
    N, tau = {}, {}
    for i in range(1, net.depth):
        h = e.width(i)
        N[i] = nonzero_units(e, i)
        if N[i].size > h // 2:
            raise ValueError(f"Lemma 4 premise violated: hidden layer {i} has {h - N[i].size} zero units of {h}, "
                             f"needs at least ⌈h/2⌉ = {math.ceil(h / 2)}")
        tau[i] = tau_all[i][N[i]]
    states = lemma4_states(e, N, tau)
    seq = [net] + [s.to_net() for s, _, _ in states]
    segs = [Segment(seq[j], seq[j + 1], c, lab) for j, (_, c, lab) in enumerate(states)]
    target = net
    for i, t in tau_all.items():  # the claimed end: the permuted net, built by the unit view directly
        target = _units.permute_units(target, i, np.argsort(t))
    return Path(segs, name="Lemma 4", info=Lemma4Info({i: tau[i].tolist() for i in tau}), check=False,
                connects=(net, target))


# --------------------------------------------------------------------------- Lemma 2


def lemma2_states(a: EditNet, b: EditNet, permute: bool = True,
                  name: str = "Lemma 2") -> list[tuple[EditNet, str, str]]:
    """Segments from ``a`` (θ) to ``b`` (θ′), both given as edit nets.

    ``permute=True``: the 8 segments of Lemma 2 (Seg 1–3, then Lemma 4 with ``τ = σ^{-1}``).
    ``permute=False``: Lemma 2's first three segments only, placing θ′'s units at their home
    positions directly (Theorem 3); needs θ′'s live units to avoid θ's.
    """
    d = a.depth
    H = {i: a.width(i) for i in range(1, d)}
    L = {i: live_units(a, i) for i in range(1, d)}
    Lp = {i: live_units(b, i) for i in range(1, d)}
    allo = np.arange(a.w[-1].shape[0])
    out: list[tuple[EditNet, str, str]] = []
    if not permute:
        for i in range(1, d):
            if np.intersect1d(L[i], Lp[i]).size:
                raise ValueError(f"{name} without permutation needs θ′'s live units to avoid θ's; hidden layer {i} "
                                 f"shares {np.intersect1d(L[i], Lp[i]).tolist()}")
        s = a.copy()
        for i in range(1, d):
            free = np.setdiff1d(np.arange(H[i]), L[i])
            s.set_rows_from(i, free, b, free)
        out.append((s, "function_preserving", f"{name}, seg 1 (b): write θ′'s rows into θ's free slots"))
        s = s.copy()
        s.set_rows_from(d, allo, b, allo)
        out.append((s, "top_layer", f"{name}, seg 2 (a): top layer from θ's units to θ′'s"))
        s = s.copy()
        for i in range(1, d):
            s.set_rows_from(i, L[i], b, L[i])
        out.append((s, "function_preserving", f"{name}, seg 3 (b): θ's rows → θ′'s (θ's units now dead)"))
        return out
    S: dict[int, np.ndarray] = {}
    for i in range(1, d):
        if L[i].size + Lp[i].size > H[i]:
            raise ValueError(f"{name} premise violated in hidden layer {i}: θ has {L[i].size} and θ′ {Lp[i].size} "
                             f"live units, more than h = {H[i]} together")
        if Lp[i].size > H[i] // 2:
            raise ValueError(f"{name} premise violated in hidden layer {i}: θ′ has {Lp[i].size} live units of "
                             f"{H[i]} (at least ⌈h/2⌉ = {math.ceil(H[i] / 2)} must be zero or dead)")
        S[i] = free_sigma(L[i], Lp[i], H[i])
    # Seg 1 (b): θ's dead rows → 0, θ′'s live block into the σ slots
    s = a.copy()
    for i in range(1, d):
        s.zero_rows(i, np.setdiff1d(np.arange(H[i]), L[i]))
        if i == 1:
            s.set_block(1, S[1], None, b.block(1, Lp[1], None))
        else:
            s.set_block(i, S[i], S[i - 1], b.block(i, Lp[i], Lp[i - 1]))
        s.set_bias(i, S[i], b.bias(i, Lp[i]))
    out.append((s, "function_preserving", f"{name}, seg 1 (b): write θ′'s units into the free slots σ(K′) "
                "(and zero θ's dead rows)"))
    # Seg 2 (a): the top layer from θ's columns to θ′'s columns on σ(K′_{d−1}), b_d from θ to θ′
    s = s.copy()
    s.set_block(d, allo, L[d - 1], 0)
    s.set_block(d, allo, S[d - 1], b.block(d, allo, Lp[d - 1]))
    s.set_bias(d, allo, b.bias(d, allo))
    out.append((s, "top_layer", f"{name}, seg 2 (a): top layer from θ's units to θ′'s units"))
    # Seg 3 (b): zero θ's rows
    s = s.copy()
    for i in range(1, d):
        s.zero_rows(i, L[i])
    out.append((s, "function_preserving", f"{name}, seg 3 (b): zero θ's rows"))
    # Segs 4–8: Lemma 4 with τ = σ^{-1}, restoring θ′'s dead rows in S5
    dead_rows = {i: np.flatnonzero(~b.col_nonzero(i) & b.row_nonzero(i)) for i in range(1, d)}
    l4 = lemma4_states(s, S, Lp, restore=(b, dead_rows), name=f"{name} / Lemma 4")
    labels = ["seg 4", "seg 5", "seg 6", "seg 7", "seg 8"]
    out += [(st, c, lab.replace(f"{name} / Lemma 4,", f"{name}, {labels[j]} = Lemma 4"))
            for j, (st, c, lab) in enumerate(l4)]
    return out


def lemma2(net: _nets.Net, net2: _nets.Net) -> Path:
    """Lemma 2: 8 segments from θ = ``net`` to θ′ = ``net2``, loss ≤ max{L(θ), L(θ′)}.

    Premise (checked): same architecture, and at least ``⌈h_i/2⌉`` zero units in every hidden
    layer of both nets (dead-but-not-zero units, as Algorithm 1 leaves them, count as zero: their
    rows are zeroed in Seg 1 and θ′'s are restored in Seg 8). The end point equals θ′ exactly.
    """
    _nets.check_same_arch(net, net2, "Lemma 2's end points")
    if net.depth < 2:
        raise ValueError("Lemma 2 needs nets with at least one hidden layer")
    a, b = EditNet.of(net), EditNet.of(net2)
    for tag, e in (("θ", a), ("θ′", b)):
        for i in range(1, net.depth):
            h = e.width(i)
            dead = h - live_units(e, i).size
            if dead < math.ceil(h / 2):
                raise ValueError(f"Lemma 2 premise violated: hidden layer {i} of {tag} has {dead} zero (or dead) "
                                 f"units of {h}, fewer than ⌈h/2⌉ = {math.ceil(h / 2)}")
    states = lemma2_states(a, b, permute=True)
    if not states[-1][0].equal(b):
        raise AssertionError("Lemma 2 construction did not end exactly at θ′ (bug)")
    seq = [net] + [s.to_net() for s, _, _ in states[:-1]] + [net2]
    segs = [Segment(seq[j], seq[j + 1], c, lab) for j, (_, c, lab) in enumerate(states)]
    return Path(segs, name="Lemma 2", check=False, connects=(net, net2))
