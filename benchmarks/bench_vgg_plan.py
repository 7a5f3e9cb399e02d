"""Plan: what the noise-stability measurement (docs/THEORY.md §6) of VGG-11 on 10,000 CIFAR-sized inputs costs.

Measured at a reduced size on this machine, projected to full size by arithmetic printed in the table:

* the net: VGG-11 (8 same-padded 3×3 convs 64-128-256-256-512-512-512-512 with VGG's max pools after convs
  1, 2, 4, 6, 8, one dense 512→10 layer; ``bench_cushions.py --vgg11``) with every conv's channels divided by
  ``--width-div`` (the dense layer's input follows), He init, on ``--n`` Gaussian 32×32×3 inputs (or CIFAR-10 images
  with ``--cifar DIR``);
* ``stability.theory.cushions.measure`` on them: solver iterations per layer pair (median / max over samples;
  unconverged entries flagged), wall time per sample (warm median of ``--repeats`` calls; the first call compiles),
  every executed program's FLOPs (XLA cost analysis) and their rate as a fraction of the plain FP32 matmul rate
  measured in the same run;
* FLOPs per solver iteration from XLA's cost analysis of the solver's jitted block (``spectral._solver_run``)
  compiled with 1 and with 2 unrolled iterations (the difference is one iteration; the rest is the block's forward
  pass and linearisation), and of the per-chunk program (``measure._chunk``: the final σ, cushions, smoothness) —
  at the reduced size AND for the full-size VGG-11, compiled without running it (``--no-full`` skips that compile
  and scales the reduced FLOPs by ``width-div²``, an upper bound: the first conv and the dense layer scale by
  ``width-div`` only);
* the projection: FLOPs per sample at full size × 10,000 samples ÷ (an ASSUMED GPU FP32 rate, ``--gpu-tflops``,
  default 67 TFLOP/s = H100/H200 SXM dense FP32 by the vendor's data sheet × an efficiency): at the efficiency
  measured here on the CPU and at the ones listed in ``--efficiencies``, for the iteration counts measured here
  (ASSUMED to carry over to full width) and for the worst case (every sample at ``--max-iter``).

    python benchmarks/bench_vgg_plan.py [--width-div 8] [--n 8] [--max-iter 200] [--out FILE.md]
    python benchmarks/bench_vgg_plan.py --smoke --out /tmp/plan.md      # tiny: proves the script runs
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from stability.core import nets
from stability.theory import cushions
from stability.theory.cushions import maps, spectral
from stability.theory.cushions.maps import _dims
from stability.theory.cushions.smoothness import _scales

from _table import machine_load, matmul_tflops
from bench_cushions import count_flops, measure_mod

VGG11 = (64, 128, 256, 256, 512, 512, 512, 512)
POOL = ("max", "max", None, "max", None, "max", None, "max")


def vgg11(width_div: int, seed: int = 0) -> nets.Net:
    ch = tuple(max(1, c // width_div) for c in VGG11)
    return nets.conv(jax.random.PRNGKey(seed), (32, 32, 3), ch, 10, pool=POOL)


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0))


def program_flops(net: nets.Net, B: int, ts: tuple[float, ...], draws: int, method: str,
                  as_convs: bool = False) -> dict[str, float]:
    """Per-sample FLOPs (XLA cost analysis, compiled, not run) of one solver iteration, of one solver block's fixed
    part (forward pass + linearisation) and of the per-chunk program, at batch ``B``; plus the compile seconds.
    ``as_convs``: every conv layer compiled as a convolution, as on a GPU (on XLA:CPU the cushion maps apply small
    conv layers as explicit matrices, ``maps._dense_matrix``)."""
    if as_convs:
        saved = maps._dense_matrix
        maps._dense_matrix = lambda *a, **k: None
        try:
            return program_flops(net, B, ts, draws, method)
        finally:
            maps._dense_matrix = saved
    x = jax.ShapeDtypeStruct((B,) + net.arch.in_shape, jnp.float32)
    seed = spectral._seed(jax.random.PRNGKey(0))
    init = spectral._METHODS[method][0]
    st = jax.eval_shape(lambda n, xx: init(spectral._ops(n, nets.forward(n, xx)), seed, xx.dtype), net, x)
    t0 = time.perf_counter()
    f = {}
    for steps in (1, 2):
        f[steps] = _flops(spectral._solver_run.lower(net, x, st, jnp.int32(0), seed, jnp.float32(1e-4),
                                                     jnp.int32(200), method=method, steps=steps).compile())
    deltas = cushions.sample_masks(net, jax.random.PRNGKey(1), 0.5, draws)
    scales = _scales(net, deltas, np.asarray(ts, np.float64), jnp.float32)
    fc = _flops(measure_mod._chunk.lower(net, x, scales, st["X"], jnp.float32(1e-4)).compile())
    it = f[2] - f[1]
    return {"iter": it / B, "block": (f[1] - it) / B, "chunk": fc / B, "compile_s": time.perf_counter() - t0}


def per_sample_flops(fl: dict[str, float], iters: float, unroll: int) -> float:
    """FLOPs per sample of ``iters`` solver iterations in blocks of ``unroll`` plus the per-chunk program."""
    return iters * fl["iter"] + math.ceil(iters / unroll) * fl["block"] + fl["chunk"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width-div", type=int, default=8, help="divide every conv's channels by this (1: full VGG-11)")
    ap.add_argument("--n", type=int, default=8, help="samples measured")
    ap.add_argument("--cifar", help="a CIFAR-10 python-batches directory (default: Gaussian inputs)")
    ap.add_argument("--draws", type=int, default=3, help="Algorithm 1 mask draws for the smoothness")
    ap.add_argument("--ts", default="0,0.5", help="t grid of the smoothness")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--method", choices=["lobpcg", "power"], default="lobpcg")
    ap.add_argument("--repeats", type=int, default=3, help="warm calls timed (median)")
    ap.add_argument("--full-n", type=int, default=10000, help="samples of the projected full-size measurement")
    ap.add_argument("--full-batch", type=int, default=8, help="batch of the full-size cost analysis (FLOPs/sample "
                                                              "do not depend on it)")
    ap.add_argument("--no-full", action="store_true", help="skip the full-size compile; scale by width-div² instead")
    ap.add_argument("--gpu-tflops", type=float, default=67.0,
                    help="ASSUMED GPU FP32 rate (TFLOP/s; default: H100/H200 SXM dense FP32, vendor data sheet)")
    ap.add_argument("--efficiencies", default="0.1,0.3", help="further assumed fractions of --gpu-tflops")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true",
                    help="tiny (width /64, 2 samples, 1 draw, max 3 iterations, no full-size compile): runs, plans nothing")
    ap.add_argument("--out", help="append the table to this markdown file")
    args = ap.parse_args()
    if args.smoke:
        args.width_div, args.n, args.draws, args.max_iter, args.repeats, args.no_full = 64, 2, 1, 3, 1, True
    if args.width_div < 1 or args.n < 1 or args.repeats < 1 or args.max_iter < 1:
        ap.error("--width-div, --n, --repeats and --max-iter must be ≥ 1")
    effs = [float(e) for e in args.efficiencies.split(",") if e]
    ts = tuple(float(t) for t in args.ts.split(","))
    gpu = jax.default_backend() == "gpu"
    net = vgg11(args.width_div, args.seed)
    if args.cifar:
        from stability import data
        x = data.load("cifar10", source=args.cifar, normalize=True).x_train[:args.n]
        inputs = f"{x.shape[0]} CIFAR-10 training images"
    else:
        x = jax.random.normal(jax.random.PRNGKey(args.seed + 1), (args.n, 32, 32, 3), jnp.float32)
        inputs = f"{args.n} Gaussian 32×32×3 inputs"
    x = jnp.asarray(x, jnp.float32)
    n = x.shape[0]
    machine, load0 = machine_load()
    dims = _dims(net)
    d = net.depth
    print(f"machine: {machine}; load {load0}; VGG-11 /{args.width_div}: channels {net.arch.widths[:8]}; {inputs}",
          flush=True)
    key = jax.random.PRNGKey(args.seed)
    deltas = cushions.sample_masks(net, jax.random.split(key)[0], 0.5, args.draws)
    kw = dict(p=0.5, ts=ts, tol=args.tol, max_iter=args.max_iter, method=args.method, masks=deltas, progress=False)

    t0 = time.perf_counter()
    res, counted = count_flops(lambda: cushions.measure(net, x, key, **kw))
    t_first = time.perf_counter() - t0
    warm = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        cushions.measure(net, x, key, **kw)
        warm.append(time.perf_counter() - t0)
    t_warm = float(np.median(warm))
    peak = matmul_tflops(8192 if gpu else 2048)
    frac = counted / t_warm / (peak * 1e12)

    # iterations per layer pair
    plan = spectral._plan(net)
    its, conv = res.power_iters, res.converged
    pair_rows = []
    for i in range(1, d):
        cells = []
        for j in range(i + 1, d + 1):
            if (i, j) in plan.pairs:
                v = its[:, i - 1, j - 1]
                bad = int((~conv[:, i - 1, j - 1]).sum())
                cells.append(f"{np.median(v):.0f} / {v.max()}" + (f" **{bad} unconv.**" if bad else ""))
            else:
                bad = int((~conv[:, i - 1, j - 1]).sum())
                cells.append("exact" + (f" **{bad} unconv.**" if bad else ""))
        pair_rows.append(f"| {i} | " + " | ".join([""] * (i - 1) + cells) + " |")
    iu = [(i, j) for (i, j) in plan.pairs]
    per_sample_max = np.max(np.stack([its[:, i - 1, j - 1] for i, j in iu], 1), axis=1) if iu else np.zeros(n)
    unconv = int(sum((~conv[:, i - 1, j - 1]).sum() for i in range(1, d) for j in range(i + 1, d + 1)))
    n_entries = n * d * (d - 1) // 2
    i_typ = float(np.mean(per_sample_max))

    # FLOPs per iteration: reduced size (and full size compiled without running)
    n_exact = sum(1 for i in range(1, d) for j in range(i + 1, d + 1) if (i, j) not in plan.pairs)
    B = measure_mod._default_batch(net, n, args.draws * len(ts), 4, measure_mod.DEFAULT_MEMORY_BUDGET)
    B = max(1, min(n, -(-n // -(-n // B))))          # the chunk size measure uses (balanced chunks)
    fl_red = program_flops(net, B, ts, args.draws, args.method)
    # the full-size net: its weights only where its programs are compiled; else its shapes (no 9M-weight init)
    full = jax.eval_shape(lambda: vgg11(1, args.seed)) if args.no_full else vgg11(1, args.seed)
    if args.no_full:
        s = args.width_div ** 2
        fl_full = {k: v * s for k, v in fl_red.items() if k != "compile_s"}
        full_how = f"reduced × width-div² = × {s} (upper bound; no full-size compile)"
    else:
        fl_full = program_flops(full, args.full_batch, ts, args.draws, args.method, as_convs=True)
        full_how = (f"XLA cost analysis of the full-size programs at batch {args.full_batch}, every conv layer as a "
                    f"convolution as on a GPU, compiled without running ({fl_full['compile_s']:.0f} s)")
    u_full = spectral._auto_unroll(full, 256)
    u_red = spectral._auto_unroll(net, B)
    model_red = per_sample_flops(fl_red, i_typ, u_red) * n
    f_typ = per_sample_flops(fl_full, i_typ, u_full)
    f_worst = per_sample_flops(fl_full, args.max_iter, u_full)
    N = args.full_n
    rate = args.gpu_tflops * 1e12

    def proj(f: float, eff: float) -> str:
        sec = N * f / (rate * eff)
        return f"{sec:.3g} s" if sec < 120 else f"{sec / 60:.3g} min"

    eff_list = [("measured here (CPU fraction)", frac)] + [(f"assumed {e:g}", e) for e in effs]
    rows = [
        ("machine", machine),
        ("load average before / after (1, 5, 15 min)", f"{load0} / {machine_load()[1]}"),
        ("reduced net", f"VGG-11 with channels ÷ {args.width_div}: convs {list(net.arch.widths[:8])} (3×3, same), "
                        f"max pools after convs 1, 2, 4, 6, 8, dense {net.arch.widths[7]}→10; d = {d}; "
                        f"dims x^i = {list(dims)}; He init"),
        ("data, settings", f"{inputs}; p = 0.5, {args.draws} mask draws, t ∈ {{{', '.join(f'{t:g}' for t in ts)}}}; "
                           f"{args.method}, relative residual tol {args.tol:g}, max {args.max_iter} iterations; "
                           f"{B} samples per chunk"),
        ("`cushions.measure`: first call (compiles) / warm median of "
         f"{args.repeats}", f"{t_first:.2f} s / {t_warm:.3f} s → **{t_warm / n * 1e3:.1f} ms per sample** (warm)"),
        ("iterated pairs / pairs solved exactly (end layer ≤ 16 entries)", f"{len(plan.pairs)} / {n_exact}"),
        ("solver iterations per sample (max over its iterated pairs): mean / max",
         f"{i_typ:.1f} / {per_sample_max.max() if per_sample_max.size else 0}"),
        ("unconverged (σ then a lower bound of ‖J‖₂)", f"**{unconv} of {n_entries} (sample, pair) entries**"
         if unconv else f"0 of {n_entries}"),
        ("FLOPs executed (XLA cost analysis of every call) → rate", f"{counted / 1e9:.2f} GFLOP → "
                                                                  f"{counted / t_warm / 1e9:.2f} GFLOP/s"),
        ("plain FP32 matmul rate, this run → **fraction achieved**", f"{peak * 1e3:.1f} GFLOP/s → "
                                                                    f"**{100 * frac:.1f}%**"
         + (" (on XLA:CPU small conv layers run as explicit matrices: matmul work, so this fraction flatters the "
            "convolutions a GPU runs)" if not gpu else "")),
        ("reduced size, per sample: one iteration / one block's fixed part / chunk program",
         f"{fl_red['iter'] / 1e6:.2f} / {fl_red['block'] / 1e6:.2f} / {fl_red['chunk'] / 1e6:.2f} MFLOP"),
        ("check of the cost model at the reduced size: model / counted",
         f"{model_red / 1e9:.2f} / {counted / 1e9:.2f} GFLOP = {model_red / counted:.2f} (the model ignores "
         f"compaction and the batch's slowest entry)"),
        ("FULL VGG-11 (channels 64…512), per sample: one iteration / block's fixed part / chunk program",
         f"{fl_full['iter'] / 1e9:.3f} / {fl_full['block'] / 1e9:.3f} / {fl_full['chunk'] / 1e9:.3f} GFLOP "
         f"({full_how})"),
        ("full size, FLOPs per sample = I·iter + ⌈I/u⌉·block + chunk",
         f"measured I = {i_typ:.1f} (ASSUMED to carry over to full width), u = {u_full}: **{f_typ / 1e9:.2f} GFLOP**; "
         f"worst case I = {args.max_iter}: {f_worst / 1e9:.1f} GFLOP"),
        (f"total for {N:,} samples", f"{N * f_typ / 1e12:.1f} TFLOP (measured I); {N * f_worst / 1e12:.0f} TFLOP "
                                       f"(worst case)"),
    ]
    for what, eff in eff_list:
        rows.append((f"projected GPU time at {args.gpu_tflops:g} TFLOP/s (ASSUMED) × efficiency {100 * eff:.1f}% "
                     f"({what})", f"{proj(f_typ, eff)} (measured I); {proj(f_worst, eff)} (worst case)"))
    rows.append(("what makes it feasible (in the code)",
                 "pairs ending at the ≤ 16 outputs solved exactly from one vjp sweep (no iterations); the iteration "
                 "runs in activation space (K = J' D^{1/2}: ‖K‖ = ‖J‖) with all pairs of a start layer packed into one "
                 "upward and one downward sweep of per-layer linear maps and activation jvp/vjp (no Jacobian is "
                 "materialised); LOBPCG; vmapped over samples with sample compaction of the slow tail. Not in the "
                 "code: warm starts between samples or chunks, lower-precision solver arithmetic (the solver runs in "
                 "FP32; TF32/BF16 exist only in the evaluator)"))
    table = "\n".join(["| quantity | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])
    pairs = "\n".join([f"| i \\ j | {' | '.join(str(j) for j in range(2, d + 1))} |",
                       "|" + "---|" * d] + pair_rows)
    print(table)
    print(pairs)
    if args.out:
        new = not os.path.exists(args.out)
        cmd = "python " + " ".join(["benchmarks/bench_vgg_plan.py"] + sys.argv[1:])
        with open(args.out, "a") as f:
            if new:
                f.write(HEADER)
            f.write(f"\n### {time.strftime('%Y-%m-%d')} — `{cmd}`\n\n{table}\n\nSolver iterations per layer pair "
                    f"(i, j): median / max over the {n} samples (\"exact\": solved from the small Gram matrix, no "
                    f"iterations; unconverged entries flagged):\n\n{pairs}\n")


HEADER = """# bench_vgg_plan: the VGG-11 noise-stability plan (measured reduced, projected full size)

A plan, not a timing comparison: `cushions.measure` on VGG-11 with fewer channels is measured on the machine named
in each block (iterations per layer pair, time per sample, FLOPs and their fraction of the plain FP32 matmul rate
of the same run); the full-size FLOPs per iteration come from XLA's cost analysis of the full-size programs
(compiled, not run); the GPU time is projected with an ASSUMED rate and efficiency, stated in each row. Iteration
counts measured at the reduced width are ASSUMED to carry over; the worst case (every sample at the iteration cap)
is given beside. Each block below is one run; its heading is the command.
"""


if __name__ == "__main__":
    main()
