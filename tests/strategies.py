"""Hypothesis strategies for random dense and conv ReLU nets (shared by the test modules)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from stability.core import nets
from stability.core.mesh import to_device


def _dense_pool() -> tuple[nets.Arch, ...]:
    """A fixed pool of dense architectures covering depth 2–6, widths 1–9 (odd and even, width-1 layers),
    inputs 1–6, outputs 1–4, biases on and off: hypothesis draws from it, so every program is compiled once
    per architecture for the whole session (the weights still vary with the drawn seed)."""
    sizes = [(3, 4, 2), (1, 1, 1), (6, 9, 4), (2, 5, 3), (4, 7, 1, 3), (5, 2, 8, 2), (3, 1, 6, 4),
             (2, 3, 3, 3, 1), (6, 8, 5, 9, 2), (4, 6, 1, 7, 5, 3), (1, 9, 2, 4, 6, 8, 2), (5, 3, 7, 5, 9, 1, 4)]
    return tuple(nets.Arch(in_shape=(z[0],), widths=tuple(z[1:]), bias=k % 3 != 1) for k, z in enumerate(sizes))


def _conv_pool() -> tuple[nets.Arch, ...]:
    """A fixed pool of conv architectures: 1–3 convs of 1–5 channels, 4–6 px inputs with 1–3 channels,
    kernels 1 and 3, max / avg / no pooling, flatten and global-average heads, 0–1 hidden dense layers,
    biases on and off."""
    A = nets.Arch
    return (
        A(in_shape=(4, 4, 1), widths=(2, 3), n_conv=1, kernel=3, pool=("max",), head="flatten", bias=True),
        A(in_shape=(5, 5, 2), widths=(3, 2, 2), n_conv=2, kernel=3, pool=("avg", None), head="gap", bias=False),
        A(in_shape=(6, 6, 3), widths=(1, 4, 3, 4), n_conv=3, kernel=1, pool=(None, "max", None), head="flatten",
          bias=True),
        A(in_shape=(4, 4, 2), widths=(5, 3, 1), n_conv=1, kernel=3, pool=(None,), head="gap", bias=True),
        A(in_shape=(5, 5, 1), widths=(4, 5, 2, 3), n_conv=2, kernel=3, pool=("max", None), head="flatten",
          bias=True),
        A(in_shape=(6, 6, 1), widths=(2, 2, 5, 2), n_conv=3, kernel=3, pool=("avg", "avg", None), head="gap",
          bias=False),
        A(in_shape=(4, 4, 3), widths=(3, 1, 4), n_conv=2, kernel=1, pool=(None, None), head="flatten", bias=False),
        A(in_shape=(5, 5, 2), widths=(5, 4, 2), n_conv=1, kernel=3, pool=("max",), head="flatten", bias=True),
    )


DENSE_POOL = _dense_pool()
CONV_POOL = _conv_pool()


@st.composite
def dense_nets(draw, min_depth: int = 2, max_depth: int = 6, max_width: int = 9, dtype=jnp.float64):
    """A dense ReLU net from :data:`DENSE_POOL` (depth and width limits filter the pool) with random weights."""
    pool = [a for a in DENSE_POOL if min_depth <= a.depth <= max_depth and max(a.widths) <= max_width]
    if not pool:
        raise ValueError(f"no pooled dense architecture has depth {min_depth}..{max_depth} and widths ≤ {max_width}")
    arch = draw(st.sampled_from(pool))
    seed = draw(st.integers(0, 2**31 - 1))
    return random_net(arch, seed, dtype)


@st.composite
def conv_nets(draw, min_convs: int = 1, max_convs: int = 3, max_channels: int = 5, dtype=jnp.float64):
    """A conv ReLU net from :data:`CONV_POOL` (conv-count and channel limits filter the pool), random weights."""
    pool = [a for a in CONV_POOL if min_convs <= a.n_conv <= max_convs and max(a.widths[:a.n_conv]) <= max_channels]
    if not pool:
        raise ValueError(f"no pooled conv architecture has {min_convs}..{max_convs} convs of ≤ {max_channels} channels")
    arch = draw(st.sampled_from(pool))
    seed = draw(st.integers(0, 2**31 - 1))
    return random_net(arch, seed, dtype)


def any_nets(**kw):
    return st.one_of(dense_nets(**kw), conv_nets())


def random_net(arch: nets.Arch, seed: int, dtype=jnp.float64) -> nets.Net:
    """He-scaled Gaussian weights and non-zero biases from NumPy (no per-shape compilation in tests)."""
    rng = np.random.default_rng(seed)
    layers = []
    for shape in arch.weight_shapes():
        layer = {"w": to_device(rng.normal(size=shape) * np.sqrt(2.0 / np.prod(shape[1:])), dtype)}
        if arch.bias:
            layer["b"] = to_device(0.3 * rng.normal(size=shape[:1]), dtype)
        layers.append(layer)
    return nets.Net(arch, tuple(layers))


def inputs(net: nets.Net, n: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(n, *net.arch.in_shape)), jax.tree_util.tree_leaves(net)[0].dtype)
