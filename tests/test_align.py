"""Permutation alignment (weight matching, activation matching) and the Lemma 4 path to the aligned copy."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from proofs_check import certify
from stability.theory import align
from stability.core import nets
from stability.core.evaluate import evaluate_line
from stability.theory.paths import Segment, embed_narrow
from tests._path_helpers import bitwise_equal, half_zero, random_net

EXAMPLES = settings(max_examples=int(os.environ.get("ALIGN_EXAMPLES", "12")), deadline=None)

# A small fixed pool (odd widths; dense, conv + flatten, conv + gap): every jitted program compiles once per entry.
_POOL = (
    nets.Arch(in_shape=(6,), widths=(7, 5, 3)),
    nets.Arch(in_shape=(4,), widths=(5, 9, 3, 2)),
    nets.Arch(in_shape=(6, 6, 2), widths=(3, 5, 3), n_conv=2, pool=("max", None), head="flatten"),
    nets.Arch(in_shape=(5, 5, 2), widths=(5, 3, 2), n_conv=1, kernel=1, head="gap"),
)
N_DATA = 40
TS = [0.0, 0.25, 0.5, 0.75, 1.0]  # one length everywhere: one compiled line evaluation per architecture


@st.composite
def pool_nets(draw):
    arch = dataclasses.replace(draw(st.sampled_from(_POOL)), bias=draw(st.booleans()))
    return random_net(arch, draw(st.integers(0, 2**31 - 1)))


def _perms(draw, net):
    return [np.asarray(draw(st.permutations(range(h))), np.int64) for h in nets.widths(net)]


def _data(net, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N_DATA, *net.arch.in_shape))
    y = rng.integers(0, net.arch.widths[-1], size=N_DATA).astype(np.int32)
    return x, y


def _apply(net, x):
    return np.asarray(align._apply(net, jax.numpy.asarray(x)))


def _monotone(h) -> bool:
    return all(b >= a for a, b in zip(h, h[1:]))


_forward = jax.jit(nets.forward)


def _distinct_activations(net, x) -> bool:
    """Every hidden unit's activation (over samples and positions) has positive variance and correlation
    < 1 with every other unit of its layer: the correlation and distance assignments are then unique."""
    for pre in _forward(net, jax.numpy.asarray(x))[:-1]:
        a = np.maximum(np.asarray(pre), 0).reshape(-1, pre.shape[-1])
        a = a - a.mean(0)
        sd = np.sqrt((a ** 2).mean(0))
        if np.any(sd <= 1e-6):
            return False
        c = (a.T @ a) / a.shape[0] / np.outer(sd, sd)
        if np.any(c[~np.eye(c.shape[0], dtype=bool)] > 1 - 1e-6):
            return False
    return True


# --------------------------------------------------------------------------- recovering a permuted copy


@EXAMPLES
@given(net=pool_nets(), data=st.data())
def test_weight_matching_recovers_a_permuted_copy(x64, net, data):
    perms = _perms(data.draw, net)
    b = align.apply_perms(net, perms)
    x, y = _data(net)
    res = align.weight_matching(net, b, seed=data.draw(st.integers(0, 99)), init="forward", x=x)
    assert bitwise_equal(res.aligned, net) and res.converged
    assert res.objective_after == pytest.approx(align.weight_objective(net, net), rel=1e-12)
    assert res.distance_after == 0.0
    if any(np.any(p != np.arange(p.size)) for p in perms):  # negative control: the unaligned copy differs
        assert not bitwise_equal(b, net)


def test_weight_matching_identity_start_can_stop_at_a_coordinatewise_optimum(x64):
    """Ainsworth et al.'s identity start is a heuristic: on this small net it converges to a coordinate-wise
    optimum that is not the permuted original, where the forward start recovers it exactly."""
    net = random_net(_POOL[0], 18)
    rng = np.random.default_rng(18)
    b = align.apply_perms(net, [rng.permutation(h) for h in nets.widths(net)])
    stuck = align.weight_matching(net, b, seed=18, init="identity")
    assert stuck.converged and not bitwise_equal(stuck.aligned, net)
    assert stuck.objective_after < align.weight_objective(net, net) - 1.0
    assert bitwise_equal(align.weight_matching(net, b, seed=18, init="forward").aligned, net)


@EXAMPLES
@given(net=pool_nets(), data=st.data(), objective=st.sampled_from(["correlation", "distance"]))
def test_activation_matching_recovers_a_permuted_copy(x64, net, data, objective):
    x, y = _data(net, data.draw(st.integers(0, 3)))
    assume(_distinct_activations(net, x))
    perms = _perms(data.draw, net)
    b = align.apply_perms(net, perms)
    res = align.activation_matching(net, b, x, objective=objective)
    assert bitwise_equal(res.aligned, net)
    assert res.function_check.source == "given" and res.function_check.n_inputs == N_DATA
    if objective == "correlation":
        assert res.objective_after == pytest.approx(sum(nets.widths(net)), rel=1e-9)  # every matched corr = 1
    else:
        assert res.objective_after == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("arch", [_POOL[1], _POOL[2]], ids=["dense", "conv"])
def test_straight_line_to_the_aligned_copy_has_barrier_exactly_zero(x64, arch):
    """θ_A and a permuted copy: after either matching the straight line is one point, so the loss evaluated
    along it is exactly constant (barrier exactly 0); along the line to the unaligned copy it is not."""
    net = random_net(arch, 3)
    x, y = _data(net)
    rng = np.random.default_rng(3)
    b = align.apply_perms(net, [rng.permutation(h) for h in nets.widths(net)])
    assert _distinct_activations(net, x)
    for res in (align.weight_matching(net, b, init="forward", x=x), align.activation_matching(net, b, x)):
        line = evaluate_line(net, res.aligned, TS, x, y)
        assert line.loss.max() - max(line.loss[0], line.loss[-1]) == 0.0 and np.ptp(line.loss) == 0.0
    unaligned = evaluate_line(net, b, TS, x, y)  # negative control: the same evaluation sees the difference
    assert np.ptp(unaligned.loss) > 1e-3


# --------------------------------------------------------------------------- two independent nets


@EXAMPLES
@given(net=pool_nets(), data=st.data(), method=st.sampled_from(["weight", "correlation", "distance"]))
def test_aligned_net_computes_the_same_function(x64, net, data, method):
    other = random_net(net.arch, data.draw(st.integers(0, 2**31 - 1)))
    x, _ = _data(net)
    if method == "weight":
        res = align.weight_matching(net, other, seed=data.draw(st.integers(0, 99)), x=x)
    else:
        res = align.activation_matching(net, other, x, objective=method)
    assert all(sorted(p.tolist()) == list(range(p.size)) for p in res.perms)
    assert bitwise_equal(res.aligned, align.apply_perms(other, res.perms))
    x2 = np.random.default_rng(7).normal(size=(N_DATA, *net.arch.in_shape))
    f0, f1 = _apply(other, x2), _apply(res.aligned, x2)
    assert np.max(np.abs(f1 - f0)) <= 1e-12 * (1 + np.max(np.abs(f0)))
    fc = res.function_check
    assert fc.max_abs_diff <= 1e-12 * (1 + fc.output_scale) and fc.n_inputs == N_DATA
    json.dumps(res.to_dict())
    if method != "weight":  # each layer's assignment is optimal: never worse than the identity
        better = (lambda a, b: a >= b - 1e-9) if res.sense == "max" else (lambda a, b: a <= b + 1e-9)
        assert all(better(a, b) for a, b in zip(res.per_layer_after, res.per_layer_before))


@EXAMPLES
@given(net=pool_nets(), data=st.data())
def test_weight_matching_is_monotone_and_deterministic(x64, net, data):
    other = random_net(net.arch, data.draw(st.integers(0, 2**31 - 1)))
    seed = data.draw(st.integers(0, 99))
    x, _ = _data(net)
    res = align.weight_matching(net, other, seed=seed, x=x)
    ident = align.weight_objective(net, other)
    assert res.history[0] == res.objective_before == ident and res.objective_after == res.history[-1]
    assert _monotone(res.history) and res.objective_after >= ident
    assert res.objective_after == pytest.approx(align.weight_objective(net, res.aligned), rel=1e-12, abs=1e-12)
    assert res.distance_after <= res.distance_before
    assert res.converged and res.history[-1] == res.history[-2] and len(res.history) == res.iterations + 1
    again = align.weight_matching(net, other, seed=seed, x=x)
    assert all(np.array_equal(p, q) for p, q in zip(res.perms, again.perms))
    one = align.weight_matching(net, other, seed=seed, max_iter=1, x=x)
    assert one.iterations == 1 and one.converged == (one.history[1] == one.history[0])
    assert not _monotone([0.0, 1.0, 0.5])  # negative control of the monotonicity check


# --------------------------------------------------------------------------- Lemma 4 path to the aligned copy


@EXAMPLES
@given(net=pool_nets(), data=st.data())
def test_permutation_path_certifies_in_the_widened_architecture(x64, net, data):
    perms = _perms(data.draw, net)
    with pytest.raises(ValueError, match="premise.*widen=True") as e:
        align.permutation_path(net, perms)
    assert "\n" not in str(e.value)
    path = align.permutation_path(net, perms, widen=True)
    assert path.info.widened and list(path.info.path_widths) == [2 * h for h in nets.widths(net)]
    arch = path.start.arch
    assert arch.widths[:-1] == tuple(2 * h for h in nets.widths(net))
    assert bitwise_equal(path.start, embed_narrow(net, arch))
    assert bitwise_equal(path.end, embed_narrow(align.apply_perms(net, perms), arch))
    cert = certify(path)
    assert cert.ok and [v.status for v in cert.verdicts] == ["proved"] * 5, cert.summary()
    # negative control: tamper the last way point (the top layer doubled) → the last segment fails
    last = path.segments[-1]
    bad = last.end.replace_layer(net.depth - 1, w=last.end.layers[-1]["w"] * 2)
    tampered = path.replace_segment(path.n_segments - 1, Segment(last.start, bad, last.claim, last.label))
    cert_bad = certify(tampered)
    assert not cert_bad.ok and cert_bad.verdicts[-1].status == "refuted"


@EXAMPLES
@given(net=pool_nets(), data=st.data())
def test_permutation_path_in_the_original_width_when_the_premise_holds(x64, net, data):
    net = data.draw(half_zero(net, mode="zero"))
    perms = _perms(data.draw, net)
    path = align.permutation_path(net, perms)
    assert not path.info.widened and path.start.arch == net.arch
    assert bitwise_equal(path.start, net) and bitwise_equal(path.end, align.apply_perms(net, perms))
    assert certify(path).ok


# --------------------------------------------------------------------------- bad inputs


def test_bad_inputs_are_refused_in_one_line(x64):
    a = random_net(_POOL[0], 0)
    b = random_net(_POOL[0], 1)
    other = random_net(_POOL[1], 2)
    x, _ = _data(a)
    good = [np.arange(h) for h in nets.widths(a)]
    cases = [
        (lambda: align.weight_matching(a, other), "architecture"),
        (lambda: align.weight_matching(a, a.astype(np.float32)), "dtype"),
        (lambda: align.weight_matching(a, b, max_iter=0), "max_iter"),
        (lambda: align.weight_matching(a, b, max_iter=True), "max_iter"),
        (lambda: align.weight_matching(a, b, init="random"), "init"),
        (lambda: align.weight_matching(a, b, init=[np.arange(7.0), good[1]]), "integers"),
        (lambda: align.weight_matching(a, b, x=x[:, :3]), "shape"),
        (lambda: align.activation_matching(a, other, x), "architecture"),
        (lambda: align.activation_matching(a, b, x[:, :5]), "shape"),
        (lambda: align.activation_matching(a, b, x[0]), "shape"),
        (lambda: align.activation_matching(a, b, x[:1]), "at least 2"),
        (lambda: align.activation_matching(a, b, x, objective="cosine"), "objective"),
        (lambda: align.activation_matching(a, b, x, batch_size=0), "batch_size"),
        (lambda: align.apply_perms(b, [[0, 0, 1, 2, 3, 4, 5], good[1]]), "permutation"),
        (lambda: align.apply_perms(b, [[0.0, 1, 2, 3, 4, 5, 6], good[1]]), "integers"),
        (lambda: align.apply_perms(b, [[0, 1, 2, 3, 4, 5, 7], good[1]]), "permutation"),
        (lambda: align.apply_perms(b, good[:1]), "one permutation per hidden layer"),
        (lambda: align.apply_perms(b, [np.arange(6), good[1]]), "shape"),
        (lambda: align.permutation_path(b, [[1, 0, 2, 3, 4, 5, 6], [0, 1, 2, 2, 4]], widen=True), "permutation"),
        (lambda: align.permutation_path(b, good, widen="yes"), "widen"),
        (lambda: align.permutation_path(b, good), "premise"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match) as e:
            call()
        assert "\n" not in str(e.value), str(e.value)
    assert bitwise_equal(align.apply_perms(b, good), b)  # the valid call goes through
