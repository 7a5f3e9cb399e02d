"""Theorem 4 of Kuditipudi et al. (2019), Appendix C: disconnected global minima of an
overparametrised two-layer ReLU net (SPEC §7).

The student is ``f(x) = wᵀφ(Ax)`` with ``A ∈ R^{h×(h+2)}`` and no biases
(``nets.Arch(in_shape=(h+2,), widths=(h, 1), bias=False)``; ``A = net.layers[0]["w"]``,
``wᵀ = net.layers[1]["w"]``). :func:`dataset` builds the appendix's ``X ∈ R^{n×(h+2)}`` (rows =
samples, columns = features ``f_1 … f_{h+2}``) and ``y`` with the row offsets of its Figure 4 (the
appendix's case formulas have typos; SPEC §7 states the corrected rows). Two global minima
(zero squared-error loss): the 2-unit **teacher** reading ``f_1, f_2`` with output weights
``(1, −1)`` (plus ``h−2`` zero units), and the h-unit **student** reading ``f_3 … f_{h+2}`` with
output weights all 1, because ``φ(f_1) − φ(f_2) = Σ_{j≥3} φ(f_j) = y``.

The paper argues that every path between them crosses a point whose output weights are all
``≥ 0`` with one of them 0 (call this set S), and Lemma 6 says such a net cannot fit ``y``. What is
exact is checked in :mod:`proofs_check.counterexample`, and a proved lower bound on the loss over S
(hence on every path's barrier) is computed in :mod:`proofs_check.thm4_barrier`; what this module measures —
straight-line barriers, the best barrier of learned curves (:mod:`stability.curves`), the best
loss found on S, the dependence on ``k, l, m`` and a generic-data control — is EVIDENCE, not proof.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from . import nets as _nets
from .curves import Curve, bezier, curve_point, perturb_bends, polychain, train_curve
from .evaluate import evaluate, line_point
from .losses import squared_error

Array = jax.Array

__all__ = [
    "Sizes", "sizes", "dataset", "arch", "teacher_minimizer", "student_minimizer", "generic_teacher_data",
    "net_loss", "fit_students", "crossing_set_loss", "curve_barriers", "StudyConfig", "barrier_study",
    "summary_rows", "SUMMARY_HEADER", "write_outputs", "plot_dataset", "plot_barriers", "main",
]


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

    With 1-based row ``i`` and column ``j`` (SPEC §7, offsets as in the appendix's Figure 4):

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
# bound on inf_S L is computed in proofs_check.thm4_barrier. Here we estimate inf_S L by restarts of
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
    A = np.asarray(net.layers[0]["w"], np.float64)
    w = np.asarray(net.layers[1]["w"], np.float64)
    out = np.maximum(np.asarray(X, np.float64) @ A.T, 0.0) @ w.T
    return float(np.mean(0.5 * (out[:, 0] - np.asarray(y, np.float64)) ** 2))


def _mse(net: _nets.Net, x: Array, y: Array) -> Array:
    return squared_error.mean(_nets.apply(net, x), y)


def _fit_impl(net: _nets.Net, x: Array, y: Array, steps: int, lr: float, nonneg_out: bool) -> _nets.Net:
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=1e-2))

    def step(carry, _):
        p, s = carry
        u, s = opt.update(jax.grad(_mse)(p, x, y), s, p)
        p = optax.apply_updates(p, u)
        if nonneg_out:  # projection onto w ≥ 0: the crossing set S (with width h − 1)
            p = p.replace_layer(1, w=jnp.maximum(p.layers[1]["w"], 0))
        return (p, s), None

    (net, _), _ = jax.lax.scan(step, (net, opt.init(net)), None, length=steps)
    return net


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _fit_many(stacked: _nets.Net, x: Array, y: Array, steps: int, lr: float, nonneg_out: bool) -> _nets.Net:
    return jax.vmap(lambda p: _fit_impl(p, x, y, steps, lr, nonneg_out))(stacked)


def _pad_rows(X: np.ndarray, y: np.ndarray, n_pad: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Append zero rows (target 0). Exact for these no-bias nets: a zero input has output 0, so a
    padded row adds 0 to the loss and to every gradient; the full-batch mean only changes by the
    constant factor n/n_pad, which Adam ignores. Padding lets every (k, l, m) variant of one h share
    one compiled program."""
    if n_pad is None or n_pad <= X.shape[0]:
        return X, y
    return (np.concatenate([X, np.zeros((n_pad - X.shape[0], X.shape[1]), X.dtype)]),
            np.concatenate([y, np.zeros((n_pad - y.shape[0],), y.dtype)]))


def fit_students(h: int, X: np.ndarray, y: np.ndarray, seeds: Sequence[int], *, width: int | None = None,
                 nonneg_out: bool = False, steps: int = 4000, lr: float = 1e-2, n_pad: int | None = None,
                 ) -> tuple[list[_nets.Net], np.ndarray]:
    """Full-batch Adam (cosine rate) from He initialisations, one per seed, vmapped in one program.

    ``width`` hidden units (default ``h``); with ``nonneg_out`` the output weights are projected onto
    ``w ≥ 0`` after every step (then, with ``width = h − 1``, the nets lie in the crossing set S).
    Returns the nets and their float64 losses on the unpadded data.
    """
    width = h if width is None else int(width)
    a = _nets.Arch(in_shape=(h + 2,), widths=(width, 1), bias=False)
    stacked = []
    for shape in a.weight_shapes():  # He-normal from NumPy generators (no per-shape compile)
        ws = [np.random.default_rng([int(s), len(stacked)]).normal(size=shape) * np.sqrt(2.0 / shape[1]) for s in seeds]
        stacked.append({"w": jnp.asarray(np.stack(ws), X.dtype)})
    if nonneg_out:
        stacked[1]["w"] = jnp.abs(stacked[1]["w"])
    Xp, yp = _pad_rows(X, y, n_pad)
    out = _nets.unstack(_fit_many(_nets.Net(a, tuple(stacked)), jnp.asarray(Xp), jnp.asarray(yp), int(steps),
                                  float(lr), bool(nonneg_out)))
    return out, np.array([net_loss(n, X, y) for n in out])


def crossing_set_loss(h: int, X: np.ndarray, y: np.ndarray, *, restarts: int = 8, steps: int = 6000,
                      lr: float = 1e-2, seed: int = 0, n_pad: int | None = None) -> dict[str, Any]:
    """Best loss found on the crossing set S (width ``h−1``, output weights ``≥ 0``): an upper estimate of
    ``inf_S L``, which every path's barrier is at least (EVIDENCE, see the comment above)."""
    seeds = [seed * 1000 + 500 + r for r in range(restarts)]
    found, losses = fit_students(h, X, y, seeds, width=h - 1, nonneg_out=True, steps=steps, lr=lr, n_pad=n_pad)
    best = int(np.argmin(losses))
    return {"best": float(losses[best]), "losses": losses.tolist(), "net": found[best]}


def _embed_zero_unit(net: _nets.Net, p: int) -> _nets.Net:
    """A width-(h−1) net as a width-h net whose unit ``p`` is a zero unit (same function)."""
    A = np.insert(np.asarray(net.layers[0]["w"]), p, 0.0, axis=0)
    w = np.insert(np.asarray(net.layers[1]["w"]), p, 0.0, axis=1)
    h = A.shape[0]
    return _nets.Net(arch(h), ({"w": jnp.asarray(A)}, {"w": jnp.asarray(w)}))


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """Budget of :func:`barrier_study` (``quick()`` for the demo, the defaults for the issue note)."""

    kinds: tuple[str, ...] = ("bezier", "polychain")
    bends: tuple[int, ...] = (1, 3, 6)
    restarts: int = 4
    via_crossing: int = 3
    steps: int = 6000
    lr: float = 1e-2
    perturb: float = 0.5
    grid: int = 241
    crossing_restarts: int = 32
    crossing_steps: int = 8000
    control_students: int = 16
    control_steps: int = 8000
    control_lr: float = 3e-2
    control_restarts: int = 2
    klm_h: int = 3
    klm_scales: tuple[int, ...] = (1, 2, 3)

    @classmethod
    def quick(cls) -> "StudyConfig":
        """The quick demo budget (one Bezier and one polychain shape, few restarts)."""
        return cls(bends=(3,), restarts=2, via_crossing=1, steps=2500, grid=121, crossing_restarts=8,
                   crossing_steps=3000, control_students=16, control_steps=8000, control_restarts=1, klm_scales=(1, 3))

    @classmethod
    def demo(cls) -> "StudyConfig":
        """The full demo budget (< 3 min on a 2-core CPU with four h); the defaults are the issue study's."""
        return cls(bends=(1, 3), restarts=3, via_crossing=2, steps=4000, grid=241, crossing_restarts=16,
                   crossing_steps=6000, control_restarts=1, klm_scales=(1, 3))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _loss_along(curve: Curve, X: np.ndarray, y: np.ndarray, grid: int, batch: int):
    """Loss at ``grid`` equally spaced t in one vectorised :func:`evaluate` call (fixed batch: shared program)."""
    return evaluate(curve_point, curve, np.linspace(0.0, 1.0, grid), X, y, apply_fn=_nets.apply, loss=squared_error,
                    batch_size=batch)


def curve_barriers(w0: _nets.Net, w1s: Sequence[_nets.Net], X: np.ndarray, y: np.ndarray, cfg: StudyConfig, *,
                   restarts: int | None = None, via: Sequence[tuple[_nets.Net, _nets.Net]] = (), seed: int = 0,
                   n_pad: int | None = None, log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Learned curves (Garipov eq. 3, :func:`stability.curves.train_curve`) from ``w0`` to the end points
    ``w1s`` (restart ``r`` uses ``w1s[r mod len]``: e.g. permutations of one minimum), for every kind ×
    bends × restart; restart 0 starts on the segment, later ones with bends perturbed by
    ``cfg.perturb·N(0,1)``. Each ``(w1, mid)`` in ``via`` adds a 3-bend polychain initialised through
    ``mid``. Returns one record per curve with its max loss on the grid (the barrier estimate).
    EVIDENCE only: a curve's max (on the grid) bounds the smallest barrier over all paths from above,
    nothing more.
    """
    emit = log or (lambda s: None)
    Xp, yp = _pad_rows(X, y, n_pad)
    batch = Xp.shape[0]
    restarts = cfg.restarts if restarts is None else restarts
    jobs: list[tuple[str, Curve, int, dict[str, Any]]] = []
    for kind in cfg.kinds:
        make = bezier if kind == "bezier" else polychain
        for nb in cfg.bends:
            for r in range(restarts):
                curve = make(w0, w1s[r % len(w1s)], nb)
                if r:
                    curve = perturb_bends(curve, jax.random.PRNGKey(seed * 7919 + 31 * r + nb), cfg.perturb)
                jobs.append((kind, curve, r, {"init": "segment" if r == 0 else f"perturbed {cfg.perturb}",
                                              "end": r % len(w1s)}))
    for r, (w1, mid) in enumerate(via):
        bends_ = jax.tree_util.tree_map(lambda a, c, b: jnp.stack([(a + c) / 2, c, (c + b) / 2]), w0, mid, w1)
        jobs.append(("polychain", Curve((w0, w1), bends_, "polychain"), r, {"init": "through crossing-set point"}))
    out = []
    for kind, curve, r, meta in jobs:
        trained, hist = train_curve(curve, _nets.apply, Xp, yp, loss=squared_error, steps=cfg.steps, batch_size=batch,
                                    lr=cfg.lr, optimizer="adam", schedule="cosine", seed=seed * 100 + r,
                                    log_every=cfg.steps, progress=False)
        res = _loss_along(trained, X, y, cfg.grid, batch)
        ends = max(float(res.loss[0]), float(res.loss[-1]))
        rec = {"kind": kind, "bends": trained.n_bends, "restart": r, **meta,
               "max_loss": float(res.loss.max()), "barrier": float(res.loss.max()) - ends,
               "t_at_max": float(res.ts[int(np.argmax(res.loss))]),
               "eq3_loss": float(np.trapezoid(res.loss, res.ts)), "loss": res.loss.tolist()}
        emit(f"    {kind:9s} {trained.n_bends} bends, restart {r} ({meta['init']}): max loss {rec['max_loss']:.5f}")
        out.append(rec)
    return out


def _straight(w0: _nets.Net, w1: _nets.Net, X: np.ndarray, y: np.ndarray, grid: int, batch: int) -> dict[str, Any]:
    r = evaluate(line_point, (w0, w1), np.linspace(0.0, 1.0, grid), X, y, apply_fn=_nets.apply, loss=squared_error,
                 batch_size=batch)
    ends = max(float(r.loss[0]), float(r.loss[-1]))
    return {"max_loss": float(r.loss.max()), "barrier": float(r.loss.max()) - ends,
            "t_at_max": float(r.ts[int(np.argmax(r.loss))]), "loss": r.loss.tolist()}


def _best(records: list[dict[str, Any]]) -> dict[str, Any]:
    return min(records, key=lambda r: r["barrier"])


def _no_loss(record: dict[str, Any]) -> dict[str, Any]:
    """A curve record without its per-t losses (kept only for the best curve and the straight line)."""
    return {k: v for k, v in record.items() if k != "loss"}


def _counterexample_case(s: Sizes, cfg: StudyConfig, seed: int, n_pad: int, log: Callable[[str], None],
                         ) -> dict[str, Any]:
    """Straight line, learned curves, crossing set for one dataset ``s`` (all EVIDENCE but the zero end losses)."""
    X, y = dataset(*s, dtype=np.float32)
    teacher, student = teacher_minimizer(s.h), student_minimizer(s.h)
    rng = np.random.default_rng(seed + 17 * s.h)
    ends = [student] + [student_minimizer(s.h, perm=rng.permutation(s.h)) for _ in range(max(0, cfg.restarts - 1))]
    zero_loss = float(np.mean(0.5 * y.astype(np.float64) ** 2))
    line = _straight(teacher, student, X, y, cfg.grid, n_pad)
    log(f"  h={s.h} (k,l,m,n)={tuple(s[1:])}: straight line max loss {line['max_loss']:.4f}")
    cross = crossing_set_loss(s.h, X, y, restarts=cfg.crossing_restarts, steps=cfg.crossing_steps, lr=cfg.lr,
                              seed=seed, n_pad=n_pad)
    log(f"  crossing set S: best loss found {cross['best']:.5f} ({cfg.crossing_restarts} restarts)")
    via = []
    for r in range(cfg.via_crossing):
        via.append((ends[r % len(ends)], _embed_zero_unit(cross["net"], r % s.h)))
    curves_ = curve_barriers(teacher, ends, X, y, cfg, via=via, seed=seed, n_pad=n_pad, log=log)
    best = _best(curves_)
    return {
        "h": s.h, "k": s.k, "l": s.l, "m": s.m, "n": s.n, "loss_of_zero_function": zero_loss,
        "end_losses": [net_loss(teacher, X, y), net_loss(student, X, y)],
        "straight": line, "crossing_set_best": cross["best"], "crossing_set_losses": cross["losses"],
        "curves": [_no_loss(c) for c in curves_], "best_curve": best,
    }


def _control_case(h: int, n: int, cfg: StudyConfig, seed: int, n_pad: int, log: Callable[[str], None],
                  ) -> dict[str, Any]:
    """The control: the same widths on generic teacher data (Gaussian inputs), teacher → trained student."""
    X, y, teacher = generic_teacher_data(h, n, seed=seed + 101 * h)
    seeds = [seed * 1000 + 900 + r for r in range(cfg.control_students)]
    studs, losses = fit_students(h, X, y, seeds, steps=cfg.control_steps, lr=cfg.control_lr, n_pad=n_pad)
    student = studs[int(np.argmin(losses))]
    zero_loss = float(np.mean(0.5 * y.astype(np.float64) ** 2))
    line = _straight(teacher, student, X, y, cfg.grid, n_pad)
    curves_ = curve_barriers(teacher, [student], X, y, cfg, restarts=cfg.control_restarts, seed=seed, n_pad=n_pad)
    best = _best(curves_)
    log(f"  control h={h}: student loss {float(losses.min()):.2e}, straight max {line['max_loss']:.4f}, "
        f"best learned barrier {best['barrier']:.2e}")
    return {"h": h, "n": n, "loss_of_zero_function": zero_loss, "student_loss": float(losses.min()),
            "teacher_loss": net_loss(teacher, X, y), "negative_output_weights": int(np.sum(
                np.asarray(student.layers[1]["w"]) < 0)),
            "straight": line, "best_curve": best,
            "curves": [_no_loss(c) for c in curves_]}


def _klm_variants(h: int, scales: Sequence[int]) -> list[tuple[str, int, Sizes]]:
    """One block grown at a time from the smallest sizes: k = c(h+1) − …, l − k, m − l (c = scale)."""
    base = sizes(h)
    out = [("base", 0, base)]
    for c in scales:
        if c == 1:
            continue
        k = c * (h + 1)
        out.append(("k", k, sizes(h, k=k)))
        out.append(("l-k", c * (h + 1), sizes(h, k=base.k, l=base.k + c * (h + 1))))
        out.append(("m-l", 3 * c, sizes(h, k=base.k, l=base.l, m=base.l + 3 * c)))
    return out


def barrier_study(hs: Sequence[int] = (2, 3, 4, 6), *, quick: bool = False, cfg: StudyConfig | None = None,
                  seed: int = 0, out: str | Path | None = None, log: Callable[[str], None] | None = None,
                  ) -> dict[str, Any]:
    """EVIDENCE for Theorem 4's disconnection, per ``h`` in ``hs``: the straight line's barrier, the best
    barrier of learned curves (Bezier and polychains, several bends, restarts over perturbed starts and
    permutations of the student minimizer, and polychains started through the best point found on the
    crossing set S), the best loss found on S, a generic-data control; and, for ``h = cfg.klm_h``, the
    same numbers as ``k``, ``l − k`` and ``m − l`` grow.

    Barrier = max loss on the grid − max end-point loss (the counterexample's end losses are exactly 0).
    With ``out`` it writes ``thm4_barriers.json``, ``thm4_data.png`` and ``thm4_barriers.png`` there.
    """
    cfg = cfg or (StudyConfig.quick() if quick else StudyConfig())
    emit = log or (lambda s: print(s, file=sys.stderr, flush=True))
    hs = [sizes(h).h for h in hs]
    t0 = time.perf_counter()
    per_h, controls, klm = [], [], []
    for h in hs:
        variants = _klm_variants(h, cfg.klm_scales) if h == cfg.klm_h else [("base", 0, sizes(h))]
        n_pad = max(v[2].n for v in variants)
        emit(f"Theorem 4 barrier study: h = {h}")
        for which, value, s in variants:
            case = _counterexample_case(s, cfg, seed, n_pad, emit)
            if which == "base":
                per_h.append(case)
            if h == cfg.klm_h:
                klm.append({"varied": which, "value": value, **{k: case[k] for k in ("h", "k", "l", "m", "n")},
                            "straight": case["straight"]["max_loss"], "best_curve": case["best_curve"]["barrier"],
                            "crossing_set_best": case["crossing_set_best"],
                            "loss_of_zero_function": case["loss_of_zero_function"]})
        controls.append(_control_case(h, sizes(h).n, cfg, seed, n_pad, emit))
    result = {
        "label": "EVIDENCE, not proof: learned-curve and crossing-set numbers come from local optimisation",
        "hs": hs, "seed": seed, "config": cfg.to_dict(), "per_h": per_h, "control": controls, "klm": klm,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if out is not None:
        write_outputs(result, out)
    return result


def summary_rows(result: dict[str, Any]) -> list[list[Any]]:
    """One table row per h: straight line, best learned curve, crossing set, control (mean losses)."""
    rows = []
    for case, ctl in zip(result["per_h"], result["control"]):
        b = case["best_curve"]
        rows.append([case["h"], case["n"], case["straight"]["barrier"], b["barrier"],
                     f"{b['kind']} {b['bends']} ({b['init']})", case["crossing_set_best"],
                     ctl["straight"]["barrier"], ctl["best_curve"]["barrier"], ctl["student_loss"]])
    return rows


SUMMARY_HEADER = ["h", "n", "straight line", "best learned curve (EVIDENCE)", "best curve", "crossing set S (EVIDENCE)",
                  "control: straight", "control: best curve", "control: student loss"]


def write_outputs(result: dict[str, Any], out: str | Path) -> list[Path]:
    """``thm4_barriers.json`` + the dataset figure (smallest h of the study) + the barrier figure."""
    from .io import write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_json(out / "thm4_barriers.json", result)]
    import matplotlib.pyplot as plt

    for name, fig in (("thm4_data.png", plot_dataset(4)),
                      ("thm4_barriers.png", plot_barriers(result))):
        fig.savefig(out / name, dpi=120, bbox_inches="tight")
        plt.close(fig)
        paths.append(out / name)
    return paths


# --------------------------------------------------------------------------- figures


def plot_dataset(h: int = 3, k: int | None = None, l: int | None = None, m: int | None = None,
                 n: int | None = None):
    """The dataset matrix ``[X | y]`` as in the appendix's Figure 4, blocks outlined and entries printed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = sizes(h, k, l, m, n)
    X, y = dataset(*s, dtype=np.int64)
    M = np.concatenate([X, y[:, None]], axis=1).astype(float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.42 * M.shape[1], 1.0 + 0.26 * M.shape[0]))
    shown = np.clip(M, -1, 1)
    shown[: s.l, :2] = np.sign(M[: s.l, :2]) * 0.5  # f_1, f_2 grow with i: colour by sign only
    ax.imshow(shown, cmap="RdBu", vmin=-1.6, vmax=1.6, aspect="auto")
    for i in range(M.shape[0]):
        for j in range(M.shape[1]):
            if M[i, j] != 0 or j == M.shape[1] - 1:
                ax.text(j, i, f"{int(M[i, j])}", ha="center", va="center", fontsize=7)
    for b in (s.k, s.l, s.m):
        ax.axhline(b - 0.5, color="k", lw=0.8)
    for b in (1.5, M.shape[1] - 1.5):
        ax.axvline(b, color="k", lw=0.8)
    ax.set_xticks(range(M.shape[1]), [f"f{j}" for j in range(1, h + 3)] + ["y"])
    ax.set_yticks([0, s.k - 1, s.l - 1, s.m - 1, s.n - 1],
                  [f"x1", f"xk={s.k}", f"xl={s.l}", f"xm={s.m}", f"xn={s.n}"])
    ax.set_title(f"Theorem 4 dataset, h={h} (rows = samples)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_barriers(result: dict[str, Any]):
    """Left: barrier vs h (straight line, best learned curve, crossing set, control), log scale.
    Middle: loss along the best learned curve per h. Right: barrier vs the grown block (k, l−k, m−l)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    hs = [c["h"] for c in result["per_h"]]
    floor = 1e-8
    series = {
        "straight line": [c["straight"]["barrier"] for c in result["per_h"]],
        "best learned curve": [c["best_curve"]["barrier"] for c in result["per_h"]],
        "best point on crossing set S": [c["crossing_set_best"] for c in result["per_h"]],
        "control: straight line": [c["straight"]["barrier"] for c in result["control"]],
        "control: best learned curve": [c["best_curve"]["barrier"] for c in result["control"]],
    }
    styles = ["o-", "s-", "^--", "o:", "s:"]
    for (name, vals), st in zip(series.items(), styles):
        axes[0].plot(hs, np.maximum(vals, floor), st, label=name)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("h (hidden units)")
    axes[0].set_ylabel("barrier (mean loss)")
    axes[0].set_title("EVIDENCE: barrier vs h")
    axes[0].legend(fontsize=7)
    for c in result["per_h"]:
        loss = c["best_curve"].get("loss")
        if loss:
            axes[1].plot(np.linspace(0, 1, len(loss)), loss, label=f"h={c['h']}")
    axes[1].set_xlabel("t")
    axes[1].set_ylabel("train loss")
    axes[1].set_title("loss along the best learned curve")
    axes[1].legend(fontsize=7)
    klm = result["klm"]
    if klm:
        base = next(r for r in klm if r["varied"] == "base")
        for which, st in (("k", "o-"), ("l-k", "s-"), ("m-l", "^-")):
            rows = [base] + [r for r in klm if r["varied"] == which]
            xs = [{"k": r["k"], "l-k": r["l"] - r["k"], "m-l": r["m"] - r["l"]}[which] for r in rows]
            axes[2].plot(xs, [r["best_curve"] for r in rows], st, label=f"best curve, vary {which}")
            axes[2].plot(xs, [r["crossing_set_best"] for r in rows], st.replace("-", ":"), alpha=0.6,
                         label=f"crossing set, vary {which}")
        axes[2].set_xlabel("size of the grown block")
        axes[2].set_ylabel("barrier (mean loss)")
        axes[2].set_title(f"EVIDENCE: barrier vs k, l−k, m−l (h={base['h']})")
        axes[2].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m stability.counterexample --hs 2,3,4,6 --out DIR [--quick]``: run :func:`barrier_study`."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m stability.counterexample",
                                description="EVIDENCE for Theorem 4's disconnection (Kuditipudi et al. 2019, App. C)")
    p.add_argument("--hs", default="2,3,4,6", help="comma-separated h values (>= 2)")
    p.add_argument("--out", default="thm4_out")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--restarts", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--bends", help="comma-separated bend counts, e.g. 1,3,6")
    p.add_argument("--klm-h", type=int)
    args = p.parse_args(argv)
    cfg = StudyConfig.quick() if args.quick else StudyConfig()
    changes: dict[str, Any] = {}
    if args.restarts is not None:
        changes["restarts"] = args.restarts
    if args.steps is not None:
        changes["steps"] = args.steps
    if args.bends:
        changes["bends"] = tuple(int(b) for b in args.bends.split(","))
    if args.klm_h is not None:
        changes["klm_h"] = args.klm_h
    cfg = dataclasses.replace(cfg, **changes)
    hs = [int(h) for h in args.hs.split(",") if h.strip()]
    result = barrier_study(hs, cfg=cfg, seed=args.seed, out=args.out)
    print("EVIDENCE (mean squared-error loss; end points have loss exactly 0):")
    print(" | ".join(SUMMARY_HEADER))
    for row in summary_rows(result):
        print(" | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    print(f"wrote {args.out}/thm4_barriers.json, thm4_data.png, thm4_barriers.png in {result['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
