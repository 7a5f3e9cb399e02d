"""Theorem 4 (Kuditipudi et al. 2019, Appendix C): the proved lower bound on min over the crossing set S
(``proofs_check.thm4_barrier``), checked against an independent brute-force search, random points of S,
the loss at the straight line's crossing point, exact re-verification of every certificate and of the
tree's coverage; negative controls: labels a net in S fits exactly (bound 0), tampered certificates,
an incomplete tree, bad inputs."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from proofs_check import thm4_barrier as tb
from stability.core import evaluate, nets
from stability.core.losses import squared_error
from stability.theory import counterexample as ce

H2_GAP = 1e-8  # |proved L − brute-force U| for h = 2


@pytest.fixture(scope="module")
def run2():
    return tb.prove_barrier_bound(2, restarts=8, keep_certificates=True)


@pytest.fixture(scope="module")
def run3():
    return tb.prove_barrier_bound(3, restarts=8, keep_certificates=True)


def _brute_force_h2(seed: int = 0) -> float:
    """Independent of the module: dense random sampling of b ∈ R^4 (one unit, output weight 1), then
    Nelder–Mead from the 30 best samples. Returns the smallest loss found (an upper bound on min_S L)."""
    X, y = ce.dataset(2)
    rng = np.random.default_rng(seed)
    b = rng.uniform(-1.5, 1.5, size=(200_000, 4))
    loss = 0.5 * np.mean((np.maximum(b @ X.T, 0.0) - y) ** 2, axis=1)
    starts = b[np.argsort(loss)[:30]]

    def f(v):
        return 0.5 * np.mean((np.maximum(X @ v, 0.0) - y) ** 2)

    best = float(loss.min())
    for s in starts:
        r = minimize(f, s, method="Nelder-Mead", options={"xatol": 1e-12, "fatol": 1e-16, "maxiter": 20_000})
        best = min(best, float(r.fun))
    return best


def test_h2_bound_matches_brute_force(run2):
    assert run2.finished and run2.stop_reason == "closed" and run2.nodes_open == 0
    U = _brute_force_h2()
    assert run2.lower_bound <= U <= run2.lower_bound + H2_GAP, (run2.lower_bound, U)
    assert 0.0211 < run2.lower_bound < 0.0213  # the value computed outside the project: 0.0212
    assert run2.lower_bound <= run2.upper_bound <= run2.lower_bound + H2_GAP
    assert Fraction(run2.lower_bound) <= run2.lower_bound_exact  # rounded down


@pytest.mark.parametrize("which", ["run2", "run3"])
def test_minimiser_is_a_point_of_S_with_the_reported_loss(which, request, x64):
    r = request.getfixturevalue(which)
    X, y = ce.dataset(r.h)
    net = tb.crossing_net(r.minimiser, r.h)
    w = np.asarray(net.layers[1]["w"])[0]
    assert w.min() == 0.0 and np.all(w >= 0)  # in S
    assert ce.net_loss(net, X, y) == pytest.approx(float(r.upper_bound_exact), rel=1e-12)
    assert r.lower_bound <= ce.net_loss(net, X, y)
    assert tb.crossing_loss_exact(r.minimiser, X, y) == r.upper_bound_exact


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.05, 0.3, 1.0, 3.0]))
def test_bound_is_below_random_points_of_S(run2, run3, seed, scale):
    """Soundness spot check: 400 random points of S per h (random A, w ≥ 0 with a zero entry), and 400
    small perturbations of the minimiser (near the minimum, where a wrong bound would show)."""
    rng = np.random.default_rng(seed)
    for r in (run2, run3):
        h = r.h
        X, y = ce.dataset(h)
        A = rng.normal(size=(400, h, h + 2)) * scale
        w = np.abs(rng.normal(size=(400, h)))
        w[np.arange(400), rng.integers(0, h, 400)] = 0.0
        out = np.einsum("pu,piu->pi", w, np.maximum(np.einsum("id,pud->piu", X, A), 0.0))
        losses = 0.5 * np.mean((out - y) ** 2, axis=1)
        B = r.minimiser[None] + rng.normal(size=(400,) + r.minimiser.shape) * 1e-3 * scale
        near = 0.5 * np.mean((np.maximum(np.einsum("id,pjd->pij", X, B), 0.0).sum(-1) - y) ** 2, axis=1)
        assert losses.min() >= r.lower_bound and near.min() >= r.lower_bound
        # one of them through the library's own loss, to tie the formula above to net_loss
        net = nets.Net(ce.arch(h), ({"w": A[0]}, {"w": w[:1]}))
        assert ce.net_loss(net, X, y) == pytest.approx(losses[0], rel=1e-9)


def test_straight_line_crosses_S_at_half_and_its_loss_there_exceeds_the_bound(run2, run3, x64):
    """On the straight line teacher → student, min_u w_u(t) = −1 + 2t (h = 2) or min(−1 + 2t, t) vanishes at
    t = 1/2: the loss there (library forward pass) is ≥ the proved bound."""
    for r in (run2, run3):
        X, y = ce.dataset(r.h)
        t0, t1 = ce.teacher_minimizer(r.h, jnp.float64), ce.student_minimizer(r.h, jnp.float64)
        mid = evaluate.line_point((t0, t1), 0.5)
        w = np.asarray(mid.layers[1]["w"])[0]
        assert w.min() == 0.0 and np.all(w >= 0)
        res = evaluate.evaluate_line(t0, t1, [0.0, 0.5, 1.0], X, y, loss=squared_error)
        assert res.loss[0] == 0.0 and res.loss[2] == 0.0 and res.loss[1] >= r.lower_bound


@pytest.mark.parametrize("which", ["run2", "run3"])
def test_every_certificate_reverifies_and_the_tree_covers_every_pattern(which, request):
    r = request.getfixturevalue(which)
    got = [tb.verify_certificate(r.problem, c) for c in r.certificates]
    assert all(g == c.bound for g, c in zip(got, r.certificates))
    assert min(got) == r.lower_bound_exact
    statuses = [c.status for c in r.certificates]
    assert tb.check_coverage(r.problem, statuses)
    # negative control: drop the node holding the minimum pattern region -> coverage fails
    leafmost = max(range(len(statuses)), key=lambda i: sum(s != 0 for row in statuses[i] for s in row))
    assert not tb.check_coverage(r.problem, statuses[:leafmost] + statuses[leafmost + 1:])


def test_tampered_certificates_are_rejected(run2):
    c = min(run2.certificates, key=lambda c: c.bound)
    with pytest.raises(tb.CertificateError, match="exceeds"):
        tb.verify_certificate(run2.problem, dataclasses.replace(c, bound=c.bound + Fraction(1, 10**9)))
    lam = list(c.lam)
    lam[int(np.argmax(lam))] *= -1
    with pytest.raises(tb.CertificateError, match="negative multiplier"):
        tb.verify_certificate(run2.problem, dataclasses.replace(c, lam=tuple(lam)))
    with pytest.raises(tb.CertificateError, match="sizes"):
        tb.verify_certificate(run2.problem, dataclasses.replace(c, nu=c.nu[:-1]))
    # the same (ν, λ) scaled up is still a valid certificate, but of a weaker bound than claimed
    scaled = dataclasses.replace(c, nu=tuple(3 * v for v in c.nu), lam=tuple(3 * v for v in c.lam))
    with pytest.raises(tb.CertificateError, match="exceeds"):
        tb.verify_certificate(run2.problem, scaled)


def test_negative_control_labels_fit_by_a_net_in_S_give_bound_zero():
    """y' = Σ_{j=3}^{h+1} φ(f_j) is fitted exactly by h − 1 units; with no local search (witness = zero net)
    the certified bound must come out 0, while the true labels still give the positive bound."""
    h = 2
    X, y = ce.dataset(h)
    y_fit = np.maximum(X[:, 2:h + 1], 0).sum(axis=1)
    exact = np.zeros((h - 1, h + 2))
    exact[np.arange(h - 1), 2 + np.arange(h - 1)] = 1.0
    assert tb.crossing_loss_exact(exact, X, y_fit) == 0
    ctl = tb.crossing_set_minimum(X, y_fit, h - 1, witness="zero")
    assert ctl.finished and ctl.lower_bound == 0.0
    real = tb.crossing_set_minimum(X, y, h - 1, witness="zero")
    assert real.finished and real.lower_bound > 0.0211


def test_an_unfinished_search_reports_a_weaker_proved_bound(run3):
    r = tb.prove_barrier_bound(3, restarts=2, max_nodes=4)
    assert not r.finished and r.stop_reason == "max_nodes" and r.nodes_open > 0
    assert r.lower_bound <= run3.lower_bound
    assert "stopped" in r.claim() and "proved" in r.claim()
    d = r.to_dict()
    assert d["finished"] is False and d["lower_bound"] == r.lower_bound


@pytest.mark.parametrize("call, match", [
    (lambda: tb.prove_barrier_bound(1), "h must be >= 2"),
    (lambda: tb.prove_barrier_bound(2.5), "h must be an integer"),
    (lambda: tb.prove_barrier_bound(3, k=3), "k > h"),
    (lambda: tb.prove_barrier_bound(2, rel_gap=1.5), "rel_gap"),
    (lambda: tb.prove_barrier_bound(2, time_limit=0), "time_limit"),
    (lambda: tb.prove_barrier_bound(2, max_nodes=0), "max_nodes"),
    (lambda: tb.prove_barrier_bound(2, witness="best"), "witness"),
    (lambda: tb.prove_barrier_bound(2, witness=np.zeros((2, 4))), "witness"),
    (lambda: tb.crossing_set_minimum(np.eye(3), np.ones(3), 0), "units"),
    (lambda: tb.crossing_set_minimum(np.eye(3) * 0.5, np.ones(3), 1), "integer entries"),
    (lambda: tb.crossing_set_minimum(np.eye(3), np.ones(4), 1), "shape"),
    (lambda: tb.crossing_set_minimum(np.eye(3), np.array([1.0, np.nan, 0.0]), 1), "finite"),
    (lambda: tb.crossing_set_minimum(np.eye(3), np.ones(3), 1, witness="zero"), "no sample −a·e_c"),
    (lambda: tb.crossing_net(np.zeros((2, 4)), 2), "shape"),
])
def test_bad_inputs_are_refused_with_one_line_errors(call, match):
    with pytest.raises(ValueError, match=match) as e:
        call()
    assert "\n" not in str(e.value)


@settings(max_examples=200, deadline=None)
@given(x=st.floats(1e-12, 1e3, allow_nan=False), digits=st.integers(2, 8))
def test_printed_bounds_round_outward(x, digits):
    from stability.app.sections.counterexample import fmt_down, fmt_up

    assert float(fmt_down(x, digits)) <= x <= float(fmt_up(x, digits))
    assert len(fmt_down(x, digits).lstrip("0.").replace(".", "").split("e")[0]) <= digits


def test_report_rows_put_the_proved_bound_beside_the_curve_and_mark_uncomputed_h(run2):
    from stability.app.sections.counterexample import PROVED_HEADER, proved_rows

    evidence = {"per_h": [{"h": 2, "best_curve": {"barrier": 0.0237}}, {"h": 6, "best_curve": {"barrier": 0.004}}]}
    rows = proved_rows(evidence, {2: run2.to_dict()}, max_h=3)
    assert len(rows[0]) == len(PROVED_HEADER) and rows[0][0] == 2
    assert float(rows[0][1]) <= run2.lower_bound and float(rows[0][2]) >= run2.upper_bound
    assert float(rows[0][4]) >= 0.0237 - run2.lower_bound
    assert rows[1][0] == 6 and rows[1][1].startswith("not computed (h > 3")
