"""Ensembles (Garipov et al. 2018, §4 and Table 1): FGE, snapshot ensembles, independent nets,
softmax averaging and temperature scaling, and an equal-budget comparison harness.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from stability.core import checks as _checks
from stability.core import nets as _nets
from stability.core.progress import get_logger
from stability.core.train import TrainConfig, TrainState, fit, make_schedule

Array = jax.Array
ApplyFn = Callable[[Any, Array], Array]

_log = get_logger("ensembles")

__all__ = [
    "fge_lr", "fge_collect", "FGESchedule", "SSESchedule", "BudgetRuns", "fge_schedule", "sse_schedule", "ensemble_probs", "ensemble_metrics",
    "fit_temperature", "fge", "snapshot_ensemble", "independent_ensemble", "compare_budgets",
    "curve_ensemble", "pair_ensemble_along", "random_direction_point", "random_unit_direction",
]


def fge_lr(i: int | Array, c: int, alpha1: float, alpha2: float) -> Array:
    """FGE's cyclic rate (Garipov Alg. 1 / docs/THEORY.md §8) at 1-based iteration ``i``, even cycle ``c``:
    ``s = (mod(i−1, c)+1)/c``; ``(1−2s)α1 + 2sα2`` for ``s ≤ ½``, else ``(2−2s)α2 + (2s−1)α1``."""
    if c < 2 or c % 2:
        raise ValueError(f"the FGE cycle length must be an even integer >= 2, got {c}")
    s = (jnp.mod(jnp.asarray(i) - 1, c) + 1) / c
    return jnp.where(s <= 0.5, (1 - 2 * s) * alpha1 + 2 * s * alpha2, (2 - 2 * s) * alpha2 + (2 * s - 1) * alpha1)


def fge_collect(i: int, c: int) -> bool:
    """FGE collects the weights after iteration ``i`` when ``mod(i, c) = c/2`` (the rate's minimum α2)."""
    return i % c == c // 2


@dataclasses.dataclass(frozen=True)
class FGESchedule:
    """:func:`fge_lr` as an optax schedule (optax counts steps from 0, FGE from 1). ``start`` is the optimizer step
    FGE begins at (a pre-training run's step counter, carried in its optimizer state): FGE's iteration ``i`` is
    ``count − start + 1``. A frozen dataclass: equal schedules hash equal, so
    :func:`stability.core.train.fit` reuses its compiled program across runs."""

    c: int
    alpha1: float
    alpha2: float
    start: int = 0

    def __call__(self, count: Array) -> Array:
        return fge_lr(count - self.start + 1, self.c, self.alpha1, self.alpha2)


@dataclasses.dataclass(frozen=True)
class SSESchedule:
    """Snapshot Ensembles' cosine cyclic rate ``α0/2 (cos(π mod(i, P)/P) + 1)`` with period ``P = ⌈T/M⌉``."""

    period: int
    alpha0: float

    def __call__(self, count: Array) -> Array:
        return self.alpha0 / 2 * (jnp.cos(jnp.pi * jnp.mod(count, self.period) / self.period) + 1)


def fge_schedule(c: int, alpha1: float, alpha2: float, start: int = 0) -> optax.Schedule:
    """:func:`fge_lr` as an optax schedule starting at optimizer step ``start`` (see :class:`FGESchedule`)."""
    if c < 2 or c % 2:
        raise ValueError(f"the FGE cycle length must be an even integer >= 2, got {c}")
    if start < 0:
        raise ValueError(f"the FGE start step must be >= 0, got {start}")
    return FGESchedule(int(c), float(alpha1), float(alpha2), int(start))


def sse_schedule(total: int, cycles: int, alpha0: float) -> optax.Schedule:
    """Snapshot Ensembles' cosine cyclic rate: ``α0/2 (cos(π mod(i−1, ⌈T/M⌉)/⌈T/M⌉) + 1)``."""
    if cycles < 1 or total < cycles:
        raise ValueError(f"need 1 <= cycles <= total steps, got cycles={cycles}, total={total}")
    return SSESchedule(math.ceil(total / cycles), float(alpha0))


def ensemble_probs(members: Sequence[Any], x: Array, apply_fn: ApplyFn = _nets.apply, temperature: float = 1.0,
                   ) -> Array:
    """Average of the members' softmax outputs (logits divided by ``temperature``), one vmapped call."""
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *members)
    logits = _member_logits(apply_fn, stacked, jnp.asarray(x))
    return jnp.mean(jax.nn.softmax(logits / temperature, axis=-1), axis=0)


@functools.partial(jax.jit, static_argnums=0)
def _member_logits(apply_fn: ApplyFn, stacked: Any, x: Array) -> Array:
    """Logits of every stacked member (compiled once per apply function and shapes)."""
    return jax.vmap(apply_fn, in_axes=(0, None))(stacked, x)


def ensemble_metrics(probs: Array, y: Array) -> dict[str, float]:
    """Error (%) and NLL of averaged probabilities."""
    y = jnp.asarray(y)
    nll = -jnp.mean(jnp.log(jnp.clip(probs[jnp.arange(y.shape[0]), y], 1e-12)))
    err = 100.0 * jnp.mean(jnp.argmax(probs, axis=-1) != y)
    return {"error": float(err), "nll": float(nll)}


def fit_temperature(logits: Array, y: Array, grid: Array | None = None) -> float:
    """Temperature T minimising held-out NLL of ``softmax(logits / T)`` (log-spaced grid, then golden refine).

    ``logits`` is ``(N, C)`` for one net or ``(M, N, C)`` for an ensemble, whose members' softmaxes
    at temperature T are averaged.
    """
    logits, y = jnp.asarray(logits), jnp.asarray(y)
    members = logits if logits.ndim == 3 else logits[None]

    def nll(t: float) -> float:
        return ensemble_metrics(jnp.mean(jax.nn.softmax(members / t, -1), axis=0), y)["nll"]

    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 61)) if grid is None else np.asarray(grid)
    vals = [nll(t) for t in grid]
    k = int(np.argmin(vals))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    g = (math.sqrt(5) - 1) / 2
    for _ in range(30):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float((lo + hi) / 2)


def fge(net: _nets.Net | TrainState, x: Array, y: Array, cfg: TrainConfig, *, cycle: int, alpha1: float,
        alpha2: float, **fit_kw) -> tuple[list[_nets.Net], Any]:
    """Fast Geometric Ensembling from a pre-trained ``net``: ``cfg.steps`` iterations of the cyclic
    rate, collecting at ``mod(i, c) = c/2``. ``net`` may be a :class:`~stability.core.train.TrainState` (a normal
    run's checkpoint): FGE then continues with its optimizer state — momentum buffers kept, as the paper's code
    loads the checkpoint's optimizer state — and its cycle starts at the state's step. Returns the collected
    members and the history."""
    snaps = [i for i in range(1, cfg.steps + 1) if fge_collect(i, cycle)]
    if not snaps:
        raise ValueError(f"{cfg.steps} steps hold no collection point of cycle {cycle}")
    start = net.step if isinstance(net, TrainState) else 0
    _, hist = fit(net, x, y, cfg, schedule=fge_schedule(cycle, alpha1, alpha2, start), snapshot_at=snaps, **fit_kw)
    return hist.snapshots, hist


def snapshot_ensemble(net: _nets.Net, x: Array, y: Array, cfg: TrainConfig, *, cycles: int,
                      **fit_kw) -> tuple[list[_nets.Net], dict[str, Any]]:
    """Snapshot Ensembles: cosine cyclic rate from ``cfg.lr`` with ``cycles`` restarts; a member per cycle end."""
    period = math.ceil(cfg.steps / cycles)
    snaps = sorted({min(period * (k + 1), cfg.steps) for k in range(cycles)})
    _, hist = fit(net, x, y, cfg, schedule=sse_schedule(cfg.steps, cycles, cfg.lr), snapshot_at=snaps, **fit_kw)
    return hist.snapshots, hist


def independent_ensemble(make_net: Callable[[int], _nets.Net], x: Array, y: Array, cfg: TrainConfig, *,
                         members: int, **fit_kw) -> list[_nets.Net]:
    """``members`` nets from seeds ``cfg.seed + k``, each trained with ``cfg``."""
    out = []
    for k in range(members):
        net, _ = fit(make_net(cfg.seed + k), x, y, dataclasses.replace(cfg, seed=cfg.seed + k), **fit_kw)
        out.append(net)
    return out


@dataclasses.dataclass
class BudgetRuns:
    """What :func:`compare_budgets` trained: ``members[method][r]`` the models of run ``r``; ``handover[r]`` the
    normal run's state at ``pre_steps`` that FGE started from; ``handover_lr[r]`` the rate of the normal
    schedule at the last pre-training step (the run is not annealed there)."""

    members: dict[str, list[list[Any]]]
    handover: list[TrainState]
    handover_lr: list[float]
    pre_steps: int


def compare_budgets(make_net: Callable[[int], _nets.Net], data: Any, cfg: TrainConfig, *, budgets: Sequence[int],
                    fge_cycle: int, fge_alphas: tuple[float, float], sse_snapshots: int = 2,
                    fge_pretrain: float = 0.75, return_members: bool = False, mesh: Mesh | None = None
                    ) -> list[dict[str, Any]] | tuple[list[dict[str, Any]], BudgetRuns]:
    """Garipov Table 1 protocol: a budget ``B = cfg.steps`` steps is one run; for a budget ``k·B`` each method
    is run ``k`` times from random initialisations (seeds ``cfg.seed + r``) and the models gathered from
    the ``k`` runs are ensembled (softmax average). Per run: Ind is the normal run (``cfg`` with its schedule
    over ``B`` steps); FGE starts from that same run's state after ``fge_pretrain·B`` steps (§5: "the standard
    learning rate schedule … for about 75% of the time"; the rate there is not annealed) with its momentum
    buffers kept, and runs the cyclic rate for the rest, collecting at ``mod(i, c) = c/2``; SSE runs the cosine
    cyclic rate with ``sse_snapshots`` restarts from the same initialisation and keeps a snapshot at each cycle
    end. Runs are shared between budgets (the k-budget ensemble holds runs 0..k−1), so ``max(budgets)`` runs
    per method are trained. ``data`` is a :class:`Dataset`.

    Returns one row per (budget, method): ``budget``, ``method``, ``members``, test ``error`` (%) and
    ``nll``; with ``return_members`` also the :class:`BudgetRuns`. ``mesh``: every run data parallel over its
    devices (:func:`stability.core.train.fit`).
    """
    budgets = _checks.int_tuple("budgets", budgets, 1)
    _checks.number("fge_pretrain", fge_pretrain, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    fge_cycle = _checks.positive_int("fge_cycle", fge_cycle)
    if fge_cycle < 2 or fge_cycle % 2:
        raise ValueError(f"fge_cycle must be an even integer ≥ 2, got {fge_cycle}")
    if len(fge_alphas) != 2:
        raise ValueError(f"fge_alphas must be (alpha1, alpha2), got {fge_alphas!r}")
    _checks.positive("fge_alphas[0] (alpha1)", fge_alphas[0])
    _checks.positive("fge_alphas[1] (alpha2)", fge_alphas[1])
    _checks.positive_int("sse_snapshots", sse_snapshots)
    if sse_snapshots > cfg.steps:
        raise ValueError(f"sse_snapshots must be ≤ the budget's {cfg.steps} steps, got {sse_snapshots}")
    x, y, xt, yt = data.x_train, data.y_train, data.x_test, data.y_test
    emit = _log.info
    pre_steps = int(round(fge_pretrain * cfg.steps))
    if pre_steps < 1:
        raise ValueError(f"fge_pretrain·B = {fge_pretrain}·{cfg.steps} rounds to no pre-training step")
    if cfg.steps - pre_steps < fge_cycle:
        raise ValueError(f"FGE gets {cfg.steps - pre_steps} steps after pre-training, less than one cycle "
                         f"({fge_cycle}); lengthen B or shorten the cycle")
    normal = make_schedule(cfg)
    runs: dict[str, list[list[Any]]] = {"Ind": [], "SSE": [], "FGE": []}
    handover: list[TrainState] = []
    for r in range(max(budgets)):
        c = dataclasses.replace(cfg, seed=cfg.seed + r)
        emit(f"run {r + 1}/{max(budgets)} (seed {c.seed}): Ind, SSE ({sse_snapshots} snapshots), "
             f"FGE (from the Ind run at step {pre_steps}, cycle {fge_cycle})")
        net, hist = fit(make_net(c.seed), x, y, c, progress=False, snapshot_at=[pre_steps], snapshot_state=True,
                        mesh=mesh)
        runs["Ind"].append([net])
        state = hist.snapshots[0]
        handover.append(state)
        sse, _ = snapshot_ensemble(make_net(c.seed), x, y, c, cycles=sse_snapshots, progress=False, mesh=mesh)
        runs["SSE"].append(sse)
        members, _ = fge(state, x, y, dataclasses.replace(c, steps=cfg.steps - pre_steps), cycle=fge_cycle,
                         alpha1=fge_alphas[0], alpha2=fge_alphas[1], progress=False, mesh=mesh)
        runs["FGE"].append(members)
    rows = []
    for k in budgets:
        for name in ("Ind", "SSE", "FGE"):
            members = [m for run in runs[name][:k] for m in run]
            m = ensemble_metrics(ensemble_probs(members, xt), yt)
            rows.append({"budget": k, "method": name, "members": len(members), **m})
            emit(f"  {k}B {name}: {len(members)} members, error {m['error']:.2f}%, NLL {m['nll']:.4f}")
    if not return_members:
        return rows
    return rows, BudgetRuns(runs, handover, [float(normal(pre_steps - 1))] * len(handover), pre_steps)


# --------------------------------------------------------------------------- ensembles along curves


def _point_logits(point_fn: Callable[[Any, Array], Any], theta: Any, ts: np.ndarray, x: Array,
                  apply_fn: ApplyFn) -> Array:
    """Logits of every point ``point_fn(theta, t)`` on ``x``: ``(len(ts), N, classes)``, one vmapped call
    (compiled once per point function, apply function and shapes)."""
    dtype = jax.tree_util.tree_leaves(theta)[0].dtype
    return _points_logits(point_fn, apply_fn, theta, jnp.asarray(ts, dtype), jnp.asarray(x))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _points_logits(point_fn: Callable[[Any, Array], Any], apply_fn: ApplyFn, theta: Any, ts: Array, x: Array) -> Array:
    return jax.vmap(lambda t: apply_fn(point_fn(theta, t), x))(ts)


def curve_ensemble(point_fn: Callable[[Any, Array], Any], theta: Any, x: Array, y: Array, *, n: int = 50,
                   x_val: Array | None = None, y_val: Array | None = None,
                   apply_fn: ApplyFn = _nets.apply) -> dict[str, Any]:
    """Garipov's curve ensemble: softmax average of ``n`` equally spaced points on the curve.

    With held-out ``(x_val, y_val)`` a temperature is fitted on them (each member's logits / T)
    and the calibrated ensemble is reported too. Errors in percent.
    """
    ts = np.linspace(0.0, 1.0, n)
    logits = _point_logits(point_fn, theta, ts, x, apply_fn)
    out: dict[str, Any] = {"members": n,
                           **ensemble_metrics(jnp.mean(jax.nn.softmax(logits, -1), axis=0), y)}
    if x_val is not None:
        t_best = fit_temperature(_point_logits(point_fn, theta, ts, x_val, apply_fn), y_val)
        cal = ensemble_metrics(jnp.mean(jax.nn.softmax(logits / t_best, -1), axis=0), y)
        out.update(temperature=t_best, calibrated_error=cal["error"], calibrated_nll=cal["nll"])
    return out


def pair_ensemble_along(point_fn: Callable[[Any, Array], Any], theta: Any, anchor: Any, ts: np.ndarray,
                        x: Array, y: Array, *, apply_fn: ApplyFn = _nets.apply) -> dict[str, np.ndarray]:
    """Figure 4: error of the two-network ensemble {anchor, w(t)} and of w(t) alone, for every t."""
    logits = _point_logits(point_fn, theta, ts, x, apply_fn)
    anchor_p = jax.nn.softmax(apply_fn(anchor, jnp.asarray(x)), -1)
    errs, single = [], []
    for k in range(len(ts)):
        p = jax.nn.softmax(logits[k], -1)
        errs.append(ensemble_metrics((p + anchor_p) / 2, y)["error"])
        single.append(ensemble_metrics(p, y)["error"])
    return {"t": np.asarray(ts), "ensemble_error": np.array(errs), "point_error": np.array(single)}


def random_direction_point(theta: tuple[Any, Any, Any], t: Array) -> Any:
    """``w0 + t·‖w1 − w0‖·u`` for a unit direction ``u`` (theta = (w0, w1, u)): a point on a random
    ray at the same distance from ``w0`` as the segment point at ``t`` (Figure 4's control)."""
    w0, w1, u = theta
    sq = sum(jnp.sum(jnp.square(b - a)) for a, b in zip(jax.tree_util.tree_leaves(w0), jax.tree_util.tree_leaves(w1)))
    dist = jnp.sqrt(sq)
    return jax.tree_util.tree_map(lambda a, d: a + t * dist * d, w0, u)


def random_unit_direction(key: Array, like: Any) -> Any:
    """A uniformly random unit direction in the weight space of ``like``."""
    leaves, tree = jax.tree_util.tree_flatten(like)
    keys = jax.random.split(key, len(leaves))
    raw = [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves)]
    norm = jnp.sqrt(sum(jnp.sum(r * r) for r in raw))
    return jax.tree_util.tree_unflatten(tree, [r / norm for r in raw])
