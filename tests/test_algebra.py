"""The algebraic evaluator (first varied layer once per control point, shared layers once per batch) against the
per-point evaluation (``algebra="off"``) on lines, Bezier curves, polychains, planes and constructed paths."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from stability.core import nets
from stability.core.evaluate import (ALGEBRA_RTOL, describe, evaluate, evaluate_combination, evaluate_line,
                                     evaluate_nets, line_point, stack_point)
from stability.core.polycurve import Combination, PolyCurve
from stability.curves import curve as curves
from stability.curves import planes
from stability.theory import dropout
from stability.theory.paths import Segment, theorem1
from stability.theory.paths.path import path_point
from tests.strategies import inputs, random_net

DENSE = nets.Arch(in_shape=(5,), widths=(7, 6, 3))
CONV = nets.Arch(in_shape=(5, 5, 2), widths=(3, 4, 3), n_conv=2, pool=("max", None))
ARCHS = {"dense": DENSE, "conv": CONV}
N = 23
KW = dict(batch_size=8, chunk=4)        # a padded last batch and padded chunks, few compiled shapes


def data(net, seed=0):
    x = inputs(net, n=N, seed=seed)
    return x, jnp.asarray(np.random.default_rng(seed).integers(0, 3, N))


def close(a, b, dtype="float64"):
    """The tolerance the algebra promises: |Δ| ≤ rtol·max(1, |loss|)."""
    rtol = ALGEBRA_RTOL[dtype]
    assert np.all(np.abs(a - b) <= rtol * np.maximum(1.0, np.abs(b))), np.max(np.abs(a - b))


def both(point_fn, theta, ts, x, y, **kw):
    on = evaluate(point_fn, theta, ts, x, y, algebra="require", **KW, **kw)
    off = evaluate(point_fn, theta, ts, x, y, algebra="off", **KW, **kw)
    return on, off


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_line_and_shared_layers_match_the_per_point_evaluation(x64, kind):
    a, b = random_net(ARCHS[kind], 1), random_net(ARCHS[kind], 2)
    x, y = data(a)
    ts = np.linspace(-0.25, 1.25, 7)                      # extrapolation is a combination too
    ends = (b, a.with_layer(3, A=b.A(3)), a) + ((a.with_layer(2, b=b.bias(2)),) if kind == "dense" else ())
    for end in ends:                                      # whole net, top layer, nothing, a middle bias
        on, off = both(line_point, (a, end), ts, x, y)
        close(on.loss, off.loss)
        np.testing.assert_array_equal(on.acc, off.acc)
    # the end points ARE the nets: unit coefficients, evaluated as those nets
    ends = evaluate_line(a, b, [0.0, 1.0], x, y, algebra="require", **KW)
    direct = evaluate_nets([a, b], x, y, algebra="off", **KW)
    close(ends.loss, direct.loss)


@pytest.mark.parametrize("sequential,point_bytes,group", [(False, None, 0), (True, 448, 1), (True, 896, 2)])
def test_points_vmapped_or_in_groups_give_the_same_losses(x64, monkeypatch, sequential, point_bytes, group):
    """The orders of the layers above the first varied one (GPU: all points of a chunk vmapped; CPU: ``lax.map``
    over groups of points, 1 or 2 here — 7 points leave a remainder group) agree with the per-point evaluation."""
    import stability.core.evaluate as ev
    monkeypatch.setattr(ev, "_alg_sequential", lambda: sequential)
    if point_bytes is not None:   # one point's widest layer output here: 7 units × 8 bytes × batch 8 = 448 bytes
        monkeypatch.setattr(ev, "CPU_POINT_BYTES", point_bytes)
    a, b = random_net(DENSE, 1), random_net(DENSE, 2)
    x, y = data(a)
    assert ev._alg_sizes(a, x, 7, batch_size=KW["batch_size"], chunk=None, memory_budget=2**20)[2] == group
    cv = make_curve(a, b, 2, "bezier", 3)
    for point_fn, theta in ((line_point, (a, b)), (curves.curve_point, cv)):
        on, off = both(point_fn, theta, np.linspace(0.0, 1.0, 7), x, y)
        close(on.loss, off.loss)
        np.testing.assert_array_equal(on.acc, off.acc)
        auto = evaluate(point_fn, theta, np.linspace(0.0, 1.0, 7), x, y, algebra="require")   # its own sizes
        close(auto.loss, off.loss)


def make_curve(a, b, bends: int, shape: str, seed: int) -> curves.Curve:
    """A curve with bends off the segment (NumPy draws: no per-shape compilation of random ops)."""
    rng = np.random.default_rng(seed)
    fr = np.arange(1, bends + 1) / (bends + 1)
    pts = jax.tree_util.tree_map(
        lambda u, v: jnp.asarray(np.stack([(1 - f) * np.asarray(u) + f * np.asarray(v) + 0.3 * rng.normal(size=u.shape)
                                           for f in fr]), u.dtype), a, b)
    return curves.Curve((a, b), pts, shape)


@pytest.mark.parametrize("kind,shape,bends", [("dense", "bezier", 1), ("dense", "bezier", 2), ("dense", "bezier", 3),
                                              ("dense", "polychain", 2), ("conv", "bezier", 1),
                                              ("conv", "polychain", 3)])
def test_curves_match_the_per_point_evaluation(x64, kind, shape, bends):
    a, b = random_net(ARCHS[kind], 1), random_net(ARCHS[kind], 2)
    x, y = data(a)
    cv = make_curve(a, b, bends, shape, 7)
    on, off = both(curves.curve_point, cv, np.linspace(0, 1, 9), x, y)
    close(on.loss, off.loss)
    np.testing.assert_array_equal(on.acc, off.acc)


_CURVE = {}


@given(ts=st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4), seed=st.integers(0, 3))
@settings(max_examples=6)
def test_any_times_on_a_bezier_curve(ts, seed):
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        if seed not in _CURVE:
            a, b = random_net(DENSE, 1), random_net(DENSE, 2)
            _CURVE[seed] = (make_curve(a, b, 2, "bezier", seed), data(a))
        cv, (x, y) = _CURVE[seed]
        on, off = both(curves.curve_point, cv, np.asarray(ts), x, y)
        close(on.loss, off.loss)
    finally:
        jax.config.update("jax_enable_x64", prev)


def test_plane_grid_matches_the_per_point_evaluation(x64):
    w = [random_net(CONV, s) for s in range(3)]
    x, y = data(w[0])
    p = planes.plane(*w)
    on = planes.evaluate_plane(p, x, y, resolution=4, algebra="require", **KW)
    off = planes.evaluate_plane(p, x, y, resolution=4, algebra="off", **KW)
    close(on["loss"].ravel(), off["loss"].ravel())


def test_float32_tolerance_dense_and_conv():
    """float32 nets: the stated tolerance ALGEBRA_RTOL['float32']."""
    for arch in (DENSE, CONV):
        a, b = random_net(arch, 3, jnp.float32), random_net(arch, 4, jnp.float32)
        x, y = data(a)
        on, off = both(line_point, (a, b), np.linspace(0, 1, 9), x, y)
        close(on.loss, off.loss, "float32")


def theorem1_path():
    a, b = random_net(DENSE, 5), random_net(DENSE, 6)
    ka = dropout.fixed_count(a, 0.5, jax.random.PRNGKey(2))
    kb = dropout.fixed_count(b, 0.5, jax.random.PRNGKey(3))
    return theorem1(a, ka, b, kb, compact=True)


def test_structure_aware_path_evaluation(x64):
    from proofs_check.certificates import certify

    path = theorem1_path()
    x, y = data(path.start)
    off = path.evaluate(x, y, 5, algebra="off", **KW)
    on = path.evaluate(x, y, 5, **KW)
    close(on.loss, off.loss)
    assert on.once == ()
    proved = [v.index for v in certify(path).verdicts if v.proved]
    fp = [k for k, c in enumerate(path.claims) if c in ("function_preserving", "copy_shift")]
    assert set(fp) <= set(proved) and fp
    once = path.evaluate(x, y, 5, proved=proved, **KW)
    assert once.once == tuple(fp)
    close(once.loss, off.loss)                             # f is unchanged along them: the same losses
    for k in fp:                                           # one evaluation stands for the whole segment
        assert np.all(once.loss[k] == once.loss[k, 0])
    every = path.evaluate(x, y, 5, proved=proved, every_point=True, **KW)
    assert every.once == () and np.array_equal(every.loss, on.loss)
    # negative control: a segment that changes f, wrongly passed as proved function-preserving, is NOT
    # evaluated faithfully any more: the shortcut trusts the caller's certificate, so only proved claims may go in
    c = path.segments[fp[0]]
    bent = path.replace_segment(fp[0], Segment(c.start, c.end.with_layer(1, A=c.end.A(1) * 1.5), c.claim, c.label),
                                check=False)
    faithful = bent.evaluate(x, y, 5, algebra="off", **KW)
    trusted = bent.evaluate(x, y, 5, proved=[fp[0]], **KW)
    assert not np.allclose(trusted.loss[fp[0]], faithful.loss[fp[0]])
    assert fp[0] not in [v.index for v in certify(bent).verdicts if v.proved]


def test_path_point_declares_the_chain(x64):
    path = theorem1_path()
    s = np.linspace(0, path.n_segments, 3 * path.n_segments + 1)
    comb = describe(path_point, path.stacked(), s)
    assert comb.n_control == path.n_segments + 1 and np.all(np.count_nonzero(comb.coef, axis=1) <= 2)
    pts = nets.unstack(path.stacked())
    for n in (0, 7, len(s) - 1):                          # way points are unit rows: exactly those nets
        if np.count_nonzero(comb.coef[n]) == 1:
            k = int(np.flatnonzero(comb.coef[n])[0])
            for u, v in zip(jax.tree_util.tree_leaves(comb.point(n)), jax.tree_util.tree_leaves(pts[k])):
                np.testing.assert_array_equal(u, np.asarray(v))


def test_combinations_and_their_errors(x64):
    a, b = random_net(DENSE, 1), random_net(DENSE, 2)
    x, y = data(a)
    pc = PolyCurve.bezier(nets.stack([a, b, a]))
    comb = pc.combination(np.linspace(0, 1, 5))
    res = evaluate_combination(comb, x, y, **KW)
    ref = evaluate_nets([jax.tree_util.tree_map(jnp.asarray, comb.point(n)) for n in range(5)], x, y, algebra="off")
    close(res.loss, ref.loss)
    # negative control: a tampered coefficient changes the answer
    bad = Combination(comb.points, comb.coef * np.array([1.0, 1.1, 1.0]))
    assert not np.allclose(evaluate_combination(bad, x, y, **KW).loss, ref.loss, rtol=1e-6)
    with pytest.raises(ValueError, match="leading axis"):
        Combination(nets.stack([a, b]), np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        Combination(nets.stack([a, b]), np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="stacked"):
        evaluate_combination(Combination((np.zeros((2, 3)),), np.ones((1, 2))), x, y)
    with pytest.raises(ValueError, match="require"):
        evaluate(stack_point, nets.stack([a, b]), [0.0, 1.0], x, y, algebra="require")
    with pytest.raises(ValueError, match="precision"):
        evaluate_line(a, b, 3, x, y, precision="fp16")
    if jax.default_backend() == "cpu":
        with pytest.raises(ValueError, match="needs a GPU"):
            evaluate_line(a, b, 3, x, y, precision="bf16")
    with pytest.raises(ValueError, match="proved"):
        theorem1_path().evaluate(x, y, 3, proved=[99])
