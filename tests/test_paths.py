"""Path builders (docs/THEORY.md §2–§4) on random dense and conv nets: exact end points, segment counts,
certificates, and unchanged outputs along function-preserving / copy-shift segments."""

from __future__ import annotations

import os

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs_check import certify
from stability.theory import dropout
from stability.core import nets, units
from stability.core.evaluate import evaluate_line
from stability.core.losses import cross_entropy
from stability.theory.paths import lemma1
from stability.theory.paths import lemma2
from stability.theory.paths import Path, Segment, embed_narrow, lemma3, lemma4, theorem1, theorem2, theorem3, theta_k
from tests._path_helpers import (apply, bitwise_equal, check_function_preserved, half_zero, inputs, kept_sets,
                                 leaves, max_abs_diff, narrow_arch, random_net, same_arch_pair, small_nets)

FAST = settings(max_examples=int(os.environ.get("PATHS_EXAMPLES", "25")), deadline=None)
"""25 examples per property in CI; ``PATHS_EXAMPLES=400`` for a thorough run."""


def _theta_i_np(net, keep, r, i, zero_rows=False):
    """Definition 1 written out in NumPy (independent of the library): for j ≥ i the columns of A_{j+1}
    are r on K_j and 0 on D_j; with ``zero_rows`` also the dropped units' rows (θ_1 of Lemma 1)."""
    w = [np.array(l["w"]) for l in net.layers]
    b = [np.array(l["b"]) if "b" in l else None for l in net.layers]
    for j, (h, k) in enumerate(zip(nets.widths(net), keep), start=1):
        if j < i:
            continue
        dropped = np.setdiff1d(np.arange(h), k)
        w[j][:, k] = w[j][:, k] * w[j].dtype.type(r)
        w[j][:, dropped] = 0
        if zero_rows:
            w[j - 1][dropped] = 0
            if b[j - 1] is not None:
                b[j - 1][dropped] = 0
    return nets.Net(net.arch, tuple({"w": wi, **({} if bi is None else {"b": bi})} for wi, bi in zip(w, b)))


# --------------------------------------------------------------------------- Lemma 1


@FAST
@given(net=small_nets(), data=st.data(), compact=st.booleans())
def test_lemma1_property(x64, net, data, compact):
    keep = data.draw(kept_sets(net))
    r = data.draw(st.sampled_from([2.0, 1.5, 3.0]))
    path = lemma1(net, keep, r, compact=compact)
    d = net.depth
    assert path.n_segments == (4 * d - 6 if compact else 6 * d - 10)
    assert path.start is net
    assert bitwise_equal(path.end, theta_k(net, keep, 1, r))
    assert max_abs_diff(path.end, _theta_i_np(net, keep, r, 1, zero_rows=True)) <= 1e-12
    for k, j in path.info.theta_k.items():  # way points θ_k (all of them in the literal path)
        assert bitwise_equal(path.waypoints()[j], theta_k(net, keep, k, r))
    if not compact:
        assert set(path.info.theta_k) == set(range(1, d))
    cert = certify(path)
    assert cert.ok, cert.summary()
    x = inputs(net, n=4)
    check_function_preserved(path, x, data, 1e-12)
    # θ_k computes exactly θ^k's function (they differ only in rows of dead units)
    for k in range(1, d):
        np.testing.assert_allclose(apply(theta_k(net, keep, k, r), x), apply(_theta_i_np(net, keep, r, k), x),
                                   rtol=1e-12, atol=1e-12)


def test_lemma1_compact_d3_is_the_papers_figure_1(x64):
    net = random_net(nets.Arch(in_shape=(5,), widths=(6, 6, 3)), 0)
    path = lemma1(net, [[0, 1, 2], [0, 1, 2]], 2.0, compact=True)
    assert path.n_segments == 6
    assert path.claims == ("top_layer", "function_preserving", "top_layer", "function_preserving",
                           "function_preserving", "function_preserving")
    # Figure 1 (first-half kept sets): A_3 = [2L_3 | 0] after step 1; the bottom rows of A_2 become
    # [2L_2, 0] after the merged (b) step; A_2 = [[2L_2, 0], [2L_2, 0]] after step 3.
    A3 = np.asarray(net.layers[2]["w"])
    A2 = np.asarray(net.layers[1]["w"])
    w = [np.asarray(p.layers[1]["w"]) for p in path.waypoints()]
    np.testing.assert_array_equal(np.asarray(path.waypoints()[1].layers[2]["w"])[:, :3], 2 * A3[:, :3])
    np.testing.assert_array_equal(np.asarray(path.waypoints()[1].layers[2]["w"])[:, 3:], 0)
    np.testing.assert_array_equal(w[2][3:], np.hstack([2 * A2[:3, :3], np.zeros((3, 3))]))
    np.testing.assert_array_equal(w[4][:3], w[4][3:])
    np.testing.assert_array_equal(np.asarray(path.end.layers[0]["w"])[3:], 0)


def test_lemma1_literal_labels_name_the_steps():
    net = _mlp((4, 4, 4, 4, 2))
    path = lemma1(net, [[0, 1]] * 3, 2.0)
    assert path.labels[3].startswith("Lemma 1, θ_3→θ_2, step 2")
    assert [lab.split("step ")[-1][0] for lab in path.labels[2:8]] == list("123456")


# --------------------------------------------------------------------------- Lemma 4 and Lemma 2


@FAST
@given(net=small_nets(), data=st.data())
def test_lemma4_property(x64, net, data):
    net = data.draw(half_zero(net, mode="zero"))
    perms = [data.draw(st.permutations(range(h))) for h in nets.widths(net)]
    path = lemma4(net, perms)
    assert path.n_segments == 5
    assert path.claims == ("function_preserving", "copy_shift", "function_preserving", "copy_shift",
                           "function_preserving")
    expect = net
    for i, p in enumerate(perms, start=1):
        expect = units.permute_units(expect, i, p)
    assert path.start is net and bitwise_equal(path.end, expect)
    assert certify(path).ok, certify(path).summary()
    check_function_preserved(path, inputs(net, n=4), data, 1e-12)


@FAST
@given(net=small_nets(), data=st.data())
def test_lemma2_property(x64, net, data):
    a = data.draw(half_zero(net))
    b = data.draw(half_zero(same_arch_pair(data.draw, net)))
    path = lemma2(a, b)
    assert path.n_segments == 8
    assert path.claims.count("top_layer") == 1 and path.claims[1] == "top_layer"
    assert path.start is a and bitwise_equal(path.end, b)
    cert = certify(path)
    assert cert.ok, cert.summary()
    check_function_preserved(path, inputs(net, n=4), data, 1e-12)


# --------------------------------------------------------------------------- Theorems


@FAST
@given(net=small_nets(), data=st.data(), compact=st.booleans())
def test_theorem1_property(x64, net, data, compact):
    net_b = same_arch_pair(data.draw, net)
    ka, kb = data.draw(kept_sets(net)), data.draw(kept_sets(net_b))
    path = theorem1(net, ka, net_b, kb, 2.0, compact=compact)
    d = net.depth
    assert path.n_segments == (2 * (4 * d - 6) + 8 if compact else 2 * (6 * d - 10) + 8)
    assert path.start is net and path.end is net_b
    cert = certify(path)
    assert cert.ok, cert.summary()
    check_function_preserved(path, inputs(net, n=3), data, 1e-12)


@FAST
@given(net=small_nets(), data=st.data())
def test_theorem2_and_lemma3_property(x64, net, data):
    net_b = same_arch_pair(data.draw, net)
    key = jax.random.PRNGKey(data.draw(st.integers(0, 2**31 - 1)))
    path = theorem2(net, net_b, key)
    assert path.n_segments == 10
    assert path.claims[0] == path.claims[-1] == "dropout_interpolation"
    assert path.start is net and path.end is net_b
    # segment 0 ends at Algorithm 1's output with the recorded (redrawn) key
    m = path.info.draw_a
    ka = jax.random.split(key)[0]
    k_used = ka if m.draws == 1 else jax.random.fold_in(ka, m.draws - 1)
    assert bitwise_equal(path.segments[0].end, dropout.algorithm1(net, 0.75, k_used)[0])
    for i, h in enumerate(nets.widths(net), start=1):
        assert m.dropped[i - 1] >= math.ceil(h / 2)
        assert m.dropped[i - 1] >= 2 * 0.75 * h / 3 - 1e-9  # Lemma 5's event, conditioned on
    cert = certify(path)
    assert cert.no_refuted and not cert.ok and cert.counts() == {"proved": 8, "measured": 2, "refuted": 0}, \
        cert.summary()
    assert cert.headline().startswith("8 of 10 segments proved exactly; 2 measured (2 Algorithm 1 (Lemma 3) segments)")
    check_function_preserved(path, inputs(net, n=3), data, 1e-12)


@FAST
@given(net=small_nets(), data=st.data(), embedded=st.booleans())
def test_theorem3_property(x64, net, data, embedded):
    hs = nets.widths(net)
    if min(hs) < 2:  # 1.5·h*/h ≤ 3/4 needs h ≥ 2·h* ≥ 2; a width-1 layer must be refused
        narrow = random_net(narrow_arch(net.arch, [1] * len(hs)), 0)
        with pytest.raises(ValueError, match="Theorem 3 premise"):
            theorem3(net, net, narrow, 0.75, jax.random.PRNGKey(0))
        return
    net_b = same_arch_pair(data.draw, net)
    hstar = [data.draw(st.integers(1, h // 2)) for h in hs]
    seed = data.draw(st.integers(0, 2**31 - 1))
    narrow = random_net(narrow_arch(net.arch, hstar), seed)
    if embedded:  # θ* given in the wide architecture, at random positions
        pos = [sorted(data.draw(st.lists(st.integers(0, h - 1), min_size=k, max_size=k, unique=True)))
               for h, k in zip(hs, hstar)]
        narrow = embed_narrow(narrow, net.arch, pos)
    ratio = max(k / h for k, h in zip(hstar, hs))
    p = data.draw(st.floats(1.5 * ratio, 0.75))
    path = theorem3(net, net_b, narrow, p, jax.random.PRNGKey(seed + 1))
    assert path.n_segments == 13
    assert path.start is net and path.end is net_b
    star = path.waypoints()[path.info.narrow_waypoint]
    x = inputs(net, n=4)
    np.testing.assert_allclose(apply(star, x), apply(narrow, x) if embedded else
                               apply(embed_narrow(narrow, net.arch), x), rtol=1e-12, atol=1e-12)
    assert list(path.info.narrow_widths) == list(hstar)
    for draw in (path.info.draw_a, path.info.draw_b):  # Lemma 2's free units and Lemma 5's event
        assert all(dr >= k and dr >= 2 * p * h / 3 - 1e-9 for dr, k, h in zip(draw.dropped, hstar, hs))
    cert = certify(path)
    assert cert.no_refuted and not cert.ok and cert.counts() == {"proved": 11, "measured": 2, "refuted": 0}, \
        cert.summary()
    check_function_preserved(path, x, data, 1e-12)


@settings(max_examples=10, deadline=None)
@given(net=small_nets(dtype=jnp.float32), data=st.data())
def test_float32_function_preserving_segments(net, data):
    """The same constructions in float32: f unchanged to ≤ 1e-5 (relative to max(1, |f|))."""
    net_b = same_arch_pair(data.draw, net)
    ka, kb = data.draw(kept_sets(net)), data.draw(kept_sets(net_b))
    path = theorem1(net, ka, net_b, kb, 2.0, compact=data.draw(st.booleans()))
    assert certify(path).ok
    check_function_preserved(path, inputs(net, n=4), data, 1e-5)
    p2 = theorem2(net, net_b, jax.random.PRNGKey(data.draw(st.integers(0, 1000))))
    check_function_preserved(p2, inputs(net, n=4), data, 1e-5)


# --------------------------------------------------------------------------- premises


def _mlp(sizes, seed=0):
    return random_net(nets.Arch(in_shape=(sizes[0],), widths=tuple(sizes[1:])), seed, jnp.float32)


def test_builders_check_their_premises():
    net = _mlp((4, 5, 4, 3))
    with pytest.raises(ValueError, match=r"Definition 1 premise \|K_1\| ≤ ⌊h_1/2⌋"):
        lemma1(net, [[0, 1, 2], [0]], 2.0)
    with pytest.raises(ValueError, match="one kept set"):
        lemma1(net, [[0]], 2.0)
    with pytest.raises(ValueError, match="outside"):
        lemma1(net, [[7], [0]], 2.0)
    with pytest.raises(ValueError, match="r_1 must be a finite positive"):
        lemma1(net, [[0], [0]], [0.0, 1.0])
    with pytest.raises(ValueError,
                       match=r"Lemma 2 premise violated: hidden layer 1 of θ has 0 zero \(or dead\) units"):
        lemma2(net, net)
    other = _mlp((4, 6, 4, 3), 1)
    with pytest.raises(ValueError, match="different architectures"):
        theorem1(net, [[0], [0]], other, [[0], [0]], 2.0)
    with pytest.raises(ValueError, match="different architectures"):
        theorem2(net, other, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="Lemma 4 premise violated"):
        lemma4(net, [list(range(5)), list(range(4))])
    with pytest.raises(ValueError, match="permutation"):
        lemma4(net, [[0, 0, 1, 2, 3], list(range(4))])
    with pytest.raises(ValueError, match=r"0 < p ≤ 3/4"):
        lemma3(net, 0.8, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"0 < p ≤ 3/4"):
        theorem2(net, net, jax.random.PRNGKey(0), p=0.9)
    wide = _mlp((4, 8, 8, 3))
    narrow = _mlp((4, 3, 2, 3), 2)
    with pytest.raises(ValueError, match="narrow net is too wide for p"):
        theorem3(wide, wide, narrow, 0.5, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="p > 3/4"):
        theorem3(wide, wide, narrow, 0.8, jax.random.PRNGKey(0))
    bad_narrow = _mlp((5, 3, 2, 3), 2)
    with pytest.raises(ValueError, match="architecture"):
        theorem3(wide, wide, bad_narrow, 0.75, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="at least one hidden layer"):
        lemma1(_mlp((4, 3)), [], 2.0)


def test_lemma3_redraws_until_enough_columns_are_dropped_or_reports():
    net = _mlp((4, 6, 6, 3))
    path = lemma3(net, 0.5, jax.random.PRNGKey(3), min_dead=[3, 3])
    assert all(dr >= 3 for dr in path.info.dropped)
    assert path.n_segments == 1 and path.claims == ("dropout_interpolation",)
    with pytest.raises(ValueError, match="no Algorithm 1 draw"):
        lemma3(net, 0.1, jax.random.PRNGKey(3), min_dead=[6, 6], max_resamples=5)
    cc = path.info.column_condition
    assert len(cc) == 2 and all(c > 0 for c in cc)


# --------------------------------------------------------------------------- the Path object


def _toy_path(x64=True):
    a = random_net(nets.Arch(in_shape=(3,), widths=(4, 4, 2)), 0)
    b = random_net(nets.Arch(in_shape=(3,), widths=(4, 4, 2)), 1)
    return theorem1(a, [[0, 1], [2, 3]], b, [[1], [0, 2]], 2.0, compact=True), a, b


def test_path_at_concat_reverse_waypoints(x64):
    path, a, b = _toy_path()
    n = path.n_segments
    wps = path.waypoints()
    assert len(wps) == n + 1 and wps[0] is a and wps[-1] is b
    for k in (0, 3, n):
        assert bitwise_equal(path.at(k / n), wps[k])
    k, u = path.locate(0.5 + 0.25 / n)
    assert k == n // 2 and abs(u - 0.25) < 1e-9
    mid = path.at((3 + 0.4) / n)
    np.testing.assert_allclose(leaves(mid)[0], 0.6 * leaves(wps[3])[0] + 0.4 * leaves(wps[4])[0], rtol=1e-12)
    rev = path.reversed()
    assert rev.start is b and rev.end is a and rev.n_segments == n
    assert bitwise_equal(rev.at(1 - 2 / n), path.at(2 / n))
    assert rev.reversed().labels == path.labels
    assert certify(rev).ok
    both = path + rev
    assert both.n_segments == 2 * n and bitwise_equal(both.at(0.5), b)
    with pytest.raises(ValueError, match="discontinuous"):
        path + path
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        path.at(1.5)
    with pytest.raises(ValueError, match="unknown claim kind"):
        Segment(a, b, "magic", "x")
    s = Path.straight(a, b)
    assert s.n_segments == 1 and s.claims == ("free",)


def test_path_evaluate_is_one_batched_call_matching_a_point_loop(x64):
    path, a, b = _toy_path()
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (40, 3), jnp.float64))
    y = np.asarray(jax.random.randint(jax.random.PRNGKey(6), (40,), 0, 2), dtype=np.int32)
    ev = path.evaluate(x, y, points_per_segment=7)
    assert ev.loss.shape == (path.n_segments, 7) and ev.acc.shape == ev.loss.shape
    for k in (0, 5, path.n_segments - 1):
        for j, t in enumerate(ev.t):
            net = path.segments[k].at(t)
            out = apply(net, jnp.asarray(x))
            ref = float(np.mean(cross_entropy(out, jnp.asarray(y))))
            assert abs(ev.loss[k, j] - ref) < 1e-12
    # segment ends meet: the last point of segment k is the first of k+1
    np.testing.assert_allclose(ev.loss[:-1, -1], ev.loss[1:, 0], rtol=1e-12)
    flat = ev.flat()
    assert flat.ts.shape == (path.n_segments * 7,) and flat.ts[0] == 0 and flat.ts[-1] == 1
    seg, tl, tg = ev.worst()
    assert ev.loss[seg].max() == ev.max_loss
    line = evaluate_line(a, b, 5, x, y)
    assert abs(line.loss[0] - ev.loss[0, 0]) < 1e-12 and abs(line.loss[-1] - ev.loss[-1, -1]) < 1e-12


def test_conv_paths_use_whole_channels(x64):
    net = random_net(nets.Arch(in_shape=(6, 6, 2), widths=(4, 3, 3), n_conv=2, pool=("max", "max")), 0)
    path = lemma1(net, [[1, 3], [2]], 2.0)
    assert certify(path).ok
    end = path.end
    w2 = np.asarray(end.layers[1]["w"])  # conv kernel (out, in, k, k): dropped input channels 0, 2 are zero
    assert np.all(w2[:, [0, 2]] == 0) and np.all(w2[[0, 1]] == 0)
    w3 = np.asarray(end.layers[2]["w"])  # flatten layer (out, C, H, W): dropped channels 0, 1 are zero
    assert np.all(w3[:, [0, 1]] == 0)
    np.testing.assert_array_equal(w3[:, 2], 2 * np.asarray(net.layers[2]["w"])[:, 2])
