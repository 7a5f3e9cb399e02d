"""Curve metrics on curves whose answers are known in closed form."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stability.curves import metrics as curve_metrics
from stability.core import evaluate
from stability.core import nets
from tests.strategies import inputs, random_net


def bent(theta, t):
    """A two-piece path a → m → b (kink at t = 1/2): a test point function with known length."""
    a, m, b = theta
    first = nets.lerp(a, m, 2 * t)
    second = nets.lerp(m, b, 2 * t - 1)
    return jax.tree_util.tree_map(lambda u, v: jnp.where(t <= 0.5, u, v), first, second)


def norm(a, b):
    return float(np.sqrt(sum(np.sum((np.asarray(u) - np.asarray(v)) ** 2)
                             for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))))


def test_segment_has_length_ratio_one_and_bent_path_the_triangle_ratio(x64):
    arch = nets.Arch(in_shape=(3,), widths=(4, 2))
    a, m, b = (random_net(arch, s) for s in range(3))
    x = inputs(a, n=10)
    y = jnp.asarray(np.arange(10) % 2)
    seg = curve_metrics.curve_table(evaluate.line_point, (a, b), (x, y), (x, y), n=21)
    assert seg["row"]["length ratio"] == pytest.approx(1.0, rel=1e-10)
    tri = curve_metrics.curve_table(bent, (a, m, b), (x, y), (x, y), n=21)
    assert tri["row"]["length ratio"] == pytest.approx((norm(a, m) + norm(m, b)) / norm(a, b), rel=1e-10)
    r = seg["row"]
    assert r["train loss Min"] <= r["train loss Int"] <= r["train loss Max"]
    assert set(curve_metrics.TABLE_COLUMNS) <= set(r)


def test_int_is_the_arc_length_mean():
    v = np.array([0.0, 1.0, 1.0])
    lengths = np.array([1.0, 3.0])  # trapezoid: (0.5·1 + 1·3) / 4
    assert curve_metrics.summarise(v, lengths)["Int"] == pytest.approx(3.5 / 4)
