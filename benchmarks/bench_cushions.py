"""Benchmark: every noise-stability quantity (docs/THEORY.md §6) for a conv net, ours vs materialised Jacobians.

Ours: ``stability.theory.cushions.measure`` — LOBPCG (or ``--method power``) on ``JᵀJ`` with jvp/vjp for
all layer pairs at once, vmapped over samples, jitted per chunk. Baseline, in the same process and on the same
samples and
masks: the same quantities from materialised Jacobians — per start layer ``i`` one
``vmap(jacfwd)`` gives ``[J^{i,j}]_{j>i}``, spectral norms by batched SVD, ``J x`` and
``J(x̂ − x^i)`` as matrix products — also jitted and vmapped (a strong baseline, not a Python loop).
Both are timed warm (compiled on a first chunk); the compile times are reported separately.

    python benchmarks/bench_cushions.py [--n 1024] [--out FILE.md]          # CPU: digits conv net
    python benchmarks/bench_cushions.py --vgg11 [--n 10000] [--out FILE.md]  # GPU: VGG-11, 32×32 inputs

With ``--vgg11`` the materialised Jacobians of the early layers do not fit anywhere (``J^{1,2}``
alone is 32768 × 65536 per sample), so the baseline runs on ``--baseline-n`` samples and only on
the start layers whose Jacobians have at most ``--max-jac-entries`` entries; its time, scaled to
all samples, is a LOWER bound, and so is the reported speed-up.
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from stability.theory import cushions
from stability.core import nets
from stability.theory.cushions.maps import _step
from stability.theory.cushions.measure import _default_batch
from stability.theory.cushions.operators import _norm
from stability.theory.cushions.smoothness import _scales
from stability.app.report import machine_description

from _table import emit


# --------------------------------------------------------------------------- materialised baseline


def _start_fn(net: nets.Net, i: int, shape: tuple[int, ...]):
    """z ↦ concat_j M^{i,j}(z) (flattened), for one sample ``z`` of the shape of ``x^i``."""
    def f(z):
        h, outs = z.reshape((1,) + shape), []
        for k in range(i + 1, net.depth + 1):
            h = _step(net, k, h)
            outs.append(h.reshape(-1))
        return jnp.concatenate(outs)
    return f


@functools.partial(jax.jit, static_argnums=(3,))
def _baseline_chunk(net: nets.Net, x, scales, starts: tuple[int, ...]):
    """Spectral norms, interlayer cushions and ρ for one chunk from materialised Jacobians."""
    d = net.depth
    pre = nets.forward(net, x)
    B = x.shape[0]
    dims = [int(np.prod(p.shape[1:])) for p in pre]
    flat = [p.reshape(B, -1) for p in pre]
    K, T = scales[0].shape[:2]
    pre_hat = jax.vmap(lambda s: nets.forward(net, x, list(s)))(
        tuple(s.reshape((K * T,) + s.shape[2:]) for s in scales))
    sig, mu, rho = {}, {}, {}
    tiny = 100 * jnp.finfo(x.dtype).eps
    for i in starts:
        J = jax.vmap(jax.jacfwd(_start_fn(net, i, pre[i - 1].shape[1:])))(pre[i - 1])
        J = J.reshape(B, J.shape[1], -1)                                                  # (B, Σ dim_j, dim_i)
        cuts = np.cumsum([0] + dims[i:])
        Js = {j: J[:, cuts[r]:cuts[r + 1]] for r, j in enumerate(range(i + 1, d + 1))}
        for j, Jj in Js.items():
            s = jnp.linalg.svd(Jj, compute_uv=False)[:, 0]
            sig[i, j] = s
            mu[i, j] = jnp.linalg.norm(jnp.einsum("bij,bj->bi", Jj, flat[i - 1]), axis=1) / (s * _norm(flat[i - 1]))
        if 2 <= i < d:
            za = pre_hat[i - 1]
            zb = (jnp.broadcast_to(pre[1], za.shape) if i == 2
                  else jax.vmap(functools.partial(_step, net, i))(pre_hat[i - 2]))
            Z = jnp.concatenate([za, zb])
            D = (Z - pre[i - 1]).reshape(2 * K * T, B, -1)
            h = Z
            worst = jnp.full((2 * K * T, B), jnp.inf, x.dtype)
            for j in range(i + 1, d + 1):
                h = jax.vmap(functools.partial(_step, net, j))(h)
                dm = (h - pre[j - 1]).reshape(2 * K * T, B, -1)
                jd = jnp.einsum("bij,sbj->sbi", Js[j], D)
                err = jnp.linalg.norm(dm - jd, axis=2)
                exact = err <= tiny * (jnp.linalg.norm(dm, axis=2) + jnp.linalg.norm(jd, axis=2) + _norm(flat[j - 1]))
                ratio = jnp.linalg.norm(D, axis=2) * _norm(flat[j - 1]) / (_norm(flat[i - 1]) * err)
                worst = jnp.minimum(worst, jnp.where(exact, jnp.inf, ratio))
            rho[i] = worst.reshape(2, K, T, B).min(axis=(0, 2))
    return sig, mu, rho


def baseline(net: nets.Net, x, deltas, ts, batch: int, starts: tuple[int, ...]):
    scales = _scales(net, deltas, np.asarray(ts, np.float64), x.dtype)
    out = []
    for s in range(0, x.shape[0], batch):
        xc = x[s:s + batch]
        if xc.shape[0] < batch:
            xc = jnp.concatenate([xc, jnp.repeat(xc[:1], batch - xc.shape[0], axis=0)])
        out.append(jax.device_get(_baseline_chunk(net, xc, scales, starts)))
    n = x.shape[0]
    cat = lambda parts: np.concatenate(parts, axis=0)[:n]
    sig = {k: cat([o[0][k] for o in out]) for k in out[0][0]}
    mu = {k: cat([o[1][k] for o in out]) for k in out[0][1]}
    rho = {k: np.concatenate([o[2][k] for o in out], axis=1)[:, :n] for k in out[0][2]}
    return sig, mu, rho


# --------------------------------------------------------------------------- nets and data


def digits_conv(seed: int):
    """Digits 8×8×1 images and a conv net 16-16-16 (max pool after the first) trained for 600 SGD steps."""
    from stability import data
    from stability.core.train import TrainConfig, fit

    ds = data.load("digits", layout="image")
    x = np.concatenate([ds.x_train, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    net = nets.conv(jax.random.PRNGKey(seed), (8, 8, 1), (16, 16, 16), 10, pool=("max", None, None))
    net, _ = fit(net, ds.x_train, ds.y_train, TrainConfig(steps=600, batch_size=64, optimizer="sgd", lr=0.05,
                                                          seed=seed, log_every=600), progress=False)
    return net, x, y, "conv 8×8×1 → 16 (max pool) → 16 → 16 → 10, trained 600 SGD steps on digits"


def vgg11(seed: int, n: int, cifar: str | None):
    """VGG-11 (8 convs 64-128-256-256-512-512-512-512, max pools as in VGG, one dense 512→10 layer)."""
    pool = ("max", "max", None, "max", None, "max", None, "max")
    net = nets.conv(jax.random.PRNGKey(seed), (32, 32, 3), (64, 128, 256, 256, 512, 512, 512, 512), 10, pool=pool)
    if cifar:
        from stability import data

        ds = data.load("cifar10", source=cifar, normalize=True)
        x = ds.x_train[:n]
        what = f"VGG-11 (untrained) on {x.shape[0]} CIFAR-10 training images"
    else:
        x = np.asarray(jax.random.normal(jax.random.PRNGKey(seed + 1), (n, 32, 32, 3), jnp.float32))
        what = f"VGG-11 (He init) on {n} Gaussian 32×32×3 inputs"
    return net, x, None, what


# --------------------------------------------------------------------------- main


def _rel(a, b):
    """Max and median relative difference of two lists of arrays (non-finite and huge ρ skipped)."""
    a = np.concatenate([np.asarray(v, np.float64).ravel() for v in a]) if len(a) else np.zeros(0)
    b = np.concatenate([np.asarray(v, np.float64).ravel() for v in b]) if len(b) else np.zeros(0)
    ok = np.isfinite(a) & np.isfinite(b) & (np.abs(b) < 1e6)
    r = np.abs(a[ok] - b[ok]) / np.maximum(np.abs(b[ok]), 1e-12)
    return (float(np.max(r)) if r.size else float("nan"), float(np.median(r)) if r.size else float("nan"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vgg11", action="store_true", help="VGG-11 on 32×32 inputs (meant for a GPU)")
    ap.add_argument("--cifar", help="with --vgg11: a CIFAR-10 python-batches directory (default: Gaussian inputs)")
    ap.add_argument("--n", type=int, help="samples (default 1024; 10000 with --vgg11)")
    ap.add_argument("--p", type=float, default=0.5)
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--ts", default="0,0.5", help="t grid (comma-separated)")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--method", choices=["lobpcg", "power"], default="lobpcg")
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--batch", type=int, help="samples per chunk for ours (default: memory budget)")
    ap.add_argument("--memory-gb", type=float, default=None,
                    help="ours: memory budget per chunk (default 0.5, 8 on GPU)")
    ap.add_argument("--baseline-batch", type=int, default=32)
    ap.add_argument("--baseline-n", type=int, help="samples for the baseline (default: all; 4 with --vgg11)")
    ap.add_argument("--max-jac-entries", type=float, default=2**27,
                    help="baseline: skip start layers whose Jacobians exceed this many entries per sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="append the result table to this markdown file")
    args = ap.parse_args()
    gpu = jax.devices()[0].platform == "gpu"
    ts = tuple(float(t) for t in args.ts.split(","))
    if args.vgg11:
        net, x, _, what = vgg11(args.seed, args.n or 10000, args.cifar)
    else:
        net, x, _, what = digits_conv(args.seed)
        x = x[:args.n or 1024]
    x = jnp.asarray(x, jnp.float32)
    n = x.shape[0]
    budget = int((args.memory_gb or (8.0 if gpu else 0.5)) * 2**30)
    print(f"machine: {machine_description()}; {what}; {n} samples; p={args.p}, {args.draws} draws, t ∈ {ts}",
          flush=True)
    key = jax.random.PRNGKey(args.seed)
    deltas = cushions.sample_masks(net, jax.random.split(key)[0], args.p, args.draws)
    kw = dict(p=args.p, ts=ts, tol=args.tol, max_iter=args.max_iter, method=args.method, masks=deltas,
              batch_size=args.batch, memory_budget=budget)

    # ours: a first call on one chunk compiles; then the whole run, warm
    bs = args.batch or _default_batch(net, n, args.draws * len(ts), 4, budget)
    kw["batch_size"] = bs
    t0 = time.perf_counter()
    cushions.measure(net, x[:bs], key, **kw)
    t_compile = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = cushions.measure(net, x, key, **kw)
    t_ours = time.perf_counter() - t0
    print(f"ours: {t_ours:.2f} s warm ({bs} samples per chunk), compile + first chunk {t_compile:.2f} s", flush=True)

    # baseline: materialised Jacobians on (a subset of) the same samples and masks
    dims = ours.dims
    starts = tuple(i for i in range(1, net.depth) if sum(dims[i:]) * dims[i - 1] <= args.max_jac_entries)
    nb = min(n, args.baseline_n or (4 if args.vgg11 else n))
    xb = x[:nb]
    bb = min(args.baseline_batch, nb)
    t0 = time.perf_counter()
    baseline(net, xb[:bb], deltas, ts, bb, starts)
    t_bcompile = time.perf_counter() - t0
    t0 = time.perf_counter()
    sig_b, mu_b, rho_b = baseline(net, xb, deltas, ts, bb, starts)
    t_base = (time.perf_counter() - t0) * n / nb
    partial = len(starts) < net.depth - 1 or nb < n
    print(f"baseline: {t_base:.2f} s{' (extrapolated lower bound)' if partial else ''}, compile + first chunk "
          f"{t_bcompile:.2f} s; start layers {starts}", flush=True)

    s_max, s_med = _rel([ours.spectral_norm[:nb, i - 1, j - 1] for (i, j) in sig_b], [sig_b[k] for k in sig_b])
    m_max, m_med = _rel([ours.interlayer_cushion[:nb, i - 1, j - 1] for (i, j) in mu_b], [mu_b[k] for k in mu_b])
    r_max, r_med = _rel([ours.smoothness[:, :nb, i - 1] for i in rho_b], [rho_b[i] for i in rho_b])
    s = ours.summary()
    iu = np.triu_indices(net.depth, 1)
    pair_iters = ours.power_iters[:, iu[0], iu[1]]
    rows = [
        ("machine", machine_description()),
        ("net / data", f"{what}; {n} samples; d = {net.depth}"),
        ("settings", f"p = {args.p}, {args.draws} mask draws, t ∈ {{{', '.join(f'{t:g}' for t in ts)}}}, "
                     f"spectral norms by {args.method} (jvp/vjp), relative residual tol {args.tol:g}, "
                     f"max {args.max_iter} iterations"),
        ("ours: all quantities, warm", f"{t_ours:.2f} s ({bs} samples per jitted chunk)"),
        ("ours: compile + first chunk", f"{t_compile:.2f} s"),
        ("ours: solver iterations per (sample, pair): median / max",
         f"{np.median(pair_iters):.0f} / {pair_iters.max()}"),
        ("baseline: materialised J (vmap(jacfwd) + SVD), warm",
         f"{t_base:.2f} s" + (f" (LOWER BOUND: {nb} samples scaled to {n}, start layers {starts})" if partial else "")),
        ("baseline: compile + first chunk", f"{t_bcompile:.2f} s"),
        ("speed-up (baseline / ours, warm)", f"{t_base / t_ours:.1f}×" + (" (lower bound)" if partial else "")),
        ("rel. diff ‖J‖₂ (max / median)", f"{s_max:.1e} / {s_med:.1e}"),
        ("rel. diff μ_{i,j} (max / median)", f"{m_max:.1e} / {m_med:.1e}"),
        ("rel. diff ρ per draw (max / median)", f"{r_max:.1e} / {r_med:.1e}"),
        ("ε (Def. 4), c, ρ (Def. 3)", f"{s['epsilon']:.4g}, {s['c']:.4g}, {s['rho']:.4g}"),
    ]
    emit(rows, t_base / t_ours, args.out)


if __name__ == "__main__":
    main()
