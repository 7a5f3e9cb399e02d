"""Training (determinism, dropout, schedules) and checkpoints (atomic, bit-exact, clear errors)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stability.core import checkpoint
from stability import data
from stability.core import nets
from stability.core.train import TrainConfig, dropout_scales, fit, make_schedule


def leaves(net):
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(net)]


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def test_training_learns_digits_and_is_deterministic(digits):
    cfg = TrainConfig(steps=300, lr=0.1, log_every=100, seed=3, dropout=0.1)
    net0 = nets.mlp(jax.random.PRNGKey(0), (64, 32, 10))
    a, hist = fit(net0, digits.x_train, digits.y_train, cfg, x_test=digits.x_test, y_test=digits.y_test,
                  progress=False)
    b, _ = fit(net0, digits.x_train, digits.y_train, cfg, progress=False)
    assert all(np.array_equal(u, v) for u, v in zip(leaves(a), leaves(b)))
    assert hist.step == [100, 200, 300]
    assert hist.loss[-1] < hist.loss[0] and hist.test_acc[-1] > 0.85
    c, _ = fit(net0, digits.x_train, digits.y_train, TrainConfig(steps=300, lr=0.1, log_every=100, seed=4),
               progress=False)
    assert not np.array_equal(leaves(a)[0], leaves(c)[0])


def test_conv_channelwise_dropout_masks_whole_channels():
    net = nets.conv(jax.random.PRNGKey(0), (6, 6, 1), (8, 8), 3, pool=("max", None))
    x = jnp.ones((4, 6, 6, 1))
    scales = dropout_scales(jax.random.PRNGKey(1), net, x, (0.5, 0.0))
    assert scales[0].shape == (4, 1, 1, 8) and scales[1] is None
    assert set(np.unique(np.asarray(scales[0]))) <= {0.0, 2.0}
    elementwise = dropout_scales(jax.random.PRNGKey(1), net, x, (0.5, 0.0), channelwise=False)
    assert elementwise[0].shape == (4, 6, 6, 8)
    mlp = nets.mlp(jax.random.PRNGKey(0), (5, 6, 2))
    assert dropout_scales(jax.random.PRNGKey(1), mlp, jnp.ones((3, 5)), (0.25,))[0].shape == (3, 6)


def test_train_conv_net_runs(digits):
    img = digits.image()
    net = nets.conv(jax.random.PRNGKey(0), img.input_shape, (4,), 10, pool="max")
    out, hist = fit(net, img.x_train[:256], img.y_train[:256],
                    TrainConfig(steps=40, lr=0.05, optimizer="momentum", log_every=20, dropout=0.25),
                    progress=False)
    assert np.isfinite(hist.loss).all() and out.arch == net.arch


def test_schedules_and_bad_config():
    cfg = TrainConfig(steps=100, lr=1.0, schedule="step")
    s = make_schedule(cfg)
    assert float(s(0)) == 1.0 and float(s(60)) == pytest.approx(0.1) and float(s(80)) == pytest.approx(0.01)
    assert float(make_schedule(TrainConfig(steps=10, lr=1.0, schedule="cosine"))(10)) == pytest.approx(0.0)
    net = nets.mlp(jax.random.PRNGKey(0), (3, 4, 2))
    x, y = jnp.ones((8, 3)), jnp.zeros((8,), jnp.int32)
    with pytest.raises(ValueError, match="schedule must be one of"):  # refused when the config is made
        TrainConfig(schedule="wiggly")
    with pytest.raises(ValueError, match="one rate per hidden layer"):
        fit(net, x, y, TrainConfig(dropout=(0.1, 0.2)), progress=False)
    with pytest.raises(ValueError, match="per-sample shape"):
        fit(net, jnp.ones((8, 4)), y, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        fit(net, x * jnp.nan, y, progress=False)
    with pytest.raises(FloatingPointError, match="diverged"):
        xr = jnp.asarray(np.random.default_rng(0).normal(size=(8, 3)), jnp.float32)
        yr = jnp.asarray([0, 1] * 4)
        fit(net, xr, yr, TrainConfig(steps=20, lr=1e30, log_every=10), progress=False)


@pytest.mark.parametrize("make", [
    lambda: nets.mlp(jax.random.PRNGKey(0), (5, 7, 3), bias=False),
    lambda: nets.conv(jax.random.PRNGKey(1), (6, 6, 2), (3, 4), 5, pool=("avg", None), dense=(6,)),
])
def test_checkpoint_round_trip_is_bit_exact(tmp_path, make):
    net = make()
    path = checkpoint.save(tmp_path / "net.npz", net, {"note": "hello", "steps": 3})
    back, meta = checkpoint.load(path, with_meta=True)
    assert back.arch == net.arch and meta == {"note": "hello", "steps": 3}
    for u, v in zip(leaves(net), leaves(back)):
        assert u.dtype == v.dtype and u.tobytes() == v.tobytes()
    assert not list(tmp_path.glob(".*.tmp"))  # the temporary file was renamed away


def test_checkpoint_float64_round_trip(tmp_path, x64):
    net = nets.mlp(jax.random.PRNGKey(0), (3, 4, 2), dtype=jnp.float64)
    back = checkpoint.load(checkpoint.save(tmp_path / "n.npz", net))
    assert all(u.tobytes() == v.tobytes() and v.dtype == np.float64 for u, v in zip(leaves(net), leaves(back)))


def test_truncated_foreign_and_missing_checkpoints_raise(tmp_path):
    net = nets.mlp(jax.random.PRNGKey(0), (5, 7, 3))
    path = checkpoint.save(tmp_path / "net.npz", net)
    raw = path.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="truncated"):
        checkpoint.load(tmp_path / "trunc.npz")
    np.savez(tmp_path / "foreign.npz", a=np.ones(3))
    with pytest.raises(checkpoint.CheckpointError, match="not a stability checkpoint"):
        checkpoint.load(tmp_path / "foreign.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(checkpoint.CheckpointError):
        checkpoint.load(tmp_path / "text.npz")
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / "absent.npz")
