"""Losses are what the certificates assume: convex in the output, flagged as such."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stability.core import losses


def test_cross_entropy_matches_log_softmax():
    logits = jnp.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    y = jnp.array([1, 2])
    ref = -jax.nn.log_softmax(logits)[jnp.arange(2), y]
    np.testing.assert_allclose(losses.cross_entropy(logits, y), ref, rtol=1e-6)


def test_squared_error_one_hot_and_regression():
    out = jnp.array([[1.0, 0.0], [0.5, 0.5]])
    np.testing.assert_allclose(losses.squared_error(out, jnp.array([0, 0])), [0.0, 0.25], rtol=1e-6)
    np.testing.assert_allclose(losses.squared_error(jnp.array([[2.0], [0.0]]), jnp.array([1.0, 1.0])), [0.5, 0.5])


def test_convexity_flags_and_lookup():
    assert losses.cross_entropy.convex_in_output and losses.squared_error.convex_in_output
    assert isinstance(losses.cross_entropy, losses.ConvexLoss)
    assert not losses.Loss("hinge3", lambda o, y: o[..., 0] ** 3).convex_in_output
    assert losses.get_loss("mse") is losses.squared_error
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get_loss("nope")


@given(a=st.lists(st.floats(-5, 5), min_size=3, max_size=3), b=st.lists(st.floats(-5, 5), min_size=3, max_size=3),
       t=st.floats(0, 1), label=st.integers(0, 2))
def test_losses_are_convex_in_output_along_segments(a, b, t, label):
    """L((1−t)a + tb) ≤ max(L(a), L(b)): the fact the top-layer certificate rests on."""
    a, b = jnp.array([a], jnp.float32), jnp.array([b], jnp.float32)
    y = jnp.array([label])
    for loss in (losses.cross_entropy, losses.squared_error):
        mid = loss((1 - t) * a + t * b, y)[0]
        assert mid <= jnp.maximum(loss(a, y)[0], loss(b, y)[0]) + 1e-4


def test_accuracy_and_l2():
    assert float(losses.accuracy(jnp.array([[0.1, 0.9], [0.8, 0.2]]), jnp.array([1, 1])).mean()) == 0.5
    assert float(losses.l2_penalty({"a": jnp.ones(4)}, 0.5)) == pytest.approx(1.0)
