"""Loss planes (Garipov et al. 2018, Figures 1, 7, 8): the affine plane through three weight points,
an orthonormal basis of it, a grid evaluated in one vectorised call, curves projected onto it.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from stability.core import checks as _checks
from stability.core import nets as _nets
from stability.core.evaluate import describes, evaluate
from stability.core.polycurve import Combination
from stability.core.losses import Loss, cross_entropy

Array = jax.Array

__all__ = ["Plane", "plane", "plane_grid_point", "evaluate_plane"]


@dataclasses.dataclass(frozen=True)
class Plane:
    """``w(a, b) = origin + a·u + b·v`` with orthonormal ``u, v`` (flat vectors) and the three
    defining points' coordinates ``coords`` (3 × 2)."""

    origin: Array
    u: Array
    v: Array
    coords: np.ndarray
    unravel: Callable[[Array], Any]

    def point(self, a: float, b: float) -> Any:
        return self.unravel(self.origin + a * self.u + b * self.v)

    def project(self, w: Any) -> np.ndarray:
        """Coordinates of the orthogonal projection of a weight pytree (or a flat vector) onto the plane."""
        flat = w if isinstance(w, (jax.Array, np.ndarray)) and np.ndim(w) == 1 else ravel_pytree(w)[0]
        d = flat - self.origin
        return np.array([float(d @ self.u), float(d @ self.v)])


def plane(w0: Any, w1: Any, w2: Any) -> Plane:
    """Plane through three weight pytrees: ``u ∝ w1 − w0``, ``v`` ∝ the part of ``w2 − w0`` orthogonal to ``u``."""
    f0, unravel = ravel_pytree(w0)
    f1, f2 = ravel_pytree(w1)[0], ravel_pytree(w2)[0]
    if f1.shape != f0.shape or f2.shape != f0.shape:
        raise ValueError("the three points must be pytrees of one structure and shape")
    e1, e2 = f1 - f0, f2 - f0
    n1 = jnp.linalg.norm(e1)
    if float(n1) == 0.0:
        raise ValueError("w0 and w1 coincide: they do not span a plane with w2")
    u = e1 / n1
    r = e2 - (e2 @ u) * u
    nr = jnp.linalg.norm(r)
    if float(nr) <= 1e-7 * float(jnp.linalg.norm(e2) + n1):
        raise ValueError("the three points are (nearly) collinear: no plane")
    v = r / nr
    coords = np.array([[0.0, 0.0], [float(n1), 0.0], [float(e2 @ u), float(e2 @ v)]])
    return Plane(f0, u, v, coords, unravel)


def _plane_combination(theta: tuple[Array, Array, Array, Array, Any], ks: np.ndarray) -> Combination | None:
    """Grid points ``1·o + α·u + β·v``: a combination of the origin and the two directions (as weight pytrees)."""
    origin, u, v, grid, template = theta
    g = np.asarray(grid, np.float64)
    if np.any(ks != np.round(ks)) or np.any((ks < 0) | (ks >= g.shape[0])):
        return None
    ab = g[ks.astype(np.int64)]
    pts = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *(_unravel_like(template, f) for f in (origin, u, v)))
    return Combination(pts, np.column_stack([np.ones(ab.shape[0]), ab[:, 0], ab[:, 1]]))


@describes(_plane_combination)
def plane_grid_point(theta: tuple[Array, Array, Array, Array, Any], k: Array) -> Any:
    """Point function for :func:`stability.core.evaluate.evaluate`: ``k`` indexes the grid ``theta[3]`` (G × 2)."""
    origin, u, v, grid, template = theta
    ab = grid[k.astype(jnp.int32)]
    flat = origin + ab[0] * u + ab[1] * v
    return _unravel_like(template, flat)


def _unravel_like(template: Any, flat: Array) -> Any:
    leaves, tree = jax.tree_util.tree_flatten(template)
    out, i = [], 0
    for leaf in leaves:
        n = int(np.prod(leaf.shape))
        out.append(flat[i:i + n].reshape(leaf.shape).astype(leaf.dtype))
        i += n
    return jax.tree_util.tree_unflatten(tree, out)


def evaluate_plane(p: Plane, x: Array, y: Array, *, resolution: int = 21, margin: float = 0.2,
                   apply_fn=_nets.apply, loss: Loss | str = cross_entropy, **kw) -> dict[str, np.ndarray]:
    """Loss and accuracy on a ``resolution²`` grid covering the three points plus ``margin`` on every side."""
    _checks.integer("resolution", resolution, 2)
    _checks.nonneg("margin", margin)
    lo, hi = p.coords.min(0), p.coords.max(0)
    span = np.maximum(hi - lo, 1e-12)
    a = np.linspace(lo[0] - margin * span[0], hi[0] + margin * span[0], resolution)
    b = np.linspace(lo[1] - margin * span[1], hi[1] + margin * span[1], resolution)
    A, B = np.meshgrid(a, b)
    grid = np.stack([A.ravel(), B.ravel()], axis=1)
    template = p.unravel(p.origin)
    theta = (p.origin, p.u, p.v, jnp.asarray(grid, p.origin.dtype), template)
    res = evaluate(plane_grid_point, theta, np.arange(grid.shape[0], dtype=np.float64), x, y, apply_fn=apply_fn,
                   loss=loss, **kw)
    return {"alpha": a, "beta": b, "loss": res.loss.reshape(A.shape), "acc": res.acc.reshape(A.shape)}
