"""Dropout (docs/THEORY.md §1): kept sets and θ^i (Definition 1), measured ε, Algorithm 1, fixed-count dropout,
best-of-n and greedy kept-set searches."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stability.theory import cushions
from stability.theory import dropout
from stability.core import nets
from stability.core.evaluate import evaluate_nets
from tests._path_helpers import apply, inputs, kept_sets, random_net, small_nets


_forward_scaled = jax.jit(lambda net, x, scales: nets.forward(net, x, scales)[-1])


def _data(net, n=64, seed=0, classes=None):
    rng = np.random.default_rng(seed)
    x = np.asarray(inputs(net, n=n, seed=seed))
    y = rng.integers(0, classes or net.arch.widths[-1], size=n).astype(np.int32)
    return x, y


@settings(max_examples=12, deadline=None)
@given(net=small_nets(), data=st.data())
def test_theta_i_is_dropout_of_activations_with_one_kept_set(x64, net, data):
    """θ^i equals the net with the activations of hidden layers j ≥ i multiplied by r_j on K_j and 0 on
    D_j (channel-wise for conv) — the same kept set K_j for every i."""
    keep = data.draw(kept_sets(net))
    r = data.draw(st.sampled_from([1.5, 2.0]))
    x = inputs(net, n=4)
    ths = dropout.thetas(net, keep, r)
    assert len(ths) == net.depth - 1
    for i, th in enumerate(ths, start=1):
        scales = []
        for j, (h, k) in enumerate(zip(nets.widths(net), keep), start=1):
            s = np.ones(h) if j < i else np.where(np.isin(np.arange(h), k), r, 0.0)
            scales.append(jnp.asarray(s.reshape((1,) * (len(net.arch.in_shape) if j <= net.arch.n_conv else 1) + (h,))))
        ref = np.asarray(_forward_scaled(net, x, scales))
        np.testing.assert_allclose(apply(th, x), ref, rtol=1e-12, atol=1e-12)
        # only columns change, and layer 1 never does
        np.testing.assert_array_equal(np.asarray(th.layers[0]["w"]), np.asarray(net.layers[0]["w"]))
        for l in range(net.depth - 1):
            np.testing.assert_array_equal(np.asarray(th.layers[l].get("b", 0)), np.asarray(net.layers[l].get("b", 0)))
    # one kept set per layer: θ^i and θ^1 agree on every layer above i
    for i, th in enumerate(ths, start=1):
        for l in range(i, net.depth):
            np.testing.assert_array_equal(np.asarray(th.layers[l]["w"]), np.asarray(ths[0].layers[l]["w"]))


def test_measured_epsilon_is_max_over_theta_i():
    net = random_net(nets.Arch(in_shape=(5,), widths=(8, 7, 6, 3)), 0, jnp.float32)
    x, y = _data(net, 100)
    keep = [[0, 2, 5], [1, 3], [0, 1, 4]]
    st_ = dropout.dropout_stability(net, keep, x, y, r=2.0)
    ref = evaluate_nets([net] + dropout.thetas(net, keep, 2.0), x, y)
    assert st_.base_loss == pytest.approx(ref.loss[0], rel=1e-6)
    np.testing.assert_allclose(st_.losses, ref.loss[1:], rtol=1e-6)
    assert st_.eps == pytest.approx(max(ref.loss[1:]) - ref.loss[0], rel=1e-5, abs=1e-6)
    assert st_.worst_i == int(np.argmax(ref.loss[1:])) + 1
    d = st_.to_dict()
    assert d["kept_sizes"] == [3, 2, 3] and d["r"] == [2.0, 2.0, 2.0]


def test_kept_sets_validate_definition_1():
    net = random_net(nets.Arch(in_shape=(3,), widths=(5, 4, 2)), 0)
    ks = dropout.make_kept_sets(net, [[4, 0], [1]], [2.0, 1.5])
    assert [k.tolist() for k in ks.keep] == [[0, 4], [1]] and ks.r == (2.0, 1.5)
    with pytest.raises(ValueError, match="hidden layer 1: duplicate unit indices"):  # no silent de-duplication
        dropout.make_kept_sets(net, [[4, 0, 0], [1]], [2.0, 1.5])
    assert [d.tolist() for d in ks.dropped(net)] == [[1, 2, 3], [0, 2, 3]]
    with pytest.raises(ValueError, match=r"Definition 1 premise \|K_2\| ≤ ⌊h_2/2⌋"):
        dropout.make_kept_sets(net, [[0], [0, 1, 2]], 2.0).check(net)
    dropout.make_kept_sets(net, [[0], [0, 1, 2]], 2.0).check(net, definition1=False)
    with pytest.raises(ValueError, match="outside"):
        dropout.make_kept_sets(net, [[5], [0]], 2.0)
    with pytest.raises(ValueError, match="finite positive"):
        dropout.KeptSets(([0], [0]), (2.0, -1.0))
    with pytest.raises(IndexError, match="1 ≤ i < d"):
        dropout.theta_i(net, [[0], [0]], 3, 2.0)


@settings(max_examples=10, deadline=None)
@given(net=small_nets(), p=st.sampled_from([0.25, 0.5, 0.75]), seed=st.integers(0, 2**20))
def test_algorithm1_drops_whole_columns_of_layers_2_to_d(x64, net, p, seed):
    out, deltas = dropout.algorithm1(net, p, jax.random.PRNGKey(seed))
    np.testing.assert_array_equal(np.asarray(out.layers[0]["w"]), np.asarray(net.layers[0]["w"]))
    for i, dl in enumerate(deltas, start=1):
        assert set(np.unique(dl).tolist()) <= {0.0, 1.0 / (1.0 - p)}
        w, w0 = np.asarray(out.layers[i]["w"]), np.asarray(net.layers[i]["w"])
        for u, s in enumerate(dl):  # whole column u (a whole input channel / all positions for conv)
            np.testing.assert_array_equal(w[:, u], w0[:, u] * s)
    ks = dropout.kept_sets_from_deltas(deltas, p)
    th = dropout.theta_i(net, ks, 1)
    for a, b in zip(jax.tree_util.tree_leaves(th), jax.tree_util.tree_leaves(out)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_algorithm1_rate_and_independent_layers():
    net = random_net(nets.Arch(in_shape=(3,), widths=(2000, 2000, 2)), 0, jnp.float32)
    _, deltas = dropout.algorithm1(net, 0.3, jax.random.PRNGKey(1))
    for dl in deltas:
        assert abs(np.mean(dl == 0) - 0.3) < 0.04
    assert not np.array_equal(deltas[0] == 0, deltas[1] == 0)
    with pytest.raises(ValueError, match=r"p must be a dropout probability in \(0, 1\)"):
        dropout.algorithm1(net, 1.0, jax.random.PRNGKey(0))
    cc = cushions.column_ratio(net, 0.3)
    w = np.asarray(net.layers[1]["w"], np.float64)
    ref = np.linalg.norm(w, axis=0).max() / (math.sqrt(0.3) * np.linalg.norm(w))
    assert cc[1] == pytest.approx(ref, rel=1e-6) and len(cc) == 3 and np.isnan(cc[0])


def test_fixed_count_dropout_keeps_exactly_floor_h_times_1_minus_p():
    net = random_net(nets.Arch(in_shape=(6, 6, 1), widths=(32, 7, 5), n_conv=2, pool=("max", None)), 0, jnp.float32)
    for p in (0.2, 0.5, 0.75):
        ks = dropout.fixed_count(net, p, jax.random.PRNGKey(3))
        assert ks.sizes == tuple(int(math.floor(h * (1 - p))) for h in (32, 7))
        assert ks.r == (1 / (1 - p),) * 2
    a = dropout.fixed_count(net, 0.5, jax.random.PRNGKey(3))
    b = dropout.fixed_count(net, 0.5, jax.random.PRNGKey(4))
    assert any(not np.array_equal(u, v) for u, v in zip(a.keep, b.keep))


def _teacher_pair():
    """A random MLP and labels it assigns itself (so some units matter much more than others)."""
    net = random_net(nets.Arch(in_shape=(6,), widths=(24, 24, 4)), 0, jnp.float32)
    x = np.asarray(inputs(net, n=256, seed=1))
    y = np.argmax(apply(net, x), axis=1).astype(np.int32)
    return net, x, y


def test_searches_best_of_n_and_greedy():
    net, x, y = _teacher_pair()
    res = dropout.best_of_n(net, x, y, jax.random.PRNGKey(0), p=0.5, n=12)
    assert len(res.tried_eps) == 12 and res.eps == min(res.tried_eps)
    again = dropout.dropout_stability(net, res.kept, x, y)
    assert again.eps == pytest.approx(res.eps, abs=1e-6)
    assert res.kept.sizes == (12, 12)
    g = dropout.greedy_search(net, x, y, p=0.5, rounds=4)
    start = dropout.dropout_stability(net, dropout.importance_kept_sets(net, x, 0.5), x, y)
    assert g.eps <= start.eps + 1e-7  # steepest descent never gets worse than its start
    assert g.kept.sizes == (12, 12)
    dropout.make_kept_sets(net, g.kept).check(net)  # a Definition 1 kept set (|K| ≤ ⌊h/2⌋)
    assert dropout.dropout_stability(net, g.kept, x, y).eps == pytest.approx(g.eps, abs=1e-6)
    assert g.to_dict()["method"].startswith("greedy") and res.to_dict()["evaluations"] == 12 * 2
    # importance scores: a unit whose column is zeroed has importance 0
    w = np.array(net.layers[1]["w"])
    w[:, 3] = 0
    net2 = nets.Net(net.arch, (net.layers[0], {**net.layers[1], "w": jnp.asarray(w)}, net.layers[2]))
    assert dropout.unit_importance(net2, x)[0][3] == 0.0
