"""FGE / SSE schedules and collection rules, ensembles, temperature scaling, budget harness."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stability import data
from stability.curves import ensembles
from stability.core import nets
from stability.core.train import TrainConfig, fit


@pytest.mark.parametrize("c", [2, 4, 10])
def test_fge_schedule_matches_formula_at_every_iteration(c):
    a1, a2 = 0.05, 0.0005
    for i in range(1, 3 * c + 1):
        s = ((i - 1) % c + 1) / c
        want = (1 - 2 * s) * a1 + 2 * s * a2 if s <= 0.5 else (2 - 2 * s) * a2 + (2 * s - 1) * a1
        assert float(ensembles.fge_lr(i, c, a1, a2)) == pytest.approx(want, rel=1e-6, abs=1e-12)
        assert float(ensembles.fge_schedule(c, a1, a2)(i - 1)) == pytest.approx(want, rel=1e-6, abs=1e-12)
        assert ensembles.fge_collect(i, c) == (i % c == c // 2)
    # the rate reaches α2 exactly at the collection points and α1 at cycle ends
    assert float(ensembles.fge_lr(c // 2, c, a1, a2)) == pytest.approx(a2)
    assert float(ensembles.fge_lr(c, c, a1, a2)) == pytest.approx(a1)
    with pytest.raises(ValueError, match="even"):
        ensembles.fge_lr(1, 3, a1, a2)


def test_sse_schedule_restarts():
    s = ensembles.sse_schedule(100, 4, 0.2)
    assert float(s(0)) == pytest.approx(0.2) and float(s(25)) == pytest.approx(0.2)
    assert float(s(24)) < 0.01


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 5)) * 2
    probs = jax.nn.softmax(true_logits)
    y = np.array([rng.choice(5, p=np.asarray(p)) for p in probs])
    t = ensembles.fit_temperature(true_logits * 3.0, y)  # over-confident by 3×
    assert t == pytest.approx(3.0, rel=0.1)


def test_fge_collects_the_right_members_and_ensembles_beat_members():
    ds = data.load("digits").subset(n_train=600)
    make = lambda s: nets.mlp(jax.random.PRNGKey(s), (64, 32, 10))  # noqa: E731
    cfg = TrainConfig(steps=300, lr=0.1, log_every=100)
    pre, _ = fit(make(0), ds.x_train, ds.y_train, cfg, progress=False)
    members, hist = ensembles.fge(pre, ds.x_train, ds.y_train, TrainConfig(steps=80, log_every=40), cycle=20,
                                  alpha1=0.05, alpha2=0.005, progress=False)
    assert len(members) == 4  # collected after iterations 10, 30, 50, 70
    assert not np.array_equal(np.asarray(members[0].layers[0]["w"]), np.asarray(members[1].layers[0]["w"]))
    sse, _ = ensembles.snapshot_ensemble(make(1), ds.x_train, ds.y_train, TrainConfig(steps=200, lr=0.1,
                                         log_every=100), cycles=2, progress=False)
    assert len(sse) == 2
    p = ensembles.ensemble_probs(members, ds.x_test)
    np.testing.assert_allclose(np.asarray(p.sum(-1)), 1.0, rtol=1e-5)
    ens = ensembles.ensemble_metrics(p, ds.y_test)
    single = [ensembles.ensemble_metrics(ensembles.ensemble_probs([m], ds.x_test), ds.y_test) for m in members]
    assert ens["nll"] <= np.mean([s["nll"] for s in single]) + 1e-6  # Jensen: averaging never hurts NLL on average


def test_compare_budgets_table_layout():
    ds = data.load("digits").subset(n_train=400)
    rows = ensembles.compare_budgets(lambda s: nets.mlp(jax.random.PRNGKey(s), (64, 16, 10)), ds,
                                     TrainConfig(steps=80, lr=0.1, log_every=40), budgets=[1, 2], fge_cycle=10,
                                     fge_alphas=(0.05, 0.005))
    assert [(r["budget"], r["method"]) for r in rows] == [(b, m) for b in (1, 2) for m in ("Ind", "SSE", "FGE")]
    assert all(0 <= r["error"] <= 100 and np.isfinite(r["nll"]) for r in rows)
    assert [r["members"] for r in rows if r["method"] == "Ind"] == [1, 2]
    # a kB budget ensembles k independent runs of each method (Table 1 protocol): members double from 1B to 2B
    for method in ("SSE", "FGE"):
        one, two = [r["members"] for r in rows if r["method"] == method]
        assert two == 2 * one and one >= 1
    with pytest.raises(ValueError, match="less than one cycle"):
        ensembles.compare_budgets(lambda s: nets.mlp(jax.random.PRNGKey(s), (64, 16, 10)), ds,
                                  TrainConfig(steps=20, lr=0.1), budgets=[1], fge_cycle=10, fge_alphas=(0.05, 0.005))


def test_curve_ensemble_and_figure4_pair_ensembles():
    from stability.curves import curve as curves
    from stability.core import evaluate

    ds = data.load("digits").subset(n_train=500)
    cfg = TrainConfig(steps=200, lr=0.1, log_every=100)
    a, _ = fit(nets.mlp(jax.random.PRNGKey(0), (64, 32, 10)), ds.x_train, ds.y_train, cfg, progress=False)
    b, _ = fit(nets.mlp(jax.random.PRNGKey(1), (64, 32, 10)), ds.x_train, ds.y_train, cfg, progress=False)
    curve = curves.polychain(a, b, bends=1)
    x_val, y_val, x_te, y_te = ds.x_test[:150], ds.y_test[:150], ds.x_test[150:], ds.y_test[150:]
    ens = ensembles.curve_ensemble(curves.curve_point, curve, x_te, y_te, n=50, x_val=x_val, y_val=y_val)
    # the 0-bend-equivalent chain (bend on the segment) → ensemble of segment points: a valid probability model
    assert ens["members"] == 50 and 0 <= ens["error"] <= 100 and ens["temperature"] > 0
    val_logits = ensembles._point_logits(curves.curve_point, curve, np.linspace(0, 1, 50), x_val, nets.apply)
    nll_at = lambda t: ensembles.ensemble_metrics(jnp.mean(jax.nn.softmax(val_logits / t, -1), 0), y_val)["nll"]  # noqa
    assert nll_at(ens["temperature"]) <= nll_at(1.0) + 1e-6  # the fitted T is no worse than T = 1 on held-out data
    assert np.isfinite(ens["calibrated_nll"])
    ts = np.linspace(0, 1, 5)
    seg = ensembles.pair_ensemble_along(evaluate.line_point, (a, b), a, ts, x_te, y_te)
    single_a = ensembles.ensemble_metrics(ensembles.ensemble_probs([a], x_te), y_te)["error"]
    assert seg["ensemble_error"][0] == pytest.approx(single_a)  # {a, a} is a
    u = ensembles.random_unit_direction(jax.random.PRNGKey(3), a)
    assert float(sum(jnp.sum(l * l) for l in jax.tree_util.tree_leaves(u))) == pytest.approx(1.0, rel=1e-5)
    rnd = ensembles.pair_ensemble_along(ensembles.random_direction_point, (a, b, u), a, ts, x_te, y_te)
    assert rnd["point_error"][0] == pytest.approx(single_a)
    assert rnd["point_error"][-1] > seg["point_error"][-1]  # far along a random ray the net is broken
