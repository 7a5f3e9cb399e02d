"""The Python-driven loops used for conv nets on CPU (stability.core.hostloop) compute what the lax.scan programs
compute: training, curve training and the batched evaluator agree between the two paths."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from stability.curves import curve as curves
from stability.core import nets
from stability.core.evaluate import evaluate_line
from stability.core.hostloop import use_host_loop
from stability.core.train import TrainConfig, fit
from tests.strategies import random_net


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6, 6, 2)).astype(np.float32), rng.integers(0, 3, n).astype(np.int32)


ARCH = nets.Arch(in_shape=(6, 6, 2), widths=(3, 4, 3), n_conv=2, pool=("max", None), bias=True)


def _leaves_close(a, b, tol):
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol, atol=tol)


def test_choice_follows_backend_params_and_env(monkeypatch):
    monkeypatch.delenv("STABILITY_HOST_LOOP", raising=False)
    conv, dense = random_net(ARCH, 0, np.float32), nets.mlp(jax.random.PRNGKey(0), (4, 3, 2))
    assert use_host_loop(conv) == (jax.default_backend() == "cpu")
    assert not use_host_loop(dense)
    monkeypatch.setenv("STABILITY_HOST_LOOP", "1")
    assert use_host_loop(dense)
    monkeypatch.setenv("STABILITY_HOST_LOOP", "yes")
    with pytest.raises(ValueError, match="0 or 1"):
        use_host_loop(dense)


@pytest.mark.parametrize("dropout", [0.0, 0.25])
def test_fit_host_loop_matches_scan(monkeypatch, dropout):
    x, y = _data()
    net = random_net(ARCH, 1, np.float32)
    cfg = TrainConfig(steps=12, batch_size=16, optimizer="momentum", lr=0.05, weight_decay=1e-3, dropout=dropout,
                      log_every=5, seed=3)
    out = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("STABILITY_HOST_LOOP", mode)
        out[mode] = fit(net, x, y, cfg, progress=False)
    _leaves_close(out["0"][0], out["1"][0], 2e-5)
    np.testing.assert_allclose(out["0"][1].loss, out["1"][1].loss, rtol=2e-5)


def test_curve_training_and_evaluation_host_loop_match_scan(monkeypatch):
    x, y = _data()
    a, b = random_net(ARCH, 2, np.float32), random_net(ARCH, 3, np.float32)
    trained, evals = {}, {}
    for mode in ("0", "1"):
        monkeypatch.setenv("STABILITY_HOST_LOOP", mode)
        cfg = TrainConfig(steps=10, batch_size=16, optimizer="adam", lr=0.01, seed=1, log_every=5)
        trained[mode], _ = curves.train_curve(curves.bezier(a, b, 1), nets.apply, x, y, cfg, progress=False)
        evals[mode] = evaluate_line(a, b, 7, x, y, batch_size=40)  # 3 batches, the last one padded
    _leaves_close(trained["0"].bends, trained["1"].bends, 2e-5)
    np.testing.assert_allclose(evals["0"].loss, evals["1"].loss, rtol=1e-5)
    np.testing.assert_allclose(evals["0"].acc, evals["1"].acc, rtol=0, atol=1e-7)
