"""Loss planes: orthonormal basis that reproduces the three points; grid matches direct evaluation."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from stability.core import losses
from stability.core import nets
from stability.curves import planes
from stability.plots.planes import plot_plane
from tests.strategies import inputs, random_net


def flat(w):
    return np.asarray(ravel_pytree(w)[0])


def test_basis_is_orthonormal_and_reproduces_the_points(x64):
    arch = nets.Arch(in_shape=(4,), widths=(5, 3))
    w = [random_net(arch, s) for s in range(3)]
    p = planes.plane(*w)
    u, v = np.asarray(p.u), np.asarray(p.v)
    np.testing.assert_allclose([u @ u, v @ v, u @ v], [1, 1, 0], atol=1e-12)
    for k in range(3):
        np.testing.assert_allclose(flat(p.point(*p.coords[k])), flat(w[k]), atol=1e-12)
        np.testing.assert_allclose(p.project(w[k]), p.coords[k], atol=1e-12)
    with pytest.raises(ValueError, match="collinear"):
        planes.plane(w[0], w[1], nets.lerp(w[0], w[1], jnp.float64(0.3)))


def test_grid_evaluation_matches_direct_evaluation(x64):
    arch = nets.Arch(in_shape=(3, 3, 1), widths=(2, 3), n_conv=1)
    w = [random_net(arch, s) for s in range(3)]
    p = planes.plane(*w)
    x = inputs(w[0], n=9)
    y = jnp.asarray(np.arange(9) % 3)
    g = planes.evaluate_plane(p, x, y, resolution=5)
    for i, j in [(0, 0), (2, 3), (4, 4)]:
        net = p.point(g["alpha"][j], g["beta"][i])
        direct = float(jnp.mean(losses.cross_entropy(nets.apply(net, x), y)))
        assert g["loss"][i, j] == pytest.approx(direct, rel=1e-10)
    fig = plot_plane(p, g, curves={"segment": [nets.lerp(w[0], w[1], jnp.float64(t)) for t in (0, .5, 1)]})
    assert fig.axes
