"""Layer operators of noise stability (docs/THEORY.md §6): Frobenius norms of conv layers as linear operators
(border taps count fewer positions), operator column blocks, Lemma 3's column condition, and small norms."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from stability.core import nets as _nets

Array = jax.Array


# --------------------------------------------------------------------------- operators


def _spatial_in(arch: _nets.Arch, l: int) -> tuple[int, int]:
    """(H, W) of the input of 0-based conv layer ``l`` (after the pools of the layers before it)."""
    h, w = arch.in_shape[0], arch.in_shape[1]
    for q in range(l):
        if arch.pool[q] is not None:
            h, w = h // 2, w // 2
    return h, w


def _tap_counts(arch: _nets.Arch, l: int) -> np.ndarray:
    """For a same-padded conv layer: how many output positions read an in-bounds input through
    each kernel tap, ``(k, k)``: ``‖A‖_F² = Σ_{o,c,tap} w² · count(tap)``."""
    h, w = _spatial_in(arch, l)
    k = arch.kernel
    pad = (k - 1) // 2
    cy = np.array([max(0, h - abs(dy - pad)) for dy in range(k)], dtype=np.float64)
    cx = np.array([max(0, w - abs(dx - pad)) for dx in range(k)], dtype=np.float64)
    return np.outer(cy, cx)


def _weight_sq(net: _nets.Net, i: int) -> Array:
    """Squared operator entries of layer ``i`` summed per (output unit, input unit): ``(out, in)``."""
    arch = net.arch
    l = i - 1
    w = net.A(i)
    kind = arch.kinds[l]
    if kind == "conv":
        counts = jnp.asarray(_tap_counts(arch, l), w.dtype)
        return jnp.sum(w * w * counts, axis=(2, 3))
    if kind == "flatten":
        return jnp.sum(w * w, axis=(2, 3))
    if kind == "gap":
        hh, ww, _ = arch.feature_shape()
        return w * w / (hh * ww)
    return w * w


def _fro(net: _nets.Net, i: int) -> Array:
    return jnp.sqrt(jnp.sum(_weight_sq(net, i)))


def operator_fro_norm(net: _nets.Net, i: int) -> Array:
    """``‖A_i‖_F`` of layer ``i`` (1-based) as a linear operator on its whole input: the kernel norm
    weighted by in-bounds positions for a same-padded conv, ``‖w‖/√(HW)`` for global average
    pooling, ``‖w‖_F`` for dense and flatten layers (docs/THEORY.md §6)."""
    if not 1 <= i <= net.depth:
        raise IndexError(f"layer index must be in 1..{net.depth}, got {i}")
    return _fro_jit(net, i)


def column_norms(net: _nets.Net, i: int) -> Array:
    """Operator norm of every column block ``[A_i]_u`` (one per input unit/channel) of layer ``i ≥ 2``."""
    if not 2 <= i <= net.depth:
        raise IndexError(f"column norms are defined for layers 2..{net.depth}, got {i}")
    return _cols_jit(net, i)


_fro_jit = jax.jit(_fro, static_argnums=1)
_cols_jit = jax.jit(lambda net, i: jnp.sqrt(jnp.sum(_weight_sq(net, i), axis=0)), static_argnums=1)


@jax.jit
def _column_ratios(net: _nets.Net) -> Array:
    return jnp.stack([jnp.max(jnp.sqrt(jnp.sum(_weight_sq(net, i), axis=0))) / _fro(net, i)
                      for i in range(2, net.depth + 1)])


def column_ratio(net: _nets.Net, p: float) -> np.ndarray:
    """Lemma 3's column condition ``max_j ‖[A_i]_j‖ / (√p ‖A_i‖_F)`` per layer: shape ``(d,)``, NaN at
    layer 1 (Algorithm 1 never touches ``A_1``). Conv columns are operator input-channel blocks."""
    out = np.full(net.depth, np.nan)
    if net.depth > 1:
        with np.errstate(invalid="ignore", divide="ignore"):
            out[1:] = np.asarray(_column_ratios(net), np.float64) / math.sqrt(p)
    return out


def _norm(a: Array, lead: int = 1) -> Array:
    """Euclidean norm over all but the first ``lead`` axes."""
    return jnp.sqrt(jnp.sum(a * a, axis=tuple(range(lead, a.ndim))))


def _div(num: Array, den: Array, fill: float = float("nan")) -> Array:
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), fill)
