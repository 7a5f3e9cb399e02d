"""BatchNorm along curves (Garipov et al. 2018, §3.2 / A.3): recompute the running statistics at
each point with one pass over the training data, batched over many points.

Works for any ``flax.linen`` module whose running averages live in mutable collections (flax's
``nn.BatchNorm``: ``"batch_stats"``). How the module is called is a :class:`FlaxModel`: the keyword that
switches training mode (``train=True`` by default; ``training=True``, or ``deterministic=False`` with
``train_value=False``), the mutable collections, and the rng streams a training-mode call needs (``"dropout"``
for a module with ``nn.Dropout``). A bare module means ``FlaxModel(module)`` (``train=``, ``"batch_stats"``,
no rngs). The statistics of a point are the average over training batches of each batch's mean and
variance (the cumulative average of PyTorch's ``momentum=None``, as the reference code's ``update_bn``,
which also runs the statistics pass in training mode — dropout on). The per-batch statistics are read off
flax's running-average update without knowing the module's momentum: flax writes ``m·old + (1−m)·batch``
and ``m`` is probed once.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from stability.core import mesh as _mesh

Array = jax.Array

__all__ = ["FlaxModel", "flax_model", "bn_momentum", "recompute_batch_stats", "BNEval", "BNTrain", "BNPoint",
           "bn_point_theta"]


@dataclasses.dataclass(frozen=True)
class FlaxModel:
    """How to call a flax module in training and inference mode (hashable: it keys compiled programs).

    ``train_kw`` is the ``__call__`` keyword that selects the mode; a training-mode call passes ``train_value``
    (``True`` for ``train=`` / ``training=``, ``False`` for ``deterministic=``), an inference call its negation.
    ``mutable`` are the collections a training-mode call updates (every leaf a running average ``m·old +
    (1−m)·batch``, as flax's BatchNorm); ``rngs`` the rng streams it draws from (``("dropout",)``).
    """

    module: Any
    train_kw: str = "train"
    train_value: bool = True
    mutable: tuple[str, ...] = ("batch_stats",)
    rngs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.train_kw, str) or not self.train_kw.isidentifier():
            raise ValueError(f"train_kw must be a keyword name, got {self.train_kw!r}")
        try:
            params = inspect.signature(self.module.__call__).parameters
        except (TypeError, ValueError, AttributeError):
            raise ValueError(f"module must be a flax.linen Module with a __call__, got {type(self.module).__name__}"
                             ) from None
        if self.train_kw not in params and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            raise ValueError(f"train_kw={self.train_kw!r} is not a keyword of {type(self.module).__name__}.__call__ "
                             f"(it takes {list(params)})")
        if not self.mutable or "params" in self.mutable:
            raise ValueError(f"mutable must name the running-statistics collections (not 'params'), got {self.mutable}")
        object.__setattr__(self, "mutable", tuple(self.mutable))
        object.__setattr__(self, "rngs", tuple(self.rngs))

    @property
    def takes_rng(self) -> bool:
        """Whether a training-mode call needs random keys (dropout)."""
        return bool(self.rngs)

    def rng_dict(self, key: Array | None) -> dict[str, Array]:
        """One key per rng stream (split from ``key``; ``PRNGKey(0)`` when None)."""
        if not self.rngs:
            return {}
        key = jax.random.PRNGKey(0) if key is None else key
        return dict(zip(self.rngs, jax.random.split(key, len(self.rngs))))

    def train_apply(self, params: Any, stats: dict[str, Any], x: Array, key: Array | None = None
                    ) -> tuple[Array, dict[str, Any]]:
        """Training-mode forward pass (minibatch statistics): ``(outputs, updated collections)``."""
        out, upd = self.module.apply({"params": params, **stats}, x, **{self.train_kw: self.train_value},
                                     mutable=list(self.mutable), rngs=self.rng_dict(key))
        return out, {c: upd[c] for c in self.mutable if c in upd}

    def eval_apply(self, variables: dict[str, Any], x: Array) -> Array:
        """Inference-mode forward pass (running statistics, dropout off)."""
        return self.module.apply(variables, x, **{self.train_kw: not self.train_value})

    def stats_like(self, x: Array) -> dict[str, Any]:
        """Zero running statistics of the module's shapes (every collection in ``mutable`` that init creates)."""
        shapes = jax.eval_shape(lambda: self.module.init(jax.random.PRNGKey(0), x[:1],
                                                         **{self.train_kw: not self.train_value}))
        return {c: jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes[c])
                for c in self.mutable if c in shapes}


def flax_model(model: Any) -> FlaxModel:
    """``model`` if it already is a :class:`FlaxModel`, else today's convention ``FlaxModel(model)``."""
    return model if isinstance(model, FlaxModel) else FlaxModel(model)


def _stats_of(model: FlaxModel, variables: dict[str, Any]) -> dict[str, Any]:
    missing = [c for c in model.mutable if c not in variables]
    if missing:
        raise ValueError(f"the variables hold no collection(s) {missing}; they hold {sorted(variables)}")
    return {c: variables[c] for c in model.mutable}


def _update(model: FlaxModel, params: Any, stats: dict[str, Any], x: Array, key: Array | None) -> dict[str, Any]:
    return model.train_apply(params, stats, x, key)[1]


def bn_momentum(model: Any, variables: dict[str, Any], x: Array, key: Array | None = None) -> dict[str, Any]:
    """Each running statistic's momentum ``m`` (``{collection: pytree}``), from two probes on one batch (the
    same rng key for both, so dropout masks cancel)."""
    model = flax_model(model)
    stats = _stats_of(model, variables)
    new0 = _update(model, variables["params"], jax.tree_util.tree_map(jnp.zeros_like, stats), x, key)
    new1 = _update(model, variables["params"], jax.tree_util.tree_map(jnp.ones_like, stats), x, key)
    return jax.tree_util.tree_map(lambda a, b: b - a, new0, new1)


def recompute_batch_stats(model: Any, params: Any, momentum: dict[str, Any], xb: Array, key: Array | None = None
                          ) -> dict[str, Any]:
    """Average of per-batch running statistics over ``xb`` (``(n_batches, batch, ...)``), one ``lax.scan``;
    returns ``{collection: pytree}`` like ``momentum``.

    Layers are processed in one forward pass per batch, so later layers see the earlier layers'
    *batch* statistics, exactly as during training-mode forward passes. With rng streams (dropout) batch ``j``
    uses ``fold_in(key, j)`` (``key`` defaults to ``PRNGKey(0)``): deterministic, as training mode is.
    """
    model = flax_model(model)
    template = jax.tree_util.tree_map(jnp.zeros_like, momentum)
    key = jax.random.PRNGKey(0) if key is None else key

    def body(acc, inp):
        j, x = inp
        new0 = _update(model, params, template, x, jax.random.fold_in(key, j) if model.takes_rng else None)
        batch = jax.tree_util.tree_map(lambda n, m: n / (1 - m), new0, momentum)
        return jax.tree_util.tree_map(jnp.add, acc, batch), None

    total, _ = jax.lax.scan(body, template, (jnp.arange(xb.shape[0]), xb))
    return jax.tree_util.tree_map(lambda s: s / xb.shape[0], total)


@dataclasses.dataclass(frozen=True)
class BNEval:
    """``apply_fn(variables, x)`` in inference mode (running statistics), for :func:`evaluate`."""

    model: Any

    def __call__(self, variables: dict[str, Any], x: Array) -> Array:
        return flax_model(self.model).eval_apply(variables, x)


@dataclasses.dataclass(frozen=True)
class BNTrain:
    """``apply_fn(params, x[, key])`` in training mode (the minibatch's own statistics), for curve training.
    With rng streams (dropout) it has ``takes_rng``: :func:`stability.curves.train_curve` then passes a fresh
    key per step."""

    model: Any

    @property
    def takes_rng(self) -> bool:
        return flax_model(self.model).takes_rng

    def __call__(self, params: Any, x: Array, key: Array | None = None) -> Array:
        m = flax_model(self.model)
        out, _ = m.train_apply(params, m.stats_like(x), x, key)
        return out


@dataclasses.dataclass(frozen=True)
class BNPoint:
    """Point function wrapper: ``inner(theta_inner, t)`` gives params; BN statistics are recomputed at
    that point from the training batches carried in ``theta`` (see :func:`bn_point_theta`); returns the flax
    variables ``{"params": …, **collections}``. Under :func:`stability.core.evaluate.evaluate` the recompute is
    vmapped over the chunk of ``t``; rng streams use ``PRNGKey(seed)``."""

    inner: Callable[[Any, Array], Any]
    model: Any
    seed: int = 0

    def __call__(self, theta: tuple[Any, Array, Any], t: Array) -> dict[str, Any]:
        inner_theta, xb, momentum = theta
        params = self.inner(inner_theta, t)
        stats = recompute_batch_stats(self.model, params, momentum, xb, jax.random.PRNGKey(self.seed))
        return {"params": params, **stats}


def bn_point_theta(inner_theta: Any, model: Any, variables_example: dict[str, Any], x_train: Array,
                   batch_size: int = 256, key: Array | None = None, *, mesh: Mesh | None = None
                   ) -> tuple[Any, Array, Any]:
    """``theta`` for :class:`BNPoint`: the inner theta, the training data cut into full batches, the momenta
    (probed on ``variables_example``, e.g. one end model's ``module.init`` variables). With a ``mesh`` of several
    devices (:mod:`stability.core.mesh`; ``batch_size`` a multiple of its size) the batches are split over its
    devices, so the recompute inside :func:`stability.core.evaluate.evaluate` (same ``mesh``) reduces each
    batch's statistics across devices."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if _mesh.is_sharded(mesh) and batch_size % mesh.size:
        raise ValueError(f"batch_size ({batch_size}) must be a multiple of the mesh's {mesh.size} devices")
    n = (x_train.shape[0] // batch_size) * batch_size
    if n == 0:
        raise ValueError(f"need at least one full batch of {batch_size} training samples for the BN recompute, "
                         f"got {x_train.shape[0]}")
    xb = jnp.asarray(x_train[:n]).reshape((n // batch_size, batch_size) + x_train.shape[1:])
    momentum = bn_momentum(model, variables_example, xb[0], key)
    if _mesh.is_sharded(mesh):
        (xb,) = _mesh.shard_batches(xb, mesh=mesh)
    return inner_theta, xb, momentum
