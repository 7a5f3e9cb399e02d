"""BatchNorm along curves (Garipov et al. 2018, §3.2 / A.3): recompute the running statistics at
each point with one pass over the training data, batched over many points.

Works for any ``flax.linen`` module whose ``__call__(x, train: bool)`` uses
``nn.BatchNorm(use_running_average=not train)``: variables ``{"params", "batch_stats"}``.
The statistics of a point are the average over training batches of each batch's mean and
variance (the cumulative average of PyTorch's ``momentum=None``, as the reference code's
``update_bn``). The per-batch statistics are read off flax's running-average update without
knowing the module's momentum: flax writes ``m·old + (1−m)·batch`` and ``m`` is probed once.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["bn_momentum", "recompute_batch_stats", "BNEval", "BNTrain", "BNPoint", "bn_point_theta"]


def _zeros(tree: Any) -> Any:
    return jax.tree_util.tree_map(jnp.zeros_like, tree)


def _update(model: Any, params: Any, stats: Any, x: Array) -> Any:
    _, upd = model.apply({"params": params, "batch_stats": stats}, x, train=True, mutable=["batch_stats"])
    return upd["batch_stats"]


def bn_momentum(model: Any, variables: dict[str, Any], x: Array) -> Any:
    """Each statistic's momentum ``m`` (a pytree like ``batch_stats``), from two probes on one batch."""
    stats = variables["batch_stats"]
    new0 = _update(model, variables["params"], _zeros(stats), x)
    new1 = _update(model, variables["params"], jax.tree_util.tree_map(jnp.ones_like, stats), x)
    return jax.tree_util.tree_map(lambda a, b: b - a, new0, new1)


def recompute_batch_stats(model: Any, params: Any, momentum: Any, xb: Array) -> Any:
    """Average of per-batch BN statistics over ``xb`` (``(n_batches, batch, ...)``), one ``lax.scan``.

    Layers are processed in one forward pass per batch, so later layers see the earlier layers'
    *batch* statistics, exactly as during training-mode forward passes.
    """
    template = jax.tree_util.tree_map(jnp.zeros_like, momentum)

    def body(acc, x):
        new0 = _update(model, params, template, x)
        batch = jax.tree_util.tree_map(lambda n, m: n / (1 - m), new0, momentum)
        return jax.tree_util.tree_map(jnp.add, acc, batch), None

    total, _ = jax.lax.scan(body, template, xb)
    return jax.tree_util.tree_map(lambda s: s / xb.shape[0], total)


@dataclasses.dataclass(frozen=True)
class BNEval:
    """``apply_fn(variables, x)`` in inference mode (running statistics), for :func:`evaluate`."""

    model: Any

    def __call__(self, variables: dict[str, Any], x: Array) -> Array:
        return self.model.apply(variables, x, train=False)


@dataclasses.dataclass(frozen=True)
class BNTrain:
    """``apply_fn(params, x)`` in training mode (the minibatch's own statistics), for curve training."""

    model: Any

    def __call__(self, params: Any, x: Array) -> Array:
        out, _ = self.model.apply({"params": params, "batch_stats": _stats_like(self.model, params, x)}, x,
                                  train=True, mutable=["batch_stats"])
        return out


def _stats_like(model: Any, params: Any, x: Array) -> Any:
    shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x[:1], train=False))["batch_stats"]
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


@dataclasses.dataclass(frozen=True)
class BNPoint:
    """Point function wrapper: ``inner(theta_inner, t)`` gives params; BN statistics are recomputed at
    that point from the training batches carried in ``theta`` (see :func:`bn_point_theta`).
    Under :func:`stability.core.evaluate.evaluate` the recompute is vmapped over the chunk of ``t``."""

    inner: Callable[[Any, Array], Any]
    model: Any

    def __call__(self, theta: tuple[Any, Array, Any], t: Array) -> dict[str, Any]:
        inner_theta, xb, momentum = theta
        params = self.inner(inner_theta, t)
        return {"params": params, "batch_stats": recompute_batch_stats(self.model, params, momentum, xb)}


def bn_point_theta(inner_theta: Any, model: Any, params_example: Any, batch_stats_example: Any, x_train: Array,
                   batch_size: int = 256) -> tuple[Any, Array, Any]:
    """``theta`` for :class:`BNPoint`: the inner theta, the training data cut into full batches, the momenta."""
    n = (x_train.shape[0] // batch_size) * batch_size
    if n == 0:
        raise ValueError(f"need at least one full batch of {batch_size} training samples for the BN recompute")
    xb = jnp.asarray(x_train[:n]).reshape((n // batch_size, batch_size) + x_train.shape[1:])
    momentum = bn_momentum(model, {"params": params_example, "batch_stats": batch_stats_example}, xb[0])
    return inner_theta, xb, momentum
