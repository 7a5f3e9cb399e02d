"""BatchNorm recompute: per-batch statistics averaged, vmapped over t, matching a per-t loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stability.curves import batchnorm
from stability.core import evaluate
from stability.core.train import TrainConfig
from stability.curves.flax_models import VGG, MLPBN


@pytest.fixture
def model_and_data(x64):
    model = MLPBN(widths=(6, 5), classes=3)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(64, 4)) + 2.0)
    y = jnp.asarray(rng.integers(0, 3, 64))
    f64 = lambda v: jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), v)  # noqa: E731
    v0 = f64(model.init(jax.random.PRNGKey(0), x[:2]))
    v1 = f64(model.init(jax.random.PRNGKey(1), x[:2]))
    return model, x, y, v0, v1


def test_momentum_probe_reads_the_modules_momentum(model_and_data):
    model, x, _, v0, _ = model_and_data
    m = batchnorm.bn_momentum(model, v0, x[:16])
    assert set(m) == {"batch_stats"}
    for leaf in jax.tree_util.tree_leaves(m):
        np.testing.assert_allclose(leaf, 0.9, rtol=1e-12)


def test_recompute_matches_direct_batch_means(model_and_data):
    model, x, _, v0, _ = model_and_data
    theta = batchnorm.bn_point_theta(None, model, v0, x, batch_size=16)
    stats = batchnorm.recompute_batch_stats(model, v0["params"], theta[2], theta[1])["batch_stats"]
    # first BN layer normalises Dense_0(x): its statistics are averages of per-batch moments
    k, b = v0["params"]["Dense_0"]["kernel"], v0["params"]["Dense_0"]["bias"]
    h = np.asarray(x @ k + b).reshape(4, 16, -1)
    np.testing.assert_allclose(stats["BatchNorm_0"]["mean"], h.mean(1).mean(0), rtol=1e-10)
    np.testing.assert_allclose(stats["BatchNorm_0"]["var"], h.var(1).mean(0), rtol=1e-10)


def test_recompute_at_t0_reproduces_the_end_models_statistics_and_vmaps_over_t(model_and_data):
    model, x, y, v0, v1 = model_and_data
    theta0 = batchnorm.bn_point_theta(None, model, v0, x, batch_size=16)
    end_stats = batchnorm.recompute_batch_stats(model, v0["params"], theta0[2], theta0[1])["batch_stats"]
    point = batchnorm.BNPoint(evaluate.line_point, model)
    theta = ((v0["params"], v1["params"]), theta0[1], theta0[2])
    at0 = point(theta, jnp.float64(0.0))
    for a, b in zip(jax.tree_util.tree_leaves(at0["batch_stats"]), jax.tree_util.tree_leaves(end_stats)):
        np.testing.assert_array_equal(a, b)
    ts = np.linspace(0, 1, 5)
    res = evaluate.evaluate(point, theta, ts, x, y, apply_fn=batchnorm.BNEval(model))
    loop = []
    for t in ts:
        vars_t = point(theta, jnp.float64(t))
        logits = model.apply(vars_t, x, train=False)
        loop.append(float(jnp.mean(jax.nn.logsumexp(logits, -1) - logits[jnp.arange(64), y])))
    np.testing.assert_allclose(res.loss, loop, rtol=1e-10)


def test_train_mode_apply_and_vgg_model():
    model = VGG(config=(4, "M", 8, "M"), classes=3)
    x = jnp.ones((2, 8, 8, 3))
    v = model.init(jax.random.PRNGKey(0), x)
    out = batchnorm.BNTrain(model)(v["params"], x)
    assert out.shape == (2, 3)
    with pytest.raises(ValueError, match="full batch"):
        batchnorm.bn_point_theta(None, model, v, x, batch_size=16)


def test_curve_training_and_evaluation_on_a_batchnorm_model():
    """A Bezier curve between two BN nets: trained with minibatch statistics, evaluated with the
    statistics recomputed at every t (vmapped), ends reproduce each end model's recomputed statistics."""
    from stability.curves import curve as curves

    model = MLPBN(widths=(16,), classes=3)
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(256, 4)), jnp.float32)
    y = jnp.asarray((x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32))
    v = [model.init(jax.random.PRNGKey(s), x[:2]) for s in (0, 1)]
    curve = curves.bezier(v[0]["params"], v[1]["params"], 1)
    cfg = TrainConfig(steps=150, batch_size=64, optimizer="adam", lr=1e-2, log_every=50)
    trained, hist = curves.train_curve(curve, batchnorm.BNTrain(model), x, y, cfg, progress=False)
    assert hist.loss[-1] < hist.loss[0]
    theta = batchnorm.bn_point_theta(trained, model, v[0], x, batch_size=64)
    point = batchnorm.BNPoint(curves.curve_point, model)
    res = evaluate.evaluate(point, theta, np.linspace(0, 1, 7), x, y, apply_fn=batchnorm.BNEval(model))
    before = evaluate.evaluate(point, (curve,) + theta[1:], np.linspace(0, 1, 7), x, y,
                               apply_fn=batchnorm.BNEval(model))
    assert res.loss[1:-1].max() < before.loss[1:-1].max()  # the interior improved
    assert res.loss[0] == before.loss[0] and res.loss[-1] == before.loss[-1]  # the (untrained) ends did not move
    end_stats = batchnorm.recompute_batch_stats(model, v[1]["params"], theta[2], theta[1])["batch_stats"]
    at1 = point(theta, jnp.float32(1.0))["batch_stats"]
    for p, q in zip(jax.tree_util.tree_leaves(at1), jax.tree_util.tree_leaves(end_stats)):
        np.testing.assert_array_equal(p, q)
