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
jitted ``lax.scan`` blocks. Everything is a pure function of pytrees and an ``apply_fn(params, x)``,
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

from stability.core.evaluate import describes
from stability.core.hostloop import run_steps, use_host_loop
from stability.core.nets import Net
from stability.core.losses import Loss, get_loss
from stability.core.progress import Progress
from stability.core.train import History, MinibatchOrder, TrainConfig, make_optimizer, make_schedule

if TYPE_CHECKING:
    from stability.core.polycurve import Combination, PolyCurve

Array = jax.Array
ApplyFn = Callable[[Any, Array], Array]
Kind = Literal["polychain", "bezier"]
Penalty = Literal["bends"]
"""What the curve's weight decay penalises: ``"bends"`` (``wd/2·‖bends‖²``)."""

DEFAULT_CURVE_CONFIG = TrainConfig(steps=1000, batch_size=128, optimizer="adam", lr=1e-2, schedule="constant",
                                   log_every=200)
"""The curve trainer's defaults (Adam at 1e-2, constant rate, 1,000 steps of 128)."""

__all__ = ["Curve", "polychain", "bezier", "straight", "point", "points", "curve_point", "control_points",
           "perturb_bends", "train_curve", "CurveTrainSpec", "trivial_point", "trivial_path_point",
           "DEFAULT_CURVE_CONFIG", "Penalty"]

_KINDS = ("polychain", "bezier")


@jax.tree_util.register_pytree_node_class
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

    def tree_flatten(self):
        return (self.ends, self.bends), (self.kind, self.fix_ends)

    @classmethod
    def tree_unflatten(cls, aux, children):
        ends, bends = children
        return cls(tuple(ends), bends, *aux)

    @property
    def n_bends(self) -> int:
        """Number of bends ``n`` (control points strictly between the end points)."""
        return int(jax.tree_util.tree_leaves(self.bends)[0].shape[0])

    @property
    def order(self) -> int:
        """Polynomial degree ``n + 1`` of the Bezier curve (number of segments of the polychain)."""
        return self.n_bends + 1


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
    if n < 0:
        raise ValueError(f"the number of bends must be >= 0, got {n}")
    fr = np.arange(1, n + 1, dtype=np.float64) / (n + 1)

    def one(a: Array, b: Array) -> Array:
        a = jnp.asarray(a)
        s = jnp.asarray(fr, a.dtype).reshape((n,) + (1,) * a.ndim)
        return a[None] + s * (jnp.asarray(b) - a)[None]

    return jax.tree_util.tree_map(one, w0, w1)


def polychain(w0: Any, w1: Any, bends: int = 1, *, fix_ends: bool = True) -> Curve:
    """Polygonal chain with ``bends`` bends, initialised equally spaced on the segment (so it starts as the line)."""
    _check_ends(w0, w1)
    return Curve((w0, w1), _linear_bends(w0, w1, int(bends)), "polychain", fix_ends)


def bezier(w0: Any, w1: Any, bends: int = 1, *, order: int | None = None, fix_ends: bool = True) -> Curve:
    """Bezier curve with ``bends`` inner control points, i.e. of degree ``order = bends + 1``
    (Garipov's quadratic curve: ``bends=1`` or ``order=2``). Equally spaced control points on the
    segment reproduce the segment exactly (Bernstein polynomials reproduce linear functions)."""
    if order is not None:
        if int(order) < 1:
            raise ValueError(f"a Bezier curve's order (degree) must be >= 1, got {order}")
        bends = int(order) - 1
    _check_ends(w0, w1)
    return Curve((w0, w1), _linear_bends(w0, w1, int(bends)), "bezier", fix_ends)


def straight(w0: Any, w1: Any) -> Curve:
    """The straight segment as a curve with 0 bends."""
    return polychain(w0, w1, 0)


def control_points(curve: Curve) -> Any:
    """All control points ``w_0 … w_{n+1}`` stacked along a new leading axis."""
    w0, w1 = curve.ends
    return jax.tree_util.tree_map(lambda a, bs, b: jnp.concatenate([jnp.asarray(a)[None], bs, jnp.asarray(b)[None]]),
                                  w0, curve.bends, w1)


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
    weight_decay_bends: float
    kind: Kind
    fix_ends: bool


def _objective(spec: CurveTrainSpec, trainable: Any, frozen_ends: Any, xs: Array, ys: Array, t: Array) -> Array:
    if spec.fix_ends:
        ends, bends = frozen_ends, trainable
    else:
        ends, bends = trainable
    curve = Curve(tuple(ends), bends, spec.kind, spec.fix_ends)
    value = spec.loss.mean(spec.apply_fn(point(curve, t), xs), ys)
    if spec.weight_decay_bends:
        value = value + 0.5 * spec.weight_decay_bends * sum(jnp.sum(jnp.square(b))
                                                            for b in jax.tree_util.tree_leaves(bends))
    return value


def _step(spec: CurveTrainSpec, frozen_ends: Any, x: Array, y: Array, carry: tuple[Any, Any],
          inp: tuple[Array, Array]) -> tuple[tuple[Any, Any], Array]:
    """One optimizer step on minibatch ``inp[0]`` at the curve point ``t = inp[1]``."""
    opt = make_optimizer(spec.cfg)
    params, state = carry
    bi, t = inp
    value, grads = jax.value_and_grad(_objective, argnums=1)(spec, params, frozen_ends, x[bi], y[bi], t)
    updates, state = opt.update(grads, state, params)
    return (optax.apply_updates(params, updates), state), value


@functools.partial(jax.jit, static_argnums=0)
def _train_block(spec: CurveTrainSpec, frozen_ends: Any, x: Array, y: Array, carry: tuple[Any, Any],
                 inp: tuple[Array, Array]) -> tuple[tuple[Any, Any], Array]:
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
    penalty: Penalty = "bends",
    progress: bool = True,
) -> tuple[Curve, History]:
    """Train the bends on eq. (3) of Garipov et al.: each step draws a minibatch and one fresh
    ``t ∼ U(0, 1)`` and takes a gradient step on ``L(φ_θ(t))`` plus the weight-decay term ``cfg.weight_decay``
    puts on ``penalty`` (``"bends"``: ``wd/2·‖bends‖²``).

    ``cfg`` (a :class:`~stability.core.train.TrainConfig`) sets steps, batch size, optimizer, lr, momentum,
    schedule, weight decay, loss, seed and ``log_every`` (its dropout fields are not used here). With
    ``curve.fix_ends`` (the default) only the bends move; otherwise the end points train too. ``apply_fn`` must
    be hashable (a module-level function or a frozen dataclass); the compiled program is cached per
    (apply_fn, loss, settings, shapes), so restarts do not recompile. Deterministic from ``cfg.seed``
    (minibatch order: NumPy generator; ``t``: ``jax.random``). Returns ``(trained curve, history)``.
    """
    if cfg.steps < 1 or cfg.batch_size < 1 or cfg.log_every < 1:
        raise ValueError("steps, batch_size and log_every must be positive")
    if penalty not in ("bends",):
        raise ValueError(f"penalty must be 'bends', got {penalty!r}")
    if curve.n_bends == 0 and curve.fix_ends:
        raise ValueError("a curve with 0 bends and fixed ends has nothing to train")
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x and y must hold the same non-zero number of samples, got {x.shape[0]} and {y.shape[0]}")
    shape_cfg = TrainConfig(steps=int(cfg.steps), batch_size=int(cfg.batch_size), optimizer=cfg.optimizer,
                            lr=float(cfg.lr), momentum=float(cfg.momentum), schedule=cfg.schedule)
    sched = make_schedule(shape_cfg)  # only what shapes the optimizer enters the compiled program (no recompiles)
    opt = make_optimizer(shape_cfg)
    spec = CurveTrainSpec(apply_fn, get_loss(cfg.loss), shape_cfg, float(cfg.weight_decay), curve.kind,
                          curve.fix_ends)
    frozen = tuple(curve.ends)
    trainable = curve.bends if curve.fix_ends else (frozen, curve.bends)
    opt_state = opt.init(trainable)
    dtype = jax.tree_util.tree_leaves(curve.ends[0])[0].dtype
    n = x.shape[0]
    batch = min(int(cfg.batch_size), n)
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
        (trainable, opt_state), values = run_steps(  # conv nets on CPU step from Python: see stability.core.hostloop
            lambda c, i: _train_block(spec, frozen, x, y, c, i), lambda c, i: _train_step(spec, frozen, x, y, c, i),
            (trainable, opt_state), (jnp.asarray(order.take(k)), ts), host_loop)
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
