"""Lemma 3 check (``proofs_check.lemma3``): the segment θ → θ^1 of Algorithm 1 against √p·ε."""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proofs_check.lemma3 import Lemma3Check, check_lemma3
from stability.theory import cushions
from stability.core import nets
from stability.core.losses import cross_entropy
from tests.strategies import random_net


def _data(net: nets.Net, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *net.arch.in_shape)).astype(np.float32)
    y = np.asarray(jnp.argmax(nets.apply(net, jnp.asarray(x)), axis=1)).astype(np.int32)  # the net's own labels
    flip = rng.random(n) < 0.2
    y[flip] = rng.integers(0, net.arch.widths[-1], flip.sum())
    return x, y


def _loss_by_hand(net: nets.Net, deltas, t: float, x, y) -> float:
    """L(θ + t(θ^1 − θ)) with θ^1 built column by column in NumPy (Algorithm 1 never touches A_1)."""
    layers = [{k: np.asarray(v, np.float64) for k, v in layer.items()} for layer in net.layers]
    dropped = [{k: v.copy() for k, v in layer.items()} for layer in layers]
    for l, dl in enumerate(deltas, start=1):
        for u, dv in enumerate(dl):
            dropped[l]["w"][:, u] *= dv
    point = nets.Net(net.arch, tuple({k: jnp.asarray(a[k] + t * (b[k] - a[k]), jnp.float32) for k in a}
                                     for a, b in zip(layers, dropped)))
    return float(jnp.mean(cross_entropy(nets.apply(point, jnp.asarray(x)), jnp.asarray(y))))


@pytest.mark.parametrize("arch", [
    nets.Arch(in_shape=(64,), widths=(16, 16, 10)),                                  # the CLI tests' shapes
    nets.Arch(in_shape=(6, 6, 1), widths=(4, 4, 3), n_conv=2, pool=("max", None)),  # whole channels dropped
], ids=["dense", "conv"])
def test_segment_losses_match_an_independent_construction(arch):
    net = random_net(arch, 3, jnp.float32)
    x, y = _data(net, 60)
    res = check_lemma3(net, x, y, jax.random.PRNGKey(0), ps=(0.25, 0.5), draws=3, n_t=3, draws_noise=3,
                       ts=(0.0, 0.5))
    assert res.losses.shape == (2, 3, 3) and res.ts.tolist() == [0.0, 0.5, 1.0]
    base = _loss_by_hand(net, [np.ones(h) for h in nets.widths(net)], 0.0, x, y)
    assert res.base_loss == pytest.approx(base, rel=1e-5)
    np.testing.assert_allclose(res.losses[:, :, 0], base, rtol=1e-5)  # t = 0 is θ itself
    for a, p in enumerate(res.ps):
        for k in range(3):
            deltas = [m[k] for m in res.masks[a]]
            assert all(set(np.unique(dl).tolist()) <= {0.0, float(np.float32(1 / (1 - p)))} for dl in deltas)
            for b, t in enumerate(res.ts):
                assert res.losses[a, k, b] == pytest.approx(_loss_by_hand(net, deltas, t, x, y), rel=1e-4)
    again = cushions.measure(net, x, jax.random.split(jax.random.PRNGKey(0))[0], draws=3, ts=(0.0, 0.5))
    assert res.epsilon == pytest.approx(again.epsilon(), rel=1e-6)
    s = res.summary()
    assert [next(q for q in pr if q["name"] == "p ≤ 3/4")["status"] for pr in s["premises"]] == ["held", "held"]
    assert len(s["C_quarter"]) == 2 and len(s["verdict"]) == 2 and len(res.bounds) == 2
    assert np.all(np.isnan(res.column_ratio[:, 0])) and np.all(res.column_ratio[:, 1:] > 0)
    # Lemma 3 speaks about whole segments: a draw's worst point is at least its end point
    assert np.all(res.max_increase() >= res.losses[:, :, -1] - res.base_loss - 1e-7)


def _synthetic(increases, eps=1.0, p=0.25, base=1.0) -> Lemma3Check:
    inc = np.asarray(increases, np.float64)
    losses = base + np.stack([np.zeros_like(inc), inc / 2, inc], axis=-1)[None]  # (1, K, 3), worst at t = 1
    return Lemma3Check(ps=np.array([p]), ts=np.array([0.0, 0.5, 1.0]), base_loss=base, base_acc=1.0, epsilon=eps,
                       losses=losses, accs=np.ones_like(losses), kept_fraction=np.full((1, inc.size), 0.75),
                       column_ratio=np.array([[np.nan, 0.5]]), h_min=8, zero_output_loss=3.0)


def test_fraction_under_a_bound_and_the_quarter_constant():
    """√p·ε = 0.5: two of four draws stay under it; a quarter stay under 0.2·√p·ε."""
    res = _synthetic([0.1, 0.4, 0.6, 2.0])
    assert res.scale().tolist() == [0.5]
    assert res.fraction_under(0.5).tolist() == [0.5]
    assert res.fraction_under(2.0).tolist() == [1.0]
    assert res.constant_quarter().tolist() == pytest.approx([0.2])
    assert res.summary()["vacuity_ratio"] == pytest.approx([0.25])  # √p·ε / (3 − 1)
    bad = _synthetic([0.6, 0.7, 0.8, 0.9, 1.0, 3.0, 4.0, 5.0])
    assert bad.fraction_under(0.5).tolist() == [0.0]
    assert bad.constant_quarter().tolist() == pytest.approx([1.4])  # 2nd smallest of 8 ratios: 0.7 / 0.5


def test_clopper_pearson_interval():
    from proofs_check.lemma3 import clopper_pearson

    lo, hi = clopper_pearson(0, 20)
    assert lo == 0.0 and hi == pytest.approx(0.1684, abs=1e-3)
    lo, hi = clopper_pearson(10, 20)
    assert lo == pytest.approx(0.272, abs=1e-3) and hi == pytest.approx(0.728, abs=1e-3)


def test_bad_arguments():
    net = random_net(nets.Arch(in_shape=(3,), widths=(4, 2)), 0, jnp.float32)
    x, y = _data(net, 8)
    with pytest.raises(ValueError, match="ps: every p must"):
        check_lemma3(net, x, y, jax.random.PRNGKey(0), ps=(0.0,))
    with pytest.raises(ValueError, match="draws"):
        check_lemma3(net, x, y, jax.random.PRNGKey(0), draws=0)
