"""Exact checks for Theorem 4's counterexample (Kuditipudi et al. 2019, Appendix C; docs/THEORY.md §7).

Everything here is integer arithmetic on the dataset of :func:`stability.theory.counterexample.dataset`
(plus one zero-tolerance evaluation through the library's own forward pass), so a passing check
is a proof for that ``(h, k, l, m, n)``:

* both minimizers (teacher: 2 active units, weights ``(1, −1)``; student: ``A = [0 | I_h]``,
  weights 1) fit ``y`` exactly — zero loss;
* the identity ``φ(f_1) − φ(f_2) = Σ_{j≥3} φ(f_j) = y``;
* the data facts Lemma 6's proof uses: the sign blocks ``−I_2`` / ``−I_h`` in the label-0 rows (they
  force non-negative coefficients), the strictly increasing rows of ``f_1, f_2``, the period-``h``
  pattern of ``f_3 … f_{h+2}`` on rows ``1..k`` and ``k+1..l``, one positive entry per label-1 row,
  every residue in every block (the pigeonhole step), and the dominance of rows ``k+1..l`` over
  rows ``1..k`` (two positive coefficients cannot give a constant output).

Lemma 6 itself is an argument about all of parameter space; it is NOT machine-checked here. That
every path between the minima has loss ≥ a proved positive number somewhere is established, for the
default sizes and small h, by :mod:`proofs_check.thm4_barrier`. The numerical evidence lives in
:func:`stability.app.studies.counterexample_study.barrier_study`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np

from stability.theory import counterexample as ce
from stability.core import nets as _nets
from stability.core.losses import squared_error

__all__ = ["Fact", "Thm4Verdict", "check_identity", "check_minimizers", "check_lemma6_facts", "check_theorem4"]


@dataclasses.dataclass(frozen=True)
class Fact:
    """One exactly checked statement: its name, whether it holds, and what was compared."""

    name: str
    holds: bool
    detail: str


@dataclasses.dataclass(frozen=True)
class Thm4Verdict:
    """All facts for one dataset; ``ok`` iff every fact holds."""

    sizes: ce.Sizes
    facts: tuple[Fact, ...]

    @property
    def ok(self) -> bool:
        return all(f.holds for f in self.facts)

    def failures(self) -> list[Fact]:
        return [f for f in self.facts if not f.holds]

    def fact(self, name: str) -> Fact:
        for f in self.facts:
            if f.name == name:
                return f
        raise KeyError(f"no fact named {name!r}; known: {[f.name for f in self.facts]}")

    def raise_if_failed(self) -> "Thm4Verdict":
        bad = self.failures()
        if bad:
            raise AssertionError(f"Theorem 4 checks failed for {self.sizes}: "
                                 + "; ".join(f"{f.name}: {f.detail}" for f in bad))
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"sizes": self.sizes._asdict(), "ok": self.ok,
                "facts": [dataclasses.asdict(f) for f in self.facts]}


def _ints(a: Any, what: str) -> np.ndarray:
    """``a`` as int64, refusing any non-integral entry (so the checks below are exact)."""
    arr = np.asarray(a)
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int64)
    as_int = np.rint(arr).astype(np.int64)
    if not np.array_equal(as_int.astype(arr.dtype), arr):
        raise ValueError(f"{what} has non-integer entries; the exact checks need integer data and weights")
    return as_int


def _relu(a: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0)


def check_identity(X: Any, y: Any) -> list[Fact]:
    """``φ(f_1) − φ(f_2) = y`` and ``Σ_{j≥3} φ(f_j) = y``, entry by entry in integers."""
    X, y = _ints(X, "X"), _ints(y, "y")
    two = _relu(X[:, 0]) - _relu(X[:, 1])
    many = _relu(X[:, 2:]).sum(axis=1)
    return [
        Fact("identity: φ(f1) − φ(f2) = y", bool(np.array_equal(two, y)),
             f"rows differing: {np.flatnonzero(two != y).tolist()}"),
        Fact("identity: Σ_{j≥3} φ(fj) = y", bool(np.array_equal(many, y)),
             f"rows differing: {np.flatnonzero(many != y).tolist()}"),
    ]


def _exact_output(net: _nets.Net, X: np.ndarray) -> np.ndarray:
    A = _ints(net.A(1), "A")
    w = _ints(net.A(2), "w")
    return (_relu(X @ A.T) @ w.T)[:, 0]


def check_minimizers(h: int, X: Any, y: Any, dtype: Any = jnp.float32, forward: bool = True) -> list[Fact]:
    """Teacher and student: structure (active units, output-weight signs) and zero loss in integer
    arithmetic; with ``forward`` also through :func:`stability.core.nets.apply` + ``squared_error`` in ``dtype``
    with zero tolerance (integers below 2^24 are exact in float32)."""
    Xi, yi = _ints(X, "X"), _ints(y, "y")
    facts = []
    teacher, student = ce.teacher_minimizer(h, dtype), ce.student_minimizer(h, dtype)
    wt, At = np.asarray(teacher.A(2))[0], np.asarray(teacher.A(1))
    ws = np.asarray(student.A(2))[0]
    active = [u for u in range(h) if np.any(At[u] != 0) or wt[u] != 0]
    facts.append(Fact("teacher: 2 active units reading f1, f2 with output weights (1, −1), h−2 zero units",
                      active == [0, 1] and At[0].tolist() == [1] + [0] * (h + 1)
                      and At[1].tolist() == [0, 1] + [0] * h and wt[:2].tolist() == [1, -1],
                      f"active units {active}, weights {wt.tolist()}"))
    facts.append(Fact("student: A = [0 | I_h], output weights all 1 (> 0)",
                      bool(np.array_equal(np.asarray(student.A(1)),
                                          np.concatenate([np.zeros((h, 2)), np.eye(h)], axis=1)))
                      and bool(np.all(ws == 1)), f"weights {ws.tolist()}"))
    for name, net in (("teacher", teacher), ("student", student)):
        out = _exact_output(net, Xi)
        facts.append(Fact(f"{name}: f(x_i) = y_i for every i (integer arithmetic)", bool(np.array_equal(out, yi)),
                          f"rows differing: {np.flatnonzero(out != yi).tolist()}"))
        if not forward:
            continue
        xf, yf = jnp.asarray(Xi, dtype), jnp.asarray(yi, dtype)
        loss = float(squared_error.mean(_nets.apply(net, xf), yf))
        facts.append(Fact(f"{name}: loss = 0 exactly via nets.apply in {jnp.dtype(dtype).name}", loss == 0.0,
                          f"loss {loss!r}"))
    return facts


def check_lemma6_facts(X: Any, y: Any, s: ce.Sizes) -> list[Fact]:
    """The data facts Lemma 6's proof rests on (1-based rows in the details)."""
    X, y = _ints(X, "X"), _ints(y, "y")
    h, k, l, m, n = s
    facts = []
    F = X[:, 2:]  # f_3 … f_{h+2}
    hot = np.array([(i - 1) % h for i in range(1, n + 1)])  # column of F with i ≡ j − 2 (mod h)

    ok_shape = X.shape == (n, h + 2) and y.shape == (n,)
    facts.append(Fact("shape: X is n×(h+2), y has n entries", ok_shape, f"X {X.shape}, y {y.shape}, n={n}"))
    if not ok_shape:
        return facts
    facts.append(Fact("labels: y_i = 1 for i ≤ l, 0 for i > l",
                      bool(np.all(y[:l] == 1) and np.all(y[l:] == 0)), f"y = {y.tolist()}"))
    e = np.eye(h, dtype=np.int64)
    facts.append(Fact("Figure 4 offsets: x_1 = (1, 0, e_1 − (1 − e_1)), x_2 = (2, 1, e_2 − (1 − e_2))",
                      X[0].tolist() == [1, 0] + (2 * e[0] - 1).tolist()
                      and X[1].tolist() == [2, 1] + (2 * e[1 % h] - 1).tolist(),
                      f"x_1 = {X[0].tolist()}, x_2 = {X[1].tolist()}"))

    # Sign blocks: label-0 rows are ≤ 0, and each feature j has a label-0 row equal to −e_j; there
    # h_i = −a_j, so a_j < 0 would leave a positive φ(h_i) that positive output weights cannot cancel.
    facts.append(Fact("label-0 rows (i > l) are entrywise ≤ 0", bool(np.all(X[l:] <= 0)),
                      f"max entry {int(X[l:].max())}"))
    minus_e = np.eye(h + 2, dtype=np.int64) * -1
    witness = {}
    for j in range(h + 2):
        rows = [i for i in range(l, n) if np.array_equal(X[i], minus_e[j])]
        witness[j + 1] = [r + 1 for r in rows]
    facts.append(Fact("sign blocks: every feature f_j has a label-0 row equal to −e_j (forces a_ij ≥ 0)",
                      all(witness.values()), f"rows per feature: {witness}"))
    mid = X[l:m, :2]
    facts.append(Fact("block l < i ≤ m: −I_2 on (f1, f2) by parity, f_{j≥3} = 0",
                      bool(np.all(X[l:m, 2:] == 0)) and all(
                          mid[r].tolist() == ([-1, 0] if (l + r + 1) % 2 == 1 else [0, -1]) for r in range(m - l)),
                      f"rows {l + 1}..{m}"))
    tail_ok = bool(np.all(X[m:, :2] == 0)) and all(
        np.array_equal(F[i], -e[hot[i]]) for i in range(m, n))
    facts.append(Fact("block i > m: −I_h pattern on f_3.. (x_ij = −1 iff i ≡ j−2 mod h), f1 = f2 = 0",
                      tail_ok, f"rows {m + 1}..{n}"))

    # f_1, f_2: positive combinations are positive and strictly increasing on the label-1 rows.
    f1, f2 = X[:l, 0], X[:l, 1]
    facts.append(Fact("f1, f2 strictly increasing on rows 1..l, f1 ≥ 1, f2 ≥ 0, f1 − f2 = 1",
                      bool(np.all(np.diff(f1) > 0) and np.all(np.diff(f2) > 0) and f1.min() >= 1 and f2.min() >= 0
                           and np.all(f1 - f2 == 1)), f"f1 = {f1.tolist()}, f2 = {f2.tolist()}"))

    # f_3..: period h on rows 1..k and on rows k+1..l, one positive entry per label-1 row.
    per = all(np.array_equal(F[i], F[i + h]) for i in range(0, k - h)) and \
        all(np.array_equal(F[i], F[i + h]) for i in range(k, l - h))
    facts.append(Fact("f_3..f_{h+2} periodic with period h on rows 1..k and on rows k+1..l", per,
                      f"compared rows i, i+h within each block (k={k}, l={l})"))
    one_pos = all(F[i, hot[i]] == 1 and np.all(np.delete(F[i], hot[i]) == (-1 if i < k else 0)) for i in range(l))
    facts.append(Fact("rows i ≤ l: f_j = 1 iff i ≡ j−2 (mod h), else −1 (i ≤ k) or 0 (k < i ≤ l)", one_pos,
                      "exactly one positive feature among f_3.. per label-1 row"))
    blocks = {"1..k": range(0, k), "k+1..l": range(k, l), "m+1..n": range(m, n)}
    residues = {name: sorted({int(hot[i]) for i in rows}) for name, rows in blocks.items()}
    facts.append(Fact("every residue mod h occurs in rows 1..k, k+1..l and m+1..n (pigeonhole step)",
                      all(r == list(range(h)) for r in residues.values()), f"residues {residues}"))

    # Dominance: x_{i'} − x_i = 1 − e_hot ≥ 0 on f_3.. for i ≤ k < i' ≤ l, i ≡ i' (mod h), so two positive
    # coefficients make row i' strictly larger than row i although y_i = y_{i'}.
    dom = []
    for i in range(k):
        for i2 in range(k, l):
            if hot[i] == hot[i2]:
                dom.append(np.array_equal(F[i2] - F[i], 1 - e[hot[i]]))
    facts.append(Fact("dominance: x_{i'} − x_i = 1 − e_{j} on f_3.. for i ≤ k < i' ≤ l, i ≡ i' (mod h)",
                      bool(dom) and all(dom), f"{len(dom)} row pairs compared"))
    return facts


def check_theorem4(h: int, k: int | None = None, l: int | None = None, m: int | None = None,
                   n: int | None = None, dtype: Any = jnp.float32, forward: bool = True) -> Thm4Verdict:
    """All exact facts for the dataset with these sizes (defaults: the smallest valid ones); ``forward``
    adds the zero-tolerance loss evaluation through the library's forward pass in ``dtype``."""
    s = ce.sizes(h, k, l, m, n)
    X, y = ce.dataset(*s, dtype=np.int64)
    facts = check_identity(X, y) + check_minimizers(h, X, y, dtype, forward) + check_lemma6_facts(X, y, s)
    return Thm4Verdict(s, tuple(facts))
