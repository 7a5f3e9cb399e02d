"""Exact certificates (docs/THEORY.md §5): sound on constructed paths, and a tampered or wrong claim is caught
on its segment with the parameter at fault named."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs_check import certify, certify_segment, dead_closure
from stability.core import nets
from stability.core.losses import Loss, cross_entropy, squared_error
from stability.theory.paths import lemma1
from stability.theory.paths import Path, Segment, theorem1, theorem2
from tests._path_helpers import apply, inputs, kept_sets, lerp_np, random_net, same_arch_pair, small_nets

FAST = settings(max_examples=int(os.environ.get("PATHS_EXAMPLES", "25")), deadline=None)
"""25 examples per property in CI; ``PATHS_EXAMPLES=400`` for a thorough run."""


def _np_net(net: nets.Net) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    return ([np.array(l["w"]) for l in net.layers], [np.array(l["b"]) if "b" in l else None for l in net.layers])


def _from_np(arch, w, b) -> nets.Net:
    return nets.Net(arch, tuple({"w": jnp.asarray(wi), **({} if bi is None else {"b": jnp.asarray(bi)})}
                                for wi, bi in zip(w, b)))


def _tamper(net: nets.Net, layer: int, param: str, index: tuple[int, ...], delta: float = 1.0) -> nets.Net:
    w, b = _np_net(net)
    arr = w[layer] if param == "w" else b[layer]
    arr[index] += delta
    return _from_np(net.arch, w, b)


@st.composite
def theorem_paths(draw):
    net = draw(small_nets())
    net_b = same_arch_pair(draw, net)
    if draw(st.booleans()):
        return theorem1(net, draw(kept_sets(net)), net_b, draw(kept_sets(net_b)), 2.0, compact=draw(st.booleans()))
    return theorem2(net, net_b, jax.random.PRNGKey(draw(st.integers(0, 2**20))))


@FAST
@given(path=theorem_paths(), data=st.data())
def test_tampering_one_weight_fails_that_segment_and_names_it(x64, path, data):
    cert = certify(path)
    assert cert.no_refuted and cert.ok == all(c != "dropout_interpolation" for c in path.claims), cert.summary()
    exact = [k for k, c in enumerate(path.claims) if c != "dropout_interpolation"]
    k = data.draw(st.sampled_from(exact))
    seg = path.segments[k]
    d = seg.end.depth
    if seg.claim == "top_layer":
        # any parameter below the top layer
        layer = data.draw(st.integers(0, d - 2))
        params = ["w"] + (["b"] if "b" in seg.end.layers[layer] else [])
    else:
        # any entry of the top layer (A_d or b_d) changes f, whatever the dead closure is
        layer = d - 1
        params = ["w"] + (["b"] if "b" in seg.end.layers[layer] else [])
    param = data.draw(st.sampled_from(params))
    shape = np.shape(seg.end.layers[layer][param])
    index = tuple(data.draw(st.integers(0, n - 1)) for n in shape)
    bad = Segment(seg.start, _tamper(seg.end, layer, param, index), seg.claim, seg.label)
    tampered = path.replace_segment(k, bad, check=False)
    cert = certify(tampered)
    v = cert.verdicts[k]
    assert v.status == "refuted", str(v)
    assert all(u.status != "refuted" for j, u in enumerate(cert.verdicts) if j != k)
    assert v.label == seg.label and v.fault is not None
    assert (layer, param, index) in v.fault.candidates(), str(v)
    assert f"segment {k} ({seg.label})" in str(v)
    assert not cert.ok and not cert.no_refuted
    if k + 1 < path.n_segments:  # the tampered end no longer meets the next segment
        assert cert.junctions
    else:  # the last segment no longer ends at the net the path claims to connect
        assert cert.endpoints and "does not end" in cert.endpoints[0]
    # relabelling every segment "free" hides no refutation as "ok": nothing is proved any more
    free = Path([Segment(s.start, s.end, "free", s.label) for s in tampered.segments], check=False,
                connects=tampered.connects)
    cf = certify(free)
    assert not cf.ok and cf.counts()["proved"] == 0 and cf.counts()["measured"] == path.n_segments


@FAST
@given(net=small_nets(), data=st.data())
def test_certified_function_preserving_means_unchanged_outputs(x64, net, data):
    """Soundness and precision of the quotient test on random edits: kill some columns, then edit
    random rows. The claim is certified iff every edited row belongs to the dead closure, and a
    certified segment leaves f unchanged at random t."""
    w, b = _np_net(net)
    d = net.depth
    for i in range(1, d):  # make some units dead (column 0)
        h = w[i - 1].shape[0]
        for u in data.draw(st.lists(st.integers(0, h - 1), unique=True)):
            w[i][:, u] = 0
    start = _from_np(net.arch, w, b)
    w2 = [a.copy() for a in w]
    b2 = [None if a is None else a.copy() for a in b]
    edits = []
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(1, d - 1))
        u = data.draw(st.integers(0, w[i - 1].shape[0] - 1))
        w2[i - 1][u] = w2[i - 1][u] + 1.0
        edits.append((i, u))
    end = _from_np(net.arch, w2, b2)
    status, reason, fault = certify_segment(start, end, "function_preserving")
    p0 = [(wi, bi) for wi, bi in zip(w, b)]
    p1 = [(wi, bi) for wi, bi in zip(w2, b2)]
    Z = dead_closure(p0, p1)
    all_dead = all(Z[i][u] for i, u in edits)
    assert (status == "proved") == all_dead, (status, reason, edits)
    x = inputs(net, n=6)
    if status == "proved":
        f0 = apply(start, x)
        for t in (0.25, data.draw(st.floats(0, 1))):
            np.testing.assert_allclose(apply(lerp_np(start, end, t), x), f0, rtol=1e-12, atol=1e-12)
    else:
        assert fault is not None and fault.layer < d


def test_wrong_claims_are_rejected(x64):
    a = random_net(nets.Arch(in_shape=(3,), widths=(5, 5, 2)), 0)
    b = random_net(nets.Arch(in_shape=(3,), widths=(5, 5, 2)), 1)
    p = theorem2(a, b, jax.random.PRNGKey(0))
    seg = p.segments[0]  # θ → Algorithm 1 output: not function preserving
    status, reason, fault = certify_segment(seg.start, seg.end, "function_preserving")
    assert status == "refuted" and fault is not None and fault.param == "w"
    status, _, fault = certify_segment(seg.start, seg.end, "top_layer")
    assert status == "refuted" and fault.layer == 1 and fault.col is not None  # A_2's columns were dropped
    path = lemma1(a, [[0, 1], [3, 4]], 2.0)
    base_a = path.segments[0]  # the top layer changes the function: not function preserving
    wrong = path.replace_segment(0, Segment(base_a.start, base_a.end, "function_preserving", base_a.label))
    cert = certify(wrong)
    assert [v.index for v in cert.failures()] == [0]
    assert cert.failures()[0].fault.layer == 2 and "top layer" in cert.failures()[0].fault.why
    assert "Lemma 1, θ→θ_2, base (a)" in cert.summary()


def test_step4_between_identical_halves_is_function_preserving(x64):
    net = random_net(nets.Arch(in_shape=(3,), widths=(6, 6, 6, 2)), 3)
    path = lemma1(net, [[0, 2, 4], [1, 3, 5], [0, 1, 2]], 2.0)
    step4 = [s for s in path.segments if "step 4" in s.label]
    assert len(step4) == 2
    for s in step4:
        assert certify_segment(s.start, s.end, "function_preserving")[0] == "proved"
        assert certify_segment(s.start, s.end, "top_layer")[0] == "proved"
    # step 2 moves the top between the two halves while they still differ: not function preserving
    step2 = [s for s in path.segments if "step 2" in s.label][0]
    assert certify_segment(step2.start, step2.end, "function_preserving")[0] == "refuted"


def test_top_layer_claims_need_a_convex_loss():
    net = random_net(nets.Arch(in_shape=(3,), widths=(4, 2)), 0)
    path = lemma1(net, [[0, 1]], 2.0)
    hinge_cubed = Loss("cubed", lambda o, y: jnp.sum(o ** 3, axis=-1), convex_in_output=False)
    cert = certify(path, loss=hinge_cubed)
    assert not cert.ok and cert.no_refuted
    assert cert.verdicts[0].status == "measured" and "does not apply" in cert.verdicts[0].reason
    assert "convex" in cert.verdicts[0].reason and cert.verdicts[1].status == "proved"
    assert certify(path, loss=squared_error).ok and certify(path, loss=cross_entropy).ok


def test_measured_segments_are_never_ok_and_broken_junctions_refute():
    a = random_net(nets.Arch(in_shape=(3,), widths=(4, 2)), 0)
    b = random_net(nets.Arch(in_shape=(3,), widths=(4, 2)), 1)
    cert = certify(Path.straight(a, b))
    assert not cert.ok and cert.no_refuted and cert.counts() == {"proved": 0, "measured": 1, "refuted": 0}
    assert cert.headline().startswith("0 of 1 segments proved exactly; 1 measured")
    broken = Path([Segment(a, a, "function_preserving", "one"), Segment(b, b, "function_preserving", "two")],
                  check=False)
    cert = certify(broken)
    assert not cert.ok and not cert.no_refuted and cert.counts() == {"proved": 2, "measured": 0, "refuted": 0}
    assert "end points not stated" in cert.headline()
    assert "segments 0 and 1 do not meet" in cert.junctions[0] and "A_1[" in cert.junctions[0]
    with pytest.raises(ValueError, match="unknown claim kind"):
        certify_segment(a, b, "trust me")


def test_dead_closure_is_closed_upward():
    # 2 → 3 → 2 → 1: unit 2 of layer 2 has a zero column; unit 1 of layer 1 writes only into it.
    w1 = np.ones((3, 2))
    w2 = np.array([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    w2[1, 1] = 0.0
    w2 = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    w2[0, 1] = 0.0
    w2[1, 1] = 2.0  # unit 1 of layer 1 → unit 1 of layer 2 only
    w3 = np.array([[1.0, 0.0]])  # unit 1 of layer 2 is dead
    p = [(w1, None), (w2, None), (w3, None)]
    Z = dead_closure(p, p)
    assert Z[2].tolist() == [False, True]
    assert Z[1].tolist() == [False, True, True]  # unit 1 reaches only the dead unit; unit 2 has a zero column


def test_conv_certificates_report_channel_indices(x64):
    net = random_net(nets.Arch(in_shape=(5, 5, 2), widths=(4, 3, 2), n_conv=2, pool=(None, "max")), 0)
    path = lemma1(net, [[1, 2], [0]], 2.0)
    assert certify(path).ok
    k = 1  # base (b): zero the dropped rows of A_2 (a conv kernel); tamper a live row instead
    seg = path.segments[k]
    bad = Segment(seg.start, _tamper(seg.end, 1, "w", (0, 3, 1, 2)), seg.claim, seg.label)
    v = certify(path.replace_segment(k, bad, check=False)).verdicts[k]
    assert v.status == "refuted"
    assert (v.fault.layer, v.fault.row, v.fault.col) == (1, 0, 3) and v.fault.name == "A_2[0, 3, 1, 2]"


def test_class_sums_are_exact_and_order_free(x64):
    """Three live units computing the same feature: permuting their top columns is function preserving
    (float sums in another order could round differently), and a change hidden by float rounding
    ((1e16 + 1) − 1e16 == (1e16 + 0) − 1e16 in floating point) is caught."""
    arch = nets.Arch(in_shape=(2,), widths=(3, 1), bias=False)
    row = np.array([[0.3, -0.7]] * 3)

    def net(top):
        return nets.Net(arch, ({"w": jnp.asarray(row)}, {"w": jnp.asarray([top], dtype=jnp.float64)}))

    a, b, c = 1e16, 1.0, 1.0
    assert (a + b) + c != (b + c) + a  # the float sums differ with the order
    assert certify_segment(net([a, b, c]), net([b, c, a]), "copy_shift")[0] == "proved"
    status, _, fault = certify_segment(net([1e16, 1.0, -1e16]), net([1e16, 0.0, -1e16]), "function_preserving")
    assert status == "refuted" and fault.layer == 1 and (1, "w", (0, 1)) in fault.candidates()
    arch2 = nets.Arch(in_shape=(2,), widths=(2, 1), bias=False)
    two = lambda top: nets.Net(arch2, ({"w": jnp.asarray(row[:2])}, {"w": jnp.asarray([top], dtype=jnp.float64)}))
    assert certify_segment(two([1e16, 1.0]), two([1e16, 0.0]), "function_preserving")[0] == "refuted"
    assert certify_segment(two([1e16, 1.0]), two([1.0, 1e16]), "copy_shift")[0] == "proved"


def test_a_path_must_end_at_the_net_it_claims_to_connect(x64):
    """A last segment that moves the top layer somewhere else is a valid top-layer segment, but the path no
    longer connects θ_A to θ_B: refuted. The same for the start."""
    arch = nets.Arch(in_shape=(3,), widths=(6, 6, 2))
    a, b = random_net(arch, 0), random_net(arch, 1)
    path = theorem1(a, [[0, 1], [2, 3]], b, [[1, 4], [0, 5]], 2.0, compact=True)
    assert certify(path).ok
    last = path.segments[-1]
    moved = last.end.replace_layer(arch.depth - 1, w=np.asarray(last.end.layers[-1]["w"]) + 1.0)
    bad = path.replace_segment(path.n_segments - 1, Segment(last.start, moved, "top_layer", last.label))
    cert = certify(bad)
    assert cert.verdicts[-1].status == "proved"  # the segment itself is a fine top-layer move
    assert not cert.ok and not cert.no_refuted and "does not end at" in cert.endpoints[0]
    assert "A_3[" in cert.endpoints[0] and "does not connect" in cert.headline()
    first = path.segments[0]
    bad = path.replace_segment(0, Segment(first.start.replace_layer(0, w=np.asarray(first.start.layers[0]["w"]) * 2),
                                          first.end, first.claim, first.label), check=False)
    assert "does not start at" in certify(bad).endpoints[0]
