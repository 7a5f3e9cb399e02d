"""Hypothesis strategies for random dense and conv ReLU nets (shared by the test modules)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from stability.core import nets


@st.composite
def dense_nets(draw, min_depth: int = 2, max_depth: int = 6, max_width: int = 9, dtype=jnp.float64):
    depth = draw(st.integers(min_depth, max_depth))
    sizes = [draw(st.integers(1, 6))] + [draw(st.integers(1, max_width)) for _ in range(depth - 1)]
    sizes.append(draw(st.integers(1, 4)))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    return random_net(nets.Arch(in_shape=(sizes[0],), widths=tuple(sizes[1:]), bias=bias), seed, dtype)


@st.composite
def conv_nets(draw, min_convs: int = 1, max_convs: int = 3, max_channels: int = 5, dtype=jnp.float64):
    n_conv = draw(st.integers(min_convs, max_convs))
    channels = [draw(st.integers(1, max_channels)) for _ in range(n_conv)]
    size = draw(st.sampled_from([4, 5, 6]))
    in_c = draw(st.integers(1, 3))
    pool = [draw(st.sampled_from([None, "max", "avg"])) if size >= 4 and k < 2 else None for k in range(n_conv)]
    head = draw(st.sampled_from(["flatten", "gap"]))
    dense = [draw(st.integers(1, 5)) for _ in range(draw(st.integers(0, 1)))]
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**31 - 1))
    arch = nets.Arch(in_shape=(size, size, in_c), widths=tuple(channels + dense + [draw(st.integers(1, 4))]),
                     n_conv=n_conv, kernel=draw(st.sampled_from([1, 3])), pool=tuple(pool), head=head, bias=bias)
    return random_net(arch, seed, dtype)


def any_nets(**kw):
    return st.one_of(dense_nets(**kw), conv_nets())


def random_net(arch: nets.Arch, seed: int, dtype=jnp.float64) -> nets.Net:
    """He-scaled Gaussian weights and non-zero biases from NumPy (no per-shape compilation in tests)."""
    rng = np.random.default_rng(seed)
    layers = []
    for shape in arch.weight_shapes():
        layer = {"w": jnp.asarray(rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[1:])), dtype)}
        if arch.bias:
            layer["b"] = jnp.asarray(0.3 * rng.normal(size=shape[:1]), dtype)
        layers.append(layer)
    return nets.Net(arch, tuple(layers))


def inputs(net: nets.Net, n: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(n, *net.arch.in_shape)), jax.tree_util.tree_leaves(net)[0].dtype)
