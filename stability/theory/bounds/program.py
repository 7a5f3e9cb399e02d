"""The compiled bound program: weights of many sub-intervals → sound loss sums over the data.

One jitted program per static :class:`Spec` (architecture, loss, method, switches) and shape (data
batch, number of sub-intervals — the driver buckets it to powers of two — padded control points,
support size and degree). ``jax.jit`` caches it at module level, so repeated calls and new weights
never recompile. Inside: the weight enclosures of every sub-interval (``vmap``), then ``lax.scan``
over fixed-size data batches; per batch the first layer is evaluated once per control point
(``W_k x`` — the first pre-activation is exactly ``Σ_k p_k(u) (W_k x + β_k)``), then every
sub-interval is propagated (``vmap``). On CPU, conv nets step through the batches from Python
instead (:mod:`stability.core.hostloop`: XLA:CPU runs convolutions inside a while loop several times slower).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from stability.core import nets as _nets
from stability.theory.bounds.loss_bounds import cross_entropy_sums, squared_error_sums
from stability.theory.bounds.rounding import ETA, Rounding
from stability.theory.bounds.taylor import TM, Op, avg_pool, linear, max_pool, mean_hw, poly_combination, relu

Array = jax.Array
LossKind = Literal["cross_entropy", "squared_error"]

__all__ = ["Spec", "Subintervals", "run_program", "layer_op"]


@dataclasses.dataclass(frozen=True)
class Spec:
    """Static description of one program: ``order`` 1 = Taylor models, 0 = intervals; ``pairwise``: the
    cross-entropy differences from the last hidden layer; ``sound``/``relax`` off only for negative controls."""

    arch: _nets.Arch
    loss: LossKind
    order: int = 1
    pairwise: bool = True
    sound: bool = True
    relax: bool = True


class Subintervals(NamedTuple):
    """Per sub-interval: support indices ``idx (S, Ks)``, Taylor coefficients ``c (S, Ks, M1)`` of the
    support's polynomials at the midpoint, error weights ``rho``/``sigma (S, Ks)``, half-width ``delta (S,)``."""

    idx: Any
    c: Any
    rho: Any
    sigma: Any
    delta: Any


def layer_op(arch: _nets.Arch, l: int) -> tuple[Op, int]:
    """The bilinear map ``op(W, h)`` of parameter layer ``l`` (no bias) and its fan-in ``n``."""
    kind = arch.kinds[l]
    shape = arch.weight_shapes()[l]
    n = int(math.prod(shape[1:]))
    if kind == "conv":
        k = arch.kernel

        def op(W: Array, h: Array) -> Array:
            # same-padded convolution as patches × kernel: one batched matrix product per sub-interval under
            # vmap (XLA:CPU runs convolutions with a batch of kernels slowly); the patches' features are
            # ordered (C, kh, kw) like the flattened OIHW kernel
            patches = jax.lax.conv_general_dilated_patches(h, (k, k), (1, 1), "SAME",
                                                           dimension_numbers=("NHWC", "OIHW", "NHWC"))
            return jnp.einsum("nhwf,of->nhwo", patches, W.reshape(W.shape[0], -1))
    elif kind == "flatten":
        def op(W: Array, h: Array) -> Array:
            return jnp.einsum("nhwc,ochw->no", h, W)
    else:  # dense, and gap after the spatial mean
        def op(W: Array, h: Array) -> Array:
            return h @ W.T
    return op, n


def _first_layer(spec: Spec, w: Array, b: Array | None, x: Array) -> tuple[Array, Array | None]:
    """``G_k = W_k x + β_k`` for every control point ``k`` and its rounding radius ``E_k``."""
    op, n = layer_op(spec.arch, 0)
    rnd = Rounding(spec.sound)
    G = jax.vmap(lambda wk: op(wk, x))(w)
    if b is not None:
        G = G + b[:, None] if G.ndim == 3 else G + b[:, None, None, None]
    if not spec.sound:
        return G, None
    E = jax.vmap(lambda wk: op(jnp.abs(wk), jnp.abs(x)))(w)
    if b is not None:
        E = E + (jnp.abs(b)[:, None] if E.ndim == 3 else jnp.abs(b)[:, None, None, None])
    return G, rnd.inflate(rnd.gamma(n + 1) * E, n + 8)


def _weights(spec: Spec, pts: _nets.Net, sub: Subintervals) -> list[tuple[TM, TM | None]]:
    """Enclosures of the weights of layers ``2 … d`` on ONE sub-interval (``pts``: the stacked control points)."""
    rnd = Rounding(spec.sound)
    out = []
    for i in range(2, pts.depth + 1):
        W = poly_combination(pts.A(i)[sub.idx], None, sub.c, sub.rho, sub.sigma, sub.delta, rnd, spec.order)
        bias = None
        if pts.bias(i) is not None:
            bias = poly_combination(pts.bias(i)[sub.idx], None, sub.c, sub.rho, sub.sigma, sub.delta, rnd, spec.order)
        out.append((W, bias))
    return out


def _sub_sums(spec: Spec, weights, G: Array, E: Array | None, target: Array, mask: Array,
              sub: Subintervals) -> tuple[Array, Array, Array]:
    """Loss sums (upper at −δ, upper at +δ, lower at the midpoint) of ONE sub-interval over one batch."""
    arch = spec.arch
    rnd = Rounding(spec.sound)
    delta = sub.delta
    h = poly_combination(G[sub.idx], None if E is None else E[sub.idx], sub.c, sub.rho, sub.sigma, delta, rnd,
                         spec.order)
    d = arch.depth
    for l in range(1, d):
        h = relu(h, delta, rnd, spec.relax)
        if l - 1 < arch.n_conv and arch.pool[l - 1] is not None:
            h = (max_pool if arch.pool[l - 1] == "max" else avg_pool)(h, delta, rnd)
        if arch.kinds[l] == "gap":
            h = mean_hw(h, delta, rnd)
        op, n = layer_op(arch, l)
        W, bias = weights[l - 1]
        if l < d - 1:
            h = linear(op, n, W, bias, h, delta, rnd)
        elif spec.loss == "cross_entropy":
            return cross_entropy_sums(op, n, W, bias, h, target, mask, delta, rnd, spec.pairwise)
        else:
            return squared_error_sums(op, n, W, bias, h, target, mask, delta, rnd)
    raise ValueError("a net needs at least two layers to be bounded layer by layer")  # pragma: no cover


def _batch_sums(spec: Spec, pts, weights, x: Array, target: Array, mask: Array, sub: Subintervals):
    G, E = _first_layer(spec, pts.A(1), pts.bias(1), x)
    return jax.vmap(lambda W, s: _sub_sums(spec, W, G, E, target, mask, s))(weights, sub)


def _accumulate(rnd: Rounding, carry, sums):
    return (rnd.up(carry[0] + sums[0]), rnd.up(carry[1] + sums[1]), rnd.down(carry[2] + sums[2]))


@functools.partial(jax.jit, static_argnums=0)
def _scan_program(spec: Spec, pts, xb: Array, tb: Array, mb: Array, sub: Subintervals):
    rnd = Rounding(spec.sound)
    weights = jax.vmap(lambda s: _weights(spec, pts, s))(sub)

    if xb.shape[0] == 1:  # one batch: no loop (XLA compiles a loop-free program markedly faster)
        return _batch_sums(spec, pts, weights, xb[0], tb[0], mb[0], sub)

    def body(carry, batch):
        return _accumulate(rnd, carry, _batch_sums(spec, pts, weights, *batch, sub)), None

    zeros = jnp.zeros(sub.delta.shape, xb.dtype)
    out, _ = jax.lax.scan(body, (zeros, zeros, zeros), (xb, tb, mb))
    return out


@functools.partial(jax.jit, static_argnums=0)
def _prepare(spec: Spec, pts, sub: Subintervals):
    return jax.vmap(lambda s: _weights(spec, pts, s))(sub)


@functools.partial(jax.jit, static_argnums=0)
def _batch_program(spec: Spec, pts, weights, x: Array, target: Array, mask: Array, sub: Subintervals):
    return _batch_sums(spec, pts, weights, x, target, mask, sub)


def run_program(spec: Spec, pts, xb: Array, tb: Array, mb: Array, sub: Subintervals,
                host_loop: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sums over the whole data set: ``(upper at −δ, upper at +δ, lower at the midpoint)`` per sub-interval."""
    if not host_loop or xb.shape[0] == 1:
        return tuple(np.asarray(v) for v in _scan_program(spec, pts, xb, tb, mb, sub))
    weights = _prepare(spec, pts, sub)
    acc = None
    for j in range(xb.shape[0]):
        s = [np.asarray(v) for v in _batch_program(spec, pts, weights, xb[j], tb[j], mb[j], sub)]
        if acc is None:
            acc = s
        else:  # host-side outward rounding of the running sums (one addition each)
            acc = [np.nextafter(acc[0] + s[0], np.inf) + ETA, np.nextafter(acc[1] + s[1], np.inf) + ETA,
                   np.nextafter(acc[2] + s[2], -np.inf) - ETA]
    return tuple(acc)
