"""Curve core (Garipov et al. 2018; docs/THEORY.md §8): exact end points, the polychain and Bezier formulas on
arbitrary pytrees, the straight-line special case, the evaluator hook, and eq. (3) training."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stability.curves import curve as curves
from stability.core import evaluate
from stability.core import losses
from stability.core import nets
from stability.core.train import TrainConfig


point = jax.jit(curves.point)  # compiled once per curve structure: keeps the hypothesis tests fast
points = jax.jit(curves.points)


def random_tree(seed: int, dtype=jnp.float64) -> dict:
    """A pytree that is not a Net: nested dict / tuple of arrays of several shapes (one holds a −0.0)."""
    rng = np.random.default_rng(seed)
    tree = {"a": rng.normal(size=(3, 4)), "b": (rng.normal(size=(5,)), rng.normal(size=(2, 2, 2))),
            "c": rng.normal(size=())}
    tree["b"][0][0] = -0.0
    return jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype), tree)


def leaves(tree):
    return [np.asarray(v) for v in jax.tree_util.tree_leaves(tree)]


def bitwise_equal(a, b) -> bool:
    return all(u.dtype == v.dtype and u.shape == v.shape and u.tobytes() == v.tobytes()
               for u, v in zip(leaves(a), leaves(b)))


def close(a, b, tol=1e-12) -> bool:
    return all(np.allclose(u, v, rtol=tol, atol=tol) for u, v in zip(leaves(a), leaves(b)))


def with_random_bends(curve: curves.Curve, seed: int) -> curves.Curve:
    rng = np.random.default_rng(seed + 1000)
    bends = jax.tree_util.tree_map(lambda b: jnp.asarray(rng.normal(size=b.shape), b.dtype), curve.bends)
    return curves.Curve(curve.ends, bends, curve.kind, curve.fix_ends)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(["bezier", "polychain"]), n=st.integers(0, 3))
def test_end_points_are_exact_bitwise(x64, seed, kind, n):
    w0, w1 = random_tree(seed), random_tree(seed + 1)
    make = curves.bezier if kind == "bezier" else curves.polychain
    c = with_random_bends(make(w0, w1, n), seed) if n else make(w0, w1, n)
    assert c.n_bends == n and c.order == n + 1
    assert bitwise_equal(point(c, 0.0), w0)
    assert bitwise_equal(point(c, 1.0), w1)
    ps = points(c, jnp.array([0.0, 0.5, 1.0]))
    assert bitwise_equal(jax.tree_util.tree_map(lambda v: v[0], ps), w0)
    assert bitwise_equal(jax.tree_util.tree_map(lambda v: v[2], ps), w1)


def spec_polychain(cps: list, t: float):
    """docs/THEORY.md §8 literally: on [i/(n+1), (i+1)/(n+1)], φ(t) = (n+1)((t − i/(n+1)) w_{i+1} + ((i+1)/(n+1) − t) w_i)."""
    segs = len(cps) - 1
    i = min(int(math.floor(t * segs)), segs - 1)
    return jax.tree_util.tree_map(lambda a, b: segs * ((t - i / segs) * b + ((i + 1) / segs - t) * a),
                                  cps[i], cps[i + 1])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), t=st.floats(0.0, 1.0))
def test_polychain_one_bend_is_garipovs_formula(x64, seed, t):
    w0, theta, w1 = random_tree(seed), random_tree(seed + 1), random_tree(seed + 2)
    c = curves.Curve((w0, w1), jax.tree_util.tree_map(lambda v: v[None], theta), "polychain")
    got = point(c, t)
    # Garipov §3.2: 2(tθ + (0.5 − t)ŵ1) on [0, ½], 2((t − 0.5)ŵ2 + (1 − t)θ) on [½, 1]
    if t <= 0.5:
        want = jax.tree_util.tree_map(lambda a, m: 2 * (t * m + (0.5 - t) * a), w0, theta)
    else:
        want = jax.tree_util.tree_map(lambda m, b: 2 * ((t - 0.5) * b + (1 - t) * m), theta, w1)
    assert close(got, want)
    assert close(got, spec_polychain([w0, theta, w1], t))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(2, 4))
def test_polychain_many_bends_passes_through_the_bends(x64, seed, n):
    w0, w1 = random_tree(seed), random_tree(seed + 1)
    c = with_random_bends(curves.polychain(w0, w1, n), seed)
    cps = [w0] + [jax.tree_util.tree_map(lambda b, i=i: b[i], c.bends) for i in range(n)] + [w1]
    for i in range(1, n + 1):
        assert close(point(c, i / (n + 1)), cps[i])
    for t in np.random.default_rng(seed).uniform(size=6):
        assert close(point(c, float(t)), spec_polychain(cps, float(t)))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), order=st.sampled_from([2, 3]), t=st.floats(0.0, 1.0))
def test_bezier_is_the_binomial_sum(x64, seed, order, t):
    w0, w1 = random_tree(seed), random_tree(seed + 1)
    c = with_random_bends(curves.bezier(w0, w1, order=order), seed)
    assert c.n_bends == order - 1
    cps = [w0] + [jax.tree_util.tree_map(lambda b, i=i: b[i], c.bends) for i in range(order - 1)] + [w1]
    want = jax.tree_util.tree_map(
        lambda *ws: sum(math.comb(order, i) * t**i * (1 - t) ** (order - i) * w for i, w in enumerate(ws)), *cps)
    assert close(point(c, t), want)


def test_quadratic_bezier_is_garipovs_formula(x64):
    w0, theta, w1 = random_tree(1), random_tree(2), random_tree(3)
    c = curves.Curve((w0, w1), jax.tree_util.tree_map(lambda v: v[None], theta), "bezier")
    for t in (0.1, 0.37, 0.5, 0.9):
        want = jax.tree_util.tree_map(lambda a, m, b: (1 - t) ** 2 * a + 2 * t * (1 - t) * m + t**2 * b, w0, theta, w1)
        assert close(point(c, t), want)


def test_zero_bends_is_the_straight_line_and_linear_init_stays_on_it(x64):
    arch = nets.Arch(in_shape=(3,), widths=(4, 2))
    a = nets.init(jax.random.PRNGKey(0), arch, jnp.float64)
    b = nets.init(jax.random.PRNGKey(1), arch, jnp.float64)
    ts = np.linspace(0, 1, 9)
    lerp = jax.jit(jax.vmap(nets.lerp, in_axes=(None, None, 0)))
    want = lerp(a, b, jnp.asarray(ts))
    for c in (curves.straight(a, b), curves.polychain(a, b, 0), curves.bezier(a, b, 0), curves.bezier(a, b, order=1),
              curves.polychain(a, b, 3), curves.bezier(a, b, 4)):
        ps = points(c, ts)
        assert isinstance(ps, nets.Net) and ps.layers[0]["w"].shape == (9, 4, 3)
        assert close(ps, want)
    assert close(point(curves.bezier(a, b, 0), 0.3), nets.lerp(a, b, jnp.float64(0.3)))


def test_curve_is_a_pytree_and_curve_point_serves_the_evaluator(x64):
    arch = nets.Arch(in_shape=(3,), widths=(5, 2))
    a = nets.init(jax.random.PRNGKey(0), arch, jnp.float64)
    b = nets.init(jax.random.PRNGKey(1), arch, jnp.float64)
    c = with_random_bends(curves.bezier(a, b, 2), 7)
    flat, tree = jax.tree_util.tree_flatten(c)
    back = jax.tree_util.tree_unflatten(tree, flat)
    assert back.kind == "bezier" and back.fix_ends and bitwise_equal(back.bends, c.bends)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(20, 3)))
    y = jnp.asarray(np.arange(20) % 2)
    ts = np.array([0.0, 0.2, 0.65, 1.0])
    got = evaluate.evaluate(curves.curve_point, c, ts, x, y)
    one = jax.jit(lambda c, t: losses.cross_entropy.mean(nets.apply(curves.point(c, t), x), y))  # a plain loop
    want = [float(one(c, t)) for t in ts]
    np.testing.assert_allclose(got.loss, want, rtol=1e-10)


def test_bad_arguments_are_rejected():
    a = {"w": jnp.zeros((2, 3))}
    with pytest.raises(ValueError, match="structures"):
        curves.polychain(a, {"v": jnp.zeros((2, 3))}, 1)
    with pytest.raises(ValueError, match="differ"):
        curves.bezier(a, {"w": jnp.zeros((3, 2))}, 1)
    with pytest.raises(ValueError, match="order"):
        curves.bezier(a, a, order=0)
    with pytest.raises(ValueError, match="bends"):
        curves.polychain(a, a, -1)
    with pytest.raises(ValueError, match="kind"):
        curves.Curve((a, a), jax.tree_util.tree_map(lambda v: v[None], a), "spline")
    with pytest.raises(ValueError, match="nothing to train"):
        curves.train_curve(curves.straight(a, a), lambda p, x: x @ p["w"].T, jnp.zeros((4, 3)), jnp.zeros((4, 2)))


# --------------------------------------------------------------------------- training (eq. 3)


def _xor_data(n: int = 96):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int32))


@jax.jit
def _fit_endpoint(net: nets.Net, x, y) -> nets.Net:
    opt = optax.adam(0.02)

    def step(carry, _):
        p, s = carry
        g = jax.grad(lambda q: losses.cross_entropy.mean(nets.apply(q, x), y))(p)
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (net, _), _ = jax.lax.scan(step, (net, opt.init(net)), None, length=1000)
    return net


def test_train_curve_lowers_the_max_loss_between_two_trained_nets():
    x, y = _xor_data()
    a, b = (_fit_endpoint(nets.mlp(jax.random.PRNGKey(s), (2, 12, 2)), x, y) for s in (0, 1))
    ts = np.linspace(0, 1, 41)
    line = evaluate.evaluate_line(a, b, ts, x, y)
    ends = max(line.loss[0], line.loss[-1])
    assert ends < 0.05 and line.loss.max() > 0.5  # two good minima with a real barrier on the segment
    start = curves.polychain(a, b, 1)
    cfg = TrainConfig(steps=1000, batch_size=32, optimizer="adam", lr=1e-2, seed=0, log_every=500)
    trained, hist = curves.train_curve(start, nets.apply, x, y, cfg, progress=False)
    assert hist.step == [500, 1000] and len(hist.loss) == 2
    assert bitwise_equal(trained.ends, (a, b))  # only the bends move
    curve = evaluate.evaluate(curves.curve_point, trained, ts, x, y)
    assert curve.loss.max() < 0.25 * line.loss.max()
    again, _ = curves.train_curve(start, nets.apply, x, y, cfg, progress=False)
    assert bitwise_equal(again.bends, trained.bends)  # deterministic from the seed
    other, _ = curves.train_curve(start, nets.apply, x, y, dataclasses.replace(cfg, seed=1), progress=False)
    assert not bitwise_equal(other.bends, trained.bends)


def test_train_curve_generic_pytree_sgd_weight_decay_and_free_ends():
    """A plain dict of weights with a hand-written apply function; with ``fix_ends=False`` the ends move too."""
    def apply_fn(p, x):
        return jax.nn.relu(x @ p["w1"].T) @ p["w2"].T

    rng = np.random.default_rng(0)
    w0 = {"w1": jnp.asarray(rng.normal(size=(6, 3)), jnp.float32),
          "w2": jnp.asarray(rng.normal(size=(1, 6)), jnp.float32)}
    w1 = jax.tree_util.tree_map(lambda v: -v, w0)
    x = jnp.asarray(rng.normal(size=(40, 3)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(40,)), jnp.float32)
    c = curves.bezier(w0, w1, 2, fix_ends=False)
    cfg = TrainConfig(steps=200, batch_size=40, optimizer="momentum", lr=1e-2, schedule="cosine", weight_decay=1e-3,
                      loss="squared_error", seed=3, log_every=100)
    trained, hist = curves.train_curve(c, apply_fn, x, y, cfg, progress=False)
    assert hist.loss[-1] < hist.loss[0]
    assert not bitwise_equal(trained.ends[0], w0) and not bitwise_equal(trained.bends, c.bends)
    assert bitwise_equal(curves.point(trained, 0.0), trained.ends[0])  # eager
