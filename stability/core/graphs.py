"""Graphs over k minima: a symmetric matrix of pairwise costs (e.g. loss barriers) and its minimum spanning tree.

A minimum spanning tree depends only on the ORDER of the edge weights (Kruskal's algorithm), so
:func:`spanning_tree` hands ``scipy.sparse.csgraph.minimum_spanning_tree`` the ranks ``1..m`` of the finite
off-diagonal weights: a weight of 0 (a barrier of exactly 0), a negative weight or ties never drop an edge
(scipy reads a stored 0 as "no edge"). A NaN or infinite weight means "no edge" (the pair was not connected by
the method); the result is then a spanning forest, and :attr:`SpanningTree.connected` says so. The tree's
bottleneck (its largest edge weight) is the minimax cost: every two nodes are joined by a chain of tree edges
none of which costs more (the minimax-path property of minimum spanning trees).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

__all__ = ["SpanningTree", "check_symmetric", "spanning_tree"]


def check_symmetric(matrix: Any, what: str = "matrix", *, zero_diagonal: bool = False) -> np.ndarray:
    """``matrix`` as a float64 square array; a one-line ``ValueError`` if it is not square, not symmetric (NaN
    entries must mirror NaN entries) or, with ``zero_diagonal``, has a nonzero diagonal."""
    m = np.asarray(matrix, np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"{what} must be a square matrix, got shape {m.shape}")
    same = (m == m.T) | (np.isnan(m) & np.isnan(m.T))
    if not np.all(same):
        i, j = np.argwhere(~same)[0]
        raise ValueError(f"{what} must be symmetric: entry ({i}, {j}) = {m[i, j]!r} but ({j}, {i}) = {m[j, i]!r}")
    if zero_diagonal and np.any(np.diag(m) != 0):
        i = int(np.flatnonzero(np.diag(m) != 0)[0])
        raise ValueError(f"{what} must have a zero diagonal, entry ({i}, {i}) = {m[i, i]!r}")
    return m


@dataclasses.dataclass(frozen=True)
class SpanningTree:
    """Edges ``(i, j, weight)`` with ``i < j`` of a minimum spanning tree (forest, when ``connected`` is False),
    sorted by weight; ``n_nodes``; ``bottleneck``: the largest edge weight (``None`` without edges)."""

    edges: tuple[tuple[int, int, float], ...]
    n_nodes: int
    connected: bool

    @property
    def bottleneck(self) -> float | None:
        return max((w for _, _, w in self.edges), default=None)

    @property
    def total(self) -> float:
        return float(sum(w for _, _, w in self.edges))

    def to_dict(self) -> dict[str, Any]:
        return {"edges": [[i, j, w] for i, j, w in self.edges], "n_nodes": self.n_nodes,
                "connected": self.connected, "bottleneck": self.bottleneck, "total": self.total}


def spanning_tree(matrix: Any, what: str = "matrix") -> SpanningTree:
    """Minimum spanning tree of the complete graph whose edge ``(i, j)`` costs ``matrix[i, j]`` (symmetric; NaN or
    ±inf: no edge; the diagonal is ignored). A connected graph of ``k`` nodes gives ``k − 1`` edges."""
    m = check_symmetric(matrix, what)
    k = m.shape[0]
    iu, ju = np.triu_indices(k, 1)
    w = m[iu, ju]
    ok = np.isfinite(w)
    iu, ju, w = iu[ok], ju[ok], w[ok]
    ranks = np.empty(w.size)
    ranks[np.argsort(w, kind="stable")] = np.arange(1, w.size + 1)
    g = csr_matrix((ranks, (iu, ju)), shape=(k, k))
    t = minimum_spanning_tree(g).tocoo()
    edges = []
    for a, b in zip(t.row.tolist(), t.col.tolist()):
        i, j = min(a, b), max(a, b)
        edges.append((i, j, float(m[i, j])))
    edges.sort(key=lambda e: (e[2], e[0], e[1]))
    n_comp = connected_components(g, directed=False)[0] if k else 0
    return SpanningTree(tuple(edges), k, bool(n_comp <= 1))
