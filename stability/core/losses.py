"""Losses (convex in the network output, as the certificates of docs/THEORY.md §5 require) and metrics."""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["Loss", "ConvexLoss", "cross_entropy", "squared_error", "accuracy", "l2_penalty", "get_loss"]


@dataclasses.dataclass(frozen=True)
class Loss:
    """A per-sample loss ``fn(outputs, targets) -> (N,)`` with a name.

    ``convex_in_output`` says whether ``fn`` is convex in ``outputs`` for fixed targets;
    the top-layer certificate (docs/THEORY.md §0, §5) is only valid for such losses.
    """

    name: str
    fn: Callable[[Array, Array], Array]
    convex_in_output: bool = False

    def __call__(self, outputs: Array, targets: Array) -> Array:
        return self.fn(outputs, targets)

    def mean(self, outputs: Array, targets: Array) -> Array:
        return jnp.mean(self.fn(outputs, targets))


@dataclasses.dataclass(frozen=True)
class ConvexLoss(Loss):
    """A :class:`Loss` that is convex in the network output (the type certificates ask for)."""

    convex_in_output: bool = True


def _ce(logits: Array, y: Array) -> Array:
    logz = jax.nn.logsumexp(logits, axis=-1)
    return logz - jnp.take_along_axis(logits, y[..., None].astype(jnp.int32), axis=-1)[..., 0]


def _sq(out: Array, y: Array) -> Array:
    """½‖f(x) − y‖²; integer labels are one-hot encoded first."""
    if jnp.issubdtype(y.dtype, jnp.integer):
        y = jax.nn.one_hot(y, out.shape[-1], dtype=out.dtype)
    elif y.ndim == out.ndim - 1:
        y = y[..., None]
    return 0.5 * jnp.sum((out - y) ** 2, axis=-1)


cross_entropy = ConvexLoss("cross_entropy", _ce)
"""Softmax cross-entropy with integer labels (log-sum-exp minus a linear term: convex)."""

squared_error = ConvexLoss("squared_error", _sq)
"""½‖f(x) − y‖² (one-hot targets for integer labels): convex."""


def get_loss(name: str | Loss) -> Loss:
    if isinstance(name, Loss):
        return name
    known = {"cross_entropy": cross_entropy, "ce": cross_entropy, "squared_error": squared_error, "mse": squared_error}
    if name not in known:
        raise ValueError(f"unknown loss {name!r}; known: {sorted(known)}")
    return known[name]


def accuracy(logits: Array, y: Array) -> Array:
    """Per-sample correctness (1.0/0.0) of the arg-max prediction against integer labels."""
    return (jnp.argmax(logits, axis=-1) == y).astype(logits.dtype)


def l2_penalty(params, weight_decay: float) -> Array:
    """``weight_decay/2 · Σ‖w‖²`` over every leaf of a pytree (the optional L2 term)."""
    leaves = jax.tree_util.tree_leaves(params)
    return 0.5 * weight_decay * sum(jnp.sum(jnp.square(x)) for x in leaves)
