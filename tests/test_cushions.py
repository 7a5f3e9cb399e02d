"""Noise-stability quantities (docs/THEORY.md §6) against materialised Jacobians (``jax.jacfwd`` + SVD).

The reference below never touches :mod:`stability.theory.cushions`: the map ``M^{i,j}`` is built as a
sub-net (an identity first layer followed by layers ``i+1..j``) run through the public
``nets.forward``, its Jacobian is materialised with ``jax.jacfwd``, and spectral norms come
from NumPy's SVD.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from stability.theory import cushions
from stability.core import nets
from tests.strategies import any_nets, conv_nets, inputs, random_net

FAST = settings(max_examples=10, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# --------------------------------------------------------------------------- reference


def _shapes(net: nets.Net) -> list[tuple[int, ...]]:
    x = jax.ShapeDtypeStruct((1,) + net.arch.in_shape, jnp.float64)
    return [tuple(s.shape[1:]) for s in jax.eval_shape(lambda x: nets.forward(net, x), x)]


def subnet(net: nets.Net, i: int) -> nets.Net:
    """A net whose pre-activations are ``[x^i, x^{i+1}, …, x^d]`` for the input ``x^i``: an identity
    first layer (same-padded identity conv for feature maps, followed by the pool that follows
    layer ``i``) and then layers ``i+1..d``; ``nets.forward`` of it gives every ``M^{i,j}`` at once."""
    arch = net.arch
    si = _shapes(net)[i - 1]
    dt = net.layers[0]["w"].dtype
    rest = [{"w": layer["w"], "b": layer.get("b", jnp.zeros(layer["w"].shape[0], dt))} for layer in net.layers[i:]]
    if len(si) == 3:
        c, k = si[2], arch.kernel
        w = np.zeros((c, c, k, k))
        w[np.arange(c), np.arange(c), k // 2, k // 2] = 1.0
        sub = nets.Arch(in_shape=si, widths=(c,) + arch.widths[i:], n_conv=arch.n_conv - i + 1, kernel=k,
                        pool=arch.pool[i - 1:], head=arch.head, bias=True)
    else:
        w = np.eye(si[0])
        sub = nets.Arch(in_shape=si, widths=(si[0],) + arch.widths[i:], bias=True)
    first = {"w": jnp.asarray(w, dt), "b": jnp.zeros(w.shape[0], dt)}
    return nets.Net(sub, (first, *rest))


@functools.partial(jax.jit, static_argnums=0)
def _maps_eval(shape: tuple[int, ...], sub: nets.Net, xi, z):
    g = lambda z: jnp.concatenate([a.reshape(-1) for a in nets.forward(sub, z.reshape((1,) + shape))[1:]])
    return jax.vmap(g)(z), jax.vmap(jax.jacfwd(g))(xi)


class Maps:
    """Per start layer ``i`` ONE jitted, sample-batched function: ``[M^{i,j}(z)]_{j>i}`` at many
    points and the materialised Jacobians ``[J^{i,j}]_{j>i}`` at ``x^i`` (``jax.jacfwd``)."""

    def __init__(self, net: nets.Net):
        self.net, self.shapes = net, _shapes(net)
        self.dims = [int(np.prod(s)) for s in self.shapes]

    def __call__(self, i: int, xi: np.ndarray, z: np.ndarray) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        """``({j: M^{i,j}(z)}, {j: J^{i,j}(xi)})``: z ``(m, dim_i)`` → ``(m, dim_j)``;
        xi ``(n, dim_i)`` → ``(n, dim_j, dim_i)``."""
        out = _maps_eval(self.shapes[i - 1], subnet(self.net, i), jnp.asarray(xi), jnp.asarray(z))
        m, J = (np.asarray(a) for a in out)
        cuts = np.cumsum([0] + self.dims[i:])
        js = range(i + 1, len(self.dims) + 1)
        return ({j: m[:, cuts[r]:cuts[r + 1]] for r, j in enumerate(js)},
                {j: J[:, cuts[r]:cuts[r + 1]] for r, j in enumerate(js)})


def layer_operator(net: nets.Net, i: int) -> np.ndarray:
    """Layer ``i``'s linear map on its (pooled, NHWC-flattened) input as a dense matrix, built in
    NumPy from the definitions (same-padded cross-correlation, flatten, global average, dense)."""
    arch = net.arch
    l = i - 1
    w = np.asarray(net.layers[l]["w"], np.float64)
    kind = arch.kinds[l]
    if kind == "dense":
        return w
    if kind in ("flatten", "gap"):
        hh, ww, c = arch.feature_shape()
        if kind == "flatten":
            return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)           # input index (y, x, c)
        return np.repeat(w[:, None, :], hh * ww, axis=1).reshape(w.shape[0], -1) / (hh * ww)
    hh, ww = arch.in_shape[:2]
    for q in range(l):
        if arch.pool[q] is not None:
            hh, ww = hh // 2, ww // 2
    o, c, k, _ = w.shape
    pad = (k - 1) // 2
    A = np.zeros((hh, ww, o, hh, ww, c))
    for y in range(hh):
        for x in range(ww):
            for dy in range(k):
                for dx in range(k):
                    yy, xx = y + dy - pad, x + dx - pad
                    if 0 <= yy < hh and 0 <= xx < ww:
                        A[y, x, :, yy, xx, :] += w[:, :, dy, dx]
    return A.reshape(hh * ww * o, hh * ww * c)


def layer_inputs(net: nets.Net, x) -> list[np.ndarray]:
    pre = nets.forward(net, x)
    out = [np.asarray(x).reshape(x.shape[0], -1)]
    for k in range(1, net.depth):
        h = jax.nn.relu(pre[k - 1])
        if k - 1 < net.arch.n_conv and net.arch.pool[k - 1] is not None:
            h = nets.pool2(h, net.arch.pool[k - 1])
        out.append(np.asarray(h).reshape(x.shape[0], -1))
    return out


def reference(net: nets.Net, x, deltas=None, ts=(0.0, 0.5)) -> dict[str, np.ndarray]:
    """Every quantity of ``cushions.measure`` from materialised Jacobians, sample by sample."""
    d = net.depth
    n = x.shape[0]
    pre = [np.asarray(p).reshape(n, -1) for p in nets.forward(net, x)]
    ins = layer_inputs(net, x)
    ops = [layer_operator(net, i) for i in range(1, d + 1)]
    with np.errstate(all="ignore"):
        out = {"layer_cushion": np.stack([np.linalg.norm(ins[i] @ ops[i].T, axis=1)
                                          / (np.linalg.norm(ops[i]) * np.linalg.norm(ins[i], axis=1))
                                          for i in range(d)], 1)}
    maps = Maps(net)
    # every point each pair is evaluated at: x^i, then (for ρ) x̂^i_i(t) and x̂^i_{i−1}(t) per draw and t
    K = 0 if deltas is None else deltas[0].shape[0]
    za = {i: [] for i in range(1, d + 1)}
    for k in range(K):
        for t in ts:
            scales = [jnp.asarray(t + (1 - t) * dl[k]) for dl in deltas]
            scales = [s.reshape(1, 1, -1) if l < net.arch.n_conv else s for l, s in enumerate(scales)]
            ph = [np.asarray(p).reshape(n, -1) for p in nets.forward(net, x, scales)]
            for i in range(1, d + 1):
                za[i].append(ph[i - 1])
    zb = {i: [] for i in range(1, d + 1)}  # x̂^i_{i−1}(t) = M^{i−1,i}(x̂^{i−1}_{i−1}(t)), filled below
    sig = np.full((n, d, d), np.nan)
    mu = np.full((n, d, d), np.nan)
    Ms, Js = {}, {}
    for i in range(1, d + 1):
        xi = np.linalg.norm(pre[i - 1], axis=1)
        sig[:, i - 1, i - 1] = 1.0
        mu[:, i - 1, i - 1] = np.where(xi > 0, 1.0, np.nan)  # 0/0 when x^i = 0
        if i == d:
            break
        ms, js = maps(i, pre[i - 1], np.concatenate([pre[i - 1]] + za[i] + zb[i]))
        for j in range(i + 1, d + 1):
            Ms[i, j], Js[i, j] = ms[j], js[j]
            s = np.linalg.svd(js[j], compute_uv=False)[:, 0]
            sig[:, i - 1, j - 1] = s
            with np.errstate(all="ignore"):
                mu[:, i - 1, j - 1] = np.where(s > 0, np.linalg.norm(np.einsum("nab,nb->na", js[j], pre[i - 1]), axis=1)
                                               / (s * xi), np.nan)
        zb[i + 1] = [Ms[i, i + 1][(1 + v) * n:(2 + v) * n] for v in range(len(za[i]))]
    out["spectral_norm"], out["interlayer_cushion"] = sig, mu
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)   # a start layer without a cushion: NaN
        out["interlayer_min"] = np.nanmin(np.where(np.triu(np.ones((d, d), bool)), mu, np.nan), axis=2)
        out["contraction"] = np.stack([np.linalg.norm(pre[i], axis=1) / np.linalg.norm(np.maximum(pre[i], 0), axis=1)
                                       for i in range(d - 1)] + [np.full(n, np.nan)], 1)
    if deltas is None:
        return out
    eps = 100 * np.finfo(np.float64).eps
    rho = np.full((K, n, d), np.nan)
    rho[:, :, d - 1] = np.inf
    inf_ratio = np.zeros((n, d))
    inf_ratio[:, d - 1] = np.nan
    for i in range(1, d):  # ∞-norm condition over unit blocks (channels for conv layers)
        shape = nets.forward(net, x[:1])[i - 1].shape[1:]
        for z in [pre[i - 1]] + za[i]:
            a = np.maximum(z, 0)
            if i - 1 < net.arch.n_conv and net.arch.pool[i - 1] is not None:  # the input of layer i + 1
                a = np.asarray(nets.pool2(a.reshape((n,) + shape), net.arch.pool[i - 1])).reshape(n, -1)
            h = net.arch.widths[i - 1]
            blocks = np.abs(a) if i > net.arch.n_conv else np.sqrt((a.reshape(n, -1, h) ** 2).sum(1))
            tot = np.linalg.norm(a, axis=1)
            inf_ratio[:, i - 1] = np.maximum(inf_ratio[:, i - 1], np.where(
                tot > 0, math.sqrt(h) * blocks.max(1) / np.where(tot > 0, tot, 1), 0))
    T = len(ts)
    for i in range(2, d):
        for j in range(i + 1, d + 1):
            m = Ms[i, j].reshape(1 + 2 * K * T, n, -1)  # rows: x^i, x̂^i_i(t)…, x̂^i_{i−1}(t)…
            xi, xj = np.linalg.norm(pre[i - 1], axis=1), np.linalg.norm(pre[j - 1], axis=1)
            for v, z in enumerate(za[i] + zb[i]):
                dz = z - pre[i - 1]
                dm = m[1 + v] - m[0]
                jd = np.einsum("nab,nb->na", Js[i, j], dz)
                err = np.linalg.norm(dm - jd, axis=1)
                num = np.linalg.norm(dz, axis=1) * xj
                with np.errstate(all="ignore"):
                    r = np.where(xi * err > 0, num / (xi * err), np.where(num > 0, np.inf, 0.0))
                r = np.where(err <= eps * (np.linalg.norm(dm, axis=1) + np.linalg.norm(jd, axis=1) + xj), np.inf, r)
                k = (v % (K * T)) // T
                rho[k, :, i - 1] = np.fmin(rho[k, :, i - 1], r)
    out["smoothness"], out["inf_norm_ratio"] = rho, inf_ratio
    return out


def assert_close(ours, ref, rtol=1e-4, what=""):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg=f"{what}: NaN pattern")
    big_o, big_r = ours > 1e6, ref > 1e6  # ρ: "exactly linear" (∞) vs a rounding-level huge value
    np.testing.assert_array_equal(big_o, big_r, err_msg=f"{what}: infinite/huge pattern")
    ok = np.isfinite(ref) & ~big_r
    np.testing.assert_allclose(ours[ok], ref[ok], rtol=rtol, atol=1e-9, err_msg=what)


def masks_for(net: nets.Net, seed: int, draws: int = 2, p: float = 0.5) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return tuple(np.where(rng.random((draws, h)) < p, 0.0, 1.0 / (1 - p)) for h in nets.widths(net))


def check_against_reference(net: nets.Net, seed: int, n: int = 3) -> None:
    x = inputs(net, n, seed)
    deltas = masks_for(net, seed)
    ts = (0.0, 0.5)
    ours = cushions.measure(net, x, jax.random.PRNGKey(seed), p=0.5, ts=ts, masks=deltas, tol=1e-13, max_iter=20000)
    ref = reference(net, x, deltas, ts)
    for k in ("layer_cushion", "spectral_norm", "interlayer_cushion", "interlayer_min", "contraction",
              "smoothness", "inf_norm_ratio"):
        assert_close(getattr(ours, k), ref[k], what=k)
    d = net.depth
    alive = ours.pre_norm > 0  # μ_{i,i} = 1 (0/0, NaN, where x^i = 0)
    diag = np.diagonal(ours.interlayer_cushion, axis1=1, axis2=2)
    assert np.all(diag[alive] == 1.0) and np.all(np.isnan(diag[~alive]))
    iu = np.triu_indices(d, 1)
    assert ours.converged[:, iu[0], iu[1]].all() or ours.power_iters.max() == 20000


# --------------------------------------------------------------------------- tests


def _conv_arch(**kw) -> nets.Arch:
    base = dict(in_shape=(5, 5, 2), widths=(3, 4, 3), n_conv=2, kernel=3, pool=("max", None), head="flatten", bias=True)
    base.update(kw)
    return nets.Arch(**base)


DENSE = nets.Arch(in_shape=(4,), widths=(5, 6, 4, 3), bias=True)  # shared shapes: tests reuse compiled programs


@contextlib.contextmanager
def every_pair_iterated():
    """Solve every layer pair by iteration (no exact small-Gram pairs)."""
    from stability.theory.cushions import spectral

    saved = spectral._EXACT_DIM
    spectral._EXACT_DIM = 0
    try:
        yield
    finally:
        spectral._EXACT_DIM = saved


@pytest.mark.parametrize("arch", [
    DENSE,
    nets.Arch(in_shape=(3,), widths=(4, 1, 3, 2), bias=False),   # width-1 layer: dead samples, NaN cases
    _conv_arch(),                                                  # max pool, flatten head
    _conv_arch(in_shape=(4, 4, 1), widths=(2, 3, 3), n_conv=2, pool=(None, "avg"), head="gap", bias=False),
], ids=["dense", "dense-bias-free-width1", "conv-maxpool-flatten", "conv-avgpool-gap"])
def test_every_quantity_matches_materialised_jacobians(x64, arch):
    check_against_reference(random_net(arch, 7), seed=3)


@settings(FAST, max_examples=6)
@given(net=any_nets(max_depth=4, max_width=6), seed=st.integers(0, 1000))
def test_random_architectures_match_materialised_jacobians(x64, net, seed):
    with every_pair_iterated():                          # (pairs ending at ≤ 16 entries are exact by default)
        check_against_reference(net, seed, n=2)


@FAST
@given(net=conv_nets(max_channels=4))
def test_conv_operator_frobenius_norm_is_exact(x64, net):
    """‖A_i‖_F of the operator (border taps of same-padded convs see fewer positions), and the
    operator column-block norms, against the materialised operator (the reference tests check that
    operator against the net's own layers through μ_i = ‖A_i h‖/(‖A_i‖_F‖h‖))."""
    for i in range(1, net.depth + 1):
        A = layer_operator(net, i)
        assert float(cushions.operator_fro_norm(net, i)) == pytest.approx(np.linalg.norm(A), rel=1e-10)
        if i >= 2:
            units = net.arch.widths[i - 2]
            cols = np.sqrt((A ** 2).sum(0).reshape(-1, units).sum(0)) if i - 1 <= net.arch.n_conv \
                else np.linalg.norm(A, axis=0)
            np.testing.assert_allclose(np.asarray(cushions.column_norms(net, i)), cols, rtol=1e-10)


def test_padded_conv_norm_differs_from_kernel_norm(x64):
    net = random_net(_conv_arch(in_shape=(3, 3, 1), widths=(2, 2, 2), pool=(None, None)), 1)
    naive = math.sqrt(9) * float(jnp.linalg.norm(net.layers[0]["w"]))
    exact = np.linalg.norm(layer_operator(net, 1))
    assert float(cushions.operator_fro_norm(net, 1)) == pytest.approx(exact, rel=1e-12)
    assert abs(naive - exact) / exact > 0.1  # the border matters on a 3×3 map


@settings(FAST, max_examples=8)
@given(net=any_nets(max_depth=5, max_width=7), seed=st.integers(0, 100))
def test_homogeneity_for_bias_free_nets(x64, net, seed):
    """Bias-free ReLU nets are positively homogeneous: ``J^{i,j} x^i = x^j`` (jvp sweeps)."""
    arch = dataclasses.replace(net.arch, bias=False)
    net = nets.Net(arch, tuple({"w": layer["w"]} for layer in net.layers))
    x = inputs(net, 3, seed)
    pre = nets.forward(net, x)
    for i, row in enumerate(cushions.interlayer_jvps(net, x), start=1):
        assert len(row) == net.depth - i + 1
        for j, jx in enumerate(row, start=i):
            np.testing.assert_allclose(np.asarray(jx), np.asarray(pre[j - 1]), rtol=1e-10, atol=1e-12)


def test_interlayer_jvp_differs_from_output_with_biases(x64):
    """With biases ``J^{i,j} x^i ≠ x^j`` — the homogeneity check above is not vacuous."""
    net = random_net(nets.Arch(in_shape=(4,), widths=(6, 6, 3), bias=True), 2)
    x = inputs(net, 4, 0)
    jx = cushions.interlayer_jvps(net, x)[0]
    assert np.max(np.abs(np.asarray(jx[-1]) - np.asarray(nets.forward(net, x)[-1]))) > 1e-3


@pytest.mark.parametrize("method", ["lobpcg", "power"])
def test_spectral_solvers_report_iterations_and_tolerance(x64, monkeypatch, method):
    from stability.theory.cushions import spectral

    net = random_net(DENSE, 4)
    x = inputs(net, 3, 1)
    run = lambda tol, it: cushions.spectral_norms(net, x, jax.random.PRNGKey(0), tol=tol, max_iter=it, method=method)
    iu = np.triu_indices(4, 1)
    pick = lambda a: a[:, iu[0], iu[1]]
    ref = pick(reference(net, x)["spectral_norm"])
    exact = run(1e-12, 1)                                # every end layer is narrow: small Gram matrices, 0 iterations
    assert pick(exact[1]).max() == 0 and pick(exact[2]).all()
    np.testing.assert_allclose(pick(exact[0]), ref, rtol=1e-10)
    monkeypatch.setattr(spectral, "_EXACT_DIM", 0)       # now by iteration
    loose, tight, one = run(1e-2, 500), run(1e-12, 20000), run(1e-12, 1)
    assert pick(loose[2]).all() and pick(tight[2]).all()
    assert pick(loose[1]).max() < pick(tight[1]).max() <= 20000
    assert pick(one[1]).max() <= 1 and not pick(one[2]).all()
    np.testing.assert_allclose(pick(tight[0]), ref, rtol=1e-8)
    assert np.all(pick(one[0]) <= ref * (1 + 1e-12))      # lower bounds of σ_max, however few iterations
    assert np.all(pick(loose[0]) <= ref * (1 + 1e-12)) and np.all(pick(loose[0]) >= 0.9 * ref)


def test_jacobian_free_on_a_map_too_large_to_materialise():
    """x^1 has 64·64·8 = 32,768 entries: J^{1,2} would hold 1.1e9 floats (4.3 GB) per sample."""
    net = random_net(_conv_arch(in_shape=(64, 64, 1), widths=(8, 8, 10), pool=(None, None)), 0, jnp.float32)
    x = inputs(net, 1, 1)
    with pytest.warns(cushions.UnconvergedWarning, match=r"UNCONVERGED: .* in 10 iterations; σ is then a lower bound"):
        res = cushions.measure(net, x, jax.random.PRNGKey(2), masks=masks_for(net, 0, draws=1), ts=(0.5,), max_iter=10)
    assert res.dims[0] == 32768 and not res.converged.all()  # 10 iterations: flagged, and said so
    assert np.all(np.isfinite(res.spectral_norm[:, 0, 1:])) and np.all(res.spectral_norm[:, 0, 1:] > 0)
    assert np.all((res.interlayer_cushion[:, 0, 1:] > 0) & (res.interlayer_cushion[:, 0, 1:] <= 1 + 1e-5))


def test_chunking_and_padding_do_not_change_results(x64):
    net = random_net(DENSE, 5)
    x = inputs(net, 7, 2)
    deltas = masks_for(net, 1, draws=2)
    kw = dict(masks=deltas, ts=(0.0, 0.5), tol=1e-12, max_iter=3000)
    a = cushions.measure(net, x, jax.random.PRNGKey(0), **kw)
    b = cushions.measure(net, x, jax.random.PRNGKey(0), batch_size=3, **kw)  # 3 chunks, the last one padded
    for k in ("layer_cushion", "interlayer_cushion", "contraction", "smoothness", "inf_norm_ratio"):
        np.testing.assert_allclose(getattr(a, k), getattr(b, k), rtol=1e-7, err_msg=k)
    assert a.smoothness.shape == (2, 7, net.depth)


def test_solver_compaction_changes_nothing(monkeypatch):
    """Batches ≥ 64 continue on B/2, B/4, … samples once most have converged: same results."""
    net = random_net(nets.Arch(in_shape=(4,), widths=(6, 6, 3)), 2, jnp.float32)
    x = inputs(net, 96, 5)
    sizes = []
    from stability.theory.cushions import spectral

    real = spectral._solver_run

    def spy(net, x, *a, **kw):
        sizes.append(x.shape[0])
        return real(net, x, *a, **kw)

    monkeypatch.setattr(spectral, "_solver_run", spy)
    monkeypatch.setattr(spectral, "_EXACT_DIM", 0)
    a = cushions.spectral_norms(net, x, jax.random.PRNGKey(0), tol=1e-6, max_iter=300, unroll=1)
    assert sizes[0] == 96 and min(sizes) < 96  # compacted at least once
    monkeypatch.setattr(spectral, "_COMPACT_MIN", 10**9)
    sizes.clear()
    b = cushions.spectral_norms(net, x, jax.random.PRNGKey(0), tol=1e-6, max_iter=300, unroll=1)
    assert set(sizes) == {96}
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_masks_are_algorithm1_draws():
    """``sample_masks``: i.i.d. column multipliers ``δ ∈ {0, 1/(1−p)}`` per hidden unit, per draw."""
    net = random_net(nets.Arch(in_shape=(5,), widths=(64, 64, 3)), 0, jnp.float32)
    masks = cushions.sample_masks(net, jax.random.PRNGKey(2), 0.25, 6)
    assert [m.shape for m in masks] == [(6, 64), (6, 64)]
    vals = np.concatenate([m.ravel() for m in masks])
    assert set(np.unique(vals).tolist()) <= {0.0, float(np.float32(1 / 0.75))}
    assert 0.15 < np.mean(vals == 0) < 0.35  # p = 0.25
    assert not np.array_equal(masks[0][0], masks[0][1])  # draws differ


def test_summary_epsilon_and_side_conditions(x64, tmp_path):
    net = random_net(DENSE, 12)
    x = inputs(net, 3, 4)
    res = cushions.measure(net, x, jax.random.PRNGKey(1), p=0.3, draws=2, ts=(0.0, 0.5), tol=1e-10, max_iter=2000)
    ref = reference(net, x)
    # the masks: Algorithm 1 draws from the key, shared by all samples and stored with the result
    k_mask = jax.random.split(jax.random.PRNGKey(1))[0]
    for m, g in zip(res.deltas, cushions.sample_masks(net, k_mask, 0.3, 2)):
        np.testing.assert_array_equal(m, g)
    assert [m.shape for m in res.deltas] == [(2, 5), (2, 6), (2, 4)]
    d = 4
    mu = np.nanmin(ref["layer_cushion"], axis=0)
    mu_to = np.nanmin(ref["interlayer_min"], axis=0)
    c = np.nanmax(ref["contraction"])
    fmax = np.max(np.linalg.norm(np.asarray(nets.apply(net, x)), axis=1))
    eps = c * d ** 1.5 * fmax / (math.sqrt(4) * np.min(mu[1:] * mu_to[1:]))
    assert np.isfinite(eps) and res.epsilon() == pytest.approx(eps, rel=1e-6)
    assert res.epsilon(0.05) <= res.epsilon() * (1 + 1e-12)
    s = res.summary()
    json.dumps(s)
    assert s["h_min"] == 4 and s["side_conditions"]["three_d"] == 12
    per_draw = [np.min(np.where(np.isnan(r), np.inf, r)) for r in res.smoothness]
    assert s["rho"] == max(per_draw)  # ⌈2/2⌉-th largest of two draws: it holds in one of two (≥ 1/2)
    assert s["side_conditions"]["rho_ge_3d"] == (s["rho"] >= 12)
    # Lemma 3's column condition on the dense layers 2..d
    for i in range(2, d + 1):
        w = np.asarray(net.layers[i - 1]["w"])
        want = np.linalg.norm(w, axis=0).max() / (math.sqrt(0.3) * np.linalg.norm(w))
        assert res.column_ratio[i - 1] == pytest.approx(want, rel=1e-10)
    assert np.isnan(res.column_ratio[0])
    # save / load round trip
    path = res.save(tmp_path / "c.npz")
    back = cushions.load(path)
    for k in cushions.Cushions._ARRAYS:
        np.testing.assert_array_equal(getattr(back, k), getattr(res, k))
    assert back.summary() == s or json.dumps(back.summary(), default=str) == json.dumps(s, default=str)
    for m, g in zip(back.deltas, res.deltas):
        np.testing.assert_array_equal(m, g)


def test_bad_arguments_are_clear_errors():
    net = random_net(nets.Arch(in_shape=(3,), widths=(4, 2)), 0, jnp.float32)
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="shape"):
        cushions.measure(net, jnp.ones((2, 4)), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="p must"):
        cushions.measure(net, x, jax.random.PRNGKey(0), p=1.0)
    with pytest.raises(ValueError, match="masks"):
        cushions.measure(net, x, jax.random.PRNGKey(0), masks=[np.ones((2, 5))])
    with pytest.raises(ValueError, match="ts"):
        cushions.measure(net, x, jax.random.PRNGKey(0), ts=(1.5,))


# --------------------------------------------------------------------------- CLI, demo section, figures


def _digits_net(seed: int) -> nets.Net:
    return random_net(nets.Arch(in_shape=(64,), widths=(16, 16, 10)), seed, jnp.float32)


def test_cli_writes_arrays_histograms_and_lemma3(tmp_path):
    import argparse

    from stability.core import checkpoint
    from stability.plots import cushions as cushion_plots
    from stability.app.cli import add_cushions_parser

    ck = checkpoint.save(tmp_path / "net.npz", _digits_net(0))
    parser = argparse.ArgumentParser(prog="stability")
    add_cushions_parser(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "out"
    # the same shapes as test_demo_section (60 samples, 3 draws, t ∈ {0, ½}): one compiled program
    args = parser.parse_args(["cushions", str(ck), "--data", "digits", "--out", str(out), "--n", "60", "--p", "0.3",
                              "--draws", "3", "--ts", "0,0.5", "--lemma3-draws", "4"])
    assert args.fn(args) == 0
    res = cushions.load(out / "cushions.npz")
    assert res.n == 60 and res.draws == 3 and res.p == pytest.approx(0.3) and res.dims == (16, 16, 10)
    assert res.ts.tolist() == [0.0, 0.5]
    summary = json.loads((out / "summary.json").read_text())["cushions"]
    assert summary["net"]["epsilon"] == pytest.approx(res.epsilon(), rel=1e-6)
    lemma = summary["lemma3"]
    assert lemma["draws"] == 4 and len(lemma["fraction_under_explicit_bound"]) == len(lemma["verdict"]) == 4
    assert set(lemma["verdict"]) <= {"holds", "fails", "inconclusive", "does not apply"}
    report = (out / "report.md").read_text()
    for fig in summary["figures"]:
        assert (out / fig).stat().st_size > 1000 and f"]({fig})" in report
    assert {"cushions_net_layer_cushion.png", "cushions_net_smoothness.png"} <= set(summary["figures"])
    # one panel per layer and quantity (Appendix D.3 layout)
    figs = cushion_plots.plot_cushions(res)
    panels = {k: sum(ax.axison for ax in f.axes) for k, f in figs.items()}
    assert panels == {"layer_cushion": 3, "interlayer_min": 2, "contraction": 2, "smoothness": 1}
    with pytest.raises(SystemExit):
        parser.parse_args(["cushions", str(ck), "--data", "digits", "--out", str(out), "--p", "1.5"])
    bad = parser.parse_args(["cushions", str(ck), "--data", "teacher", "--out", str(out)])
    with pytest.raises(ValueError, match="inputs of shape"):
        bad.fn(bad)


def test_demo_section(tmp_path):
    from stability import data
    from stability.app.demo import DemoContext
    from stability.app.sections.cushions import add_cushions_section
    from stability.app.report import Report

    ds = data.load("digits")
    ctx = DemoContext(_digits_net(1), _digits_net(2), ds.x_train[:60], ds.y_train[:60], ds.x_test, ds.y_test,
                      quick=True, seed=0, dataset=ds)
    report = Report(tmp_path)
    out = add_cushions_section(report, ctx)
    assert out["net A"]["n"] == 60 and out["net B"]["draws"] == 3
    assert out["net A"]["epsilon"] > 0 and out["lemma3"]["ps"] == [0.1, 0.25, 0.5]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "cushions" in summary and len(summary["cushions"]["figures"]) == 5  # net A: 4 quantities + overview
    assert "Lemma 3" in (tmp_path / "report.md").read_text()
