"""Garipov et al. as published: the curve regulariser on φ(t) (hand-derived gradients), the paper's schedule at
every step, the penalty's own minimiser, the L2 column of the curve table, FGE's hand-over from the normal run's
75% state, and BatchNorm recompute / curve training for flax modules with a ``training=`` keyword and Dropout."""

from __future__ import annotations

import dataclasses
import functools
from types import SimpleNamespace

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from stability.core import evaluate, nets
from stability.core.train import GaripovSchedule, TrainConfig, TrainState, fit, make_optimizer, make_schedule
from stability.curves import batchnorm, ensembles, metrics
from stability.curves import curve as curves

# --------------------------------------------------------------------------- the curve objective (eq. 3 + L2 on φ(t))


def _linear(p, x):
    return x @ p["w"].T


def _setup(kind: str):
    rng = np.random.default_rng(3)
    a = {"w": jnp.asarray(rng.normal(size=(3, 4)))}
    b = {"w": jnp.asarray(rng.normal(size=(3, 4)))}
    x = jnp.asarray(rng.normal(size=(8, 4)))
    y = jnp.asarray(rng.integers(0, 3, 8))
    make = curves.bezier if kind == "bezier" else curves.polychain
    curve = curves.perturb_bends(make(a, b, 1), jax.random.PRNGKey(1), 0.5)
    return a, b, curve, x, y


def _hand_gradient(kind, a, b, theta, x, y, t, wd, penalty):
    """Hand-derived: φ(t) = c_a a + c θ + c_b b; ∂/∂θ [CE(x φᵀ) + ½wd‖φ‖²] = c (∇_W CE + wd φ) (point), or
    c ∇_W CE + wd θ (bends); ∇_W CE = (softmax(x Wᵀ) − onehot(y))ᵀ x / N."""
    if kind == "bezier":
        ca, c, cb = (1 - t) ** 2, 2 * t * (1 - t), t ** 2
    elif t < 0.5:
        ca, c, cb = 1 - 2 * t, 2 * t, 0.0
    else:
        ca, c, cb = 0.0, 2 - 2 * t, 2 * t - 1
    w = ca * np.asarray(a) + c * np.asarray(theta) + cb * np.asarray(b)
    z = np.asarray(x) @ w.T
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(3)[np.asarray(y)]
    g_w = (p - onehot).T @ np.asarray(x) / len(y)
    return c * (g_w + wd * w) if penalty == "point" else c * g_w + wd * np.asarray(theta)


@functools.partial(jax.jit, static_argnames=("wd", "pen"))
def _objective_grad(curve, x, y, t, wd, pen):
    """∂/∂bends of :func:`curves.curve_objective` (only the bends: the ends are fixed)."""
    return jax.grad(lambda c: curves.curve_objective(c, _linear, x, y, t, weight_decay=wd, penalty=pen))(curve).bends


@pytest.mark.parametrize("kind", ["bezier", "polychain"])
def test_objective_gradient_is_the_hand_derived_gradient_of_loss_plus_half_wd_phi_squared(x64, kind):
    a, b, curve, x, y = _setup(kind)
    wd = 0.1
    for t in (0.3, 0.7):
        grads = {}
        for pen in ("point", "bends"):
            g = _objective_grad(curve, x, y, jnp.float64(t), wd, pen)
            hand = _hand_gradient(kind, a["w"], b["w"], curve.bends["w"][0], x, y, t, wd, pen)
            np.testing.assert_allclose(g["w"][0], hand, rtol=1e-12, atol=1e-14)
            grads[pen] = np.asarray(g["w"][0])
        assert not np.allclose(grads["point"], grads["bends"], rtol=1e-3)  # the two penalties differ


def test_one_training_step_descends_the_point_penalised_objective_at_the_sampled_t(x64):
    """train_curve's default penalty is the point one: one plain-SGD step on the full batch moves the bend by
    −lr × the hand-derived gradient at the t drawn from the seed (t = U(0,1) from split(PRNGKey(seed))[1])."""
    a, b, curve, x, y = _setup("polychain")
    cfg = TrainConfig(steps=1, batch_size=8, optimizer="sgd", lr=0.5, schedule="constant", weight_decay=0.2, seed=4,
                      log_every=1)
    trained, _ = curves.train_curve(curve, _linear, x, y, cfg, progress=False)
    _, sub = jax.random.split(jax.random.PRNGKey(cfg.seed))
    t = float(jax.random.uniform(sub, (1,), jnp.float64)[0])
    theta = np.asarray(curve.bends["w"][0])
    for pen, check in (("point", True), ("bends", False)):
        want = theta - cfg.lr * _hand_gradient("polychain", a["w"], b["w"], theta, x, y, t, cfg.weight_decay, pen)
        assert np.allclose(trained.bends["w"][0], want, rtol=1e-10, atol=1e-12) is check
    with pytest.raises(ValueError, match="penalty"):
        curves.train_curve(curve, _linear, x, y, cfg, penalty="ends", progress=False)


# --------------------------------------------------------------------------- the paper's optimiser and schedule


def _paper_lr(base_lr: float, epoch: int, total_epochs: float) -> float:
    """The official code's ``learning_rate_schedule`` (Garipov et al., train.py), transcribed."""
    alpha = epoch / total_epochs
    if alpha <= 0.5:
        factor = 1.0
    elif alpha <= 0.9:
        factor = 1.0 - (alpha - 0.5) / 0.4 * 0.99
    else:
        factor = 0.01
    return factor * base_lr


def test_default_curve_optimiser_is_momentum_sgd_with_the_papers_schedule_at_every_step():
    cfg = curves.DEFAULT_CURVE_CONFIG
    assert (cfg.optimizer, cfg.momentum, cfg.schedule) == ("momentum", 0.9, "garipov") and cfg.weight_decay > 0
    sched = make_schedule(cfg)
    got = np.asarray(jax.vmap(sched)(jnp.arange(cfg.steps)))
    want = np.array([_paper_lr(cfg.lr, k + 1, cfg.steps) for k in range(cfg.steps)])  # one "epoch" per step
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * cfg.lr)  # float32 rounding of 1 − 0.99·(α − ½)/0.4
    assert got[0] == pytest.approx(cfg.lr) and got[-1] == pytest.approx(0.01 * cfg.lr)
    # epoch granularity, as the official code: constant within an epoch
    s = GaripovSchedule(0.2, 7 * 13, steps_per_epoch=13)
    got = np.asarray(jax.vmap(s)(jnp.arange(7 * 13)))
    np.testing.assert_allclose(got, [_paper_lr(0.2, k // 13 + 1, 7) for k in range(7 * 13)], rtol=1e-6, atol=2e-7)
    assert GaripovSchedule(0.2, 91, 13) == s and hash(GaripovSchedule(0.2, 91, 13)) == hash(s)
    # the optimizer train_curve builds from the default: v ← 0.9 v + g, w ← w − lr_k v (constant gradient g = 1)
    opt = make_optimizer(dataclasses.replace(cfg, steps=50))

    def step(carry, _):
        w, state = carry
        u, state = opt.update(jnp.ones(()), state, w)
        return (optax.apply_updates(w, u), state), None

    (w, _), _ = jax.lax.scan(step, (jnp.zeros(()), opt.init(jnp.zeros(()))), None, length=50)
    v, hand = 0.0, 0.0
    for k in range(50):
        v = 0.9 * v + 1.0
        hand -= _paper_lr(cfg.lr, k + 1, 50) * v
    assert float(w) == pytest.approx(hand, rel=1e-5)
    with pytest.raises(ValueError, match="steps"):
        GaripovSchedule(0.1, 0)


# --------------------------------------------------------------------------- the penalty's own minimiser


@jax.jit
def _sq_norm_grad(curve: curves.Curve):
    """∂/∂bends of E_t ‖φ(t)‖², by Gauss–Legendre quadrature on each polychain piece (exact for these polynomials)."""
    nodes, weights = np.polynomial.legendre.leggauss(8)
    pieces = curve.order if curve.kind == "polychain" else 1
    ts = np.concatenate([(k + (nodes + 1) / 2) / pieces for k in range(pieces)])
    ws = np.tile(weights / (2 * pieces), pieces)

    def expected(bends):
        pts = curves.points(dataclasses.replace(curve, bends=bends), jnp.asarray(ts))
        return jnp.dot(jnp.asarray(ws), sum(jnp.sum(v.reshape(len(ts), -1) ** 2, 1) for v in jax.tree_util.tree_leaves(pts)))

    return jax.grad(expected)(curve.bends)


def test_penalty_minimiser_closed_forms_and_stationarity(x64):
    rng = np.random.default_rng(0)
    a, b = ({"w": jnp.asarray(rng.normal(size=(2, 3)))} for _ in range(2))
    np.testing.assert_allclose(curves.penalty_minimiser(curves.bezier(a, b, 1)).bends["w"][0], -0.75 * (a["w"] + b["w"]))
    np.testing.assert_allclose(curves.penalty_minimiser(curves.polychain(a, b, 1)).bends["w"][0], -0.25 * (a["w"] + b["w"]))
    assert not np.any(curves.penalty_minimiser(curves.bezier(a, b, 1), "bends").bends["w"])
    for make in (curves.bezier, curves.polychain):
        c = curves.penalty_minimiser(make(a, b, 2))
        assert float(jnp.max(jnp.abs(_sq_norm_grad(c)["w"]))) < 1e-12
        moved = curves.perturb_bends(c, jax.random.PRNGKey(0), 0.1)  # negative control
        assert float(jnp.max(jnp.abs(_sq_norm_grad(moved)["w"]))) > 1e-3


# --------------------------------------------------------------------------- the paper's loss column


def test_curve_table_reports_the_plain_loss_and_the_papers_loss_plus_l2(x64):
    arch = nets.Arch(in_shape=(3,), widths=(4, 2))
    a, b = (nets.mlp(jax.random.PRNGKey(s), (3, 4, 2), dtype=jnp.float64) for s in (0, 1))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(10, 3)))
    y = jnp.asarray(np.arange(10) % 2)
    assert a.arch == arch
    wd = 0.3
    tab = metrics.curve_table(evaluate.line_point, (a, b), (x, y), (x, y), n=5, weight_decay=wd)
    row, loss = tab["row"], np.asarray(tab["train"]["loss"])
    sq = [sum(float(jnp.sum(v ** 2)) for v in jax.tree_util.tree_leaves(nets.lerp(a, b, t))) for t in tab["train"]["t"]]
    np.testing.assert_allclose(tab["sq_norm"], sq, rtol=1e-12)
    with_l2 = loss + 0.5 * wd * np.asarray(sq)
    assert row[f"{metrics.L2_LOSS} Max"] == pytest.approx(with_l2.max(), rel=1e-12)
    assert row[f"{metrics.L2_LOSS} Min"] == pytest.approx(with_l2.min(), rel=1e-12)
    assert row["train loss Max"] == pytest.approx(loss.max(), rel=1e-12) != row[f"{metrics.L2_LOSS} Max"]
    plain = metrics.curve_table(evaluate.line_point, (a, b), (x, y), (x, y), n=5)["row"]
    assert plain[f"{metrics.L2_LOSS} Max"] == plain["train loss Max"]
    assert set(metrics.PAPER_TABLE_COLUMNS) <= set(row)


# --------------------------------------------------------------------------- FGE from the normal run's 75% state


@pytest.fixture(scope="module")
def digits():
    """A small 64-feature, 10-class data set (random inputs, labels from a random linear map)."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(456, 64)).astype(np.float32)
    y = np.argmax(x @ rng.normal(size=(64, 10)), 1).astype(np.int32)
    return SimpleNamespace(x_train=jnp.asarray(x[:256]), y_train=jnp.asarray(y[:256]), x_test=jnp.asarray(x[256:]),
                           y_test=jnp.asarray(y[256:]))


def _make(seed: int) -> nets.Net:
    return nets.mlp(jax.random.PRNGKey(seed), (64, 16, 10))


def test_fit_continues_from_a_train_state_as_one_uninterrupted_run(x64, digits):
    x, y = jnp.asarray(digits.x_train, jnp.float64), jnp.asarray(digits.y_train)
    net = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), _make(0))
    cfg = TrainConfig(steps=20, batch_size=x.shape[0], optimizer="momentum", lr=0.1, schedule="cosine",
                      weight_decay=1e-3, log_every=5)
    whole, _ = fit(net, x, y, cfg, progress=False)
    _, hist = fit(net, x, y, cfg, progress=False, snapshot_at=[10], snapshot_state=True)
    state = hist.snapshots[0]
    assert isinstance(state, TrainState) and state.step == 10
    rest, sched = dataclasses.replace(cfg, steps=10), make_schedule(cfg)  # one schedule object: one compile
    cont, h2 = fit(state, x, y, rest, schedule=sched, progress=False)
    for p, q in zip(jax.tree_util.tree_leaves(cont), jax.tree_util.tree_leaves(whole)):
        np.testing.assert_allclose(p, q, rtol=1e-10, atol=1e-12)
    assert h2.lr[-1] == pytest.approx(float(make_schedule(cfg)(19)))
    fresh = TrainState(state.params, make_optimizer(cfg).init(state.params), 10)  # momentum reset: a different run
    other, _ = fit(fresh, x, y, rest, schedule=sched, progress=False)
    assert not np.allclose(other.A(1), whole.A(1), rtol=1e-6)
    with pytest.raises(ValueError, match="optimizer state"):
        fit(state, x, y, dataclasses.replace(rest, optimizer="adam"), progress=False)


def test_fge_hands_over_from_the_normal_runs_75_percent_state_with_its_momentum(digits):
    cfg = TrainConfig(steps=40, batch_size=64, optimizer="momentum", lr=0.05, schedule="cosine", seed=0, log_every=10)
    rows, runs = ensembles.compare_budgets(_make, digits, cfg, budgets=(1,), fge_cycle=10, fge_alphas=(0.01, 5e-4),
                                           return_members=True)
    assert {r["method"] for r in rows} == {"Ind", "SSE", "FGE"} and runs.pre_steps == 30
    state = runs.handover[0]
    assert state.step == 30
    # the learning rate at the hand-over is the normal cosine schedule's at step 30 of 40 — not annealed
    want_lr = 0.05 * (1 + np.cos(np.pi * 29 / 40)) / 2
    assert runs.handover_lr[0] == pytest.approx(want_lr, rel=1e-6) and want_lr > 0.1 * 0.05
    # the optimizer state is the normal run's at step 30: momentum buffer and schedule counter
    full, hist = fit(_make(0), digits.x_train, digits.y_train, cfg, progress=False, snapshot_at=[30],
                     snapshot_state=True)
    ref = hist.snapshots[0]
    for p, q in zip(jax.tree_util.tree_leaves(state.opt_state), jax.tree_util.tree_leaves(ref.opt_state)):
        np.testing.assert_array_equal(p, q)
    trace = state.opt_state[0].trace
    assert float(jnp.max(jnp.abs(trace.A(1)))) > 0  # momentum is carried, not reset
    assert int(state.opt_state[1].count) == 30
    # the Ind member is that same run completed; the squeezed-schedule pre-training (the old protocol) differs
    np.testing.assert_array_equal(runs.members["Ind"][0][0].A(1), full.A(1))
    squeezed, _ = fit(_make(0), digits.x_train, digits.y_train, dataclasses.replace(cfg, steps=30), progress=False)
    assert not np.allclose(squeezed.A(1), state.params.A(1))
    # FGE's first step runs at α1's end of the cycle, counted from the hand-over
    sched = ensembles.fge_schedule(10, 0.01, 5e-4, start=30)
    assert float(sched(30)) == pytest.approx(float(ensembles.fge_lr(1, 10, 0.01, 5e-4)))
    assert float(sched(34)) == pytest.approx(5e-4)  # the cycle's minimum, where FGE collects (its 5th step)
    assert len(runs.members["FGE"][0]) == 1


# --------------------------------------------------------------------------- BatchNorm for any flax module


class TrainingKwNet(nn.Module):
    """A BN net whose mode keyword is ``training=``."""

    @nn.compact
    def __call__(self, x, training: bool = False):
        x = nn.Dense(5)(x)
        x = nn.BatchNorm(use_running_average=not training, momentum=0.8)(x)
        return nn.Dense(3)(nn.relu(x))


class DropoutNet(nn.Module):
    """Dense → BN → ReLU → Dropout → Dense → BN → Dense: the second BN's statistics depend on the dropout mask."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.BatchNorm(use_running_average=not train)(nn.Dense(6)(x)))
        x = nn.Dropout(0.5, deterministic=not train)(x)
        x = nn.BatchNorm(use_running_average=not train)(nn.Dense(4)(x))
        return nn.Dense(3)(nn.relu(x))


@pytest.fixture(scope="module")
def bn_data():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(64, 4)) + 1.0, jnp.float32)
    y = jnp.asarray((x[:, 0] > 1).astype(np.int32) + (x[:, 1] > 1.5).astype(np.int32))
    return x, y


def test_bn_recompute_and_curve_training_for_a_training_keyword_module(bn_data):
    x, y = bn_data
    module = TrainingKwNet()
    v = [module.init(jax.random.PRNGKey(s), x[:2]) for s in (0, 1)]
    with pytest.raises(ValueError, match="train_kw='train'"):  # today's convention does not fit: a clear error
        batchnorm.BNTrain(module)(v[0]["params"], x)
    model = batchnorm.FlaxModel(module, train_kw="training")
    theta = batchnorm.bn_point_theta(None, model, v[0], x, batch_size=16)
    for leaf in jax.tree_util.tree_leaves(theta[2]):
        np.testing.assert_allclose(leaf, 0.8, rtol=1e-5)
    stats = batchnorm.recompute_batch_stats(model, v[0]["params"], theta[2], theta[1])["batch_stats"]
    k, b = v[0]["params"]["Dense_0"]["kernel"], v[0]["params"]["Dense_0"]["bias"]
    h = np.asarray(x @ k + b, np.float64).reshape(4, 16, -1)
    np.testing.assert_allclose(stats["BatchNorm_0"]["mean"], h.mean(1).mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(stats["BatchNorm_0"]["var"], h.var(1).mean(0), rtol=1e-4, atol=1e-6)
    cfg = TrainConfig(steps=10, batch_size=32, optimizer="momentum", lr=0.05, schedule="garipov", weight_decay=1e-3,
                      log_every=10)
    curve = curves.bezier(v[0]["params"], v[1]["params"], 1)
    trained, hist = curves.train_curve(curve, batchnorm.BNTrain(model), x, y, cfg, progress=False)
    assert np.isfinite(hist.loss).all() and hist.lr[-1] == pytest.approx(0.01 * 0.05)
    assert not np.allclose(trained.bends["Dense_0"]["kernel"], curve.bends["Dense_0"]["kernel"])
    mid = batchnorm.BNPoint(curves.curve_point, model)((trained,) + theta[1:], jnp.float32(0.5))
    assert set(mid) == {"params", "batch_stats"}
    assert np.isfinite(batchnorm.BNEval(model)(mid, x)).all()
    with pytest.raises(ValueError, match="keyword"):
        batchnorm.FlaxModel(module, train_kw="is_training")


def test_bn_recompute_and_curve_training_for_a_dropout_module(bn_data):
    x, y = bn_data
    module = DropoutNet()
    v = [module.init(jax.random.PRNGKey(s), x[:2]) for s in (0, 1)]
    import flax.errors

    with pytest.raises(flax.errors.InvalidRngError):  # without an rng stream dropout cannot run
        batchnorm.bn_point_theta(None, module, v[0], x, batch_size=16)
    model = batchnorm.FlaxModel(module, rngs=("dropout",))
    assert batchnorm.BNTrain(model).takes_rng and not batchnorm.BNTrain(module).takes_rng
    theta = batchnorm.bn_point_theta(None, model, v[0], x, batch_size=16)
    for leaf in jax.tree_util.tree_leaves(theta[2]):  # the two probes share a mask: the momentum reads exactly
        np.testing.assert_allclose(leaf, 0.99, rtol=1e-5)
    p = v[0]["params"]
    recompute = jax.jit(lambda key: batchnorm.recompute_batch_stats(model, p, theta[2], theta[1], key)["batch_stats"])
    s0, s0b, s1 = (recompute(jax.random.PRNGKey(k)) for k in (0, 0, 1))
    np.testing.assert_array_equal(s0["BatchNorm_1"]["mean"], s0b["BatchNorm_1"]["mean"])  # deterministic per key
    np.testing.assert_allclose(s0["BatchNorm_0"]["mean"], s1["BatchNorm_0"]["mean"], rtol=1e-5)  # before dropout
    assert not np.allclose(s0["BatchNorm_1"]["mean"], s1["BatchNorm_1"]["mean"])  # after dropout: the mask matters
    # training draws a fresh key per step: the same seed repeats, another seed differs
    cfg = TrainConfig(steps=6, batch_size=32, optimizer="momentum", lr=0.05, schedule="constant", log_every=6)
    curve = curves.polychain(v[0]["params"], v[1]["params"], 1)
    c1, h1 = curves.train_curve(curve, batchnorm.BNTrain(model), x, y, cfg, progress=False)
    c2, _ = curves.train_curve(curve, batchnorm.BNTrain(model), x, y, cfg, progress=False)
    assert np.isfinite(h1.loss).all()
    for q, r in zip(jax.tree_util.tree_leaves(c1.bends), jax.tree_util.tree_leaves(c2.bends)):
        np.testing.assert_array_equal(q, r)
    logits = batchnorm.BNEval(model)({"params": p, "batch_stats": s0}, x)  # inference: dropout off, no rng needed
    np.testing.assert_array_equal(logits, batchnorm.BNEval(model)({"params": p, "batch_stats": s0}, x))
