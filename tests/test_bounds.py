"""Certified bounds of the maximum loss over a whole curve (``stability.theory.bounds``): sound against dense
sampling and a local search on random dense and conv nets, segments and Bezier curves; a narrow spike
between grid points is caught; proved claims are exact shortcuts and only certified claims are used;
negative controls show the ReLU relaxation and the rounding margins are needed."""

from __future__ import annotations

import functools
import os
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs_check.path_bounds import path_bound
from stability.curves import curve as curves
from stability.core import nets
from stability.theory.bounds import max_loss_bound
from stability.core.evaluate import evaluate, line_point
from stability.theory.paths import Path, Segment
from stability.core.polycurve import PolyCurve
from tests.strategies import random_net

EXAMPLES = int(os.environ.get("BOUNDS_EXAMPLES", "5"))
"""5 dense and 3 conv examples by default (the file's time budget); ``BOUNDS_EXAMPLES=100`` for a thorough run."""
FAST = settings(max_examples=EXAMPLES, deadline=None)

DENSE = nets.Arch(in_shape=(4,), widths=(6, 5, 3))
CONVS = (nets.Arch(in_shape=(5, 5, 2), widths=(3, 2, 3), n_conv=2, pool=("max", "avg"), head="flatten"),
         nets.Arch(in_shape=(4, 4, 1), widths=(2, 3), n_conv=1, pool=("max",), head="gap", bias=False))
N = 8
KW = dict(per_round=3, max_subintervals=40, rtol=1e-3)
"""``per_round=3`` keeps every call at 8 sub-intervals: one compiled program per architecture and loss."""
SAMPLER_TOL = 1e-12
"""The float64 sampler's own rounding (relative): the bound encloses the EXACT loss, the sampler is one
float evaluation of it."""


def apply_im2col(net: nets.Net, x):
    """``nets.apply`` with every convolution written as patches × kernel (an einsum): the same function,
    but fast when vmapped over 10,001 weight points on a CPU (batched-kernel convolutions are not)."""
    arch = net.arch
    h = x
    for l, layer in enumerate(net.layers):
        if l > 0:
            h = jax.nn.relu(h)
            if l - 1 < arch.n_conv and arch.pool[l - 1] is not None:
                h = nets.pool2(h, arch.pool[l - 1])
        if arch.kinds[l] == "conv":
            k = arch.kernel
            patches = jax.lax.conv_general_dilated_patches(h, (k, k), (1, 1), "SAME",
                                                           dimension_numbers=("NHWC", "OIHW", "NHWC"))
            h = jnp.einsum("nhwf,of->nhwo", patches, layer["w"].reshape(layer["w"].shape[0], -1))
            if "b" in layer:
                h = h + layer["b"]
        else:
            h = nets.layer_forward(arch, l, layer, h)
    return h


def np_tree(tree):
    return jax.tree_util.tree_map(np.array, tree)


def data(arch: nets.Arch, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, *arch.in_shape)), rng.integers(0, arch.widths[-1], N)


def scaled(net: nets.Net, s: float) -> nets.Net:
    return jax.tree_util.tree_map(lambda a: a * s, net)


def make_curve(arch: nets.Arch, seeds: list[int], scale: float):
    """Segment (2 seeds) or Bezier curve (3–5 seeds; the bends scaled by ``scale`` for interior bumps):
    ``(PolyCurve, point_fn, theta)`` in float64. A segment is sampled as the 1-bend Bezier curve through its
    midpoint (the same curve up to rounding; the segment's own sampler ``line_point`` is used elsewhere), so
    segments and 1-bend curves share one compiled sampler."""
    pts = [random_net(arch, s, jnp.float64) for s in seeds]
    if len(pts) == 2:
        mid = jax.tree_util.tree_map(lambda u, v: (u + v) / 2, pts[0], pts[1])
        cv = curves.Curve((pts[0], pts[1]), nets.stack([mid]), "bezier")
        return PolyCurve.segment(np_tree(pts[0]), np_tree(pts[1])), curves.curve_point, cv
    cv = curves.Curve((pts[0], pts[-1]), nets.stack([scaled(p, scale) for p in pts[1:-1]]), "bezier")
    return curves.as_polycurve(cv), curves.curve_point, cv


def sampled_max(fn, theta, x, y, loss: str, at: float = 0.0) -> tuple[float, float]:
    """Max of the loss at 10,001 equally spaced t, then at 10,000 points between the grid neighbours of the
    sampled argmax (a local search for an interior maximiser); also the loss at ``at``: ``(max, loss(at))``.
    Every call evaluates 10,001 points (one compiled program per net and curve kind)."""
    ts = np.linspace(0.0, 1.0, 10001)
    ev = evaluate(fn, theta, ts, x, y, loss=loss, apply_fn=apply_im2col)
    i = int(np.argmax(ev.loss))
    fine = np.append(np.linspace(ts[max(i - 1, 0)], ts[min(i + 1, ts.size - 1)], 10000), at)
    ev2 = evaluate(fn, theta, fine, x, y, loss=loss, apply_fn=apply_im2col)
    return max(float(ev.loss.max()), float(ev2.loss.max())), float(ev2.loss[-1])


def assert_sound_path(res, path: Path, x, y, loss: str) -> float:
    """:func:`assert_sound` for a path, sampling each segment (local time) with ``line_point``."""
    n = path.n_segments
    k, u = path.locate(res.t_lower)
    out = [sampled_max(line_point, (s.start, s.end), x, y, loss, u if j == k else 0.0) for j, s in enumerate(path.segments)]
    m = max(v[0] for v in out)
    assert res.upper >= m * (1 - SAMPLER_TOL) - SAMPLER_TOL, (res.upper, m)
    assert res.lower <= out[k][1] * (1 + SAMPLER_TOL) + SAMPLER_TOL, (res.lower, out[k][1])
    assert res.subintervals.shape[0] >= n and res.lower <= res.upper
    return m


def assert_sound(res, fn, theta, x, y, loss: str) -> float:
    m, at = sampled_max(fn, theta, x, y, loss, res.t_lower)
    assert res.upper >= m * (1 - SAMPLER_TOL) - SAMPLER_TOL, (res.upper, m)
    # the lower bound is rigorous at t_lower
    assert res.lower <= at * (1 + SAMPLER_TOL) + SAMPLER_TOL, (res.lower, at)
    assert res.lower <= res.upper
    env_t0, env_t1, env_up = res.envelope()
    assert env_t0[0] == 0.0 and env_t1[-1] == 1.0 and np.all(env_t1[:-1] == env_t0[1:]) and env_up.max() <= res.upper
    return m


# --------------------------------------------------------------------------- soundness


@FAST
@given(seeds=st.lists(st.integers(0, 2**31 - 1), min_size=2, max_size=3), scale=st.sampled_from([1.0, 2.5]),
       loss=st.sampled_from(["cross_entropy", "squared_error"]), dseed=st.integers(0, 2**20))
def test_dense_bound_is_sound_on_segments_and_bezier_curves(x64, seeds, scale, loss, dseed):
    curve, fn, theta = make_curve(DENSE, seeds, scale)
    x, y = data(DENSE, dseed)
    res = max_loss_bound(curve, x, y, loss=loss, **KW)
    assert_sound(res, fn, theta, x, y, loss)
    assert res.stop in ("tolerance", "budget") and res.n_subintervals <= KW["max_subintervals"]


@settings(max_examples=EXAMPLES // 2 + 1, deadline=None)
@given(k=st.integers(0, 1), seeds=st.lists(st.integers(0, 2**31 - 1), min_size=3, max_size=3),
       dseed=st.integers(0, 2**20))
def test_conv_bound_is_sound(x64, monkeypatch, k, seeds, dseed):
    """Conv with max and avg pooling + flatten head (cross-entropy, Bezier curves); conv + gap head without
    biases (squared error, segments)."""
    arch, loss = CONVS[k], ("cross_entropy", "squared_error")[k]
    curve, fn, theta = make_curve(arch, seeds[:3 - k], 2.0)
    x, y = data(arch, dseed)
    ref = random_net(arch, seeds[0], jnp.float64)
    assert np.allclose(apply_im2col(ref, x), nets.apply(ref, x), rtol=1e-12, atol=1e-12)
    # k = 1: three data batches, stepped from Python on CPU (stability.core.hostloop)
    res = max_loss_bound(curve, x, y, loss=loss, batch_size=(None, 3)[k], **KW)
    with monkeypatch.context() as mp:
        mp.setenv("STABILITY_HOST_LOOP", "0")  # the sampler's 10,001 points in one vmapped program
        assert_sound(res, fn, theta, x, y, loss)


def test_interval_method_is_sound_and_looser_per_subinterval_on_a_two_bend_curve(x64):
    curve, fn, theta = make_curve(DENSE, [3, 4, 5, 6], 2.5)
    x, y = data(DENSE, 1)
    tay = max_loss_bound(curve, x, y, max_subintervals=1, per_round=3, rtol=1e-9)
    itv = max_loss_bound(curve, x, y, max_subintervals=1, per_round=3, rtol=1e-9, method="interval")
    assert tay.stop == itv.stop == "budget"
    assert tay.upper < itv.upper  # one sub-interval [0, 1]: the Taylor model keeps the correlation in t
    m = assert_sound(max_loss_bound(curve, x, y, method="interval", **KW), fn, theta, x, y, "cross_entropy")
    assert tay.upper >= m and itv.upper >= m


# --------------------------------------------------------------------------- a spike between grid points


def spike_path(t0: float, K: float, H: float, eps: float = 1.0) -> tuple[nets.Net, nets.Net]:
    """Unit 0 of layer 2 is ``relu(eps − K|t − t0|)`` (two first-layer units ``±K(t − t0)`` on the input
    ``e_1``): nonzero only on ``|t − t0| < eps/K``; output 1 gets ``H ×`` it."""
    w1 = np.zeros((2, 6, 4))
    w1[0, 0, 0], w1[1, 0, 0] = -K * t0, K * (1 - t0)
    w1[0, 1, 0], w1[1, 1, 0] = K * t0, -K * (1 - t0)
    w2 = np.zeros((5, 6))
    w2[0, :2] = -1.0
    b2 = np.zeros(5)
    b2[0] = eps
    w3 = np.zeros((3, 5))
    w3[1, 0] = H
    ends = []
    for e in range(2):
        ends.append(nets.Net(DENSE, ({"w": jnp.asarray(w1[e]), "b": jnp.zeros(6)}, {"w": jnp.asarray(w2), "b": jnp.asarray(b2)},
                                     {"w": jnp.asarray(w3), "b": jnp.zeros(3)})))
    return ends[0], ends[1]


def test_narrow_spike_missed_by_121_points_is_caught(x64):
    t0 = 0.5 + 1 / 240  # halfway between two of the 121 grid points
    a, b = spike_path(t0, K=1000.0, H=5.0)
    x = np.tile(np.eye(4)[:1], (N, 1))
    y = np.zeros(N, np.int64)
    grid = np.linspace(0, 1, 121)  # padded to the sampler's 10,001 points (one compiled program)
    coarse = evaluate(line_point, (a, b), np.concatenate([grid, np.zeros(10001 - 121)]), x, y,
                      apply_fn=apply_im2col).loss[:121].max()
    peak = float(np.log(2 + np.exp(5.0)))  # logits (0, 5, 0) at the spike's top, label 0
    assert coarse < 1.1  # log 3: the grid sees no spike
    res = max_loss_bound(PolyCurve.segment(np_tree(a), np_tree(b)), x, y, per_round=3, max_subintervals=64, rtol=1e-3)
    assert res.upper >= peak * (1 - SAMPLER_TOL)
    assert res.stop == "tolerance" and abs(res.t_lower - t0) < 1e-3 and res.lower > peak * (1 - 1e-3)
    assert_sound(res, line_point, (a, b), x, y, "cross_entropy")


# --------------------------------------------------------------------------- proved claims


def claimed_path(seed: int) -> Path:
    """Three segments: a top-layer move, a function-preserving move of a dead unit's row, a free segment."""
    a = random_net(DENSE, seed, jnp.float64)
    w = [np.array(l["w"]) for l in a.layers]
    w[1][:, 0] = 0.0  # unit 0 of hidden layer 1 is dead (zero column)
    dead = nets.Net(DENSE, tuple({**l, "w": jnp.asarray(wi)} for l, wi in zip(a.layers, w)))
    top = dead.replace_layer(2, w=dead.layers[2]["w"] * 1.7 + 0.3)
    row = top.replace_layer(0, w=top.layers[0]["w"].at[0].set(5.0))
    b = random_net(DENSE, seed + 1, jnp.float64)
    return Path([Segment(dead, top, "top_layer", "top"), Segment(top, row, "function_preserving", "dead row"),
                 Segment(row, b, "free", "free")])


def test_proved_claims_are_exact_and_no_looser_than_propagation(x64):
    path = claimed_path(11)
    x, y = data(DENSE, 2)
    res = path_bound(path, x, y, **KW)
    assert res.piece_method == ("top_layer", "function_preserving", "propagation")
    prop = max_loss_bound(path.poly(), x, y, **KW)
    assert prop.piece_method == ("propagation",) * 3
    for j in (0, 1):
        assert res.piece_upper[j] <= prop.piece_upper[j] * (1 + 1e-12)
    assert_sound_path(res, path, x, y, "cross_entropy")


def test_path_bound_uses_only_certified_claims(x64):
    a, b = random_net(DENSE, 21, jnp.float64), random_net(DENSE, 22, jnp.float64)
    tampered = Path([Segment(a, b, "function_preserving", "not function-preserving")])
    x, y = data(DENSE, 3)
    res = path_bound(tampered, x, y, **KW)
    assert res.piece_method == ("propagation",)
    m = assert_sound(res, line_point, (a, b), x, y, "cross_entropy")
    # passing the false claim directly is trusted (the caller's responsibility) and NOT sound here
    forced = max_loss_bound(tampered.poly(), x, y, certificate_claims=["function_preserving"], **KW)
    assert forced.upper < m


def test_path_bound_refuses_a_discontinuous_path(x64):
    a, b, c = (random_net(DENSE, s, jnp.float64) for s in (1, 2, 3))
    broken = Path([Segment(a, b, "free", "s0"), Segment(c, a, "free", "s1")], check=False)
    with pytest.raises(ValueError, match="discontinuous"):
        path_bound(broken, *data(DENSE, 0))


# --------------------------------------------------------------------------- stopping, lower bound


def test_stop_reasons_and_tolerance_on_a_three_bend_curve(x64):
    curve, fn, theta = make_curve(DENSE, [7, 8, 9, 10, 11], 2.5)
    x, y = data(DENSE, 4)
    # batch_size=3: three data batches (the last padded), summed in the scanned program
    one = max_loss_bound(curve, x, y, max_subintervals=1, per_round=3, rtol=1e-6, batch_size=3)
    assert one.stop == "budget" and one.n_subintervals == 1
    tol = max_loss_bound(curve, x, y, max_subintervals=400, per_round=3, rtol=1e-2, batch_size=3)
    assert tol.stop == "tolerance" and tol.upper - tol.lower <= 1e-2 * abs(tol.lower)
    m, _ = sampled_max(fn, theta, x, y, "cross_entropy")
    assert tol.lower <= m * (1 + SAMPLER_TOL) <= tol.upper * (1 + 2 * SAMPLER_TOL)
    assert one.upper >= tol.upper * (1 - 1e-12)  # refinement only tightens
    d = tol.to_dict()
    assert d["stop"] == "tolerance" and len(d["envelope"]["t0"]) == tol.subintervals.shape[0]
    assert d["history"]["upper"][-1] == pytest.approx(tol.upper, rel=1e-12)


# --------------------------------------------------------------------------- negative controls


def test_without_the_relu_relaxation_the_bound_is_unsound(x64):
    """A first-layer unit crosses 0 at t = 0.6; on the single sub-interval [0, 1] its centre (t = 0.5) is
    negative, so linearising at the centre drops it — and the loss it drives at t = 1."""
    w1 = np.zeros((2, 6, 4))
    w1[0, 0, 0], w1[1, 0, 0] = -6.0, 4.0  # 10 (t − 0.6)
    w2 = np.zeros((5, 6))
    w2[0, 0] = 1.0
    w3 = np.zeros((3, 5))
    w3[1, 0] = 1.0
    a, b = (nets.Net(DENSE, ({"w": jnp.asarray(w1[e]), "b": jnp.zeros(6)}, {"w": jnp.asarray(w2), "b": jnp.zeros(5)},
                             {"w": jnp.asarray(w3), "b": jnp.zeros(3)})) for e in range(2))
    x = np.tile(np.eye(4)[:1], (N, 1))
    y = np.zeros(N, np.int64)
    curve = PolyCurve.segment(np_tree(a), np_tree(b))
    m, _ = sampled_max(line_point, (a, b), x, y, "cross_entropy")
    sound = max_loss_bound(curve, x, y, max_subintervals=1, per_round=3)
    naive = max_loss_bound(curve, x, y, max_subintervals=1, per_round=3, _relax=False)
    assert sound.upper >= m
    assert naive.upper < m  # the soundness check fails without the relaxation


def test_without_rounding_margins_the_bound_is_below_the_exact_loss(x64):
    """Constant curve; the hidden pre-activation is (1 + 2⁻⁵²)², which float64 rounds DOWN. Squared error
    against label 1, compared with the exact rational loss."""
    v = 1.0 + 2.0 ** -52
    w1 = np.zeros((6, 4))
    w1[0, 0] = v
    w2 = np.zeros((5, 6))
    w2[0, 0] = 1.0
    w3 = np.zeros((3, 5))
    w3[0, 0] = 1.0
    net = nets.Net(DENSE, ({"w": jnp.asarray(w1), "b": jnp.zeros(6)}, {"w": jnp.asarray(w2), "b": jnp.zeros(5)},
                           {"w": jnp.asarray(w3), "b": jnp.zeros(3)}))
    x = np.tile(np.array([[v, 0.0, 0.0, 0.0]]), (N, 1))
    y = np.ones(N, np.int64)
    z = Fraction(v) * Fraction(v)
    exact = (z * z + 1) / 2  # ½((z − 0)² + (0 − 1)² + 0²)
    curve = PolyCurve.segment(np_tree(net), np_tree(net))
    sound = max_loss_bound(curve, x, y, loss="squared_error", max_subintervals=1, per_round=3)
    bare = max_loss_bound(curve, x, y, loss="squared_error", max_subintervals=1, per_round=3, _sound=False)
    assert Fraction(sound.lower) <= exact <= Fraction(sound.upper)
    assert Fraction(bare.upper) < exact


# --------------------------------------------------------------------------- bad input


@functools.lru_cache(maxsize=1)
def _bad_inputs():
    a, b = random_net(DENSE, 1, jnp.float64), random_net(DENSE, 2, jnp.float64)
    good = PolyCurve.segment(np_tree(a), np_tree(b))
    x, y = data(DENSE, 0)
    nan = np_tree(b)
    nan.layers[0]["w"][0, 0] = np.nan
    bez = curves.as_polycurve(curves.bezier(a, b, 1))
    return [
        (dict(curve=PolyCurve.segment(np_tree(a), nan)), "non-finite"),
        (dict(x=x[:, :3]), "x must have shape"),
        (dict(y=y + 3), r"labels must lie in \[0, 3\)"),
        (dict(rtol=0.0), "rtol"),
        (dict(max_subintervals=0), "max_subintervals"),
        (dict(loss="hinge"), "unknown loss"),
        (dict(certificate_claims=["top_layer", None]), "one entry per piece"),
        (dict(certificate_claims=["proved"]), "allowed"),
        (dict(curve=bez, certificate_claims=["top_layer"]), "straight piece"),
        (dict(method="affine"), "method"),
    ], dict(curve=good, x=x, y=y)


@pytest.mark.parametrize("case", range(10))
def test_bad_input_is_refused_with_one_line(x64, case):
    with jax.enable_x64(True):
        cases, base = _bad_inputs()
    kw, msg = cases[case]
    args = {**base, **kw}
    curve, x, y = args.pop("curve"), args.pop("x"), args.pop("y")
    with pytest.raises(ValueError, match=msg) as e:
        max_loss_bound(curve, x, y, **args)
    assert "\n" not in str(e.value)


def test_float32_conv_nets_and_inputs_are_bounded_as_their_float64_values():
    """Trained nets and data are float32: the bound works on their exact float64 values (a regression: the
    shape probe once mixed float32 weights with float64 inputs in a convolution)."""
    arch = CONVS[0]
    a, b = random_net(arch, 3, jnp.float32), random_net(arch, 4, jnp.float32)
    x, y = data(arch, 5)
    r32 = max_loss_bound(PolyCurve.segment(np_tree(a), np_tree(b)), x.astype(np.float32), y, **KW)
    a64, b64 = (jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), n) for n in (a, b))
    r64 = max_loss_bound(PolyCurve.segment(np_tree(a64), np_tree(b64)), x.astype(np.float32).astype(np.float64), y,
                         **KW)
    assert r32.upper == r64.upper and r32.lower == r64.lower


def test_chain_junctions_are_enclosed_once_and_only_when_exactly_equal():
    """A chain of J pieces has J + 1 distinct ends (each junction shared by two pieces); ends moved by one unit
    in the last place are no longer shared (negative control), and a Bezier piece's ends are its own."""
    from stability.theory.bounds.driver import _distinct_ends

    pts = {"w": np.arange(5.0)[:, None]}
    chain = PolyCurve.chain(pts)
    pieces, us, rep = _distinct_ends(chain.coef)
    assert len(pieces) == chain.n_pieces + 1 and rep == [0, 1, 1, 2, 2, 3, 3, 4]
    coef = chain.coef.copy()
    coef[2, 2, 0] = np.nextafter(1.0, 2.0)   # piece 2 now starts off piece 1's end and ends off piece 3's start
    pieces, _, rep = _distinct_ends(coef)
    assert len(pieces) == chain.n_pieces + 3 and rep[2] != rep[3] and rep[4] != rep[5] and rep[0:2] == [0, 1]
    bz = PolyCurve.bezier({"w": np.arange(3.0)[:, None]})
    assert len(_distinct_ends(bz.coef)[0]) == 2
