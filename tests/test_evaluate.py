"""The batched evaluator against a slow obvious per-point loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stability.core import losses
from stability.core import nets
from stability.core.evaluate import choose_sizes, evaluate, evaluate_line, evaluate_nets, line_point
from tests.strategies import inputs, random_net


def per_point(a, b, ts, x, y, loss=losses.cross_entropy):
    out_l, out_a = [], []
    for t in ts:
        net = nets.lerp(a, b, jnp.asarray(t, x.dtype))
        logits = nets.apply(net, x)
        out_l.append(float(jnp.mean(loss(logits, y))))
        out_a.append(float(jnp.mean(losses.accuracy(logits, y))))
    return np.array(out_l), np.array(out_a)


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_line_matches_per_point_loop_with_padding_and_chunks(x64, kind):
    if kind == "dense":
        arch = nets.Arch(in_shape=(6,), widths=(7, 5, 3))
    else:
        arch = nets.Arch(in_shape=(5, 5, 2), widths=(3, 4, 3), n_conv=2, pool=("max", None))
    a, b = random_net(arch, 1), random_net(arch, 2)
    x = inputs(a, n=37)
    y = jnp.asarray(np.random.default_rng(0).integers(0, 3, 37))
    ts = np.linspace(0, 1, 13)
    ref_l, ref_a = per_point(a, b, ts, x, y)
    # batch 8 leaves a padded last batch; chunk 5 leaves a padded last chunk
    res = evaluate_line(a, b, ts, x, y, batch_size=8, chunk=5)
    np.testing.assert_allclose(res.loss, ref_l, rtol=1e-12)
    np.testing.assert_allclose(res.acc, ref_a, rtol=1e-12)
    auto = evaluate_line(a, b, 13, x, y)
    np.testing.assert_allclose(auto.loss, ref_l, rtol=1e-12)


def test_evaluate_nets_and_regression(x64):
    arch = nets.Arch(in_shape=(4,), widths=(5, 1))
    ns = [random_net(arch, s) for s in range(3)]
    x = inputs(ns[0], n=11)
    y = jnp.asarray(np.random.default_rng(1).normal(size=11))
    res = evaluate_nets(ns, x, y, loss="squared_error")
    for k, n in enumerate(ns):
        assert res.loss[k] == pytest.approx(float(jnp.mean(losses.squared_error(nets.apply(n, x), y))), rel=1e-12)
    assert np.isnan(res.acc).all()  # no accuracy for real-valued targets


def test_chunk_sizes_respect_the_memory_budget():
    net = nets.mlp(jax.random.PRNGKey(0), (64, 256, 10))
    x = jnp.zeros((1000, 64))
    b, c = choose_sizes(net, nets.apply, x, 121, memory_budget=2**20)
    b2, c2 = choose_sizes(net, nets.apply, x, 121, memory_budget=2**30)
    assert 1 <= c < c2 <= 121 and 1 <= b <= 1000


def test_bad_input_errors():
    a = nets.mlp(jax.random.PRNGKey(0), (3, 4, 2))
    b = nets.mlp(jax.random.PRNGKey(1), (3, 5, 2))
    x, y = jnp.zeros((4, 3)), jnp.zeros((4,), jnp.int32)
    with pytest.raises(ValueError, match="different architectures"):
        evaluate_line(a, b, 3, x, y)
    with pytest.raises(ValueError, match="same non-zero number"):
        evaluate_line(a, a, 3, x, y[:2])
    with pytest.raises(ValueError, match="NaN"):
        evaluate(line_point, (a, a), [0.0, float("nan")], x, y)
    nan_net = jax.tree_util.tree_map(lambda w: w * jnp.nan, a)
    with pytest.raises(FloatingPointError, match="non-finite"):
        evaluate_line(nan_net, nan_net, 2, x, y)
