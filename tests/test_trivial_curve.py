"""Garipov Appendix A.6: the trivial curve W_i(t) = t·W_i, b_i(t) = t^i·b_i gives f_t(x) = t^d·f(x) for ReLU
nets (dense and conv, max/avg pooling), so predictions are the same for every t > 0; the trivial connecting
path ŵ_1 → 0 → ŵ_2 keeps each end's accuracy everywhere but at the origin."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stability.curves import curve as curves
from stability.core import evaluate
from stability.core import nets
from tests.strategies import any_nets, inputs


@settings(deadline=None, max_examples=25)
@given(net=any_nets(), t=st.floats(0.05, 1.0))
def test_trivial_curve_scales_outputs_by_t_to_the_depth(x64, net, t):
    x = inputs(net)
    p = curves.trivial_point(net, t)
    for i, (layer, scaled) in enumerate(zip(net.layers, p.layers), start=1):  # the A.6 formula, layer by layer
        np.testing.assert_allclose(scaled["w"], t * np.asarray(layer["w"]), rtol=1e-14, atol=0)
        if "b" in layer:
            np.testing.assert_allclose(scaled["b"], t**i * np.asarray(layer["b"]), rtol=1e-13, atol=0)
    f, ft = np.asarray(nets.apply(net, x)), np.asarray(nets.apply(p, x))
    np.testing.assert_allclose(ft, t**net.depth * f, rtol=1e-9, atol=1e-12)
    assert (np.argmax(ft, 1) == np.argmax(f, 1)).all() or np.ptp(f, axis=1).min() < 1e-9


@settings(deadline=None, max_examples=10)
@given(net=any_nets())
def test_trivial_curve_end_points_are_exact(x64, net):
    one = curves.trivial_point(net, 1.0)
    zero = curves.trivial_point(net, 0.0)
    for a, b, z in zip(jax.tree_util.tree_leaves(net), jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(zero)):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
        assert not np.asarray(z).any()


def test_trivial_connecting_path_keeps_end_accuracy_except_at_the_origin(x64):
    from tests.strategies import random_net

    arch = nets.Arch(in_shape=(6,), widths=(7, 5, 3))
    a, b = random_net(arch, 1), random_net(arch, 2)
    x = inputs(a, 64)
    y = jnp.asarray(np.argmax(np.asarray(nets.apply(a, x)), 1))  # labels a gets right
    ts = np.linspace(0, 1, 41)
    res = evaluate.evaluate(curves.trivial_path_point, (a, b), ts, x, y)
    acc_a = float(res.acc[0])
    acc_b = float(res.acc[-1])
    assert acc_a == 1.0
    off_origin = np.abs(ts - 0.5) > 1e-12
    assert np.all(res.acc[(ts < 0.5)] == acc_a) and np.all(res.acc[(ts > 0.5)] == acc_b)
    assert off_origin.sum() == 40
    np.testing.assert_allclose(res.loss[-1], float(evaluate.evaluate_nets([b], x, y).loss[0]), rtol=1e-12)


def test_trivial_curve_rejects_a_plain_pytree():
    with pytest.raises(TypeError, match="Net"):
        curves.trivial_point({"w": jnp.ones(3)}, 0.5)
