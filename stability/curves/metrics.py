"""Curve metrics (Garipov et al. 2018, Appendix A.3 / Table 2) for ANY ``t ↦ weights`` function:
learned curves, constructed paths and straight segments land in the same table.

On a grid of ``n`` points (121 by default): Min / Int / Max of train loss, train error and test
error, where Int is the mean with respect to arc length (trapezoid rule, ``∫ v ds / ∫ ds``);
the length ratio ``length / ‖w(1) − w(0)‖``; and the two objectives: eq. (1), the arc-length
average of the train loss, and eq. (3), its average over uniform ``t``.

Two train-loss columns: ``train loss`` is the plain data loss; ``train loss + L2 (paper's)`` adds
``½·wd·‖w(t)‖²`` — the paper's Table 2 reports the L2-regularised loss ("loss refers to ℓ2 regularized
cross-entropy loss", §4), so comparisons with its numbers use the second. With ``weight_decay=0`` they agree.

The grid's ``train loss Max`` is a SAMPLED maximum (a lower bound of the maximum over t). Given a certified
enclosure of the plain train loss's maximum over every t on the same training data
(:func:`stability.theory.bounds.max_loss_bound`, or ``proofs_check.path_bound`` for a constructed path),
the row also carries it: ``train loss Max ≤ (certified, every t)`` and its proved lower end.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from stability.core import nets as _nets
from stability.core.evaluate import EvalResult, evaluate
from stability.core.losses import Loss, cross_entropy

Array = jax.Array

__all__ = ["arc_lengths", "sq_norms", "curve_table", "summarise", "TABLE_COLUMNS", "L2_LOSS", "L2_COLUMNS",
           "PAPER_TABLE_COLUMNS", "CERTIFIED_MAX", "CERTIFIED_LOWER", "certified_cell"]

TABLE_COLUMNS = ["train loss Min", "train loss Int", "train loss Max", "train err Min", "train err Int",
                 "train err Max", "test err Min", "test err Int", "test err Max", "length ratio"]
"""The Table 2 columns with the plain train loss (what the demo and ``stability curve`` print)."""

L2_LOSS = "train loss + L2 (paper's)"
"""The train loss with the L2 term ``½·wd·‖w(t)‖²``: the quantity the paper's Table 2 calls "train loss"."""

L2_COLUMNS = [f"{L2_LOSS} Min", f"{L2_LOSS} Int", f"{L2_LOSS} Max"]

CERTIFIED_MAX = "train loss Max ≤ (certified, every t)"
"""A proved upper bound of ``max_t`` of the plain train loss over EVERY t (not the grid's samples)."""
CERTIFIED_LOWER = "train loss Max ≥ (certified)"
"""A proved lower bound of the same maximum (a point enclosure at one t)."""

PAPER_TABLE_COLUMNS = ["length ratio", "train loss Min", "train loss Int", "train loss Max", *L2_COLUMNS,
                       "train err Min", "train err Int", "train err Max", "test err Min", "test err Int",
                       "test err Max"]
"""Both loss columns, for a table set beside the paper's."""


@functools.partial(jax.jit, static_argnums=0)
def _flat_points(point_fn: Callable[[Any, Array], Any], theta: Any, ts: Array) -> Array:
    return jax.vmap(lambda t: ravel_pytree(_weights_only(point_fn(theta, t)))[0])(ts)


def _flat_chunks(point_fn: Callable[[Any, Array], Any], theta: Any, ts: np.ndarray, chunk: int):
    """The flattened weights ``w(ts)`` chunk by chunk (float64 on the host)."""
    dtype = jax.tree_util.tree_leaves(theta)[0].dtype
    for s in range(0, ts.size, chunk):
        part = ts[s:s + chunk]
        padded = np.concatenate([part, np.full(chunk - part.size, part[-1])])
        yield np.asarray(_flat_points(point_fn, theta, jnp.asarray(padded, dtype)))[: part.size].astype(np.float64)


def _weights_only(p: Any) -> Any:
    """Arc length is measured in parameter space: BatchNorm running statistics are not weights."""
    if isinstance(p, dict) and "params" in p:
        return p["params"]
    return p


def arc_lengths(point_fn: Callable[[Any, Array], Any], theta: Any, ts: np.ndarray, chunk: int = 32) -> np.ndarray:
    """Lengths of the polygon through ``w(ts)`` segment by segment (``len(ts) − 1`` values)."""
    ts = np.asarray(ts, np.float64)
    pieces = []
    prev = None
    for flat in _flat_chunks(point_fn, theta, ts, chunk):
        if prev is not None:
            flat = np.concatenate([prev[None], flat])
        pieces.append(np.linalg.norm(np.diff(flat, axis=0), axis=1))
        prev = flat[-1]
    return np.concatenate(pieces)


def sq_norms(point_fn: Callable[[Any, Array], Any], theta: Any, ts: np.ndarray, chunk: int = 32) -> np.ndarray:
    """``‖w(t)‖²`` over the weights (flax ``params`` only, not BatchNorm statistics) at every ``t`` in ``ts``."""
    ts = np.asarray(ts, np.float64)
    return np.concatenate([np.sum(flat * flat, axis=1) for flat in _flat_chunks(point_fn, theta, ts, chunk)])


def summarise(values: np.ndarray, seg_lengths: np.ndarray) -> dict[str, float]:
    """Min, Max and arc-length mean (trapezoid) of values on the grid."""
    total = float(seg_lengths.sum())
    if total > 0:
        integral = float(np.sum(0.5 * (values[1:] + values[:-1]) * seg_lengths)) / total
    else:
        integral = float(values[0])
    return {"Min": float(values.min()), "Int": integral, "Max": float(values.max())}


def curve_table(
    point_fn: Callable[[Any, Array], Any],
    theta: Any,
    train: tuple[Array, Array],
    test: tuple[Array, Array],
    *,
    n: int = 121,
    apply_fn: Callable[[Any, Array], Array] = _nets.apply,
    loss: Loss | str = cross_entropy,
    weight_decay: float = 0.0,
    certified: Any = None,
    **eval_kw,
) -> dict[str, Any]:
    """The Table 2 row for one curve, plus eq. (1) / eq. (3) and the raw per-t results.

    Errors are in percent. ``point_fn(theta, t)`` may return a Net, any parameter pytree, or
    flax variables ``{"params", "batch_stats"}`` (then only ``params`` count for arc length and L2).
    The row holds both ``train loss …`` (the plain loss) and ``train loss + L2 (paper's) …``
    (plus ``½·weight_decay·‖w(t)‖²``, the paper's Table 2 quantity); ``sq_norm`` lists ``‖w(t)‖²``.
    ``certified``: a :class:`~stability.theory.bounds.BoundResult` of the plain train loss on ``train`` (the
    caller computes it on the same data); it must enclose the grid's maximum, else this raises.
    """
    if n < 2:
        raise ValueError(f"a curve table needs at least 2 grid points, got n={n}")
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    ts = np.linspace(0.0, 1.0, n)
    tr: EvalResult = evaluate(point_fn, theta, ts, *train, apply_fn=apply_fn, loss=loss, **eval_kw)
    te: EvalResult = evaluate(point_fn, theta, ts, *test, apply_fn=apply_fn, loss=loss, **eval_kw)
    seg = arc_lengths(point_fn, theta, ts)
    ends = arc_lengths(point_fn, theta, np.array([0.0, 1.0]))[0]
    norms = sq_norms(point_fn, theta, ts)
    with_l2 = np.asarray(tr.loss, np.float64) + 0.5 * float(weight_decay) * norms
    length = float(seg.sum())
    row: dict[str, Any] = {}
    for name, vals in (("train loss", tr.loss), (L2_LOSS, with_l2), ("train err", 100 * (1 - tr.acc)),
                       ("test err", 100 * (1 - te.acc))):
        for k, v in summarise(vals, seg).items():
            row[f"{name} {k}"] = v
    row["length ratio"] = length / ends if ends > 0 else float("nan")
    row["eq1 (arc-length mean loss)"] = row["train loss Int"]
    row["eq3 (uniform-t mean loss)"] = float(np.sum(0.5 * (tr.loss[1:] + tr.loss[:-1]) * np.diff(ts)))
    row["length"] = length
    row["end distance"] = float(ends)
    row["weight decay"] = float(weight_decay)
    out = {"row": row, "train": tr.to_dict(), "test": te.to_dict(), "segment_lengths": seg.tolist(),
           "sq_norm": norms.tolist()}
    if certified is not None:
        sampled = float(np.max(tr.loss))
        if certified.upper < sampled * (1 - 1e-5) - 1e-6:  # a float32 grid can sit a rounding above the exact value
            raise ValueError(f"the certified maximum {certified.upper!r} is below the sampled maximum {sampled!r}: it "
                             "was not computed for this curve on these training data")
        row[CERTIFIED_MAX] = float(certified.upper)
        row[CERTIFIED_LOWER] = float(certified.lower)
        out["certified"] = {k: v for k, v in certified.to_dict().items() if k not in ("history",)}
    return out


def certified_cell(row: dict[str, Any]) -> str:
    """``"≤ upper"`` (with the proved lower end) for a report cell, or ``"not computed"``."""
    if CERTIFIED_MAX not in row:
        return "not computed"
    return f"[{row[CERTIFIED_LOWER]:.4g}, {row[CERTIFIED_MAX]:.4g}]"
