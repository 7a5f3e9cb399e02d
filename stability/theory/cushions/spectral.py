"""Spectral norms ``‖J^{i,j}‖₂`` of every interlayer Jacobian from jvp/vjp only: LOBPCG or power iteration on
``JᵀJ``, packed over layer pairs, vmapped over samples, driven from the host in jitted blocks."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stability.core import nets as _nets
from stability.theory.cushions.operators import _norm
from stability.theory.cushions.maps import _act, _check_x, _dims, _linear

Array = jax.Array


# --------------------------------------------------------------------------- which pairs iterate

_EXACT_DIM = 16
"""Pairs ``(i, j)`` whose end layer has at most this many entries (a classifier's outputs) are solved exactly:
one downward vjp sweep of the ``dim x^j`` unit cotangents materialises every ``J^{i,j}ᵀ`` (``i < j``) at once, and
the top eigenvector of the small Gram matrix ``J Jᵀ`` gives ``σ = ‖Jᵀu‖``. They take no solver iterations."""


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Which layer pairs the iterative solver carries (``pairs``) and which end layers are solved exactly."""

    d: int
    pairs: tuple[tuple[int, int], ...]
    exact: tuple[int, ...]

    def ends(self, i: int) -> tuple[int, ...]:
        return tuple(j for a, j in self.pairs if a == i)

    def starts_at_end(self, j: int) -> tuple[int, ...]:
        return tuple(i for i, b in self.pairs if b == j)

    @property
    def starts(self) -> tuple[int, ...]:
        return tuple(sorted({i for i, _ in self.pairs}))


def _plan(net: _nets.Net) -> _Plan:
    return _plan_for(net.arch, _EXACT_DIM)


@functools.lru_cache(maxsize=None)
def _plan_for(arch: _nets.Arch, exact_dim: int) -> _Plan:
    d = arch.depth
    shapes = jax.eval_shape(lambda x: _nets.forward(_nets.init(jax.random.PRNGKey(0), arch), x),
                            jax.ShapeDtypeStruct((1,) + arch.in_shape, jnp.float32))
    dims = [math.prod(sh.shape[1:]) for sh in shapes]
    exact = tuple(j for j in range(2, d + 1) if dims[j - 1] <= exact_dim)
    pairs = tuple((i, j) for i in range(1, d) for j in range(i + 1, d + 1) if j not in exact)
    return _Plan(d, pairs, exact)


# --------------------------------------------------------------------------- sweeps over layer pairs


def _sweep_up(ops: "_Ops", V: dict[int, Array], space: str) -> dict[tuple[int, int], Array]:
    """``J^{i,j}`` applied to ``V[i][r]`` for every iterated pair ``(i, j = ends(i)[r])`` in one upward sweep.

    ``space="h"``: ``V[i]`` lives in the activation space of layer ``i`` and enters as ``D^{1/2} v`` (the operator
    ``K = J' D^{1/2}``); ``space="x"``: it lives at ``x^i`` and enters through the activation's jvp ``P`` (the
    Jacobian ``J`` itself). Every layer ``k`` applies ``P_{k−1}`` to the carried vectors and ONE linear map
    ``A_k`` to the whole stack; the stack stays sorted by end layer, so finished entries leave from its front."""
    plan = ops.plan
    out: dict[tuple[int, int], Array] = {}
    if not plan.pairs:
        return out
    T, tags = None, []
    for k in range(2, max(j for _, j in plan.pairs) + 1):
        parts = [] if T is None else [jax.vmap(ops.P[k - 1])(T)]
        new = [(k - 1, j) for j in plan.ends(k - 1)]
        if new:
            v = V[k - 1]
            parts.append(v * ops.dsq[k - 1][None] if space == "h" else jax.vmap(ops.P[k - 1])(v))
            tags = tags + new
        if not parts:
            continue
        cat = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=0)
        perm = sorted(range(len(tags)), key=lambda r: (tags[r][1], tags[r][0]))
        if perm != list(range(len(tags))):
            cat = cat[np.asarray(perm)]
            tags = [tags[r] for r in perm]
        T = jax.vmap(ops.lin[k])(cat)                                            # at x^k
        n_end = sum(1 for t in tags if t[1] == k)
        for r in range(n_end):
            out[tags[r]] = T[r]
        T, tags = (T[n_end:], tags[n_end:]) if n_end < len(tags) else (None, [])
    return out


def _sweep_down(ops: "_Ops", U: dict[tuple[int, int], Array], space: str) -> dict[tuple[int, int], Array]:
    """``(J^{i,j})ᵀ U[i, j]`` (``space="x"``, at ``x^i``) or ``Kᵀ U[i, j] = D^{1/2} J'ᵀ U[i, j]`` (``space="h"``)
    for every iterated pair in one downward sweep: per layer one transposed linear map ``A_kᵀ`` for the whole stack,
    then ``Pᵀ`` for the entries that continue; sorted by start layer, descending."""
    plan = ops.plan
    out: dict[tuple[int, int], Array] = {}
    if not plan.pairs:
        return out
    T, tags = None, []
    for k in range(max(j for _, j in plan.pairs), 1, -1):
        new = [(i, k) for i in plan.starts_at_end(k)]
        if new:
            fresh = jnp.stack([U[t] for t in new])
            cat = fresh if T is None else jnp.concatenate([T, fresh], axis=0)
            tags = tags + new
        elif T is None:
            continue
        else:
            cat = T
        perm = sorted(range(len(tags)), key=lambda r: (-tags[r][0], tags[r][1]))
        if perm != list(range(len(tags))):
            cat = cat[np.asarray(perm)]
            tags = [tags[r] for r in perm]
        H = jax.vmap(ops.lin_t[k])(cat)                                          # at h^{k−1}
        n_done = sum(1 for t in tags if t[0] == k - 1)
        for r in range(n_done):
            out[tags[r]] = H[r] * ops.dsq[k - 1] if space == "h" else ops.Pt[k - 1](H[r])
        T, tags = (jax.vmap(ops.Pt[k - 1])(H[n_done:]), tags[n_done:]) if n_done < len(tags) else (None, [])
    return out


def _start_vectors(shape: tuple[int, ...], seed: Array, dtype) -> Array:
    """Pseudo-random solver start vectors in ``[−½, ½)``: the murmur3 finaliser of
    ``index + seed`` (threefry would add seconds of XLA compile time on CPU for no benefit here)."""
    h = jnp.arange(math.prod(shape), dtype=jnp.uint32).reshape(shape) * jnp.uint32(0x9E3779B9) + seed
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    h = h ^ (h >> 16)
    return ((h >> 8).astype(jnp.float32) * (1.0 / 2**24) - 0.5).astype(dtype)


def _expand(a: Array, like: Array) -> Array:
    return a.reshape(a.shape + (1,) * (like.ndim - a.ndim))


def _unit(v: Array, fallback: Array | None = None) -> tuple[Array, Array]:
    """``v/‖v‖`` per entry (``fallback`` or 0 where ``‖v‖ = 0``) and ``‖v‖``."""
    n = _norm(v, 2)
    ok = n > 0
    u = v / _expand(jnp.where(ok, n, 1), v)
    return jnp.where(_expand(ok, v), u, 0 if fallback is None else fallback), n


# --------------------------------------------------------------------------- the activation space of a start layer
#
# J^{i,j} = J'^{i,j} P_i with P_i = ∂h^i/∂x^i, h^i = pool(φ(x^i)) the input of layer i+1, and J'^{i,j} the
# Jacobian from h^i on. ReLU is diagonal and 2×2 stride-2 pooling has disjoint windows, so the rows of P_i have
# disjoint supports: P_i P_iᵀ = D_i is diagonal and P_i = D_i^{1/2} Q_i with Q_i's nonzero rows orthonormal. Hence
# ‖J^{i,j}‖ = ‖J'^{i,j} D_i^{1/2}‖ =: ‖K‖: the solver iterates on vectors of the size of h^i (a quarter of x^i after
# a pool) and never touches x^i (K v = J'(D^{1/2} v), Kᵀy = D^{1/2} J'ᵀ y). The final σ is certified with J itself
# (:func:`_final_sigma` maps v back with Pᵀ D^{−1/2}), so it stays ‖Jᵀu‖ for a unit u.


def _h_shapes(net: _nets.Net, pre: Sequence[Array]) -> dict[int, tuple[int, ...]]:
    """Shape ``(B, …)`` of ``h^i`` for every hidden layer ``i``."""
    return {i: tuple(jax.eval_shape(functools.partial(_act, net.arch, i), pre[i - 1]).shape)
            for i in range(1, len(pre))}


# Packed layout: every iterated pair (i, j) owns one row of a (rows, B, n) array holding its vector (of the shape
# of h^i, flattened and zero-padded to the group's largest n). Start layers are grouped so that padding adds at
# most 30% (an MLP of equal widths is one group, VGG-11 a few): the solvers' bookkeeping (inner products,
# Rayleigh–Ritz) runs once per group, not once per start layer (fewer ops to compile), and the padding changes no
# inner product.

_PAD_SLACK = 1.3


def _groups(plan: _Plan, shapes: dict[int, tuple[int, ...]]) -> list[dict[str, Any]]:
    """``[{"starts": [i…], "rows": [(i, j)…], "n": n_max, "sizes": {i: n_i}, "shapes": {i: shape}}]`` over the
    start layers of the iterated pairs; ``shapes[i]`` is ``(B, …)`` of a start vector."""
    info = sorted(((math.prod(shapes[i][1:]), i) for i in plan.starts), reverse=True)
    groups: list[dict[str, Any]] = []
    for n, i in info:
        g = groups[-1] if groups else None
        if g is not None:
            real = sum(len(plan.ends(k)) * g["sizes"][k] for k in g["starts"]) + len(plan.ends(i)) * n
            if (sum(len(plan.ends(k)) for k in g["starts"]) + len(plan.ends(i))) * g["n"] <= _PAD_SLACK * real:
                g["starts"].append(i)
                g["sizes"][i], g["shapes"][i] = n, tuple(shapes[i])
                continue
        groups.append({"starts": [i], "n": n, "sizes": {i: n}, "shapes": {i: tuple(shapes[i])}})
    for g in groups:
        g["starts"].sort()
        g["rows"] = [(i, j) for i in g["starts"] for j in plan.ends(i)]
    return groups


def _pack(parts: dict[int, Array], plan: _Plan, shapes) -> tuple[Array, ...]:
    """Per-start stacks ``{i: (len(ends(i)), B, *shape)}`` → one packed ``(rows, B, n)`` array per group."""
    out = []
    for g in _groups(plan, shapes):
        blocks = []
        for i in g["starts"]:
            v = parts[i].reshape(parts[i].shape[:2] + (g["sizes"][i],))
            blocks.append(jnp.pad(v, ((0, 0), (0, 0), (0, g["n"] - g["sizes"][i]))) if g["sizes"][i] < g["n"] else v)
        out.append(jnp.concatenate(blocks, axis=0) if len(blocks) > 1 else blocks[0])
    return tuple(out)


def _unpack(X: Sequence[Array], plan: _Plan, shapes) -> dict[int, Array]:
    """Packed groups → per-start stacks ``{i: (len(ends(i)), B, *shape)}``."""
    out = {}
    for g, Xg in zip(_groups(plan, shapes), X):
        off = 0
        for i in g["starts"]:
            r = len(plan.ends(i))
            out[i] = Xg[off:off + r, :, :g["sizes"][i]].reshape((r,) + g["shapes"][i])
            off += r
    return out


def _init_vectors(plan: _Plan, shapes, dsq: dict[int, Array], seed: Array, dtype) -> tuple[Array, ...]:
    """Packed unit start vectors (pseudo-random, see :func:`_start_vectors`), zero where ``D = 0``."""
    parts = {}
    for i in plan.starts:
        r = len(plan.ends(i))
        v = _start_vectors((r,) + tuple(shapes[i]), seed + jnp.uint32(7919 * i), dtype)
        parts[i] = v * (dsq[i][None] > 0).astype(dtype)
    out = []
    for X in _pack(parts, plan, shapes):
        n = jnp.linalg.norm(X, axis=-1, keepdims=True)
        out.append(X / jnp.where(n > 0, n, 1))
    return tuple(out)


def _linear_map(net: _nets.Net, k: int, h_shape: tuple[int, ...]):
    """``(A_k, A_kᵀ)``: layer ``k``'s bias-free linear map on one batch of its inputs ``h^{k−1}`` (shape
    ``h_shape``; small conv layers on CPU as an explicit matrix, see :func:`maps._dense_matrix`) and its transpose."""
    f = functools.partial(_linear, net, k)
    t = jax.linear_transpose(f, jnp.zeros(h_shape, jax.tree_util.tree_leaves(net)[0].dtype))
    return f, lambda y: t(y)[0]


@dataclasses.dataclass(frozen=True)
class _Ops:
    """Everything one solver step needs at a batch: the plan; per layer ``k`` the linear map ``A_k`` (from
    ``h^{k−1}``) and its transpose; per hidden layer ``i`` the activation's jvp ``P_i`` (``x^i → h^i``), its vjp
    ``P_iᵀ``, ``D_i^{1/2}`` and ``D_i^{−1/2}`` (0 where ``D = 0``) with ``D_i = diag(P_i P_iᵀ)``; and the shapes of
    the start vectors (``h^i``)."""

    plan: _Plan
    lin: Any
    lin_t: Any
    P: Any
    Pt: Any
    dsq: Any
    dinv: Any
    shapes: Any


def _ops(net: _nets.Net, pre: Sequence[Array]) -> _Ops:
    """:class:`_Ops` at the batch whose pre-activations are ``pre``. ``D = P (Pᵀ 1)``: ReLU is diagonal and 2×2
    stride-2 pooling has disjoint windows, so the rows of ``P`` have disjoint supports and ``Pᵀ1`` holds each
    row's entries."""
    d = len(pre)
    P, Pt, dsq, dinv, shapes = {}, {}, {}, {}, {}
    for i in range(1, d):
        f = functools.partial(_act, net.arch, i)
        h, jvp = jax.linearize(f, pre[i - 1])
        _, vjp = jax.vjp(f, pre[i - 1])
        P[i], Pt[i] = jvp, (lambda g, vjp=vjp: vjp(g)[0])
        dd = jvp(Pt[i](jnp.ones_like(h)))
        ok = dd > 0
        dsq[i] = jnp.sqrt(jnp.where(ok, dd, 0.0))
        dinv[i] = jnp.where(ok, 1 / jnp.sqrt(jnp.where(ok, dd, 1.0)), 0.0)
        shapes[i] = tuple(h.shape)
    lin, lin_t = {}, {}
    for k in range(2, d + 1):
        lin[k], lin_t[k] = _linear_map(net, k, shapes[k - 1])
    return _Ops(_plan(net), lin, lin_t, P, Pt, dsq, dinv, shapes)


def _gram_apply(ops: _Ops, X: Sequence[Array]) -> tuple[Array, ...]:
    """``KᵀK v`` with ``K = J' D^{1/2}`` (``‖K‖ = ‖J^{i,j}‖``) for every iterated pair's packed vector: one upward
    and one downward sweep, all in the activation spaces."""
    G = _sweep_down(ops, _sweep_up(ops, _unpack(X, ops.plan, ops.shapes), "h"), "h")
    return _pack({i: jnp.stack([G[i, j] for j in ops.plan.ends(i)]) for i in ops.plan.starts}, ops.plan, ops.shapes)


def _final_sigma(ops: _Ops, X: Sequence[Array]) -> dict[tuple[int, int], Array]:
    """``σ = ‖Jᵀu‖`` with ``u = Jv/‖Jv‖`` for ``v = Pᵀ D^{−1/2} x`` (the solver's vector mapped back to ``x^i``),
    from a fresh sweep through the Jacobian ``J^{i,j}`` itself (activation jvps/vjps included): a lower bound of
    ``‖J‖₂`` for any ``x`` (no drift of the recurrences, nor the activation-space algebra, can make it an
    over-estimate), at least the Rayleigh value ``‖Jv‖``. Per iterated pair ``(i, j)``: ``(B,)``."""
    V = _unpack(X, ops.plan, ops.shapes)
    Vx = {i: jax.vmap(ops.Pt[i])(v * ops.dinv[i][None]) for i, v in V.items()}
    U = {t: _unit(y[None])[0][0] for t, y in _sweep_up(ops, Vx, "x").items()}
    G = _sweep_down(ops, U, "x")
    return {t: _norm(G[t]) for t in ops.plan.pairs}


def _top_eigvec(H: Array, squarings: int) -> Array:
    """Unit top eigenvector of symmetric PSD matrices ``(…, r, r)`` with matmuls only: the ``2^squarings``-th
    power by repeated normalised squaring, then its largest column (a LAPACK ``eigh`` custom call per step
    deadlocked XLA:CPU's runtime in unrolled programs). Near-equal top eigenvalues give a vector of their span,
    which is as good for a Ritz step or a Rayleigh quotient; ``H = 0`` gives ``e_0``."""
    tr = jnp.trace(H, axis1=-2, axis2=-1)[..., None, None]
    M = H / jnp.where(tr > 0, tr, 1)

    def square(_, M: Array) -> Array:
        M = jnp.einsum("...ij,...jk->...ik", M, M)
        t = jnp.trace(M, axis1=-2, axis2=-1)[..., None, None]
        return M / jnp.where(t > 0, t, 1)

    # a rolled loop: the same operations in the same order, compiled once instead of once per squaring
    M = jax.lax.fori_loop(0, squarings, square, M)
    k = jnp.argmax(jnp.diagonal(M, axis1=-2, axis2=-1), axis=-1)
    v = jnp.take_along_axis(M, k[..., None, None], axis=-1)[..., 0]
    n = jnp.linalg.norm(v, axis=-1, keepdims=True)
    e0 = jnp.zeros_like(v).at[..., 0].set(1.0)
    return jnp.where(n > 0, v / jnp.where(n > 0, n, 1), e0)


def _top_eigvec_psd(H: Array, squarings: int = 12) -> Array:
    """:func:`_top_eigvec` of the 3×3 Rayleigh–Ritz matrices of LOBPCG."""
    return _top_eigvec(H, squarings)


def _exact_sigma(ops: _Ops, pre: Sequence[Array], tol: Array) -> dict[tuple[int, int], tuple[Array, Array]]:
    """``(σ, converged)`` per sample for every pair ``(i, j)`` with ``j`` in ``plan.exact``: the ``r = dim x^j``
    unit cotangents swept down once give every ``J'^{i,j}ᵀ`` (``r`` vectors at ``h^i``); ``u`` is the top
    eigenvector of the small Gram matrix ``G = J Jᵀ = J' D J'ᵀ`` (``r × r``, 40 normalised squarings), and
    ``σ = ‖Jᵀu‖ = ‖Pᵀ(J'ᵀu)‖`` through the activation's vjp (a lower bound of ``‖J‖₂`` for any unit ``u``);
    converged when ``‖Gu − λu‖ ≤ tol·λ`` (``λ = uᵀGu``)."""
    out = {}
    for j in ops.plan.exact:
        shape = pre[j - 1].shape
        r, B = math.prod(shape[1:]), shape[0]
        T = jnp.broadcast_to(jnp.eye(r, dtype=pre[j - 1].dtype)[:, None, :], (r, B, r)).reshape((r,) + shape)
        for k in range(j, 1, -1):
            H = jax.vmap(ops.lin_t[k])(T)                                        # rows of J'^{k−1,j}, at h^{k−1}
            R = H.reshape(r, B, -1)
            dd = (ops.dsq[k - 1] ** 2).reshape(B, -1)
            G = jnp.einsum("rbn,sbn->brs", R * dd[None], R, precision=jax.lax.Precision.HIGHEST)
            u = _top_eigvec(G, 40)
            lam = jnp.einsum("br,brs,bs->b", u, G, u)
            res = jnp.linalg.norm(jnp.einsum("brs,bs->br", G, u) - lam[:, None] * u, axis=-1)
            z = jnp.einsum("br,rbn->bn", u, R).reshape(H.shape[1:])
            out[k - 1, j] = (_norm(ops.Pt[k - 1](z)), (res <= tol * lam) | (lam <= 0))
            if k > 2:
                T = jax.vmap(ops.Pt[k - 1])(H)                                   # rows of J^{k−1,j}, at x^{k−1}
    return out


# Solvers. Each is (init, step) on a packed state (a tuple of groups per quantity): ``init`` builds
# it, ``step`` advances every entry that has not converged by one iteration (one application of
# ``JᵀJ`` = one upward jvp sweep + one downward vjp sweep over all pairs). The iteration is driven
# from the host in jitted blocks of a few unrolled steps (:func:`_solve`): XLA:CPU runs
# ``while_loop`` bodies an order of magnitude slower than the same ops unrolled, and the state
# stays on the device between blocks. ``N`` counts iterations, ``D`` marks finished entries
# (converged, or stopped at ``max_iter``).


def _power_init(ops: _Ops, seed: Array, dtype) -> dict[str, tuple[Array, ...]]:
    X = _init_vectors(ops.plan, ops.shapes, ops.dsq, seed, dtype)
    return {"X": X, "N": tuple(jnp.zeros(v.shape[:2], jnp.int32) for v in X),
            "D": tuple(jnp.zeros(v.shape[:2], bool) for v in X)}


def _power_step(ops: _Ops, st: dict, it: Array, tol: Array, max_iter: Array) -> dict:
    """Power iteration on ``A = KᵀK``: ``v ← Av/‖Av‖``; done when ``‖Av − λv‖ ≤ tol·λ``
    (``λ = vᵀAv``)."""
    AV = _gram_apply(ops, st["X"])
    out = {"X": [], "N": [], "D": []}
    for X, A, N, D in zip(st["X"], AV, st["N"], st["D"]):
        lam = jnp.sum(X * A, -1)
        done = D | (jnp.linalg.norm(A - lam[..., None] * X, axis=-1) <= tol * lam) | (it >= max_iter)
        na = jnp.linalg.norm(A, axis=-1, keepdims=True)
        Xn = jnp.where(na > 0, A / jnp.where(na > 0, na, 1), X)
        out["X"].append(jnp.where(done[..., None], X, Xn))
        out["N"].append(jnp.where(done, N, it + 1))
        out["D"].append(done)
    return {k: tuple(v) for k, v in out.items()}


def _lobpcg_init(ops: _Ops, seed: Array, dtype) -> dict[str, tuple[Array, ...]]:
    X = _init_vectors(ops.plan, ops.shapes, ops.dsq, seed, dtype)
    AX = _gram_apply(ops, X)
    return {"X": X, "AX": AX, "P": tuple(jnp.zeros_like(v) for v in X), "AP": tuple(jnp.zeros_like(v) for v in X),
            "L": tuple(jnp.sum(a * b, -1) for a, b in zip(X, AX)),
            "N": tuple(jnp.zeros(v.shape[:2], jnp.int32) for v in X),
            "D": tuple(jnp.zeros(v.shape[:2], bool) for v in X)}


def _lobpcg_step(ops: _Ops, st: dict, it: Array, tol: Array, max_iter: Array) -> dict:
    """One LOBPCG step for the top eigenpair of ``A = KᵀK`` on every entry.

    ``A`` is applied once, to the residual direction ``w``; the 3×3 Rayleigh–Ritz problem on
    ``span{x, w, p}`` (``p``: the previous step) gives the new ``x``: a locally optimal three-term
    Krylov (Lanczos-type) recurrence that converges like conjugate gradients where power iteration
    crawls (nearly equal top singular values). ``p`` is dropped when it is numerically inside
    ``span{x, w}``; an entry is done when ``‖Ax − λx‖ ≤ tol·λ``."""
    Ws, dones = [], []
    for X, AX, L, D in zip(st["X"], st["AX"], st["L"], st["D"]):
        R = AX - L[..., None] * X
        dones.append(D | (jnp.linalg.norm(R, axis=-1) <= tol * L) | (it >= max_iter))
        R = R - jnp.sum(X * R, -1, keepdims=True) * X
        nr = jnp.linalg.norm(R, axis=-1, keepdims=True)
        Ws.append(R / jnp.where(nr > 0, nr, 1))
    AWs = _gram_apply(ops, Ws)
    out = {k: [] for k in st}
    for g in range(len(Ws)):
        X, AX, P, AP, L, N = (st[k][g] for k in ("X", "AX", "P", "AP", "L", "N"))
        W, AW, done = Ws[g], AWs[g], dones[g]
        keep_tol = jnp.sqrt(jnp.finfo(X.dtype).eps)
        cx, cw, p0 = jnp.sum(X * P, -1, keepdims=True), jnp.sum(W * P, -1, keepdims=True), jnp.linalg.norm(P, axis=-1)
        P, AP = P - cx * X - cw * W, AP - cx * AX - cw * AW
        pn = jnp.linalg.norm(P, axis=-1)
        scale = jnp.where(pn > keep_tol * p0, 1 / jnp.where(pn > 0, pn, 1), 0.0)[..., None]
        P, AP = P * scale, AP * scale
        S, AS = (X, W, P), (AX, AW, AP)
        # explicit terms: on XLA:CPU a reduction over a stacked basis axis is an order of magnitude slower
        h = {(a, b): jnp.sum(S[a] * AS[b], -1) for a in range(3) for b in range(a, 3)}
        H = jnp.stack([jnp.stack([h[min(a, b), max(a, b)] for b in range(3)], -1) for a in range(3)], -2)
        cv = _top_eigvec_psd(H)                                                    # (rows, B, 3)
        c = [cv[..., k, None] for k in range(3)]
        Xn, AXn = c[0] * X + c[1] * W + c[2] * P, c[0] * AX + c[1] * AW + c[2] * AP
        Pn, APn = c[1] * W + c[2] * P, c[1] * AW + c[2] * AP
        nx = jnp.linalg.norm(Xn, axis=-1)
        upd = (nx > 0.5) & ~done                                                   # a unit Ritz vector (else keep x)
        inv = (1 / jnp.where(nx > 0.5, nx, 1))[..., None]
        u = upd[..., None]
        Xn, AXn = Xn * inv, AXn * inv
        out["X"].append(jnp.where(u, Xn, X))
        out["AX"].append(jnp.where(u, AXn, AX))
        out["P"].append(jnp.where(u, Pn, st["P"][g]))
        out["AP"].append(jnp.where(u, APn, st["AP"][g]))
        out["L"].append(jnp.where(upd, jnp.sum(Xn * AXn, -1), L))                 # Rayleigh quotient
        out["N"].append(jnp.where(done, N, it + 1))
        out["D"].append(done)
    return {k: tuple(v) for k, v in out.items()}


_METHODS = {"lobpcg": (_lobpcg_init, _lobpcg_step), "power": (_power_init, _power_step)}


def _has_pairs(net: _nets.Net) -> bool:
    return bool(_plan(net).pairs)


@functools.partial(jax.jit, static_argnames=("method", "steps"))
def _solver_run(net: _nets.Net, x: Array, st: dict, it: Array, seed: Array, tol: Array, max_iter: Array,
                method: str, steps: int) -> tuple[dict, Array]:
    """``steps`` unrolled iterations from the state ``st`` (built here when ``it == 0``; ``st`` is then
    a placeholder of the right shapes); also returns whether every entry is done."""
    pre = _nets.forward(net, x)
    ops = _ops(net, pre)
    init, step = _METHODS[method]
    st = jax.lax.cond(it == 0, lambda: init(ops, seed, x.dtype), lambda: st)
    for k in range(steps):
        st = step(ops, st, it + k, tol, max_iter)
    return st, jnp.all(jnp.stack([jnp.all(v) for v in st["D"]]))


def _check_method(method: str) -> None:
    if method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}")


_UNROLL_WORK = 1_000_000
"""Vector entries per iteration (batch × Σ_i (d−i)·dim x^i) from which blocks unroll 4 iterations."""


def _auto_unroll(net: _nets.Net, batch: int) -> int:
    """Iterations per jitted block: 1 unless the problem is large (then the per-block overhead of
    re-linearising matters more than compiling a 4× larger program), else 4."""
    dims = _dims(net)
    work = batch * sum((net.depth - i) * dims[i - 1] for i in range(1, net.depth + 1))
    return 1 if work < _UNROLL_WORK else 4


_COMPACT_MIN = 64
"""Batches at least this large are compacted (see :func:`_solve`)."""
_COMPACT_FACTOR = 4
"""Compaction shrinks the batch by this factor once at most that fraction of samples is unfinished."""


def _solve(net: _nets.Net, x: Array, seed: Array, tol: float, max_iter: int, method: str,
           unroll: int | None = None) -> dict:
    """Run the solver on one batch from the host, in jitted blocks; returns its final state (``{"X": None}``
    when every pair is solved exactly).

    The loop runs until every (sample, pair) entry is done, so its cost is set by the slowest
    entry. Compaction: once at most a quarter of the current samples have an unfinished pair, the
    batch shrinks to a quarter (the finished samples' state is parked), so the long tail runs on
    B/4, B/16, … samples (one compile per size; only for batches of at least ``_COMPACT_MIN``)."""
    if not _has_pairs(net):
        return {"X": None}
    unroll = unroll or _auto_unroll(net, x.shape[0])
    tol_a, mi = jnp.asarray(tol, x.dtype), jnp.int32(max_iter)
    shapes = jax.eval_shape(lambda net, x: _METHODS[method][0](_ops(net, _nets.forward(net, x)), seed, x.dtype),
                            net, x)
    st = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)    # placeholder for it == 0
    full, idx, xs = None, None, x
    it = 0
    while it < max_iter:
        st, done = _solver_run(net, xs, st, jnp.int32(it), seed, tol_a, mi, method=method, steps=unroll)
        it += unroll
        if bool(done):
            break
        b = xs.shape[0]
        if b >= _COMPACT_MIN:
            sample_done = np.asarray(jnp.all(jnp.concatenate(st["D"], axis=0), axis=0))
            active = np.flatnonzero(~sample_done)
            nb = b // _COMPACT_FACTOR
            if active.size <= nb:
                keep = np.concatenate([active, np.flatnonzero(sample_done)[:nb - active.size]])
                if full is None:
                    full, idx = st, np.arange(b)
                else:
                    full = jax.tree_util.tree_map(lambda f, v: f.at[:, idx].set(v), full, st)
                st = jax.tree_util.tree_map(lambda v: v[:, keep], st)
                xs, idx = xs[keep], idx[keep]
    if full is not None:
        st = jax.tree_util.tree_map(lambda f, v: f.at[:, idx].set(v), full, st)
    return st


def _pair_arrays(net: _nets.Net, B: int, final: dict, exact: dict, st: dict, max_iter: int):
    """``(sigma, iterations, converged)``, each ``(B, d, d)`` with the pairs ``i < j`` filled in
    (diagonal: ``σ = 1``, 0 iterations, converged; below it: NaN, 0, True). ``final``: the iterated pairs' σ,
    ``exact``: ``(σ, converged)`` of the pairs solved exactly (0 iterations)."""
    d = net.depth
    sig = np.full((B, d, d), np.nan)
    sig[:, np.arange(d), np.arange(d)] = 1.0
    its = np.zeros((B, d, d), np.int64)
    conv = np.ones((B, d, d), bool)
    if d < 2:
        return sig, its, conv
    plan = _plan(net)
    if plan.pairs:
        shapes = _h_shapes(net, jax.eval_shape(lambda x: _nets.forward(net, x),
                                               jax.ShapeDtypeStruct((B,) + net.arch.in_shape,
                                                                    jax.tree_util.tree_leaves(net)[0].dtype)))
        for g, N, D in zip(_groups(plan, shapes), st["N"], st["D"]):
            N, D = np.asarray(N), np.asarray(D)
            for r, (i, j) in enumerate(g["rows"]):
                sig[:, i - 1, j - 1], its[:, i - 1, j - 1] = np.asarray(final[i, j]), N[r]
                # entries stopped by max_iter are marked done; converged means the residual test held
                conv[:, i - 1, j - 1] = D[r] & (N[r] < max_iter)
    for (i, j), (s, c) in exact.items():
        sig[:, i - 1, j - 1], conv[:, i - 1, j - 1] = np.asarray(s), np.asarray(c)
    return sig, its, conv


def spectral_norms(net: _nets.Net, x: Array, key: Array, *, tol: float = 1e-4, max_iter: int = 200,
                   method: str = "lobpcg", unroll: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``‖J^{i,j}‖_2`` for every sample and ``1 ≤ i ≤ j ≤ d`` from jvp/vjp only (no materialised
    Jacobian of a wide layer pair), by LOBPCG (default) or power iteration on ``KᵀK`` (``K = J`` restricted to the
    activation space of layer ``i``, same norm), all pairs and samples at once; an entry stops at the relative
    residual ``‖KᵀKv − σ²v‖ ≤ tol·σ²``. The returned ``σ`` is ``‖Jᵀu‖``, ``u = Jv/‖Jv‖``, from a fresh sweep in the
    original space: a lower bound of ``‖J‖₂``. Pairs whose end layer has at most ``_EXACT_DIM`` entries are solved
    exactly from their small Gram matrix (0 iterations). ``unroll``: iterations per jitted block (default: 1 for
    tiny problems, else 4). Returns ``(sigma, iterations, converged)``, each ``(N, d, d)``: NaN below the
    diagonal, 1 on it."""
    _check_method(method)
    x = _check_x(net, x)
    st = _solve(net, x, _seed(key), tol, max_iter, method, unroll) if net.depth >= 2 else {"X": None}
    final, exact = _sigmas(net, x, st["X"], jnp.asarray(tol, x.dtype)) if net.depth >= 2 else ({}, {})
    return _pair_arrays(net, x.shape[0], final, exact, st, max_iter)


@jax.jit
def _sigmas(net: _nets.Net, x: Array, X: tuple[Array, ...] | None, tol: Array):
    """:func:`_final_sigma` at the batch ``x`` from the solver's final packed vectors ``X``, and
    :func:`_exact_sigma`."""
    pre = _nets.forward(net, x)
    ops = _ops(net, pre)
    return (_final_sigma(ops, X) if X is not None else {}), _exact_sigma(ops, pre, tol)


def _seed(key: Array) -> Array:
    """A ``uint32`` seed for :func:`_start_vectors` drawn from ``key``."""
    return jnp.asarray(jax.random.bits(key, (), jnp.uint32))
