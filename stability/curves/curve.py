"""Learned curves between two weight points (Garipov et al. 2018, §3; docs/THEORY.md §8).

A :class:`Curve` is a pytree over ANY pytree of weights (a :class:`stability.core.nets.Net`, a flax
``params`` dict, a tuple of arrays …): its two fixed end points ``ends = (ŵ_1, ŵ_2)`` and its
trainable control points ``bends`` (the same pytree with a leading axis of ``n`` bends). With
control points ``w_0 = ŵ_1, w_1 … w_n, w_{n+1} = ŵ_2``:

* polygonal chain (``kind="polychain"``): on ``[i/(n+1), (i+1)/(n+1)]``
  ``φ(t) = (n+1)((t − i/(n+1)) w_{i+1} + ((i+1)/(n+1) − t) w_i)`` (Garipov, Appendix A.1);
* Bezier curve (``kind="bezier"``): ``φ(t) = Σ_{i=0}^{n+1} C(n+1, i) t^i (1−t)^{n+1−i} w_i``.

Zero bends is the straight segment. ``φ(0)`` and ``φ(1)`` are the end points bit for bit.

:func:`train_curve` minimises eq. (3) of Garipov, ``ℓ(θ) = E_{t∼U(0,1)} L(φ_θ(t))``, with one
fresh ``t`` per minibatch, gradients w.r.t. the bends only (the end points stay fixed), in
jitted ``lax.scan`` blocks. As in the paper's official code, weight decay regularises the curve POINT:
``L(φ_θ(t)) + ½·wd·‖φ_θ(t)‖²`` at the sampled ``t`` (``penalty="point"``); ``penalty="bends"`` puts
``½·wd·‖θ‖²`` on the bends instead. The default optimiser is the paper's: SGD with momentum 0.9 and the
official schedule (:class:`stability.core.train.GaripovSchedule`). Everything is a pure function of pytrees and an ``apply_fn(params, x)``,
so no layer is rewritten per architecture. :func:`curve_point` is the point function for
:func:`stability.core.evaluate.evaluate`, so a learned curve lands in the same tables as any path.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import TYPE_CHECKING, Any, Callable, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from stability.core import mesh as _mesh
from stability.core.evaluate import describes
from stability.core.hostloop import run_steps, use_host_loop
from stability.core.nets import Net
from stability.core import checks as _checks
from stability.core.losses import Loss, check_targets, get_loss
from stability.core.progress import Progress
from stability.core.train import History, MinibatchOrder, TrainConfig, make_optimizer, make_schedule

if TYPE_CHECKING:
    from stability.core.polycurve import Combination, PolyCurve

Array = jax.Array
ApplyFn = Callable[[Any, Array], Array]
Kind = Literal["polychain", "bezier"]
Penalty = Literal["point", "bends"]
"""What the curve's weight decay penalises: ``"point"`` — ``½·wd·‖φ_θ(t)‖²`` at the sampled ``t`` (Garipov et al.'s
official code: the L2 of the curve point's weights, ``curves.l2_regularizer``); ``"bends"`` — ``½·wd·‖θ‖²`` on
the trainable bends."""

DEFAULT_CURVE_CONFIG = TrainConfig(steps=1000, batch_size=128, optimizer="momentum", lr=0.05, momentum=0.9,
                                   schedule="garipov", weight_decay=1e-4, log_every=200)
"""The curve trainer's defaults, the paper's recipe: SGD with momentum 0.9, lr 0.05 held for the first half then
decayed linearly to 1% (:class:`~stability.core.train.GaripovSchedule`), weight decay 1e-4 (the official code's
default) on the curve point; 1,000 steps of 128. Adam stays available (``optimizer="adam"``)."""

__all__ = ["Curve", "polychain", "bezier", "straight", "point", "points", "curve_point", "control_points",
           "perturb_bends", "penalty_minimiser", "train_curve", "curve_objective", "CurveTrainSpec", "trivial_point", "trivial_path_point",
           "DEFAULT_CURVE_CONFIG", "Penalty", "PENALTIES"]

PENALTIES: tuple[Penalty, ...] = ("point", "bends")

_KINDS = ("polychain", "bezier")


@dataclasses.dataclass(frozen=True)
class Curve:
    """A parametric curve ``φ_θ : [0, 1] → weights`` with ``φ(0) = ends[0]`` and ``φ(1) = ends[1]``.

    ``bends`` has the structure of one end point with a leading axis of length ``n_bends``
    (possibly 0). ``kind`` and ``fix_ends`` are static (pytree aux data).
    """

    ends: tuple[Any, Any]
    bends: Any
    kind: Kind = "bezier"
    fix_ends: bool = True

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"curve kind must be one of {_KINDS}, got {self.kind!r}")

    @property
    def n_bends(self) -> int:
        """Number of bends ``n`` (control points strictly between the end points)."""
        return int(jax.tree_util.tree_leaves(self.bends)[0].shape[0])

    @property
    def order(self) -> int:
        """Polynomial degree ``n + 1`` of the Bezier curve (number of segments of the polychain)."""
        return self.n_bends + 1


jax.tree_util.register_dataclass(Curve, data_fields=["ends", "bends"], meta_fields=["kind", "fix_ends"])


def _check_ends(w0: Any, w1: Any) -> None:
    s0, s1 = jax.tree_util.tree_structure(w0), jax.tree_util.tree_structure(w1)
    if s0 != s1:
        raise ValueError(f"the curve's end points have different pytree structures:\n{s0}\n{s1}")
    for a, b in zip(jax.tree_util.tree_leaves(w0), jax.tree_util.tree_leaves(w1)):
        if jnp.shape(a) != jnp.shape(b) or jnp.result_type(a) != jnp.result_type(b):
            raise ValueError(f"end point leaves differ: {jnp.shape(a)} {jnp.result_type(a)} vs "
                             f"{jnp.shape(b)} {jnp.result_type(b)}")
    if not jax.tree_util.tree_leaves(w0):
        raise ValueError("the curve's end points hold no arrays")


def _linear_bends(w0: Any, w1: Any, n: int) -> Any:
    """``n`` control points equally spaced on the segment: ``w_i = w0 + i/(n+1)·(w1 − w0)``."""
    n = _checks.nonneg_int("bends", n)
    fr = np.arange(1, n + 1, dtype=np.float64) / (n + 1)

    def one(a: Array, b: Array) -> Array:
        xp = _mesh.array_module(a, b)   # NumPy on the host: the same IEEE operations, no eager program per shape
        a = xp.asarray(a)
        s = xp.asarray(fr, a.dtype).reshape((n,) + (1,) * a.ndim)
        return _mesh.to_device(a[None] + s * (xp.asarray(b) - a)[None])

    return jax.tree_util.tree_map(one, w0, w1)


def polychain(w0: Any, w1: Any, bends: int = 1, *, fix_ends: bool = True) -> Curve:
    """Polygonal chain with ``bends`` bends, initialised equally spaced on the segment (so it starts as the line)."""
    _check_ends(w0, w1)
    return Curve((w0, w1), _linear_bends(w0, w1, bends), "polychain", fix_ends)


def bezier(w0: Any, w1: Any, bends: int = 1, *, order: int | None = None, fix_ends: bool = True) -> Curve:
    """Bezier curve with ``bends`` inner control points, i.e. of degree ``order = bends + 1``
    (Garipov's quadratic curve: ``bends=1`` or ``order=2``). Equally spaced control points on the
    segment reproduce the segment exactly (Bernstein polynomials reproduce linear functions)."""
    if order is not None:
        bends = _checks.integer("order (a Bezier curve's degree)", order, 1) - 1
    _check_ends(w0, w1)
    return Curve((w0, w1), _linear_bends(w0, w1, bends), "bezier", fix_ends)


def straight(w0: Any, w1: Any) -> Curve:
    """The straight segment as a curve with 0 bends."""
    return polychain(w0, w1, 0)


def control_points(curve: Curve) -> Any:
    """All control points ``w_0 … w_{n+1}`` stacked along a new leading axis."""
    w0, w1 = curve.ends

    def one(a: Array, bs: Array, b: Array) -> Array:
        xp = _mesh.array_module(a, bs, b)
        return _mesh.to_device(xp.concatenate([xp.asarray(a)[None], xp.asarray(bs), xp.asarray(b)[None]]))

    return jax.tree_util.tree_map(one, w0, curve.bends, w1)


def _bernstein(t: Array, degree: int) -> Array:
    """``[C(d, i) t^i (1−t)^{d−i}]_{i=0..d}`` with integer powers (finite gradients at t = 0, 1)."""
    s = 1 - t
    return jnp.stack([math.comb(degree, i) * t**i * s ** (degree - i) for i in range(degree + 1)])


def point(curve: Curve, t: Array | float) -> Any:
    """``φ(t)`` for a scalar ``t ∈ [0, 1]`` (docs/THEORY.md §8 formulas); exact end points at t = 0 and t = 1.

    Computed leaf by leaf from the end points and the bends without stacking the control points
    (no copy of the nets per step: this is on curve training's hot path)."""
    w0, w1 = curve.ends
    dtype = jax.tree_util.tree_leaves(w0)[0].dtype
    t = jnp.asarray(t, dtype)
    if t.ndim != 0:
        raise ValueError(f"point takes a scalar t; use points for a vector of ts (got shape {t.shape})")
    n = curve.n_bends
    segs = n + 1
    if curve.kind == "bezier":
        coef = _bernstein(t, segs)

        def inner(a: Array, bs: Array, b: Array) -> Array:
            out = coef[0].astype(a.dtype) * a + coef[segs].astype(a.dtype) * b
            if n:
                out = out + jnp.tensordot(coef[1:segs].astype(bs.dtype), bs, axes=(0, 0))
            return out
    else:
        s = t * segs
        i = jnp.clip(jnp.floor(s), 0, segs - 1).astype(jnp.int32)
        u = s - i  # = (n+1)(t − i/(n+1)) ∈ [0, 1]

        def inner(a: Array, bs: Array, b: Array) -> Array:
            if n == 0:
                lo, hi = a, b
            else:  # control points w_i, w_{i+1}: w_0 = a, w_1..w_n = bends, w_{n+1} = b
                lo = jnp.where(i == 0, a, bs[jnp.clip(i - 1, 0, n - 1)])
                hi = jnp.where(i == segs - 1, b, bs[jnp.clip(i, 0, n - 1)])
            return (1 - u).astype(a.dtype) * lo + u.astype(a.dtype) * hi

    return jax.tree_util.tree_map(
        lambda a, bs, b: jnp.where(t == 0, a, jnp.where(t == 1, b, inner(a, bs, b))).astype(jnp.result_type(a)),
        w0, curve.bends, w1)


def points(curve: Curve, ts: Array) -> Any:
    """``φ(t)`` for every ``t`` in the vector ``ts``: the pytree with a leading axis ``len(ts)``."""
    dtype = jax.tree_util.tree_leaves(curve.ends[0])[0].dtype
    return jax.vmap(lambda t: point(curve, t))(jnp.asarray(ts, dtype).reshape(-1))


def _curve_combination(theta: Curve, ts: np.ndarray) -> "Combination | None":
    """The curve's points at ``ts`` as a combination of its control points (``None`` outside ``[0, 1]``)."""
    from stability.core.polycurve import PolyCurve

    if np.any((ts < 0) | (ts > 1)):
        return None
    pts = control_points(theta)
    return (PolyCurve.bezier(pts) if theta.kind == "bezier" else PolyCurve.chain(pts)).combination(ts)


@describes(_curve_combination)
def curve_point(theta: Curve, t: Array) -> Any:
    """Point function for :func:`stability.core.evaluate.evaluate`: ``theta`` is the :class:`Curve` (it declares
    its combination of control points, so nets evaluate with the algebraic evaluator)."""
    return point(theta, t)


def perturb_bends(curve: Curve, key: Array, scale: float) -> Curve:
    """Add ``scale·N(0, 1)`` to every bend entry (restarts from different initial curves)."""
    leaves, treedef = jax.tree_util.tree_flatten(curve.bends)
    keys = jax.random.split(key, max(1, len(leaves)))
    new = [b + scale * jax.random.normal(k, b.shape, b.dtype) for b, k in zip(leaves, keys)]
    return dataclasses.replace(curve, bends=jax.tree_util.tree_unflatten(treedef, new))


def _basis_gram(kind: Kind, n: int) -> np.ndarray:
    """``G_ij = E_{t∼U(0,1)}[c_i(t) c_j(t)]`` for the ``n + 2`` basis functions of the curve (exact)."""
    d = n + 1
    if kind == "bezier":  # ∫ B_i B_j dt = C(d,i) C(d,j) (i+j)! (2d−i−j)! / (2d+1)!
        return np.array([[math.comb(d, i) * math.comb(d, j) * math.factorial(i + j) * math.factorial(2 * d - i - j)
                          / math.factorial(2 * d + 1) for j in range(d + 1)] for i in range(d + 1)])
    h = 1.0 / d  # hat functions on d equal pieces: the linear finite-element mass matrix
    g = np.zeros((d + 1, d + 1))
    for k in range(d):
        g[k:k + 2, k:k + 2] += h * np.array([[1 / 3, 1 / 6], [1 / 6, 1 / 3]])
    return g


def penalty_minimiser(curve: Curve, penalty: Penalty = "point") -> Curve:
    """The curve (same ends and kind) whose bends minimise the weight-decay term ALONE — where training would
    end if the data loss were flat around it, so the length ratio a long run approaches when the penalty
    dominates. ``"bends"``: ``θ = 0``. ``"point"``: minimises ``E_t ‖φ_θ(t)‖² = Σ_ij G_ij ⟨w_i, w_j⟩`` with
    ``G_ij = E_t[c_i(t) c_j(t)]`` the Gram matrix of the basis (Bernstein polynomials or hat functions), so the
    bends solve ``G_II θ = −G_IE (ŵ_1, ŵ_2)``; one bend: Bezier ``θ = −¾(ŵ_1 + ŵ_2)``, polychain
    ``θ = −¼(ŵ_1 + ŵ_2)``."""
    _check_penalty(penalty)
    n = curve.n_bends
    if n == 0:
        return curve
    if penalty == "bends":
        return dataclasses.replace(curve, bends=jax.tree_util.tree_map(jnp.zeros_like, curve.bends))
    g = _basis_gram(curve.kind, n)
    inner, ends = list(range(1, n + 1)), [0, n + 1]
    coef = -np.linalg.solve(g[np.ix_(inner, inner)], g[np.ix_(inner, ends)])  # (n, 2)

    def one(a: Array, bs: Array, b: Array) -> Array:
        xp = _mesh.array_module(a, bs, b)   # NumPy on the host, as in _linear_bends
        a, b = xp.asarray(a), xp.asarray(b)
        c = xp.asarray(coef, bs.dtype).reshape((n, 2) + (1,) * a.ndim)
        return _mesh.to_device((c[:, 0] * a[None] + c[:, 1] * b[None]).astype(bs.dtype))

    w0, w1 = curve.ends
    return dataclasses.replace(curve, bends=jax.tree_util.tree_map(one, w0, curve.bends, w1))


# --------------------------------------------------------------------------- trivial curve (Appendix A.6)


def trivial_point(net: Any, t: Array | float) -> Any:
    """Garipov Appendix A.6's trivial curve from the origin to ``net``: ``W_i(t) = t·W_i``, ``b_i(t) = t^i·b_i``.

    ``net`` is a :class:`stability.core.nets.Net` (layer ``i`` is ``A_i``, ``b_i``). For a ReLU net
    without BatchNorm (dense or conv, max or average pooling) every layer is positively homogeneous,
    so ``f_{φ(t)}(x) = t^d f(x)``: the same predictions for every ``t > 0``. Exact at ``t = 1``.
    """
    if not isinstance(net, Net):
        raise TypeError(f"the trivial curve needs a stability.core.nets.Net (layer-indexed weights), got {type(net)}")
    dtype = jax.tree_util.tree_leaves(net)[0].dtype
    t = jnp.asarray(t, dtype)
    if t.ndim != 0:
        raise ValueError(f"trivial_point takes a scalar t (vmap it for many), got shape {t.shape}")
    for i in range(1, net.depth + 1):
        w, b = net.A(i), net.bias(i)
        net = net.with_layer(i, A=jnp.where(t == 1, w, t * w).astype(dtype),
                             b=None if b is None else jnp.where(t == 1, b, t**i * b).astype(dtype))
    return net


def trivial_path_point(theta: tuple[Any, Any], t: Array) -> Any:
    """The trivial connecting path ``ŵ_1 → 0 → ŵ_2`` (two copies of :func:`trivial_point`, the first
    reversed): ``φ(t) = trivial(ŵ_1, 1 − 2t)`` for ``t ≤ ½`` and ``trivial(ŵ_2, 2t − 1)`` after. Every
    point but the origin (``t = ½``) predicts like ``ŵ_1`` or ``ŵ_2`` (A.6); a point function for
    :func:`stability.core.evaluate.evaluate`."""
    a, b = theta
    dtype = jax.tree_util.tree_leaves(a)[0].dtype
    t = jnp.asarray(t, dtype)
    pa = trivial_point(a, jnp.clip(1 - 2 * t, 0, 1))
    pb = trivial_point(b, jnp.clip(2 * t - 1, 0, 1))
    return jax.tree_util.tree_map(lambda u, v: jnp.where(t <= 0.5, u, v), pa, pb)


# --------------------------------------------------------------------------- training (eq. 3)


@dataclasses.dataclass(frozen=True)
class CurveTrainSpec:
    """Static (hashable) description of one curve-training program: everything except the arrays."""

    apply_fn: ApplyFn
    loss: Loss
    cfg: TrainConfig
    weight_decay: float
    penalty: Penalty
    kind: Kind
    fix_ends: bool
    schedule: optax.Schedule | None = None
    takes_rng: bool = False
    mesh: Mesh | None = None  # several devices: each minibatch split over them (data parallel)


def _sq_norm(tree: Any) -> Array:
    return sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree_util.tree_leaves(tree))


def _objective(spec: CurveTrainSpec, trainable: Any, frozen_ends: Any, xs: Array, ys: Array, t: Array,
               key: Array) -> Array:
    """Eq. (3)'s stochastic objective at one ``t`` on one minibatch, plus the weight-decay term of ``spec.penalty``."""
    if spec.fix_ends:
        ends, bends = frozen_ends, trainable
    else:
        ends, bends = trainable
    curve = Curve(tuple(ends), bends, spec.kind, spec.fix_ends)
    weights = point(curve, t)
    if spec.mesh is not None:
        xs, ys = _mesh.constrain_rows(xs, spec.mesh), _mesh.constrain_rows(ys, spec.mesh)
    out = spec.apply_fn(weights, xs, key) if spec.takes_rng else spec.apply_fn(weights, xs)
    value = spec.loss.mean(out, ys)
    if spec.weight_decay:
        value = value + 0.5 * spec.weight_decay * _sq_norm(weights if spec.penalty == "point" else bends)
    return value


def _check_penalty(penalty: str) -> None:
    if penalty not in PENALTIES:
        raise ValueError(f"penalty must be one of {PENALTIES}, got {penalty!r}")


def curve_objective(curve: Curve, apply_fn: ApplyFn, x: Array, y: Array, t: Array | float, *,
                    weight_decay: float = 0.0, penalty: Penalty = "point", loss: str | Loss = "cross_entropy",
                    key: Array | None = None) -> Array:
    """The objective one step of :func:`train_curve` descends at curve point ``t`` on the batch ``(x, y)``:
    ``L(φ_θ(t)) + ½·wd·‖φ_θ(t)‖²`` (``penalty="point"``, Garipov's official regulariser) or
    ``L(φ_θ(t)) + ½·wd·‖θ‖²`` (``"bends"``). Differentiable in ``curve`` (its bends, and its ends when
    ``fix_ends`` is off); ``key`` is passed to an ``apply_fn`` that takes one (``takes_rng``, e.g. dropout)."""
    _check_penalty(penalty)
    takes_rng = bool(getattr(apply_fn, "takes_rng", False))
    spec = CurveTrainSpec(apply_fn, get_loss(loss), TrainConfig(), float(weight_decay), penalty, curve.kind,
                          curve.fix_ends, None, takes_rng)
    trainable = curve.bends if curve.fix_ends else (tuple(curve.ends), curve.bends)
    key = jax.random.PRNGKey(0) if key is None else key
    dtype = jax.tree_util.tree_leaves(curve.ends[0])[0].dtype
    return _objective(spec, trainable, tuple(curve.ends), jnp.asarray(x), jnp.asarray(y), jnp.asarray(t, dtype), key)


def _step(spec: CurveTrainSpec, frozen_ends: Any, x: Array, y: Array, carry: tuple[Any, Any],
          inp: tuple[Array, Array, Array]) -> tuple[tuple[Any, Any], Array]:
    """One optimizer step on minibatch ``inp[0]`` at the curve point ``t = inp[1]`` (``inp[2]``: the step's key)."""
    opt = make_optimizer(spec.cfg, spec.schedule)
    params, state = carry
    bi, t, key = inp
    value, grads = jax.value_and_grad(_objective, argnums=1)(spec, params, frozen_ends, x[bi], y[bi], t, key)
    updates, state = opt.update(grads, state, params)
    return (optax.apply_updates(params, updates), state), value


@functools.partial(jax.jit, static_argnums=0)
def _train_block(spec: CurveTrainSpec, frozen_ends: Any, x: Array, y: Array, carry: tuple[Any, Any],
                 inp: tuple[Array, Array, Array]) -> tuple[tuple[Any, Any], Array]:
    """``len(inp[1])`` optimizer steps; step ``s`` uses minibatch ``inp[0][s]`` and the curve point ``t = inp[1][s]``."""
    return jax.lax.scan(lambda c, i: _step(spec, frozen_ends, x, y, c, i), carry, inp)


_train_step = jax.jit(_step, static_argnums=0)


def train_curve(
    curve: Curve,
    apply_fn: ApplyFn,
    x: Array,
    y: Array,
    cfg: TrainConfig = DEFAULT_CURVE_CONFIG,
    *,
    penalty: Penalty = "point",
    schedule: optax.Schedule | None = None,
    progress: bool = True,
    mesh: Mesh | None = None,
) -> tuple[Curve, History]:
    """Train the bends on eq. (3) of Garipov et al.: each step draws a minibatch and one fresh
    ``t ∼ U(0, 1)`` and takes a gradient step on :func:`curve_objective` — ``L(φ_θ(t))`` plus the weight-decay
    term ``cfg.weight_decay`` puts on ``penalty``: ``"point"`` (default, the paper's official code:
    ``½·wd·‖φ_θ(t)‖²``) or ``"bends"`` (``½·wd·‖θ‖²``).

    ``cfg`` (a :class:`~stability.core.train.TrainConfig`, default :data:`DEFAULT_CURVE_CONFIG`: SGD with momentum
    0.9 and the paper's schedule) sets steps, batch size, optimizer, lr, momentum, schedule, weight decay, loss,
    seed and ``log_every`` (its dropout fields are not used here); ``schedule`` (a function of the 0-based step,
    e.g. :class:`~stability.core.train.GaripovSchedule` with the epoch length) overrides ``cfg.schedule``. With
    ``curve.fix_ends`` (the default) only the bends move; otherwise the end points train too. ``apply_fn`` must
    be hashable (a module-level function or a frozen dataclass); one with a true ``takes_rng`` attribute is
    called ``apply_fn(weights, x, key)`` with a fresh key per step (dropout). The compiled program is cached per
    (apply_fn, loss, settings, shapes), so restarts do not recompile. Deterministic from ``cfg.seed`` (minibatch
    order: NumPy generator; ``t`` and keys: ``jax.random``). Returns ``(trained curve, history)``. ``mesh``
    (:func:`stability.core.mesh.make_mesh`, data parallel): each minibatch split over its devices, as in
    :func:`stability.core.train.fit`.
    """
    if not isinstance(cfg, TrainConfig):  # a TrainConfig checks its own fields when it is made
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    _check_penalty(penalty)
    if curve.n_bends == 0 and curve.fix_ends:
        raise ValueError("a curve with 0 bends and fixed ends has nothing to train")
    x = _mesh.to_device(x)
    y = _mesh.to_device(y)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x and y must hold the same non-zero number of samples, got {x.shape[0]} and {y.shape[0]}")
    if get_loss(cfg.loss).name in ("cross_entropy", "squared_error"):
        n_out = int(jax.eval_shape(apply_fn, curve.ends[0], x[:1]).shape[-1])
        check_targets(y, n_out, cfg.loss, "y")
    shape_cfg = TrainConfig(steps=int(cfg.steps), batch_size=int(cfg.batch_size), optimizer=cfg.optimizer,
                            lr=float(cfg.lr), momentum=float(cfg.momentum), schedule=cfg.schedule)
    sched = schedule if schedule is not None else make_schedule(shape_cfg)
    opt = make_optimizer(shape_cfg, schedule)  # only what shapes the optimizer enters the compiled program
    n = x.shape[0]
    batch = min(int(cfg.batch_size), n)
    sharded = _mesh.is_sharded(mesh)
    if sharded and batch % mesh.size:
        raise ValueError(f"cfg.batch_size ({batch}) must be a multiple of the mesh's {mesh.size} devices")
    spec = CurveTrainSpec(apply_fn, get_loss(cfg.loss), shape_cfg, float(cfg.weight_decay), penalty, curve.kind,
                          curve.fix_ends, schedule, bool(getattr(apply_fn, "takes_rng", False)),
                          mesh if sharded else None)
    frozen = tuple(curve.ends)
    trainable = curve.bends if curve.fix_ends else (frozen, curve.bends)
    opt_state = opt.init(trainable)
    dtype = jax.tree_util.tree_leaves(curve.ends[0])[0].dtype
    put = functools.partial(_mesh.replicate, mesh=mesh) if sharded else (lambda a: a)
    if sharded:
        x, y, frozen, trainable, opt_state = put((x, y, frozen, trainable, opt_state))
    key = jax.random.PRNGKey(cfg.seed)
    order = MinibatchOrder(n, batch, cfg.seed)
    steps, log_every = int(cfg.steps), int(cfg.log_every)

    hist = History()
    host_loop = use_host_loop(curve.ends[0])
    done = 0
    bar = Progress(steps, "curve training", unit="steps", enabled=progress)
    while done < steps:
        k = min(log_every, steps - done)
        key, sub = jax.random.split(key)
        ts = jax.random.uniform(sub, (k,), dtype)
        keys = jax.random.split(jax.random.fold_in(sub, 1), k)
        (trainable, opt_state), values = run_steps(  # conv nets on CPU step from Python: see stability.core.hostloop
            lambda c, i: _train_block(spec, frozen, x, y, c, i), lambda c, i: _train_step(spec, frozen, x, y, c, i),
            (trainable, opt_state), put((_mesh.to_device(order.take(k)), ts, keys)), host_loop)
        done += k
        mean_loss = float(jnp.mean(values))
        if not np.isfinite(mean_loss):
            raise FloatingPointError(f"curve training diverged (loss {mean_loss}) by step {done}; "
                                     "lower the learning rate")
        hist.step.append(done)
        hist.loss.append(mean_loss)
        hist.lr.append(float(sched(done - 1)))
        bar.advance(k, eq3_loss=mean_loss)
    if curve.fix_ends:
        out = dataclasses.replace(curve, bends=trainable)
    else:
        ends, bends = trainable
        out = dataclasses.replace(curve, ends=tuple(ends), bends=bends)
    return out, hist


def as_polycurve(curve: Curve) -> "PolyCurve":
    """The curve's declarative algebra (:class:`stability.core.polycurve.PolyCurve`): one Bezier piece of
    degree ``n + 1``, or ``n + 1`` straight pieces of the polygonal chain, over the control points."""
    from stability.core.polycurve import PolyCurve

    pts = jax.tree_util.tree_map(np.asarray, control_points(curve))
    return PolyCurve.bezier(pts) if curve.kind == "bezier" else PolyCurve.chain(pts)
