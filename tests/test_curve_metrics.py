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
    # on a segment arc length is uniform in t, so Int is the plain trapezoid mean over t
    loss, ts = np.asarray(seg["train"]["loss"]), np.asarray(seg["train"]["t"])
    assert r["train loss Int"] == pytest.approx(float(np.sum(0.5 * (loss[1:] + loss[:-1]) * np.diff(ts))), rel=1e-10)
    assert r["train loss Max"] == pytest.approx(loss.max()) and r["train loss Min"] == pytest.approx(loss.min())
    assert set(curve_metrics.TABLE_COLUMNS) <= set(r)


def test_certified_column_encloses_the_sampled_maximum_and_refuses_a_foreign_bound(x64):
    import dataclasses

    from stability.core.polycurve import PolyCurve
    from stability.theory.bounds import max_loss_bound

    arch = nets.Arch(in_shape=(3,), widths=(5, 3))
    a, b = random_net(arch, 4), random_net(arch, 5)
    x = inputs(a, n=12)
    y = jnp.asarray(np.arange(12) % 3)
    bd = max_loss_bound(PolyCurve.segment(a, b), x, y, rtol=1e-3)
    out = curve_metrics.curve_table(evaluate.line_point, (a, b), (x, y), (x, y), n=41, certified=bd)
    r = out["row"]
    assert r[curve_metrics.CERTIFIED_MAX] == bd.upper >= r["train loss Max"]
    assert r[curve_metrics.CERTIFIED_LOWER] == bd.lower and bd.upper - bd.lower <= 1e-3 * bd.lower
    assert out["certified"]["stop"] == "tolerance"
    assert curve_metrics.certified_cell(r).startswith("[") and curve_metrics.certified_cell({}) == "not computed"
    foreign = dataclasses.replace(bd, upper=0.5 * r["train loss Max"])  # a bound of some other curve
    with pytest.raises(ValueError, match="below the sampled maximum"):
        curve_metrics.curve_table(evaluate.line_point, (a, b), (x, y), (x, y), n=41, certified=foreign)


def test_int_is_the_arc_length_mean():
    v = np.array([0.0, 1.0, 1.0])
    lengths = np.array([1.0, 3.0])  # trapezoid: (0.5·1 + 1·3) / 4
    assert curve_metrics.summarise(v, lengths)["Int"] == pytest.approx(3.5 / 4)
