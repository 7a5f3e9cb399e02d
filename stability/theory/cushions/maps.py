"""The per-layer maps ``M^{k−1,k}``, their jvp/vjp linearisations and one-sweep propagation of stacks of vectors
through every layer pair (docs/THEORY.md §6)."""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stability.core import nets as _nets
from stability.core.nets import layer_apply, pool2 as _pool2

Array = jax.Array


# --------------------------------------------------------------------------- per-layer maps


def _act(arch: _nets.Arch, k: int, xk: Array) -> Array:
    """Input of layer ``k+1`` from the pre-activation ``x^k`` (``k ≥ 1``): ``P(φ(x^k))``."""
    h = jax.nn.relu(xk)
    if k - 1 < arch.n_conv and arch.pool[k - 1] is not None:
        h = _pool2(h, arch.pool[k - 1])
    return h


_DENSE_RATIO = 8
"""On CPU a conv layer whose operator, as a dense matrix, costs at most this many times its convolution's
multiply-adds (small feature maps: ``H·W ≤ 8·k²``) and holds at most ``_DENSE_MAX`` entries is applied as that
matrix: XLA:CPU runs small convolutions an order of magnitude below its matmul rate (same map, other rounding)."""
_DENSE_MAX = 2**24


def _dense_matrix(net: _nets.Net, k: int, in_shape: tuple[int, ...]) -> Array | None:
    """Conv layer ``k``'s bias-free operator as an ``(in, out)`` matrix (row ``r`` = ``A_k e_r``) when that is
    faster (see ``_DENSE_RATIO``), else ``None``. ``in_shape``: ``(B, H, W, C)`` of its input."""
    arch = net.arch
    if arch.kinds[k - 1] != "conv" or jax.default_backend() != "cpu":
        return None
    w = net.A(k)
    n_in = int(np.prod(in_shape[1:]))
    n_out = in_shape[1] * in_shape[2] * int(w.shape[0])
    macs = in_shape[1] * in_shape[2] * int(np.prod(w.shape))
    if n_in * n_out > min(_DENSE_RATIO * macs, _DENSE_MAX):
        return None
    basis = jnp.eye(n_in, dtype=w.dtype).reshape((n_in,) + tuple(in_shape[1:]))
    return layer_apply(arch, k - 1, w, None, basis).reshape(n_in, n_out)


def _linear(net: _nets.Net, k: int, h: Array) -> Array:
    """``A_k h`` (no bias) on a batch (small conv layers on CPU as an explicit matrix)."""
    M = _dense_matrix(net, k, h.shape)
    if M is None:
        return layer_apply(net.arch, k - 1, net.A(k), None, h)
    return (h.reshape(h.shape[0], -1) @ M).reshape(h.shape[:3] + (net.A(k).shape[0],))


def _affine(net: _nets.Net, k: int, h: Array) -> Array:
    """``A_k h + b_k`` on a batch."""
    b = net.bias(k)
    return _linear(net, k, h) if b is None else _linear(net, k, h) + b


def _step(net: _nets.Net, k: int, x_prev: Array) -> Array:
    """``M^{k−1,k}``: ``x^{k−1} ↦ x^k`` (``k ≥ 2``)."""
    return _affine(net, k, _act(net.arch, k - 1, x_prev))


def _step_linear(net: _nets.Net, k: int, x_prev: Array) -> Array:
    """The bias-free part of ``M^{k−1,k}`` (same Jacobian, cheaper residuals)."""
    return _linear(net, k, _act(net.arch, k - 1, x_prev))


def _linearise(net: _nets.Net, pre: Sequence[Array]):
    """Per layer ``k = 2..d`` the jvp and the vjp of ``M^{k−1,k}`` at the sample's ``x^{k−1}``
    (batched over samples; vmap them over stacks of vectors)."""
    jvps, vjps = {}, {}
    for k in range(2, net.depth + 1):
        g = functools.partial(_step_linear, net, k)
        _, jvps[k] = jax.linearize(g, pre[k - 2])
        _, vjp = jax.vjp(g, pre[k - 2])
        vjps[k] = lambda c, vjp=vjp: vjp(c)[0]
    return jvps, vjps


def _sweep(maps, d: int, inject: dict[int, Array]) -> dict[int, dict[int, Array]]:
    """Carry stacks through layers in ONE upward sweep: ``inject[i]`` (``(S_i, B, *shape of x^i)``)
    joins at layer ``i``; returns ``out[i][j]`` = the stack after layer ``j`` for every ``j > i``.

    ``maps[k]`` maps a batch ``(B, …)`` at layer ``k−1`` to layer ``k`` (a jvp or ``M^{k−1,k}``);
    all starts share each layer's vmapped call, so a sweep costs ``d − 1`` calls, not ``O(d²)``."""
    out: dict[int, dict[int, Array]] = {i: {} for i in inject}
    T, segs = None, []
    for k in range(2, d + 1):
        if k - 1 in inject:
            v = inject[k - 1]
            T = v if T is None else jnp.concatenate([T, v], axis=0)
            segs.append((k - 1, v.shape[0]))
        if T is None:
            continue
        T = jax.vmap(maps[k])(T)
        off = 0
        for i, n in segs:
            out[i][k] = T[off:off + n]
            off += n
    return out


def interlayer_jvps(net: _nets.Net, x: Array) -> list[list[Array]]:
    """``out[i−1] = [J^{i,i} x^i, …, J^{i,d} x^i]`` for every start layer ``i`` at the batch ``x``
    (one upward sweep of jvps). For a bias-free net this is ``[x^i, …, x^d]`` (homogeneity)."""
    x = _check_x(net, x)
    flat = _interlayer_jvps(net, x)
    d, out, r = net.depth, [], 0
    for i in range(1, d + 1):
        out.append(list(flat[r:r + d - i + 1]))
        r += d - i + 1
    return out


@jax.jit
def _interlayer_jvps(net: _nets.Net, x: Array) -> tuple[Array, ...]:
    d = net.depth
    pre = _nets.forward(net, x)
    jvps, _ = _linearise(net, pre)
    sw = _sweep(jvps, d, {i: pre[i - 1][None] for i in range(1, d)})
    return tuple(a for i in range(1, d + 1) for a in [pre[i - 1]] + [sw[i][j][0] for j in range(i + 1, d + 1)])


def _check_x(net: _nets.Net, x) -> Array:
    dtype = jax.tree_util.tree_leaves(net)[0].dtype
    x = jnp.asarray(x, dtype)
    if tuple(x.shape[1:]) != net.arch.in_shape or x.shape[0] == 0:
        raise ValueError(f"x must have shape (N > 0, {', '.join(map(str, net.arch.in_shape))}), got {tuple(x.shape)}")
    return x


def _dims(net: _nets.Net) -> tuple[int, ...]:
    """Size of ``x^i`` per sample, ``i = 1..d``."""
    dtype = jax.tree_util.tree_leaves(net)[0].dtype
    shapes = jax.eval_shape(_nets.forward, net, jax.ShapeDtypeStruct((1,) + net.arch.in_shape, dtype))
    return tuple(int(np.prod(s.shape[1:])) for s in shapes)
