"""Benchmark: every noise-stability quantity (docs/THEORY.md §6) for a conv net, ours vs a materialised baseline.

Ours: ``stability.theory.cushions.measure`` (LOBPCG on the activation-space Gram operator of every iterated layer
pair through jvp/vjp, exact small-side Gram matrices for pairs ending at the ≤ 16 outputs, certified σ = ‖Jᵀu‖).
Baseline, in the same process, on the same samples and masks: what a competent user writes — per start layer
one ``vmap(jax.jacrev)`` of the layer maps gives ``[J^{i,j}]_{j>i}``; the SMALLER Gram matrix of each pair
(``J Jᵀ`` or ``Jᵀ J``) is formed on the device and its largest eigenvalue taken on the host with
``numpy.linalg.eigvalsh`` (XLA:CPU deadlocks on ``eigh`` inside ``jit``); ``J x`` and ``J(x̂ − x^i)`` are matrix
products — jitted and vmapped in chunks. The two sides alternate in ``--pairs`` pairs after one compiling call
each; the table gives the median of the per-pair ratios with min/max, the machine and its load, the FLOPs XLA
counts for our programs and the fraction of the plain FP32 matmul rate they reach.

    python benchmarks/bench_cushions.py [--n 1024] [--out FILE.md]          # CPU: digits conv net
    python benchmarks/bench_cushions.py --vgg11 [--n 10000] [--out FILE.md]  # GPU: VGG-11, 32×32 inputs

With ``--vgg11`` the materialised Jacobians of the early layers do not fit anywhere (``J^{1,2}``
alone is 32768 × 65536 per sample), so the baseline runs on ``--baseline-n`` samples and only on
the start layers whose Jacobians have at most ``--max-jac-entries`` entries; its time, scaled to
all samples, is a LOWER bound, and so is the reported speed-up. The VGG-11 plan (iteration counts, FLOPs,
projected GPU time) is ``benchmarks/bench_vgg_plan.py``.
"""

from __future__ import annotations

import os

# The baseline's host eigensolver: single-threaded LAPACK per call, the batch split over the cores by threads.
# With OpenBLAS's own threads next to XLA's on a small shared machine, eigvalsh of 32 256×256 Gram matrices took
# 1–30 s instead of 0.13 s (measured), so this is the baseline's fastest configuration.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import concurrent.futures  # noqa: E402
import functools  # noqa: E402
import importlib  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from stability.theory import cushions  # noqa: E402
from stability.core import nets  # noqa: E402
from stability.theory.cushions import spectral  # noqa: E402
from stability.theory.cushions.maps import _dims, _step  # noqa: E402
from stability.theory.cushions.measure import _default_batch  # noqa: E402
from stability.theory.cushions.operators import _norm  # noqa: E402
from stability.theory.cushions.smoothness import _scales  # noqa: E402

from _table import best_batch, emit, machine_load, matmul_tflops, paired  # noqa: E402

measure_mod = importlib.import_module("stability.theory.cushions.measure")


# --------------------------------------------------------------------------- the fair materialised baseline


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
    """Materialised Jacobians of one chunk (``vmap(jacrev)`` per start layer), the SMALLER Gram matrix of every
    pair (``J Jᵀ`` or ``Jᵀ J``), ``‖J x^i‖`` and the smoothness ρ — everything but the eigenvalues, which a
    competent user takes on the host (XLA:CPU deadlocks on ``eigh`` inside ``jit``)."""
    d = net.depth
    pre = nets.forward(net, x)
    B = x.shape[0]
    dims = [int(np.prod(p.shape[1:])) for p in pre]
    flat = [p.reshape(B, -1) for p in pre]
    K, T = scales[0].shape[:2]
    pre_hat = jax.vmap(lambda s: nets.forward(net, x, list(s)))(
        tuple(s.reshape((K * T,) + s.shape[2:]) for s in scales))
    gram, jx, rho = {}, {}, {}
    tiny = 100 * jnp.finfo(x.dtype).eps
    for i in starts:
        J = jax.vmap(jax.jacrev(_start_fn(net, i, pre[i - 1].shape[1:])))(pre[i - 1])
        J = J.reshape(B, J.shape[1], -1)                                                  # (B, Σ dim_j, dim_i)
        cuts = np.cumsum([0] + dims[i:])
        Js = {j: J[:, cuts[r]:cuts[r + 1]] for r, j in enumerate(range(i + 1, d + 1))}
        for j, Jj in Js.items():
            gram[i, j] = (jnp.einsum("bij,bkj->bik", Jj, Jj) if Jj.shape[1] <= Jj.shape[2]
                          else jnp.einsum("bji,bjk->bik", Jj, Jj))
            jx[i, j] = jnp.linalg.norm(jnp.einsum("bij,bj->bi", Jj, flat[i - 1]), axis=1)
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
    return gram, jx, rho, [_norm(f) for f in flat]


_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1)


def _largest_eigenvalues(g: np.ndarray) -> np.ndarray:
    """``numpy.linalg.eigvalsh(g)[:, -1]`` with the batch split over the cores (LAPACK releases the GIL)."""
    parts = np.array_split(g, min(len(g), os.cpu_count() or 1))
    return np.concatenate(list(_POOL.map(lambda a: np.linalg.eigvalsh(a)[:, -1], parts)))


def baseline(net: nets.Net, x, deltas, ts, batch: int, starts: tuple[int, ...]):
    """σ, μ and ρ of every sample from materialised Jacobians: per chunk the jitted :func:`_baseline_chunk`,
    then ``numpy.linalg.eigvalsh`` of the smaller Gram matrices (largest eigenvalue = σ²)."""
    scales = _scales(net, deltas, np.asarray(ts, np.float64), x.dtype)
    sig, mu, rho = {}, {}, {}
    n = x.shape[0]
    for s in range(0, n, batch):
        xc = x[s:s + batch]
        m = xc.shape[0]
        if m < batch:
            xc = jnp.concatenate([xc, jnp.repeat(xc[:1], batch - m, axis=0)])
        gram, jx, r, xn = jax.device_get(_baseline_chunk(net, xc, scales, starts))
        for (i, j), g in gram.items():
            sg = np.sqrt(np.maximum(_largest_eigenvalues(g), 0.0))[:m]
            sig.setdefault((i, j), []).append(sg)
            mu.setdefault((i, j), []).append(jx[i, j][:m] / (sg * xn[i - 1][:m]))
        for i, v in r.items():
            rho.setdefault(i, []).append(v[:, :m])
    return ({k: np.concatenate(v) for k, v in sig.items()}, {k: np.concatenate(v) for k, v in mu.items()},
            {k: np.concatenate(v, axis=1) for k, v in rho.items()})


# --------------------------------------------------------------------------- FLOP counting


class FlopCounter:
    """Counts the FLOPs XLA reports (``cost_analysis``) for every call of the wrapped jitted functions."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, tuple, dict]] = []
        self.cache: dict[Any, float] = {}

    def wrap(self, fn):
        def spy(*a, **kw):
            self.calls.append((fn, a, kw))
            return fn(*a, **kw)
        return spy

    def total(self) -> float:
        tot = 0.0
        for fn, a, kw in self.calls:
            sig = (fn, tuple((tuple(np.shape(v)), str(getattr(v, "dtype", type(v)))) for v in jax.tree_util.tree_leaves(a)),
                   tuple(sorted((k, v) for k, v in kw.items() if isinstance(v, (int, str)))))
            if sig not in self.cache:
                cost = fn.lower(*a, **kw).compile().cost_analysis()
                cost = cost[0] if isinstance(cost, (list, tuple)) else cost
                self.cache[sig] = float(cost.get("flops", 0.0))
            tot += self.cache[sig]
        return tot


# --------------------------------------------------------------------------- nets and data


def digits_conv(seed: int, steps: int = 600):
    """Digits 8×8×1 images and a conv net 16-16-16 (max pool after the first) trained for ``steps`` SGD steps."""
    from stability import data
    from stability.core.train import TrainConfig, fit

    ds = data.load("digits", layout="image")
    x = np.concatenate([ds.x_train, ds.x_test])
    y = np.concatenate([ds.y_train, ds.y_test])
    net = nets.conv(jax.random.PRNGKey(seed), (8, 8, 1), (16, 16, 16), 10, pool=("max", None, None))
    net, _ = fit(net, ds.x_train, ds.y_train, TrainConfig(steps=steps, batch_size=64, optimizer="sgd", lr=0.05,
                                                          seed=seed, log_every=steps), progress=False)
    return net, x, y, f"conv 8×8×1 → 16 (max pool) → 16 → 16 → 10, trained {steps} SGD steps on digits"


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


def count_flops(fn):
    """``(result, FLOPs)`` of ``fn()``: every call of the solver block and of the per-chunk program, costed by XLA."""
    counter = FlopCounter()
    saved = (spectral._solver_run, measure_mod._chunk)
    spectral._solver_run, measure_mod._chunk = counter.wrap(saved[0]), counter.wrap(saved[1])
    try:
        out = fn()
    finally:
        spectral._solver_run, measure_mod._chunk = saved
    return out, counter.total()


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
    ap.add_argument("--batch", type=int, help="samples per chunk for ours (default: memory budget, balanced)")
    ap.add_argument("--memory-gb", type=float, default=None,
                    help="ours: memory budget per chunk (default 0.5, 8 on GPU)")
    ap.add_argument("--baseline-batch", type=int, default=None,
                    help="baseline chunk size (default: the fastest of 16, 32, 64, 128 on its first 128 samples)")
    ap.add_argument("--baseline-n", type=int, help="samples for the baseline (default: all; 4 with --vgg11)")
    ap.add_argument("--max-jac-entries", type=float, default=2**27,
                    help="baseline: skip start layers whose Jacobians exceed this many entries per sample")
    ap.add_argument("--pairs", type=int, default=7, help="alternating (ours, baseline) pairs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-steps", type=int, default=600, help="SGD steps of the digits conv net (not --vgg11)")
    ap.add_argument("--out", help="append the result table to this markdown file")
    args = ap.parse_args()
    gpu = jax.devices()[0].platform == "gpu"
    ts = tuple(float(t) for t in args.ts.split(","))
    if args.vgg11:
        net, x, _, what = vgg11(args.seed, args.n or 10000, args.cifar)
    else:
        if args.train_steps < 1:
            ap.error(f"--train-steps must be ≥ 1, got {args.train_steps}")
        net, x, _, what = digits_conv(args.seed, args.train_steps)
        x = x[:args.n or 1024]
    x = jnp.asarray(x, jnp.float32)
    n = x.shape[0]
    budget = int((args.memory_gb or (8.0 if gpu else 0.5)) * 2**30)
    machine, load0 = machine_load()
    print(f"machine: {machine}; load {load0}; {what}; {n} samples; p={args.p}, {args.draws} draws, t ∈ {ts}",
          flush=True)
    key = jax.random.PRNGKey(args.seed)
    deltas = cushions.sample_masks(net, jax.random.split(key)[0], args.p, args.draws)
    kw = dict(p=args.p, ts=ts, tol=args.tol, max_iter=args.max_iter, method=args.method, masks=deltas,
              batch_size=args.batch, memory_budget=budget, progress=False)

    # the baseline's reach: start layers whose Jacobians fit, on (a subset of) the samples
    dims = _dims(net)
    starts = tuple(i for i in range(1, net.depth) if sum(dims[i:]) * dims[i - 1] <= args.max_jac_entries)
    nb = min(n, args.baseline_n or (4 if args.vgg11 else n))
    partial = len(starts) < net.depth - 1 or nb < n
    if args.baseline_batch:
        bb = min(args.baseline_batch, nb)
        b_times = {}
    else:                                # the baseline's best chunk size, searched on its first 128 samples
        xs = x[:min(nb, 128)]
        bb, b_times = best_batch(lambda b: baseline(net, xs, deltas, ts, b, starts)[0],
                                 [b for b in (16, 32, 64, 128) if b <= xs.shape[0]] or [xs.shape[0]], repeats=1)

    t0 = time.perf_counter()
    ours, flops = count_flops(lambda: cushions.measure(net, x, key, **kw))
    t_first = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = baseline(net, x[:nb], deltas, ts, bb, starts)
    t_bfirst = time.perf_counter() - t0
    print(f"first calls (compile included): ours {t_first:.2f} s, baseline {t_bfirst:.2f} s", flush=True)
    pr = paired(lambda: cushions.measure(net, x, key, **kw), lambda: baseline(net, x[:nb], deltas, ts, bb, starts),
                args.pairs, warmup=0)
    scale = n / nb
    t_ours = float(np.median(pr.a))
    ratios = pr.ratios * scale
    sig_b, mu_b, rho_b = base
    s_max, s_med = _rel([ours.spectral_norm[:nb, i - 1, j - 1] for (i, j) in sig_b], [sig_b[k] for k in sig_b])
    m_max, m_med = _rel([ours.interlayer_cushion[:nb, i - 1, j - 1] for (i, j) in mu_b], [mu_b[k] for k in mu_b])
    r_max, r_med = _rel([ours.smoothness[:, :nb, i - 1] for i in rho_b], [rho_b[i] for i in rho_b])
    below = max(float(np.max(ours.spectral_norm[:nb, i - 1, j - 1] / sig_b[i, j] - 1)) for (i, j) in sig_b)
    s = ours.summary()
    iu = np.triu_indices(net.depth, 1)
    pair_iters = ours.power_iters[:, iu[0], iu[1]]
    peak = matmul_tflops(8192 if gpu else 2048)
    bs = args.batch or -(-n // -(-n // _default_batch(net, n, args.draws * len(ts), 4, budget)))
    rows = [
        ("machine", machine),
        ("load average before / after the pairs (1, 5, 15 min)", pr.load),
        ("net / data", f"{what}; {n} samples; d = {net.depth}; dims x^i = {dims}"),
        ("settings", f"p = {args.p}, {args.draws} mask draws, t ∈ {{{', '.join(f'{t:g}' for t in ts)}}}, "
                     f"spectral norms by {args.method} (jvp/vjp), relative residual tol {args.tol:g}, "
                     f"max {args.max_iter} iterations"),
        ("ours: `cushions.measure`, all quantities", pr.time_text("a") + f"; {bs} samples per chunk"),
        ("ours: solver iterations per (sample, pair): median / max (pairs with a ≤ 16-entry end layer: exact, 0)",
         f"{np.median(pair_iters):.0f} / {pair_iters.max()}"),
        ("baseline: `vmap(jacrev)` + smaller Gram on the device + host `numpy.linalg.eigvalsh`, batch "
         f"{bb}", pr.time_text("b") + (f" (on {nb} samples, start layers {starts}: scaled ×{scale:.4g} to {n} "
                                       f"samples it is a LOWER bound)" if partial else "")),
        ("baseline: chunk-size search (s on 128 samples)",
         ", ".join(f"{b}: {t:.2f}" for b, t in b_times.items()) + f" → {bb}" if b_times else f"given: {bb}"),
        ("first calls incl. compilation: ours / baseline", f"{t_first:.2f} s / {t_bfirst:.2f} s"),
        ("**speed-up (baseline / ours), median of per-pair ratios**",
         f"{np.median(ratios):.1f}× (min {ratios.min():.1f}, max {ratios.max():.1f}; {ratios.size} pairs)"
         + (" (lower bound)" if partial else "")),
        ("ours: FLOPs (XLA cost analysis of every solver block and chunk program)",
         f"{flops / 1e9:.1f} GFLOP → {flops / t_ours / 1e9:.1f} GFLOP/s"),
        ("plain FP32 matmul rate, this run → fraction achieved",
         f"{peak * 1e3:.1f} GFLOP/s → {100 * flops / t_ours / (peak * 1e12):.0f}%"),
        ("σ: ours ≤ baseline (certified lower bound): largest ours/baseline − 1", f"{below:.1e}"),
        ("rel. diff ‖J‖₂ (max / median)", f"{s_max:.1e} / {s_med:.1e}"),
        ("rel. diff μ_{i,j} (max / median)", f"{m_max:.1e} / {m_med:.1e}"),
        ("rel. diff ρ per draw (max / median)", f"{r_max:.1e} / {r_med:.1e}"),
        ("ε (Def. 4), c, ρ (Def. 3)", f"{s['epsilon']:.4g}, {s['c']:.4g}, {s['rho']:.4g}"),
        ("unconverged spectral norms", f"{int((~ours.converged[:, iu[0], iu[1]]).sum())} of {pair_iters.size}"),
    ]
    emit(rows, float(np.median(ratios)), args.out, header=HEADER)


HEADER = """# bench_cushions: every noise-stability quantity (docs/THEORY.md §6), ours vs a materialised baseline

Ours = `stability.theory.cushions.measure`: spectral norms by LOBPCG on KᵀK (K = J^{i,j} restricted to the
activation space of layer i, same norm) through per-layer linear maps and activation jvps/vjps, all iterated pairs
in one upward and one downward sweep, vmapped over samples, host-driven jitted blocks with sample compaction;
pairs whose end layer has ≤ 16 entries solved exactly from their small Gram matrix; every σ certified as ‖Jᵀu‖ from
a fresh sweep through J itself (a lower bound of ‖J‖₂); plus layer cushions, contraction, J x, interlayer
smoothness ρ (3 Algorithm 1 draws × t ∈ {0, ½}) and the ∞-norm condition. Baseline, in the same process, on the
same samples and masks: what a competent user writes — per start layer one `vmap(jax.jacrev)` of the layer maps,
the smaller Gram matrix (J Jᵀ or Jᵀ J) of every pair on the device, `numpy.linalg.eigvalsh` on the host (XLA:CPU
deadlocks on `eigh` inside `jit`; single-threaded LAPACK per call, the batch split over the cores — with OpenBLAS's
own threads beside XLA's it ran 10–200× slower here), `J x` and `J(x̂ − x^i)` as matrix products, jitted and vmapped
in chunks of its fastest size (searched).
Both sides alternate in pairs (7 after a first, compiling call each); the speed-up is the median of the per-pair
ratios. Each block below is one run; its heading is the command.
"""


if __name__ == "__main__":
    main()
