"""The Theorem 4 barrier study (EVIDENCE, not proof): learned curves between the teacher and student minimizers
of Kuditipudi et al. 2019, Appendix C (:mod:`stability.theory.counterexample`), the best loss found on the crossing
set S by optimisation, the dependence on ``k, l, m`` and a generic-data control. What is exact is proved in
:mod:`proofs_check.counterexample`."""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from stability.core import nets as _nets
from stability.core.progress import get_logger
from stability.core.train import TrainConfig
from stability.curves.curve import Curve, bezier, curve_point, perturb_bends, polychain, train_curve
from stability.core.evaluate import evaluate, line_point
from stability.core.losses import squared_error
from stability.plots.counterexample import plot_barriers, plot_dataset
from stability.theory.counterexample import (Sizes, arch, dataset, generic_teacher_data, net_loss, sizes,
                                             student_minimizer, teacher_minimizer)

Array = jax.Array
_log = get_logger("study")

__all__ = ["fit_students", "crossing_set_loss", "curve_barriers", "StudyConfig", "barrier_study", "summary_rows",
           "SUMMARY_HEADER", "write_outputs"]


def _mse(net: _nets.Net, x: Array, y: Array) -> Array:
    return squared_error.mean(_nets.apply(net, x), y)


def _fit_impl(net: _nets.Net, x: Array, y: Array, steps: int, lr: float, nonneg_out: bool) -> _nets.Net:
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=1e-2))

    def step(carry, _):
        p, s = carry
        u, s = opt.update(jax.grad(_mse)(p, x, y), s, p)
        p = optax.apply_updates(p, u)
        if nonneg_out:  # projection onto w ≥ 0: the crossing set S (with width h − 1)
            p = p.with_layer(2, A=jnp.maximum(p.A(2), 0))
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
        stacked.append(jnp.asarray(np.stack(ws), X.dtype))
    if nonneg_out:
        stacked[1] = jnp.abs(stacked[1])
    Xp, yp = _pad_rows(X, y, n_pad)
    out = _nets.unstack(_fit_many(_nets.Net.from_arrays(a, stacked), jnp.asarray(Xp), jnp.asarray(yp), int(steps),
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
    A = np.insert(np.asarray(net.A(1)), p, 0.0, axis=0)
    w = np.insert(np.asarray(net.A(2)), p, 0.0, axis=1)
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
                   n_pad: int | None = None) -> list[dict[str, Any]]:
    """Learned curves (Garipov eq. 3, :func:`stability.curves.train_curve`) from ``w0`` to the end points
    ``w1s`` (restart ``r`` uses ``w1s[r mod len]``: e.g. permutations of one minimum), for every kind ×
    bends × restart; restart 0 starts on the segment, later ones with bends perturbed by
    ``cfg.perturb·N(0,1)``. Each ``(w1, mid)`` in ``via`` adds a 3-bend polychain initialised through
    ``mid``. Returns one record per curve with its max loss on the grid (the barrier estimate).
    EVIDENCE only: a curve's max (on the grid) bounds the smallest barrier over all paths from above,
    nothing more.
    """
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
        tcfg = TrainConfig(steps=cfg.steps, batch_size=batch, optimizer="adam", lr=cfg.lr, schedule="cosine",
                           loss="squared_error", seed=seed * 100 + r, log_every=cfg.steps)
        trained, hist = train_curve(curve, _nets.apply, Xp, yp, tcfg, progress=False)
        res = _loss_along(trained, X, y, cfg.grid, batch)
        ends = max(float(res.loss[0]), float(res.loss[-1]))
        rec = {"kind": kind, "bends": trained.n_bends, "restart": r, **meta,
               "max_loss": float(res.loss.max()), "barrier": float(res.loss.max()) - ends,
               "t_at_max": float(res.ts[int(np.argmax(res.loss))]),
               "eq3_loss": float(np.trapezoid(res.loss, res.ts)), "loss": res.loss.tolist()}
        _log.info(f"    {kind:9s} {trained.n_bends} bends, restart {r} ({meta['init']}): max loss {rec['max_loss']:.5f}")
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


def _counterexample_case(s: Sizes, cfg: StudyConfig, seed: int, n_pad: int,
                         ) -> dict[str, Any]:
    """Straight line, learned curves, crossing set for one dataset ``s`` (all EVIDENCE but the zero end losses)."""
    X, y = dataset(*s, dtype=np.float32)
    teacher, student = teacher_minimizer(s.h), student_minimizer(s.h)
    rng = np.random.default_rng(seed + 17 * s.h)
    ends = [student] + [student_minimizer(s.h, perm=rng.permutation(s.h)) for _ in range(max(0, cfg.restarts - 1))]
    zero_loss = float(np.mean(0.5 * y.astype(np.float64) ** 2))
    line = _straight(teacher, student, X, y, cfg.grid, n_pad)
    _log.info(f"  h={s.h} (k,l,m,n)={tuple(s[1:])}: straight line max loss {line['max_loss']:.4f}")
    cross = crossing_set_loss(s.h, X, y, restarts=cfg.crossing_restarts, steps=cfg.crossing_steps, lr=cfg.lr,
                              seed=seed, n_pad=n_pad)
    _log.info(f"  crossing set S: best loss found {cross['best']:.5f} ({cfg.crossing_restarts} restarts)")
    via = []
    for r in range(cfg.via_crossing):
        via.append((ends[r % len(ends)], _embed_zero_unit(cross["net"], r % s.h)))
    curves_ = curve_barriers(teacher, ends, X, y, cfg, via=via, seed=seed, n_pad=n_pad)
    best = _best(curves_)
    return {
        "h": s.h, "k": s.k, "l": s.l, "m": s.m, "n": s.n, "loss_of_zero_function": zero_loss,
        "end_losses": [net_loss(teacher, X, y), net_loss(student, X, y)],
        "straight": line, "crossing_set_best": cross["best"], "crossing_set_losses": cross["losses"],
        "curves": [_no_loss(c) for c in curves_], "best_curve": best,
    }


def _control_case(h: int, n: int, cfg: StudyConfig, seed: int, n_pad: int,
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
    _log.info(f"  control h={h}: student loss {float(losses.min()):.2e}, straight max {line['max_loss']:.4f}, "
        f"best learned barrier {best['barrier']:.2e}")
    return {"h": h, "n": n, "loss_of_zero_function": zero_loss, "student_loss": float(losses.min()),
            "teacher_loss": net_loss(teacher, X, y), "negative_output_weights": int(np.sum(
                np.asarray(student.A(2)) < 0)),
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
                  seed: int = 0, out: str | Path | None = None,
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
    emit = _log.info
    hs = [sizes(h).h for h in hs]
    t0 = time.perf_counter()
    per_h, controls, klm = [], [], []
    for h in hs:
        variants = _klm_variants(h, cfg.klm_scales) if h == cfg.klm_h else [("base", 0, sizes(h))]
        n_pad = max(v[2].n for v in variants)
        emit(f"Theorem 4 barrier study: h = {h}")
        for which, value, s in variants:
            case = _counterexample_case(s, cfg, seed, n_pad)
            if which == "base":
                per_h.append(case)
            if h == cfg.klm_h:
                klm.append({"varied": which, "value": value, **{k: case[k] for k in ("h", "k", "l", "m", "n")},
                            "straight": case["straight"]["max_loss"], "best_curve": case["best_curve"]["barrier"],
                            "crossing_set_best": case["crossing_set_best"],
                            "loss_of_zero_function": case["loss_of_zero_function"]})
        controls.append(_control_case(h, sizes(h).n, cfg, seed, n_pad))
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
    from stability.core.io import atomic_write, write_json
    from stability.plots import save_png

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_json(out / "thm4_barriers.json", result)]
    for name, fig in (("thm4_data.png", plot_dataset(4)),
                      ("thm4_barriers.png", plot_barriers(result))):
        paths.append(atomic_write(out / name, lambda f, fig=fig: save_png(fig, f)))
    return paths
