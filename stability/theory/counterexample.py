"""Theorem 4 of Kuditipudi et al. (2019), Appendix C: disconnected global minima of an
overparametrised two-layer ReLU net (docs/THEORY.md §7).

The student is ``f(x) = wᵀφ(Ax)`` with ``A ∈ R^{h×(h+2)}`` and no biases
(``nets.Arch(in_shape=(h+2,), widths=(h, 1), bias=False)``; ``A = net.A(1)``,
``wᵀ = net.A(2)``). :func:`dataset` builds the appendix's ``X ∈ R^{n×(h+2)}`` (rows =
samples, columns = features ``f_1 … f_{h+2}``) and ``y`` with the row offsets of its Figure 4 (the
appendix's case formulas have typos; docs/THEORY.md §7 states the corrected rows). Two global minima
(zero squared-error loss): the 2-unit **teacher** reading ``f_1, f_2`` with output weights
``(1, −1)`` (plus ``h−2`` zero units), and the h-unit **student** reading ``f_3 … f_{h+2}`` with
output weights all 1, because ``φ(f_1) − φ(f_2) = Σ_{j≥3} φ(f_j) = y``.

The paper argues that every path between them crosses a point whose output weights are all
``≥ 0`` with one of them 0 (call this set S), and Lemma 6 says such a net cannot fit ``y``. What is
exact is checked in :mod:`proofs_check.counterexample`, and a proved lower bound on the loss over S
(hence on every path's barrier) is computed in :mod:`proofs_check.thm4_barrier`; what this module measures —
straight-line barriers, the best barrier of learned curves, the best loss found on S, the dependence on
``k, l, m`` and a generic-data control — lives in :mod:`stability.app.studies.counterexample_study` and is
EVIDENCE, not proof. This module holds the construction only.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stability.core import nets as _nets

Array = jax.Array

__all__ = ["Sizes", "sizes", "dataset", "arch", "teacher_minimizer", "student_minimizer", "generic_teacher_data",
           "net_loss"]


# --------------------------------------------------------------------------- the construction (exact)


class Sizes(NamedTuple):
    """Block boundaries of the dataset: rows ``1..k``, ``k+1..l``, ``l+1..m``, ``m+1..n`` (1-based)."""

    h: int
    k: int
    l: int
    m: int
    n: int


def _as_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {v!r} ({type(v).__name__})")
    return int(v)


def sizes(h: int, k: int | None = None, l: int | None = None, m: int | None = None, n: int | None = None) -> Sizes:
    """Validate ``k < l < m < n`` with ``k > h``, ``l − k > h``, ``m − l > 2``, ``n − m > h`` (Appendix C).

    Each omitted size is the smallest valid one given the earlier ones: ``k = h+1``, ``l = k+h+1``,
    ``m = l+3``, ``n = m+h+1`` — so the default is ``n = 3h + 6``.
    """
    h = _as_int("h", h)
    if h < 2:
        raise ValueError(f"h must be >= 2 (the teacher has 2 active hidden units), got h={h}")
    k = h + 1 if k is None else _as_int("k", k)
    if not k > h:
        raise ValueError(f"invalid (k, l, m, n): need k > h (every residue mod h among rows 1..k), got k={k}, h={h}")
    l = k + h + 1 if l is None else _as_int("l", l)
    if not l - k > h:
        raise ValueError(f"invalid (k, l, m, n): need l − k > h, got l={l}, k={k} (l − k = {l - k}), h={h}")
    m = l + 3 if m is None else _as_int("m", m)
    if not m - l > 2:
        raise ValueError(f"invalid (k, l, m, n): need m − l > 2, got m={m}, l={l} (m − l = {m - l})")
    n = m + h + 1 if n is None else _as_int("n", n)
    if not n - m > h:
        raise ValueError(f"invalid (k, l, m, n): need n − m > h, got n={n}, m={m} (n − m = {n - m}), h={h}")
    return Sizes(h, k, l, m, n)


def dataset(h: int, k: int | None = None, l: int | None = None, m: int | None = None, n: int | None = None,
            *, dtype: Any = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """The appendix's ``(X, y)``: ``X`` of shape ``(n, h+2)`` (rows = samples), ``y`` of shape ``(n,)``.

    With 1-based row ``i`` and column ``j`` (docs/THEORY.md §7, offsets as in the appendix's Figure 4):

    * ``i ≤ l``: ``f_1 = i``, ``f_2 = i−1``; for ``j ≥ 3`` ``x_ij = 1`` if ``i ≡ j−2 (mod h)``, else ``−1``
      (``i ≤ k``) or ``0`` (``k < i ≤ l``);
    * ``l < i ≤ m``: ``x_ij = −1`` for the ``j ∈ {1, 2}`` with ``i ≡ j (mod 2)``, all else 0;
    * ``i > m``: ``f_1 = f_2 = 0``; for ``j ≥ 3`` ``x_ij = −1`` if ``i ≡ j−2 (mod h)``, else 0;
    * ``y_i = 1`` for ``i ≤ l``, else 0.

    All entries are small integers, exact in any float dtype (or pass an integer ``dtype``).
    """
    s = sizes(h, k, l, m, n)
    X = np.zeros((s.n, h + 2), np.int64)
    y = np.zeros((s.n,), np.int64)
    for i in range(1, s.n + 1):
        r = i - 1
        hot = 2 + (i - 1) % h  # 0-based column of the j ≥ 3 with i ≡ j − 2 (mod h)
        if i <= s.l:
            X[r, 0], X[r, 1] = i, i - 1
            X[r, 2:] = -1 if i <= s.k else 0
            X[r, hot] = 1
            y[r] = 1
        elif i <= s.m:
            X[r, 0 if i % 2 == 1 else 1] = -1
        else:
            X[r, hot] = -1
    return X.astype(dtype), y.astype(dtype)


def arch(h: int) -> _nets.Arch:
    """The student architecture: ``h+2`` inputs, ``h`` hidden ReLU units, one output, no biases."""
    return _nets.Arch(in_shape=(h + 2,), widths=(h, 1), bias=False)


def teacher_minimizer(h: int, dtype: Any = jnp.float32) -> _nets.Net:
    """The ground-truth teacher embedded in width ``h``: units 1, 2 read ``f_1``, ``f_2`` with output
    weights ``(1, −1)``; units ``3..h`` are zero units (row and column 0)."""
    h = sizes(h).h
    A = np.zeros((h, h + 2))
    A[0, 0] = A[1, 1] = 1.0
    w = np.zeros((1, h))
    w[0, :2] = (1.0, -1.0)
    return _nets.Net(arch(h), ({"w": jnp.asarray(A, dtype)}, {"w": jnp.asarray(w, dtype)}))


def student_minimizer(h: int, dtype: Any = jnp.float32, perm: Sequence[int] | None = None) -> _nets.Net:
    """The h-unit minimizer ``A = [0 | I_h]`` (unit u reads ``f_{u+3}``), output weights all 1.

    ``perm`` (optional) permutes the hidden units (unit u takes the row of unit ``perm[u]``): the same
    function, another global minimum.
    """
    h = sizes(h).h
    A = np.concatenate([np.zeros((h, 2)), np.eye(h)], axis=1)
    if perm is not None:
        perm = np.asarray(perm)
        if sorted(perm.tolist()) != list(range(h)):
            raise ValueError(f"perm must be a permutation of 0..{h - 1}, got {perm.tolist()}")
        A = A[perm]
    return _nets.Net(arch(h), ({"w": jnp.asarray(A, dtype)}, {"w": jnp.ones((1, h), dtype)}))


# --------------------------------------------------------------------------- evidence (numerical)
#
# Why the crossing set S matters (an elementary, exact argument; the optimisation over S is not):
# let θ(t) be any continuous path from the teacher (an output weight −1) to the student (all output
# weights +1) and τ = inf{s : every output weight is ≥ 0 on [s, 1]}. By continuity every output
# weight is ≥ 0 at τ, and τ > 0. If all were > 0 at τ they would stay > 0 on some (τ − δ, τ],
# contradicting the infimum; so one of them is 0. Hence every path meets
#     S = {w ≥ 0, min_u w_u = 0} = {nets of width h−1 with non-negative output weights},
# and barrier(any path) ≥ inf_S L. Lemma 6 says no point of S has loss 0; a PROVED positive lower
# bound on inf_S L is computed in proofs_check.thm4_barrier. The study estimates inf_S L by restarts of
# projected Adam (an UPPER estimate of the infimum), and the barrier from above by learned curves.


def generic_teacher_data(h: int, n: int, seed: int = 0, dtype: Any = np.float32,
                         ) -> tuple[np.ndarray, np.ndarray, _nets.Net]:
    """Control data: ``n`` Gaussian inputs in ``R^{h+2}`` labelled by a random 2-unit teacher
    ``φ(a_1·x) − φ(a_2·x)`` (output weights ``(1, −1)`` as in Theorem 4), and that teacher embedded in
    width ``h`` (zero loss up to float rounding)."""
    h = sizes(h).h
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, h + 2)).astype(dtype)
    a = (rng.normal(size=(2, h + 2)) / np.sqrt(h + 2)).astype(dtype)
    A = np.zeros((h, h + 2), dtype)
    A[:2] = a
    w = np.zeros((1, h), dtype)
    w[0, :2] = (1.0, -1.0)
    teacher = _nets.Net(arch(h), ({"w": jnp.asarray(A)}, {"w": jnp.asarray(w)}))
    Xd, ad = X.astype(np.float64), a.astype(np.float64)
    y = (np.maximum(Xd @ ad[0], 0) - np.maximum(Xd @ ad[1], 0)).astype(dtype)
    return X, y, teacher


def net_loss(net: _nets.Net, X: np.ndarray, y: np.ndarray) -> float:
    """The paper's ``L = (1/n) Σ_i ½ (f(x_i) − y_i)²`` of a two-layer no-bias net, in float64 NumPy."""
    A = np.asarray(net.A(1), np.float64)
    w = np.asarray(net.A(2), np.float64)
    out = np.maximum(np.asarray(X, np.float64) @ A.T, 0.0) @ w.T
    return float(np.mean(0.5 * (out[:, 0] - np.asarray(y, np.float64)) ** 2))
