"""Losses (convex in the network output, as the certificates of docs/THEORY.md §5 require) and metrics."""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = ["Loss", "ConvexLoss", "cross_entropy", "squared_error", "accuracy", "l2_penalty", "get_loss",
           "check_targets"]


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


def check_targets(y, n_outputs: int, loss: "Loss | str", what: str = "y") -> None:
    """Refuse targets ``loss`` cannot read, with one line naming ``what``: cross-entropy takes integer class
    labels in ``[0, n_outputs)`` (a label of −1 or ``n_outputs`` is refused, not wrapped or turned into NaN;
    float labels and one-hot rows are named as such); squared error takes such labels (one-hot encoded) or
    finite real targets of shape ``(N,)`` or ``(N, n_outputs)``. Other losses are not checked."""
    loss = get_loss(loss)
    a = np.asarray(y)
    n_outputs = int(n_outputs)
    integral = np.issubdtype(a.dtype, np.integer)
    if loss.name == "cross_entropy":
        if a.ndim == 2 and a.shape[1] == n_outputs and a.size and np.all((a == 0) | (a == 1)) \
                and np.all(a.sum(axis=1) == 1):
            raise ValueError(f"{what} looks one-hot (shape {a.shape}); cross-entropy takes integer class labels "
                             f"in [0, {n_outputs}): pass {what}.argmax(axis=1)")
        if not integral:
            raise ValueError(f"{what} holds {a.dtype} values; cross-entropy needs integer class labels in "
                             f"[0, {n_outputs}) (for real-valued targets use loss='squared_error')")
        if a.ndim != 1:
            raise ValueError(f"{what} must be a 1-D array of class labels, got shape {a.shape}")
    elif loss.name == "squared_error":
        if not integral:
            if not np.issubdtype(a.dtype, np.floating):
                raise ValueError(f"{what} must hold integer labels or real targets, got dtype {a.dtype}")
            if a.ndim == 1 and n_outputs != 1 or a.ndim == 2 and a.shape[1] != n_outputs or a.ndim > 2:
                raise ValueError(f"{what}: real targets of shape {a.shape} do not match the net's {n_outputs} "
                                 f"output(s); squared error needs (N,) for 1 output or (N, {n_outputs})")
            if a.size and not np.all(np.isfinite(a)):
                raise ValueError(f"{what} holds NaN or inf targets")
            return
        if a.ndim != 1:
            raise ValueError(f"{what} must be a 1-D array of class labels, got shape {a.shape}")
    else:
        return
    if a.size:
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi >= n_outputs:
            bad = sorted({v for v in (lo, hi) if v < 0 or v >= n_outputs})
            raise ValueError(f"{what}: class labels must lie in [0, {n_outputs}) (the net has {n_outputs} outputs), "
                             f"got {' and '.join(map(str, bad))}")
