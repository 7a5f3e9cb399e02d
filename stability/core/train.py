"""Training loops: optax SGD / momentum / Adam with schedules, optional (channel-wise) dropout.

Deterministic from ``seed``: minibatch order comes from a NumPy generator seeded with it and
dropout masks from ``jax.random.PRNGKey(seed)``. Steps run in jitted ``lax.scan`` blocks of
``log_every`` steps, with one progress line per block.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from stability.core import checks as _checks
from stability.core import mesh as _mesh
from stability.core import nets as _nets
from stability.core.checkpoint import CheckpointError, load, save
from stability.core.hostloop import run_steps, use_host_loop
from stability.core.losses import Loss, accuracy, check_targets, get_loss, l2_penalty
from stability.core.progress import Progress

Array = jax.Array
Optimizer = Literal["sgd", "momentum", "adam"]
ScheduleName = Literal["constant", "cosine", "linear", "step", "garipov"]
LossName = Literal["cross_entropy", "squared_error"]

__all__ = ["TrainConfig", "TrainState", "History", "fit", "MinibatchOrder", "make_optimizer", "make_schedule", "KerasDecay",
           "GaripovSchedule", "dropout_scales", "save", "load", "CheckpointError"]


OPTIMIZERS = ("sgd", "momentum", "adam")
SCHEDULES = ("constant", "cosine", "linear", "step", "garipov")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`fit`.

    ``dropout`` is one rate for every hidden layer or one per hidden layer; for conv layers
    the mask is channel-wise (whole channels, Remark 1) unless ``channelwise=False``.
    ``schedule`` is ``constant``, ``cosine``, ``linear`` (to 0), ``step`` (×0.1 at 50% and 75%) or ``garipov``
    (:class:`GaripovSchedule`, per step: constant for the first half, linear decay to 1% at 90%, then 1%).

    Reproducibility: with ``dropout > 0`` the masks come from one key per jitted block, and blocks end at every
    ``log_every`` steps and at every snapshot step, so the trained net depends on ``seed``, ``log_every`` and
    the snapshot steps (the minibatch order depends on ``seed`` only). Keep ``log_every`` fixed to reproduce a run.
    """

    steps: int = 1000
    batch_size: int = 64
    optimizer: Optimizer = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    schedule: ScheduleName = "constant"
    weight_decay: float = 0.0
    dropout: float | tuple[float, ...] = 0.0
    channelwise: bool = True
    loss: LossName = "cross_entropy"
    seed: int = 0
    log_every: int = 100

    def __post_init__(self) -> None:
        """Every field is checked here, so a bad setting fails before anything compiles or trains."""
        for name in ("steps", "batch_size", "log_every"):
            _checks.positive_int(f"TrainConfig.{name}", getattr(self, name))
        _checks.nonneg_int("TrainConfig.seed", self.seed)
        _checks.choice("TrainConfig.optimizer", self.optimizer, OPTIMIZERS)
        _checks.choice("TrainConfig.schedule", self.schedule, SCHEDULES)
        _checks.positive("TrainConfig.lr", self.lr)
        _checks.number("TrainConfig.momentum", self.momentum, lo=0.0, hi=1.0, hi_open=True)
        _checks.nonneg("TrainConfig.weight_decay", self.weight_decay)
        if np.isscalar(self.dropout):
            _checks.rate("TrainConfig.dropout", self.dropout)
        else:
            for k, p in enumerate(self.dropout):
                _checks.rate(f"TrainConfig.dropout[{k}]", p)
        if not isinstance(self.loss, Loss):
            get_loss(self.loss)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def make_schedule(cfg: TrainConfig) -> optax.Schedule:
    if cfg.schedule == "constant":
        return optax.constant_schedule(cfg.lr)
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(cfg.lr, cfg.steps)
    if cfg.schedule == "linear":
        return optax.linear_schedule(cfg.lr, 0.0, cfg.steps)
    if cfg.schedule == "step":
        return optax.piecewise_constant_schedule(cfg.lr, {cfg.steps // 2: 0.1, (3 * cfg.steps) // 4: 0.1})
    if cfg.schedule == "garipov":
        return GaripovSchedule(float(cfg.lr), int(cfg.steps))
    raise ValueError(f"unknown schedule {cfg.schedule!r}; known: constant, cosine, linear, step, garipov")


@dataclasses.dataclass(frozen=True)
class GaripovSchedule:
    """The learning rate of Garipov et al. 2018's official code (``learning_rate_schedule`` of its ``train.py``,
    used for the end points and for the curves): with ``α = e / E`` for epoch ``e = 1 … E``, the rate is
    ``lr`` for ``α ≤ 0.5``, ``lr·(1 − 0.99·(α − 0.5)/0.4)`` for ``0.5 < α ≤ 0.9`` (linear down to 1%) and
    ``0.01·lr`` after. The official code sets the rate once per epoch; here an "epoch" is ``steps_per_epoch``
    optimizer steps (``1``: the rate changes at every step, ``α = (count + 1)/steps``). ``count`` is optax's
    0-based step. A frozen dataclass, so equal schedules hash equal and compiled programs are reused."""

    lr: float
    steps: int
    steps_per_epoch: int = 1

    def __post_init__(self) -> None:
        if self.steps < 1 or self.steps_per_epoch < 1:
            raise ValueError(f"GaripovSchedule needs steps >= 1 and steps_per_epoch >= 1, got steps={self.steps}, "
                             f"steps_per_epoch={self.steps_per_epoch}")

    def factor(self, count: jax.Array) -> jax.Array:
        """The multiplier of ``lr`` at 0-based step ``count``."""
        epoch = jnp.floor_divide(jnp.asarray(count), self.steps_per_epoch) + 1
        alpha = epoch * self.steps_per_epoch / self.steps
        return jnp.where(alpha <= 0.5, 1.0, jnp.where(alpha <= 0.9, 1.0 - (alpha - 0.5) / 0.4 * 0.99, 0.01))

    def __call__(self, count: jax.Array) -> jax.Array:
        return self.lr * self.factor(count)


@dataclasses.dataclass(frozen=True)
class KerasDecay:
    """Keras SGD's time-based decay ``lr / (1 + decay·t)`` (Appendix D.1: decay 10⁻⁶). A frozen dataclass,
    so equal schedules hash equal and :func:`stability.core.train.fit` reuses its compiled program across nets."""

    lr: float
    decay: float

    def __call__(self, count: jax.Array) -> jax.Array:
        return self.lr / (1.0 + self.decay * count)


def make_optimizer(cfg: TrainConfig, schedule: optax.Schedule | None = None) -> optax.GradientTransformation:
    """The optimizer named by ``cfg`` driven by ``schedule`` (default: :func:`make_schedule` ``(cfg)``)."""
    sched = schedule if schedule is not None else make_schedule(cfg)
    if cfg.optimizer == "sgd":
        return optax.sgd(sched)
    if cfg.optimizer == "momentum":
        return optax.sgd(sched, momentum=cfg.momentum)
    if cfg.optimizer == "adam":
        return optax.adam(sched)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; known: sgd, momentum, adam")


def _rates(arch: _nets.Arch, dropout: float | Sequence[float]) -> tuple[float, ...]:
    n_hidden = arch.depth - 1
    rates = (float(dropout),) * n_hidden if np.isscalar(dropout) else tuple(float(p) for p in dropout)
    if len(rates) != n_hidden:
        raise ValueError(f"dropout needs one rate per hidden layer ({n_hidden}), got {len(rates)}")
    if any(not 0.0 <= p < 1.0 for p in rates):
        raise ValueError(f"dropout rates must lie in [0, 1), got {rates}")
    return rates


def dropout_scales(key: Array, net: _nets.Net, x: Array, rates: Sequence[float], channelwise: bool = True,
                   ) -> list[Array | None]:
    """Per-sample inverted-dropout multipliers (0 or 1/(1−p)) for each hidden layer of ``net``.

    For conv layers with ``channelwise`` whole channels are dropped (shape ``(N, 1, 1, C)``).
    """
    arch = net.arch
    n = x.shape[0]
    scales: list[Array | None] = []
    keys = jax.random.split(key, max(1, arch.depth - 1))
    for i in range(1, arch.depth):
        p = rates[i - 1]
        if p == 0.0:
            scales.append(None)
            continue
        h = arch.widths[i - 1]
        if arch.kinds[i - 1] == "conv":
            hh, ww = _feature_hw(arch, i)
            shape = (n, 1, 1, h) if channelwise else (n, hh, ww, h)
        else:
            shape = (n, h)
        keep = jax.random.bernoulli(keys[i - 1], 1.0 - p, shape)
        scales.append(keep.astype(x.dtype) / (1.0 - p))
    return scales


def _feature_hw(arch: _nets.Arch, i: int) -> tuple[int, int]:
    """Spatial size of the output of conv layer ``i`` (1-based), before its pooling."""
    h, w = arch.in_shape[:2]
    for p in arch.pool[: i - 1]:
        if p is not None:
            h, w = h // 2, w // 2
    return h, w


@dataclasses.dataclass
class History:
    """The record of a training run, one entry per logged block: the step, the block's mean train ``loss``, the
    learning rate and (with test data) ``test_loss`` / ``test_acc``; ``snapshots`` holds the nets taken at the
    requested steps (kept out of :meth:`to_dict`)."""

    step: list[int] = dataclasses.field(default_factory=list)
    loss: list[float] = dataclasses.field(default_factory=list)
    lr: list[float] = dataclasses.field(default_factory=list)
    test_loss: list[float] = dataclasses.field(default_factory=list)
    test_acc: list[float] = dataclasses.field(default_factory=list)
    snapshots: list[Any] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {"step": list(self.step), "loss": list(self.loss), "lr": list(self.lr)}
        if self.test_loss:
            out.update(test_loss=list(self.test_loss), test_acc=list(self.test_acc))
        return out


@dataclasses.dataclass(frozen=True)
class TrainState:
    """Where a run stands: the weights, the optimizer state (momentum buffers, Adam moments, the schedule's step
    counter) and the number of optimizer steps taken. :func:`fit` continues from one (``fit(state, …)``) and
    hands them out at snapshot steps (``snapshot_state=True``), e.g. FGE starting from a normal run's
    checkpoint with its momentum kept (Garipov et al. 2018, §5)."""

    params: Any
    opt_state: Any
    step: int


class MinibatchOrder:
    """Minibatch indices: each epoch a fresh permutation from a NumPy generator seeded with ``seed``,
    cut into full batches (the remainder is dropped)."""

    def __init__(self, n: int, batch: int, seed: int) -> None:
        if not 1 <= batch <= n:
            raise ValueError(f"batch size must lie in 1..{n}, got {batch}")
        self.n, self.batch = n, batch
        self.rng = np.random.default_rng(seed)
        self._pending: list[np.ndarray] = []

    def take(self, k: int) -> np.ndarray:
        """The next ``k`` minibatches as a ``(k, batch)`` index array."""
        out = []
        while len(out) < k:
            if not self._pending:
                perm = self.rng.permutation(self.n)
                self._pending = [perm[j:j + self.batch] for j in range(0, self.n - self.batch + 1, self.batch)]
            out.append(self._pending.pop(0))
        return np.stack(out)


@dataclasses.dataclass(frozen=True)
class _FitSpec:
    """Everything static about one training program (hashable): compiled programs are cached per spec,
    so repeated :func:`fit` calls with the same settings and shapes (seeds, restarts) do not recompile."""

    cfg: TrainConfig  # seed / log_every / dropout normalised away: they do not shape the program
    rates: tuple[float, ...]
    loss: Loss
    schedule: optax.Schedule | None
    mesh: Mesh | None = None  # several devices: each minibatch split over them (data parallel)


def _loss_fn(spec: _FitSpec, params: _nets.Net, xs: Array, ys: Array, key: Array) -> Array:
    if spec.mesh is not None:
        xs, ys = _mesh.constrain_rows(xs, spec.mesh), _mesh.constrain_rows(ys, spec.mesh)
    scales = dropout_scales(key, params, xs, spec.rates, spec.cfg.channelwise) if any(spec.rates) else None
    out = _nets.forward(params, xs, scales)[-1]
    value = spec.loss.mean(out, ys)
    if spec.cfg.weight_decay:
        value = value + l2_penalty(params, spec.cfg.weight_decay)
    return value


def _step(spec: _FitSpec, x: Array, y: Array, carry: tuple[Any, Any], inp: tuple[Array, Array]):
    """One optimizer step on minibatch ``inp[0]`` with dropout key ``inp[1]`` (data are arguments, not constants)."""
    opt = make_optimizer(spec.cfg, spec.schedule)
    params, opt_state = carry
    bi, k = inp
    value, grads = jax.value_and_grad(_loss_fn, argnums=1)(spec, params, x[bi], y[bi], k)
    updates, opt_state = opt.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), value


@functools.partial(jax.jit, static_argnums=0)
def _run_block(spec: _FitSpec, x: Array, y: Array, carry: tuple[Any, Any], inp: tuple[Array, Array]):
    """``len(inp[0])`` steps of :func:`_step` in one ``lax.scan``."""
    return jax.lax.scan(lambda c, i: _step(spec, x, y, c, i), carry, inp)


_one_step = jax.jit(_step, static_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def _test_metrics(loss: Loss, params: _nets.Net, x_test: Array, y_test: Array) -> tuple[Array, Array]:
    out = _nets.apply(params, x_test)
    acc = jnp.mean(accuracy(out, y_test)) if jnp.issubdtype(y_test.dtype, jnp.integer) else jnp.nan
    return loss.mean(out, y_test), acc


def _same(a: Any) -> Any:
    return a


def fit(
    net: _nets.Net | TrainState,
    x: Array,
    y: Array,
    cfg: TrainConfig = TrainConfig(),
    *,
    x_test: Array | None = None,
    y_test: Array | None = None,
    progress: bool = True,
    schedule: optax.Schedule | None = None,
    snapshot_at: Sequence[int] = (),
    snapshot_state: bool = False,
    mesh: Mesh | None = None,
) -> tuple[_nets.Net, History]:
    """Train ``net`` on ``(x, y)`` for ``cfg.steps`` minibatch steps; returns ``(net, history)``.

    ``net`` is a :class:`~stability.core.nets.Net` (a fresh optimizer state) or a :class:`TrainState` (continue
    from its weights and optimizer state; the schedule is read at the state's step counter, so a run split in
    two with the same ``cfg`` follows one schedule). ``history`` (:class:`History`) holds per-block ``step``
    (counted from this call's start), mean train ``loss``, ``lr`` (the rate the optimizer used) and, when test
    data is given, ``test_loss`` / ``test_acc`` at the end of each block; progress lines (steps, rate, time left)
    go to the ``stability.progress`` logger. ``schedule`` (a function of the 0-based optimizer step) overrides
    ``cfg.schedule``, e.g. for FGE's cyclic rate; the nets after the (1-based, counted from this call's start)
    steps in ``snapshot_at`` are returned in ``history.snapshots`` — as :class:`TrainState` with
    ``snapshot_state``. ``mesh`` (:func:`stability.core.mesh.make_mesh`, data parallel): each minibatch is split
    over its devices (``cfg.batch_size`` a multiple of the device count), weights and optimizer state replicated,
    gradients reduced by XLA; under several processes every process passes the whole training set. ``None`` or one
    device: the one-device program.
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    state = net if isinstance(net, TrainState) else None
    net = state.params if state is not None else net
    if not isinstance(net, _nets.Net):
        raise ValueError(f"fit trains a stability.core.nets.Net or continues a TrainState, got {type(net).__name__}")
    x = _mesh.to_device(x)
    y = _mesh.to_device(y)
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"x and y must hold the same non-zero number of samples, got {x.shape[0]} and {y.shape[0]}")
    n_out = net.arch.widths[-1]
    check_targets(y, n_out, cfg.loss, "y")
    if x_test is not None or y_test is not None:
        if x_test is None or y_test is None or len(x_test) != len(y_test):
            raise ValueError("x_test and y_test must both be given, with the same number of samples")
        check_targets(y_test, n_out, cfg.loss, "y_test")
    if tuple(x.shape[1:]) != net.arch.in_shape:
        raise ValueError(f"training inputs have per-sample shape {tuple(x.shape[1:])}, the net expects {net.arch.in_shape}")
    if not bool(jnp.all(jnp.isfinite(x))):
        raise ValueError("training inputs contain NaN or inf")
    loss = get_loss(cfg.loss)
    rates = _rates(net.arch, cfg.dropout)
    sched = schedule if schedule is not None else make_schedule(cfg)
    opt = make_optimizer(cfg, sched)
    snaps = sorted({int(k) for k in snapshot_at})
    if snaps and not 1 <= snaps[0] <= snaps[-1] <= cfg.steps:
        raise ValueError(f"snapshot steps must lie in 1..{cfg.steps}, got {snaps}")
    batch = min(cfg.batch_size, x.shape[0])
    sharded = _mesh.is_sharded(mesh)
    if sharded and batch % mesh.size:
        raise ValueError(f"cfg.batch_size ({batch}) must be a multiple of the mesh's {mesh.size} devices")
    spec = _FitSpec(dataclasses.replace(cfg, seed=0, log_every=1, dropout=0.0), rates, loss, schedule,
                    mesh if sharded else None)
    put = functools.partial(_mesh.replicate, mesh=mesh) if sharded else _same

    host_loop = use_host_loop(net)

    if x_test is not None:
        x_test = _mesh.to_device(x_test)
        y_test = _mesh.to_device(y_test)

    key = jax.random.PRNGKey(cfg.seed)
    order = MinibatchOrder(x.shape[0], batch, cfg.seed)

    params = net
    opt_state = opt.init(params)
    start = 0
    if state is not None:
        want, got = jax.tree_util.tree_structure(opt_state), jax.tree_util.tree_structure(state.opt_state)
        if want != got:
            raise ValueError(f"the TrainState's optimizer state does not fit optimizer {cfg.optimizer!r}:\n{got}\n"
                             f"expected\n{want}")
        opt_state, start = state.opt_state, int(state.step)
    if sharded:
        x, y, params, opt_state = put((x, y, params, opt_state))
    hist = History()
    done = 0
    block: list[Array] = []
    bar = Progress(cfg.steps, "training", unit="steps", enabled=progress)
    while done < cfg.steps:
        k = min(cfg.log_every - done % cfg.log_every, cfg.steps - done)
        upcoming = [s for s in snaps if s > done]
        if upcoming:
            k = min(k, upcoming[0] - done)
        key, sub = jax.random.split(key)
        (params, opt_state), values = run_steps(  # conv nets on CPU step from Python: see stability.core.hostloop
            lambda c, i: _run_block(spec, x, y, c, i), lambda c, i: _one_step(spec, x, y, c, i), (params, opt_state),
            put((_mesh.to_device(order.take(k)), jax.random.split(sub, k))), host_loop)
        done += k
        block.append(values)
        if done in snaps:
            hist.snapshots.append(TrainState(params, opt_state, start + done) if snapshot_state else params)
        if done % cfg.log_every and done != cfg.steps:
            continue
        mean_loss = float(jnp.mean(jnp.concatenate(block)))
        n_block = sum(int(v.shape[0]) for v in block)
        block = []
        if not np.isfinite(mean_loss):
            raise FloatingPointError(f"training diverged (loss {mean_loss}) by step {done}; lower the learning rate")
        hist.step.append(done)
        hist.loss.append(mean_loss)
        hist.lr.append(float(sched(start + done - 1)))
        info = {"loss": mean_loss}
        if x_test is not None:
            tl, ta = _test_metrics(loss, params, x_test, y_test)
            hist.test_loss.append(float(tl))
            hist.test_acc.append(float(ta))
            info.update(test_loss=float(tl), test_acc=float(ta))
        bar.advance(n_block, **info)
    return params, hist
