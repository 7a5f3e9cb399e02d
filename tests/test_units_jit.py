"""The hidden-unit view under ``jax.jit``: every operation that returns weights works on traced arrays and
matches its eager (NumPy) result; those that return host index sets refuse tracing with a clear error.
Also: compiled programs of the ensembles are cached (a second call with the same shapes compiles nothing)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stability.core import nets, units
from stability.curves import ensembles
from tests.strategies import random_net

DENSE = nets.Arch(in_shape=(3,), widths=(5, 4, 2))
CONV = nets.Arch(in_shape=(5, 5, 2), widths=(3, 4, 2), n_conv=2, pool=("max", None))


def _same(a, b) -> None:
    for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("arch", [DENSE, CONV], ids=["dense", "conv"])
def test_every_weight_operation_runs_under_jit_and_matches_eager(arch):
    net = random_net(arch, 0, jnp.float32)
    i = 1
    h1, h2 = arch.widths[0], arch.widths[1]
    ops = {
        "get_rows": (lambda n, u: units.get_rows(n, i, u), jnp.array([0, 2])),
        "get_cols": (lambda n, u: units.get_cols(n, i, u), jnp.array([1])),
        "get_row": (lambda n, u: units.get_row(n, i, u), jnp.int32(1)),
        "get_col": (lambda n, u: units.get_col(n, i, u), jnp.int32(2)),
        "set_rows": (lambda n, u: units.set_rows(n, i, u, units.get_rows(n, i, u[::-1])), jnp.array([0, 2])),
        "set_cols": (lambda n, u: units.set_cols(n, i, u, units.get_cols(n, i, u[::-1])), jnp.array([0, 1])),
        "set_row": (lambda n, u: units.set_row(n, i, u, units.get_row(n, i, 0)), jnp.int32(2)),
        "set_col": (lambda n, u: units.set_col(n, i, u, units.get_col(n, i, 0)), jnp.int32(1)),
        "zero_unit": (lambda n, u: units.zero_unit(n, i, u), jnp.array([1, 2])),
        "copy_unit": (lambda n, u: units.copy_unit(n, i, u[0], u[1], 0.25), jnp.array([0, 2])),
        "permute_units": (lambda n, u: units.permute_units(n, i, u), jnp.asarray(np.roll(np.arange(h1), 1))),
        "scale_cols": (lambda n, u: units.scale_cols(n, [jnp.arange(h1, dtype=jnp.float32) + u[0], jnp.ones(h2)]),
                       jnp.array([1.0])),
    }
    for name, (fn, arg) in ops.items():
        eager = fn(net, np.asarray(arg))
        traced = jax.jit(fn)(net, arg)
        _same(eager, traced)
    # a copy onto a dead unit preserves the function under jit too
    dead = units.set_col(net, i, 2, {"w": jnp.zeros_like(units.get_col(net, i, 2)["w"])})
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4,) + arch.in_shape), jnp.float32)
    copied = jax.jit(lambda n: units.copy_unit(n, i, 0, 2, 0.5))(dead)
    np.testing.assert_allclose(np.asarray(nets.apply(copied, x)), np.asarray(nets.apply(dead, x)), rtol=1e-5,
                               atol=1e-6)


def test_index_set_operations_refuse_tracing_clearly():
    net = random_net(DENSE, 0, jnp.float32)
    for name, fn in (("dead_units", units.dead_units), ("zero_units", units.zero_units),
                     ("EditNet.of", units.EditNet.of)):
        with pytest.raises(TypeError, match=f"{name.split('.')[0]}.*concrete"):
            jax.jit(lambda n, fn=fn: fn(n) and 0.0)(net)
        fn(net)  # concrete weights: fine
    with pytest.raises(ValueError, match="two different units"):
        units.copy_unit(net, 1, 3, 3)


def test_ensemble_probs_compiles_once_per_shape():
    members = [random_net(DENSE, s, jnp.float32) for s in range(3)]
    x = jnp.asarray(np.random.default_rng(1).normal(size=(6, 3)), jnp.float32)
    ensembles.ensemble_probs(members, x)
    n = ensembles._member_logits._cache_size()
    again = [random_net(DENSE, s + 10, jnp.float32) for s in range(3)]
    p = ensembles.ensemble_probs(again, x)
    assert ensembles._member_logits._cache_size() == n  # new weights, same shapes: no new compilation
    assert p.shape == (6, 2) and np.allclose(np.asarray(p).sum(axis=1), 1.0, atol=1e-6)
    ensembles.ensemble_probs(again[:2], x)  # a different number of members is a new shape: one more program
    assert ensembles._member_logits._cache_size() == n + 1
