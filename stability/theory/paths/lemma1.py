"""Lemma 1 (Appendix A): from θ to its dropout version θ_1 through θ_{d−1}, …, θ_1 (docs/THEORY.md §2).

Index sets instead of the proof's "first half" blocks: ``K_i`` kept (``|K_i| ≤ ⌊h_i/2⌋``,
arbitrary positions, odd widths), ``D_i`` its complement, ``π_i : K_i → D_i`` one-to-one (the
``j``-th kept unit → the ``j``-th dropped unit) holds the copies. Rescales ``r_i`` may differ per
layer (footnote 1); ``θ^i`` uses ONE kept set per layer for every ``i`` (the proof's "without
loss of generality").

State ``θ_k`` (k = d−1..1): ``A_d[:, K_{d−1}] = r_{d−1}·A^θ_d[:, K_{d−1}]``, other columns 0; for
``k < i < d`` the only nonzero block of ``A_i`` is ``[K_i, K_{i−1}] = r_{i−1}·A^θ_i[K_i, K_{i−1}]``;
``A_k`` keeps its ``K_k`` rows from θ, its ``D_k`` rows are 0; ``A_i = A^θ_i`` for ``i < k``. A
unit's bias is part of its row; ``b_d`` never changes. ``θ_k`` computes the same function as
``θ^k`` (they differ only in rows of dead units), so the path ends at ``θ_1``: ``θ^1`` with its
dropped units zeroed (rows too), ready for Lemma 2.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from stability.core import nets as _nets
from stability.theory.dropout import KeptSets, make_kept_sets
from stability.core.units import EditNet
from stability.theory.paths.path import Lemma1Info, Path, Segment

__all__ = ["lemma1", "lemma1_states", "theta_k"]

def _sub(k: int | str) -> str:
    return f"_{k}"


def _span(a: int, b: int) -> str:
    return f"A{_sub(a)}" if a == b else f"A{_sub(a)}…A{_sub(b)}"


class _Plan:
    """Index sets, copies and rescaled blocks shared by every state of one Lemma 1 path."""

    def __init__(self, net: _nets.Net, ks: KeptSets) -> None:
        self.theta = EditNet.of(net)
        self.d = net.depth
        self.K = {i: ks.keep[i - 1] for i in range(1, self.d)}
        self.D = {i: np.setdiff1d(np.arange(self.theta.width(i)), self.K[i]) for i in range(1, self.d)}
        self.pi = {i: self.D[i][: self.K[i].size] for i in range(1, self.d)}
        self.r = {i: self.theta.scalar(ks.r[i - 1]) for i in range(1, self.d)}
        th = self.theta
        # r·A^θ blocks, computed once so every state holds bitwise the same values
        self.top = th.block(self.d, np.arange(th.w[-1].shape[0]), self.K[self.d - 1]) * self.r[self.d - 1]
        self.L = {i: th.block(i, self.K[i], self.K[i - 1]) * self.r[i - 1] for i in range(2, self.d)}
        self.bK = {i: th.bias(i, self.K[i]) for i in range(1, self.d)}

    def all_out(self) -> np.ndarray:
        return np.arange(self.theta.w[-1].shape[0])


def _theta_k(plan: _Plan, k: int) -> EditNet:
    """The state ``θ_k`` defined above (built directly, used to check the path's way points)."""
    th, d = plan.theta, plan.d
    s = th.copy()
    s.set_block(d, plan.all_out(), None, 0)
    s.set_block(d, plan.all_out(), plan.K[d - 1], plan.top)
    for i in range(k + 1, d):
        s.zero_rows(i, np.arange(s.width(i)))
        s.set_block(i, plan.K[i], plan.K[i - 1], plan.L[i])
        s.set_bias(i, plan.K[i], plan.bK[i])
    s.zero_rows(k, plan.D[k])
    return s


def theta_k(net: _nets.Net, keep: KeptSets | Sequence[Sequence[int]], k: int,
            r: float | Sequence[float] | None = None) -> _nets.Net:
    """The Lemma 1 state ``θ_k`` (same function as ``θ^k``; dropped rows of layers ``≥ k`` zeroed)."""
    ks = make_kept_sets(net, keep, r)
    ks.check(net, definition1=True, what="Lemma 1")
    if not 1 <= k < net.depth:
        raise IndexError(f"θ_k needs 1 ≤ k < d = {net.depth}, got {k}")
    return _theta_k(_Plan(net, ks), k).to_net()


def lemma1_states(net: _nets.Net, ks: KeptSets) -> list[tuple[EditNet, str, str, str]]:
    """The literal path of docs/THEORY.md §2 as ``(end state, claim, label, step tag)``; tag ``"b"`` marks
    row edits (type (b)) that the compact path merges with their neighbours."""
    plan = _Plan(net, ks)
    d, K, D, pi, L = plan.d, plan.K, plan.D, plan.pi, plan.L
    out: list[tuple[EditNet, str, str, str]] = []
    cur = plan.theta.copy()
    allo = plan.all_out()

    def emit(state: EditNet, claim: str, label: str, tag: str) -> None:
        nonlocal cur
        out.append((state, claim, label, tag))
        cur = state

    # base case θ → θ_{d−1}
    s = cur.copy()
    s.set_block(d, allo, D[d - 1], 0)
    s.set_block(d, allo, K[d - 1], plan.top)
    emit(s, "top_layer", f"θ→θ{_sub(d - 1)}, base (a): top A{_sub(d)} → [r·L{_sub(d)} | 0]", "a")
    s = cur.copy()
    s.zero_rows(d - 1, D[d - 1])
    emit(s, "function_preserving", f"θ→θ{_sub(d - 1)}, base (b): zero the dropped rows of A{_sub(d - 1)}", "b")

    for k in range(d - 1, 1, -1):
        tag = f"θ{_sub(k)}→θ{_sub(k - 1)}"
        # 1 (b): copy rows into the slots π(K)
        s = cur.copy()
        s.zero_rows(k, pi[k])
        s.set_block(k, pi[k], K[k - 1], L[k])
        s.set_bias(k, pi[k], plan.bK[k])
        for i in range(k + 1, d):
            s.zero_rows(i, pi[i])
            s.set_block(i, pi[i], pi[i - 1], L[i])
            s.set_bias(i, pi[i], plan.bK[i])
        emit(s, "function_preserving", f"{tag}, step 1 (b): copy the kept rows of {_span(k, d - 1)} "
             f"into the dropped slots", "b")
        # 2 (a): top onto the copies
        s = cur.copy()
        s.set_block(d, allo, pi[d - 1], plan.top)
        s.set_block(d, allo, K[d - 1], 0)
        emit(s, "top_layer", f"{tag}, step 2 (a): top A{_sub(d)} onto the copy columns", "a")
        # 3 (b): rewrite the kept rows of A_k
        s = cur.copy()
        s.set_block(k, K[k], None, 0)
        s.set_block(k, K[k], K[k - 1], L[k])
        emit(s, "function_preserving", f"{tag}, step 3 (b): A{_sub(k)}[K, K] = r·L{_sub(k)}, A{_sub(k)}[K, D] = 0",
             "b")
        # 4 (a): top back (the two halves compute the same function)
        s = cur.copy()
        s.set_block(d, allo, K[d - 1], plan.top)
        s.set_block(d, allo, pi[d - 1], 0)
        emit(s, "function_preserving", f"{tag}, step 4 (a): top A{_sub(d)} back to the kept columns "
             f"(identical halves)", "a")
        # 5 (b): zero the copy rows
        s = cur.copy()
        for i in range(k, d):
            s.zero_rows(i, pi[i])
        emit(s, "function_preserving", f"{tag}, step 5 (b): zero the copy rows of {_span(k, d - 1)}", "b")
        # 6 (b): zero the dropped rows of A_{k−1}
        s = cur.copy()
        s.zero_rows(k - 1, D[k - 1])
        emit(s, "function_preserving", f"{tag}, step 6 (b): zero the dropped rows of A{_sub(k - 1)}", "b")
    return out


def lemma1(net: _nets.Net, keep: KeptSets | Sequence[Sequence[int]], r: float | Sequence[float] | None = None,
           compact: bool = False) -> Path:
    """Lemma 1 path from ``net`` (θ) to ``θ_1`` (θ^1 with the dropped units zeroed), through every ``θ_k``.

    ``keep``: one kept set ``K_i`` per hidden layer (``|K_i| ≤ ⌊h_i/2⌋``, Definition 1) or a
    :class:`~stability.theory.dropout.KeptSets`; ``r``: one rescale or one per hidden layer (default: the
    kept sets' own, else 2). The literal path has ``6d−10`` segments (base (a), (b), then six per
    level); ``compact=True`` merges adjacent type-(b) segments into ``4d−6`` (the paper's Figure 1
    for d = 3). ``path.info.theta_k[k]`` is the way-point index of ``θ_k``.
    """
    if net.depth < 2:
        raise ValueError(f"Lemma 1 needs a net with at least one hidden layer (d ≥ 2), got d = {net.depth}")
    ks = make_kept_sets(net, keep, r)
    ks.check(net, definition1=True, what="Lemma 1")
    states = lemma1_states(net, ks)
    d = net.depth
    # way point index of θ_k in the literal path: after base (b) (index 2) and after each level's step 6
    literal_theta = {d - 1: 2}
    for j, k in enumerate(range(d - 1, 1, -1)):
        literal_theta[k - 1] = 2 + 6 * (j + 1)
    if compact:
        merged: list[tuple[EditNet, str, str, int]] = []  # (end, claim, label, literal end index)
        run: list[str] = []
        for idx, (state, claim, label, tag) in enumerate(states, start=1):
            if tag == "b":
                run.append(label)
                nxt = states[idx][3] if idx < len(states) else None
                if nxt == "b":
                    continue
                lab = run[0] if len(run) == 1 else " + ".join(x.split(":")[0] for x in run) + " (merged (b))"
                merged.append((state, "function_preserving", lab, idx))
                run = []
            else:
                merged.append((state, claim, label, idx))
        ends = [m[3] for m in merged]
        theta_idx = {k: ends.index(v) + 1 for k, v in literal_theta.items() if v in ends}
        seq = [(m[0], m[1], m[2]) for m in merged]
    else:
        theta_idx = dict(literal_theta)
        seq = [(s, c, lab) for s, c, lab, _ in states]
    nets_seq = [net] + [s.to_net() for s, _, _ in seq]
    segs = [Segment(nets_seq[j], nets_seq[j + 1], c, f"Lemma 1, {lab}") for j, (_, c, lab) in enumerate(seq)]
    expect = 4 * d - 6 if compact else 6 * d - 10
    assert len(segs) == expect, (len(segs), expect)
    # the claimed end θ_1 is built directly from its definition, independently of the segment chain
    return Path(segs, name="Lemma 1" + (" (compact)" if compact else ""),
                info=Lemma1Info(ks.to_dict(), dict(theta_idx), compact), check=False,
                connects=(net, _theta_k(_Plan(net, ks), 1).to_net()))
