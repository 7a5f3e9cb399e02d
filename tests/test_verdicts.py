"""Verdicts that never overclaim: kept-set inputs, the Lemma 2 part as stated, decided Theorem 2/3 and Lemma 3
verdicts with their premises, and flagged unconverged spectral norms."""

from __future__ import annotations

import dataclasses
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs_check import certify
from proofs_check.lemma3 import check_lemma3
from proofs_check.theorems import check_path, check_theorem1_path, check_theorem2, check_theorem3
from stability.theory import cushions
from stability import data
from stability.theory import dropout
from stability.core import nets
from stability.theory.paths import Path, Segment, theorem1
from stability.core.train import TrainConfig, fit
from tests._path_helpers import bitwise_equal, kept_sets, same_arch_pair, small_nets
from tests.strategies import conv_nets, random_net
from tests.test_cushions import layer_operator

FAST = settings(max_examples=10, deadline=None)


# --------------------------------------------------------------------------- kept sets: masks and bad indices


@FAST
@given(net=small_nets(), data=st.data())
def test_boolean_masks_give_the_same_path_as_their_index_lists(x64, net, data):
    net_b = same_arch_pair(data.draw, net)
    ka, kb = data.draw(kept_sets(net)), data.draw(kept_sets(net_b))

    def mask(k, h):
        m = np.zeros(h, bool)
        m[k] = True
        return m

    hs = nets.widths(net)
    by_index = theorem1(net, ka, net_b, kb, 2.0)
    by_mask = theorem1(net, [mask(k, h) for k, h in zip(ka, hs)], net_b, [mask(k, h) for k, h in zip(kb, hs)], 2.0)
    assert by_index.n_segments == by_mask.n_segments
    assert all(bitwise_equal(u, v) for u, v in zip(by_index.waypoints(), by_mask.waypoints()))


@FAST
@given(net=small_nets(), data=st.data())
def test_invalid_kept_sets_are_refused_naming_the_layer(net, data):
    hs = nets.widths(net)
    i = data.draw(st.integers(1, len(hs)))
    good = [[] for _ in hs]
    h = hs[i - 1]
    bad = data.draw(st.sampled_from(["float", "negative", "duplicate", "range", "mask length"]))
    wrong = {"float": [0.5, 1.7], "negative": [-1], "duplicate": [0, 0], "range": [h],
             "mask length": np.ones(h + 1, bool)}[bad]
    keep = list(good)
    keep[i - 1] = wrong
    with pytest.raises(ValueError, match=f"hidden layer {i}"):
        dropout.make_kept_sets(net, keep)


def test_float_indices_are_not_truncated():
    net = random_net(nets.Arch(in_shape=(3,), widths=(4, 4, 2)), 0)
    with pytest.raises(ValueError, match="integers"):
        dropout.KeptSets(([0.5, 1.7], [0]), (2.0, 2.0))
    ks = dropout.make_kept_sets(net, [[True, False, True, False], [0]])
    assert [k.tolist() for k in ks.keep] == [[0, 2], [0]]  # a mask is a mask, not the indices 1 and 0


@settings(max_examples=8, deadline=None)
@given(net=conv_nets(max_channels=4))
def test_one_column_condition_equals_the_materialised_operator(x64, net):
    """``cushions.column_ratio`` (the one column condition of dropout, cushions, Lemma 3 and Theorems 2/3)
    against column blocks of the materialised operator of every layer 2..d."""
    p = 0.3
    ratio = cushions.column_ratio(net, p)
    assert np.isnan(ratio[0])
    for i in range(2, net.depth + 1):
        A = layer_operator(net, i)
        units = net.arch.widths[i - 2]
        cols = np.sqrt((A ** 2).sum(0).reshape(-1, units).sum(0)) if i - 1 <= net.arch.n_conv \
            else np.linalg.norm(A, axis=0)
        assert ratio[i - 1] == pytest.approx(cols.max() / (math.sqrt(p) * np.linalg.norm(A)), rel=1e-10)


# --------------------------------------------------------------------------- Lemma 2 as stated


def _detour(path: Path, k: int, top) -> Path:
    """``path`` with a round trip s → (top layer replaced by ``top``) → s inserted before segment ``k`` (two
    top-layer segments, each a valid exact claim) and the part boundaries shifted."""
    s = path.segments[k].start
    d = s.depth
    x = s.replace_layer(d - 1, w=jnp.asarray(top, s.layers[-1]["w"].dtype))
    segs = list(path.segments[:k]) + [Segment(s, x, "top_layer", "detour out"), Segment(x, s, "top_layer", "detour back")] \
        + list(path.segments[k:])
    parts = [(n, a if a <= k else a + 2, b if b < k else b + 2) for n, a, b in path.parts]
    return Path(segs, name=path.name, parts=parts, info=path.info, connects=path.connects)


def _digits(n: int = 600):
    ds = data.load("digits")
    return np.asarray(ds.x_train[:n]), np.asarray(ds.y_train[:n])


@pytest.fixture(scope="module")
def trained_pair():
    """Two digits MLPs 64-32-32-10 trained with dropout (shared by the tests below)."""
    x, y = _digits()
    cfg = TrainConfig(steps=600, batch_size=64, lr=0.1, schedule="cosine", dropout=0.1, log_every=600)
    out = []
    for seed in (0, 1):
        net = nets.mlp(jax.random.PRNGKey(seed), (64, 32, 32, 10))
        out.append(fit(net, x, y, dataclasses.replace(cfg, seed=seed), progress=False)[0])
    return out[0], out[1], x, y


def test_lemma2_detour_fails_the_check_and_honest_paths_hold(trained_pair):
    a, b, x, y = trained_pair
    ka = dropout.greedy_search(a, x, y, p=0.5, rounds=2).kept
    kb = dropout.greedy_search(b, x, y, p=0.5, rounds=2).kept
    path = theorem1(a, ka, b, kb, compact=True)
    honest = check_theorem1_path(path, a, ka, b, kb, x, y, points_per_segment=5, line=False)
    assert honest.verdict == "holds" and honest.extra["lemma2_part_holds"], honest.summary()
    assert honest.max_loss_kind.startswith("every t")
    # certified for every t: every segment is proved, so the enclosure is the way points' (outward rounded)
    cb = honest.certified_max
    assert honest.holds_for_every_t is True and cb.converged, honest.finding()
    assert cb.lower <= honest.max_loss * (1 + 1e-5) and honest.max_loss <= cb.upper * (1 + 1e-5)
    assert cb.upper <= honest.bound + honest.tol and "for every t (certified)" in honest.finding()
    assert honest.to_dict()["holds_for_every_t"] is True and honest.to_dict()["certified_max"]["stop"] == "tolerance"
    (_, first, last), = [q for q in path.parts if q.name == "Lemma 2"]
    bad_top = -5.0 * np.asarray(path.segments[first + 1].start.layers[-1]["w"])
    detoured = _detour(path, first + 1, bad_top)
    assert certify(detoured).ok  # every segment of the detour is a proved top-layer move
    v = check_theorem1_path(detoured, a, ka, b, kb, x, y, points_per_segment=5, line=False)
    part = v.extra["lemma2_parts"][0]
    ends = [v.evaluation.loss[first, 0], v.evaluation.loss[last + 1, 0]]  # θ¹_A and θ¹_B, as Lemma 2 states
    assert part["bound"] == pytest.approx(max(ends)) and part["max"] > part["bound"] + 0.5
    assert v.verdict == "fails" and not v.extra["lemma2_part_holds"], v.summary()
    # the old reading (max over the part's own way points) would have let the detour pass
    wl = np.concatenate([v.evaluation.loss[:, 0], v.evaluation.loss[-1:, -1]])
    assert part["max"] <= wl[first:last + 3].max() + 1e-6


# --------------------------------------------------------------------------- Theorems 2 and 3, Lemma 3


def _assert_decided(v):
    assert v.verdict in ("holds", "fails", "does not apply"), v.verdict
    if v.verdict == "does not apply":
        failed = [q for q in v.premises if q.status == "failed"]
        assert failed and all(q.name.split(" [")[0] in v.reason for q in failed[:1]), v.reason
    n = v.noise
    assert n is not None and all(np.isfinite(e) and e > 0 for e in n["epsilon"].values())
    assert n["sqrt_p_eps"] == pytest.approx(math.sqrt(n["p"]) * max(n["epsilon"].values()))
    assert np.isfinite(n["empirical_constant"])
    assert (n["vacuity_ratio"] > 0) if n["loss_range"] > 0 else n["vacuity_ratio"] is None
    names = {q.name.split(" [")[0] for q in v.premises}
    assert {"ρ ≥ 3d", "ε′ ≤ 1", "converged spectral norms", "∞-norm condition C_∞", "column condition C_col"} <= names
    assert any(q.name.startswith("Lemma 5") for q in v.premises)
    d = v.to_dict()
    assert d["verdict"] == v.verdict and d["noise"]["vacuity_ratio"] == n["vacuity_ratio"]


def test_theorems_2_and_3_decide_on_trained_digits_mlps(trained_pair):
    a, b, x, y = trained_pair
    v2 = check_theorem2(a, b, jax.random.PRNGKey(0), x, y, points_per_segment=5, line=False)
    _assert_decided(v2)
    assert v2.certificate.counts() == {"proved": 8, "measured": 2, "refuted": 0} and not v2.certified
    narrow = nets.mlp(jax.random.PRNGKey(5), (64, 4, 4, 10))
    narrow = fit(narrow, x, y, TrainConfig(steps=300, optimizer="adam", lr=0.01, log_every=300), progress=False)[0]
    v3 = check_theorem3(a, b, narrow, 0.75, jax.random.PRNGKey(1), x, y, points_per_segment=5, line=False)
    _assert_decided(v3)
    assert set(v3.noise["bound_terms"]) == {"L(θ_A) + e_A", "L(θ_B) + e_B", "L(θ*)"}
    assert v3.bound == pytest.approx(max(v3.noise["bound_terms"].values()))


def test_theorem2_decides_on_a_small_conv_net(x64):
    arch = nets.Arch(in_shape=(5, 5, 1), widths=(4, 4, 3), n_conv=2, pool=("max", None))
    a, b = random_net(arch, 0), random_net(arch, 1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5, 5, 1))
    y = np.asarray(jnp.argmax(nets.apply(a, jnp.asarray(x)), axis=1)).astype(np.int32)
    v = check_theorem2(a, b, jax.random.PRNGKey(2), x, y, points_per_segment=3, line=False)
    _assert_decided(v)


def test_lemma3_does_not_apply_when_its_premise_fails(trained_pair):
    a, _, x, y = trained_pair
    res = check_lemma3(a, x[:200], y[:200], jax.random.PRNGKey(0), ps=(0.25, 0.75), draws=8, n_t=3, draws_noise=2,
                       ts=(0.0, 0.5))
    s = res.summary()
    rho = [next(q for q in prem if q["name"] == "ρ ≥ 3d") for prem in s["premises"]]
    for v, r, q in zip(s["verdict"], s["reason"], rho):
        if q["status"] == "failed":  # a failing premise is never read as "holds"
            assert v == "does not apply" and "ρ ≥ 3d" in r
    assert "does not apply" in s["verdict"]
    assert "lemma_holds_with_constant_1" not in s
    assert len(s["C_quarter"]) == 2 and s["vacuity_ratio"] is not None


def test_lemma3_bound_applies_to_a_nearly_linear_wide_net_and_holds(x64):
    """A net whose activations never change sign (positive weights and inputs) is exactly linear along the
    segment (ρ = ∞), rank-one layers give cushions near 1, and width 400 with p = 0.005 makes ε′ < 1: every
    premise holds, so the lemma applies — and at least a quarter of the draws stay under the explicit bound."""
    rng = np.random.default_rng(0)
    h, d_in, m = 400, 8, 30
    u = [0.1 * np.abs(rng.normal(size=h)) + 1.0, 0.1 * np.abs(rng.normal(size=h)) + 1.0]  # near-flat: C_∞ ≈ 1.2
    layers = ({"w": jnp.asarray(np.outer(u[0], np.ones(d_in)) / h)},
              {"w": jnp.asarray(np.outer(u[1], u[0]) / h ** 1.5)},
              {"w": jnp.asarray(np.vstack([u[1], 0.5 * u[1]]) / h ** 1.5)})
    net = nets.Net(nets.Arch(in_shape=(d_in,), widths=(h, h, 2), bias=False), layers)
    x = np.abs(rng.normal(size=(m, d_in))) + 0.5
    y = np.zeros(m, np.int32)
    res = check_lemma3(net, x, y, jax.random.PRNGKey(1), ps=(0.005,), draws=16, n_t=3, draws_noise=2, ts=(0.0, 0.5))
    b = res.bounds[0]
    assert b.applies, [str(q) for q in b.failed]
    assert res.summary()["verdict"] == ["holds"]
    assert res.fraction_under(b.excess)[0] >= 0.25 and b.excess > 0


def test_unconverged_spectral_norms_warn_and_flag_epsilon(x64):
    arch = nets.Arch(in_shape=(6, 6, 1), widths=(3, 4, 3), n_conv=2, pool=("max", None))
    net = random_net(arch, 4)
    x = np.random.default_rng(1).normal(size=(12, 6, 6, 1))
    from tests.test_cushions import every_pair_iterated

    # every pair iterated: pairs ending at <= 16 entries (all of this net's) are otherwise solved exactly
    with every_pair_iterated(), pytest.warns(cushions.UnconvergedWarning, match="UNCONVERGED"):
        res = cushions.measure(net, x, jax.random.PRNGKey(0), max_iter=2, draws=2, ts=(0.0, 0.5))
    assert not res.epsilon_converged() and np.nanmax(res.unconverged_fraction()) > 0
    s = res.summary()
    assert s["epsilon_flag"] and "unconverged" in s["epsilon_flag"] and not s["solver"]["epsilon_converged"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converged: no warning
        ok = cushions.measure(net, x, jax.random.PRNGKey(0), draws=2, ts=(0.0, 0.5), tol=1e-6, max_iter=2000)
    assert ok.epsilon_converged() and ok.summary()["epsilon_flag"] is None


def test_lemma5_premise_is_checked_on_the_draw_and_rejects_a_tampered_one():
    from proofs_check.theorems import _lemma5_premises
    from stability.theory.paths import DropoutDraw, lemma5_min_dropped

    assert [lemma5_min_dropped(0.2, 32), lemma5_min_dropped(0.75, 10), lemma5_min_dropped(0.3, 10)] == [5, 5, 2]

    def draw(dropped):
        deltas = tuple(np.r_[np.zeros(k), np.ones(32 - k)] for k in dropped)
        return DropoutDraw(0.2, 1, tuple(dropped), deltas, {}, 6.4, (1.0, 1.0))

    good = _lemma5_premises(draw([5, 6, 5]), 0.2, "A", [4, 4, 4], "Lemma 2 with θ*")
    assert [q.status for q in good] == ["held", "held"]
    bad = _lemma5_premises(draw([5, 4, 5]), 0.2, "A", [4, 4, 4], "Lemma 2 with θ*")  # 4/32 = 0.125 < 2p/3
    assert [q.status for q in bad] == ["failed", "held"] and bad[0].value == pytest.approx(0.125)


def test_a_spike_between_samples_fails_only_through_the_certified_maximum(x64):
    from tests.test_bounds import spike_path

    t0 = 0.5 + 1 / 240  # halfway between two of 121 sample points
    a, b = spike_path(t0, K=1000.0, H=5.0)
    x, y = np.tile(np.eye(4)[:1], (8, 1)), np.zeros(8, np.int64)
    path = Path([Segment(a, b, "free", "a spike between the samples")])
    kw = dict(points_per_segment=121, line=False, bound_kind="a stated bound", fn_samples=8,
              bound_options=dict(max_subintervals=64, rtol=1e-3))
    sampled_only = check_path(path, x, y, bound=1.2, certified_max=False, **kw)
    assert sampled_only.verdict == "holds" and sampled_only.holds_for_every_t is None  # the samples miss it
    v = check_path(path, x, y, bound=1.2, **kw)
    assert v.verdict == "fails" and v.holds_for_every_t is False and "certified maximum" in v.reason, v.reason
    assert abs(v.certified_max.t_lower - t0) < 1e-3
    high = check_path(path, x, y, bound=6.0, **kw)  # above the spike's peak log(2 + e^5) ≈ 5.006
    assert high.verdict == "holds" and high.holds_for_every_t is True, high.finding()
    undecided = check_path(path, x, y, bound=5.0, **{**kw, "bound_options": dict(max_subintervals=1, rtol=1e-3)})
    assert undecided.verdict == "holds" and undecided.holds_for_every_t is None
    assert "at the sampled points" in undecided.finding()
