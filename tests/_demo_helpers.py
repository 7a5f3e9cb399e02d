"""Shared by the tests that run the demo end to end without its real training."""

from __future__ import annotations

import dataclasses


def tiny_pair(ds, quick, seed, widths):
    """Stands in for ``stability.app.demo._train_pair``: the demo's two nets, 30 SGD steps each (the same
    settings as the README's ``stability train`` lines run with the tests' quick flags)."""
    import jax

    from stability.core import nets
    from stability.core.train import TrainConfig, fit

    cfg = TrainConfig(steps=30, batch_size=64, lr=0.1, log_every=15)
    out = []
    for s in (seed, seed + 1):
        net = nets.mlp(jax.random.PRNGKey(s), (ds.input_shape[0], *widths, ds.num_classes))
        out.append(fit(net, ds.x_train, ds.y_train, dataclasses.replace(cfg, seed=s), x_test=ds.x_test,
                       y_test=ds.y_test, progress=False))
    return out, cfg
