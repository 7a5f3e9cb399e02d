"""Nets as pytrees and the hidden-unit view (docs/THEORY.md §0), on random dense and conv nets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stability.core import nets, units
from tests.strategies import any_nets, inputs


def f(net, x):
    return np.asarray(nets.apply(net, x))


def leaves_equal(a, b) -> bool:
    return all(np.array_equal(u, v) for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


# ------------------------------------------------------------------ initialisation


def test_init_is_he_normal_per_layer_and_shares_programs_across_architectures():
    """Each layer's weights are ``jax.random.normal(k_l, shape) · √(2/fan_in)`` with ``k_l`` the l-th of
    ``split(key, depth)``, biases zero; a layer shape compiled for one architecture serves the next one."""
    key = jax.random.PRNGKey(3)
    net = nets.conv(key, (6, 6, 1), (3, 4), 5, pool=("max", None), dense=(7,))
    for k, layer, shape in zip(jax.random.split(key, net.depth), net.layers, net.arch.weight_shapes()):
        fan_in = int(np.prod(shape[1:]))
        expected = np.asarray(jax.random.normal(k, shape, jnp.float32)) * np.float32(np.sqrt(2.0 / fan_in))
        np.testing.assert_allclose(np.asarray(layer["w"]), expected, rtol=1e-6, atol=0)
        assert layer["w"].shape == shape and not np.any(np.asarray(layer["b"]))
    nets.mlp(jax.random.PRNGKey(0), (11, 13, 13, 3))   # shapes no other test of this module uses
    before = nets._he_init._cache_size()
    deeper = nets.mlp(jax.random.PRNGKey(1), (11, 13, 13, 13, 3))   # the same three layer shapes, one of them twice
    assert nets._he_init._cache_size() == before
    assert not leaves_equal(deeper.layers[1], deeper.layers[2])  # distinct keys per layer
    nets.mlp(jax.random.PRNGKey(2), (11, 17, 3))
    assert nets._he_init._cache_size() == before + 2   # new shapes (17, 11) and (3, 17): two more programs


# ------------------------------------------------------------------ forward


def test_mlp_forward_matches_manual_matmuls(x64):
    net = nets.mlp(jax.random.PRNGKey(0), (5, 7, 3, 2), dtype=jnp.float64)
    x = inputs(net)
    h = x
    for l, layer in enumerate(net.layers):
        h = h @ np.asarray(layer["w"]).T + np.asarray(layer["b"])
        if l < 2:
            h = np.maximum(h, 0)
    np.testing.assert_allclose(f(net, x), h, rtol=1e-12)
    pre = nets.forward(net, x)
    assert [p.shape for p in pre] == [(5, 7), (5, 3), (5, 2)]


def test_conv_forward_matches_explicit_convolution(x64):
    net = nets.conv(jax.random.PRNGKey(1), (5, 5, 2), (3,), 4, kernel=3, dtype=jnp.float64)
    x = np.asarray(inputs(net, n=2))
    w, b = np.asarray(net.layers[0]["w"]), np.asarray(net.layers[0]["b"])
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    ref = np.zeros((2, 5, 5, 3))
    for i in range(5):
        for j in range(5):
            ref[:, i, j, :] = np.einsum("nhwc,ochw->no", pad[:, i:i + 3, j:j + 3, :], w.transpose(0, 1, 2, 3)) + b
    np.testing.assert_allclose(np.asarray(nets.forward(net, jnp.asarray(x))[0]), ref, rtol=1e-12, atol=1e-12)
    h = np.maximum(ref, 0)
    w2 = np.asarray(net.layers[1]["w"])  # (out, C, H, W)
    logits = np.einsum("nhwc,ochw->no", h, w2) + np.asarray(net.layers[1]["b"])
    np.testing.assert_allclose(f(net, jnp.asarray(x)), logits, rtol=1e-12)


def test_paper_mnist_net_shapes():
    net = nets.conv(jax.random.PRNGKey(0), (28, 28, 1), (32, 32, 32), 10)
    assert [l["w"].shape for l in net.layers] == [(32, 1, 3, 3), (32, 32, 3, 3), (32, 32, 3, 3), (10, 32, 28, 28)]
    assert nets.apply(net, jnp.zeros((2, 28, 28, 1))).shape == (2, 10)


def test_bad_inputs_raise_clear_errors():
    net = nets.mlp(jax.random.PRNGKey(0), (4, 3, 2))
    with pytest.raises(ValueError, match="does not match"):
        nets.apply(net, jnp.zeros((2, 5)))
    with pytest.raises(ValueError, match="in_shape"):
        nets.Arch(in_shape=(4, 4), widths=(3, 2))
    with pytest.raises(ValueError, match="pool"):
        nets.conv(jax.random.PRNGKey(0), (4, 4, 1), (2,), 3, pool="median")
    with pytest.raises(ValueError, match="kernel"):
        nets.conv(jax.random.PRNGKey(0), (4, 4, 1), (2,), 3, kernel=2)
    with pytest.raises(IndexError, match="hidden layer"):
        units.get_rows(net, 2, [0])
    with pytest.raises(ValueError, match="permutation"):
        units.permute_units(net, 1, [0, 0, 1])
    other = nets.mlp(jax.random.PRNGKey(0), (4, 5, 2))
    with pytest.raises(ValueError, match="different architectures"):
        nets.check_same_arch(net, other)


def test_net_is_a_pytree_and_jits():
    net = nets.mlp(jax.random.PRNGKey(0), (4, 3, 2))
    leaves, tree = jax.tree_util.tree_flatten(net)
    assert len(leaves) == 4
    assert leaves_equal(jax.tree_util.tree_unflatten(tree, leaves), net)
    x = jnp.ones((3, 4))
    np.testing.assert_allclose(jax.jit(nets.apply)(net, x), nets.apply(net, x), rtol=1e-6)
    stacked = nets.stack([net, net])
    assert stacked.layers[0]["w"].shape == (2, 3, 4)
    assert leaves_equal(nets.unstack(stacked)[1], net)


# ------------------------------------------------------------------ hidden-unit view (property tests)


@given(net=any_nets(), data=st.data())
def test_permuting_units_preserves_function(x64, net, data):
    x = inputs(net)
    i = data.draw(st.integers(1, net.depth - 1))
    perm = data.draw(st.permutations(range(units.num_units(net, i))))
    out = units.permute_units(net, i, perm)
    np.testing.assert_allclose(f(out, x), f(net, x), rtol=1e-12, atol=1e-12)
    inv = np.argsort(perm)
    assert leaves_equal(units.permute_units(out, i, inv), net)


@given(net=any_nets(), data=st.data())
def test_copy_onto_dead_unit_preserves_function(x64, net, data):
    i = data.draw(st.integers(1, net.depth - 1))
    h = units.num_units(net, i)
    if h < 2:
        return
    src, dst = data.draw(st.lists(st.integers(0, h - 1), min_size=2, max_size=2, unique=True))
    x = inputs(net)
    dead = units.zero_unit(net, i, dst)
    out = units.copy_unit(dead, i, src, dst, split=data.draw(st.floats(0.0, 1.0)))
    np.testing.assert_allclose(f(out, x), f(dead, x), rtol=1e-11, atol=1e-11)
    for k, v in units.get_row(out, i, dst).items():
        np.testing.assert_array_equal(v, units.get_row(out, i, src)[k])


@given(net=any_nets(), data=st.data())
def test_zeroing_a_dead_unit_preserves_function_and_a_live_one_changes_it(x64, net, data):
    i = data.draw(st.integers(1, net.depth - 1))
    u = data.draw(st.integers(0, units.num_units(net, i) - 1))
    x = inputs(net, n=8)
    # dead: zero the column only; zeroing the row too must not change f.
    col = units.get_col(net, i, u)
    dead = units.set_col(net, i, u, {k: jnp.zeros_like(v) for k, v in col.items()})
    assert u in units.dead_units(dead)[i]
    np.testing.assert_allclose(f(units.zero_unit(dead, i, u), x), f(dead, x), rtol=1e-12, atol=1e-12)
    assert u in units.zero_units(units.zero_unit(dead, i, u))[i]
    # live: a unit with a positive feature and a non-zero column changes f when zeroed.
    row = units.get_row(net, i, u)
    row = {k: jnp.zeros_like(v) for k, v in row.items()}
    if "b" in row:
        row["b"] = jnp.ones_like(row["b"])
        live = units.set_row(net, i, u, row)
        live = units.set_col(live, i, u, {k: jnp.ones_like(v) for k, v in col.items()})
        # the unit now outputs the constant 1 (bias) everywhere and writes ones into layer i+1
        changed = np.abs(f(units.zero_unit(live, i, u), x) - f(live, x)).max()
        if i == net.depth - 1:
            assert changed > 0.5


@given(net=any_nets(), data=st.data())
def test_rows_and_columns_round_trip(x64, net, data):
    i = data.draw(st.integers(1, net.depth - 1))
    h = units.num_units(net, i)
    us = data.draw(st.lists(st.integers(0, h - 1), min_size=1, max_size=h, unique=True))
    rows, cols = units.get_rows(net, i, us), units.get_cols(net, i, us)
    assert rows["w"].shape[0] == len(us) and cols["w"].shape[1] == len(us)
    assert leaves_equal(units.set_cols(units.set_rows(net, i, us, rows), i, us, cols), net)
    # a row is exactly what the unit reads: the unit's pre-activation only depends on it
    pre = nets.forward(net, inputs(net))[i - 1]
    moved = units.set_rows(net, i, us, jax.tree_util.tree_map(lambda v: 2 * v, rows))
    pre2 = nets.forward(moved, inputs(net))[i - 1]
    np.testing.assert_allclose(np.take(pre2, us, axis=-1), 2 * np.take(pre, us, axis=-1), rtol=1e-12,
                               atol=1e-12)


def test_unit_spec_is_declarative_and_shared():
    d = nets.mlp(jax.random.PRNGKey(0), (4, 3, 3, 2)).arch
    c = nets.conv(jax.random.PRNGKey(0), (6, 6, 1), (3, 3), 2).arch
    assert units.unit_spec(d)[2] == units.UnitAxes(rows=((1, "w", 0), (1, "b", 0)), cols=((2, "w", 1),))
    assert units.unit_spec(d) == units.unit_spec(c)


# ------------------------------------------------------------------ flax converters


@given(net=any_nets())
def test_flax_round_trip(x64, net):
    module, variables = nets.to_flax(net)
    x = inputs(net)
    np.testing.assert_allclose(np.asarray(module.apply(variables, x)), f(net, x), rtol=1e-10, atol=1e-10)
    assert leaves_equal(nets.from_flax(net.arch, variables), net)


def test_flax_init_shapes_match_converter():
    net = nets.conv(jax.random.PRNGKey(0), (6, 6, 2), (3, 4), 5, pool="max", dense=(7,))
    module, variables = nets.to_flax(net)
    fresh = module.init(jax.random.PRNGKey(1), jnp.zeros((1, 6, 6, 2)))
    same = jax.tree_util.tree_map(lambda a, b: a.shape == b.shape, fresh, variables)
    assert all(jax.tree_util.tree_leaves(same))
    nets.from_flax(net.arch, fresh)  # a flax-initialised model converts into a Net


def test_lerp_is_exact_at_ends():
    a = nets.mlp(jax.random.PRNGKey(0), (4, 3, 2))
    b = nets.mlp(jax.random.PRNGKey(1), (4, 3, 2))
    assert leaves_equal(nets.lerp(a, b, jnp.float32(0.0)), a)
    assert leaves_equal(nets.lerp(a, b, jnp.float32(1.0)), b)


def test_keras_init_is_glorot_uniform_with_zero_biases():
    arch = nets.Arch(in_shape=(6, 6, 2), widths=(4, 3, 5), n_conv=2)
    a, b = nets.keras_init(0, arch), nets.keras_init(0, arch)
    for (kind, shape), la, lb in zip(zip(arch.kinds, arch.weight_shapes()), a.layers, b.layers):
        rf = int(np.prod(shape[2:])) if kind == "conv" else 1
        fan_in = shape[1] * rf if kind == "conv" else int(np.prod(shape[1:]))
        fan_out = shape[0] * rf
        w = np.asarray(la["w"])
        assert w.shape == shape and np.abs(w).max() <= np.sqrt(6.0 / (fan_in + fan_out))
        assert not np.asarray(la["b"]).any() and np.array_equal(w, np.asarray(lb["w"]))  # seeded
