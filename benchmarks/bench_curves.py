"""Benchmark: (a) the overhead of one epoch of curve training over one epoch of plain training;
(b) 121 points on a curve between two BatchNorm nets, BN statistics recomputed at every point.

(a) Garipov et al. (2018), Appendix A.2: "the gap in time-complexity between one epoch of training
a single model and one epoch of the proposed method ... is usually below 15%" (our target on a GPU:
< 5%). One epoch (``n // batch`` steps) of ``stability.curves.train_curve`` (Bezier curve, 1 bend,
between two MLPs, ``stability.core.nets.apply``, weight decay on the curve point φ(t) as the paper) against
one epoch of ``stability.core.train.fit`` of the same MLP (weight decay on its weights): same optimizer,
learning rate, schedule, batch size and number of steps, no dropout, both in jitted ``lax.scan`` blocks of the
same size (``--blocks`` per epoch). Both are warmed up (compiled) first. Then ``--pairs`` (≥ 7) timed pairs
run the two calls back to back, alternating which goes first; each pair gives one ratio curve / plain, and
the overhead is the MEDIAN of the paired ratios with its min / max — load changes on a shared machine hit
both halves of a pair, where best-of times compare different moments. A diagnostic pair times the same
bend-training step written here (one ``lax.scan`` per epoch) with ``curves.point`` against the bend itself
as the net (no curve arithmetic), also as a median of paired ratios.

(b) Ours: ``stability.core.evaluate.evaluate`` with ``BNPoint(inner=curve_point, model)`` and
``BNEval(model)`` (vmap over a chunk of points: recompute every point's BN statistics with one
pass over the training batches, then ``lax.scan`` over the evaluation batches). Baseline, in the
same process: a per-point Python loop — jitted curve point, jitted ``recompute_batch_stats`` for
that one point, then a jitted eval-mode forward pass over the evaluation data with the loss read back per
batch (what per-point PyTorch scripts do). Both use the same training batches for the statistics and the
same evaluation batch size (``--bn-eval-batch``); the losses must agree (relative difference < 1e-3,
else the script exits non-zero).

    python benchmarks/bench_curves.py [--n 25600] [--width 400] [--depth 3] [--pairs 9] \\
        [--bn-train 4096] [--bn-eval 2048] [--bn-width 256] [--bn-depth 2] [--out FILE.md]
    # paper scale on a GPU (defaults there): --n 60000 --bn-train 50000 --bn-eval 10000 --bn-width 1024
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from stability.curves import batchnorm
from stability.curves import curve as curves
from stability.core import nets
from stability.core.evaluate import choose_sizes, evaluate
from stability.curves.flax_models import MLPBN
from stability.core.losses import accuracy, cross_entropy
from stability.app.report import machine_description
from stability.core.train import MinibatchOrder, TrainConfig, fit, make_optimizer

from _table import emit, per_point_means, timed

D_IN, CLASSES = 784, 10


# --------------------------------------------------------------------------- (a) curve-training overhead


def load_average() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def wall(fn) -> float:
    """Seconds of one warm call of ``fn`` (its result blocked on)."""
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - t0


def paired_ratios(base, other, pairs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``pairs`` back-to-back timings of ``base()`` and ``other()`` (alternating which runs first): the
    seconds of each and the ratios ``other / base``, one per pair."""
    tb, to = [], []
    for r in range(pairs):
        if r % 2 == 0:
            tb.append(wall(base))
            to.append(wall(other))
        else:
            to.append(wall(other))
            tb.append(wall(base))
    tb, to = np.array(tb), np.array(to)
    return tb, to, to / tb


def spread(ratios: np.ndarray) -> str:
    """``median (min … max) over k pairs`` as a percentage change."""
    pct = 100 * (ratios - 1)
    return (f"{np.median(pct):+.1f}% (min {pct.min():+.1f}%, max {pct.max():+.1f}%, {len(pct)} pairs)")


def identity_point(curve: curves.Curve, t: jax.Array):
    """The bend itself, as a plain net (diagnostic: a training step with no curve arithmetic at all)."""
    return jax.tree_util.tree_map(lambda m: m[0], curve.bends)


@functools.partial(jax.jit, static_argnums=(0, 1))
def diag_epoch(point_fn, opt, curve: curves.Curve, x, y, idx, ts):
    """One epoch of bend-training steps in one ``lax.scan``, written like the library's curve step but with
    ``point_fn`` as the curve point (diagnostic: isolates the cost of the point function in a real step)."""
    def step(carry, inp):
        bends, state = carry
        bi, t = inp

        def objective(b):
            logits = nets.apply(point_fn(curves.Curve(curve.ends, b, curve.kind), t), x[bi])
            return jnp.mean(cross_entropy(logits, y[bi]))

        value, grads = jax.value_and_grad(objective)(bends)
        updates, state = opt.update(grads, state, bends)
        return (optax.apply_updates(bends, updates), state), value

    (bends, _), values = jax.lax.scan(step, (curve.bends, opt.init(curve.bends)), (idx, ts))
    return bends, values


def part_a(args, gpu: bool) -> tuple[list[tuple[str, str]], float, list[str]]:
    n = args.n or (60000 if gpu else 25600)
    sizes = (D_IN,) + (args.width,) * args.depth + (CLASSES,)
    a = nets.mlp(jax.random.PRNGKey(1), sizes)
    b = nets.mlp(jax.random.PRNGKey(2), sizes)
    x = jax.random.normal(jax.random.PRNGKey(3), (n, D_IN), jnp.float32)
    y = jax.random.randint(jax.random.PRNGKey(4), (n,), 0, CLASSES)
    steps = n // args.batch
    block = max(1, steps // args.blocks)
    curve = curves.bezier(a, b, 1)
    print(f"(a) MLP {sizes}; {n} samples; batch {args.batch}; {steps} steps/epoch in blocks of {block}; "
          f"{args.optimizer} lr {args.lr}, weight decay {args.weight_decay}; {args.pairs} timed pairs", flush=True)

    cfg = TrainConfig(steps=steps, batch_size=args.batch, optimizer=args.optimizer, lr=args.lr,
                      weight_decay=args.weight_decay, log_every=block)

    def plain():
        return fit(a, x, y, cfg, progress=False)[0]

    def curve_run():
        return curves.train_curve(curve, nets.apply, x, y, cfg, penalty="point", progress=False)[0].bends

    first_plain, first_curve = wall(plain), wall(curve_run)  # compile / warm up
    wall(plain), wall(curve_run)  # one more warm call each before timing
    print(f"  first calls (incl. compilation): plain {first_plain:.2f} s, curve {first_curve:.2f} s", flush=True)
    t_plain, t_curve, ratios = paired_ratios(plain, curve_run, args.pairs)
    for r in range(args.pairs):
        print(f"  pair {r + 1}: plain {t_plain[r]:.3f} s, curve {t_curve[r]:.3f} s, ratio {ratios[r]:.3f}", flush=True)

    # diagnostic: the same bend-training step with the library's point against no curve at all, paired
    opt = make_optimizer(cfg)
    idx = jnp.asarray(MinibatchOrder(n, args.batch, 0).take(steps))
    ts = jax.random.uniform(jax.random.PRNGKey(5), (steps,), jnp.float32)
    none = functools.partial(diag_epoch, identity_point, opt, curve, x, y, idx, ts)
    lib = functools.partial(diag_epoch, curves.point, opt, curve, x, y, idx, ts)
    wall(none), wall(lib)
    d_none, d_lib, d_ratios = paired_ratios(none, lib, args.pairs)
    print(f"  diagnostic (one scan per epoch): `curves.point` / no curve {spread(d_ratios)}", flush=True)

    rows = [
        ("part", "(a) one epoch of curve training vs one epoch of plain training"),
        ("machine", machine_description()),
        ("load average (1, 5, 15 min) after the part", load_average()),
        ("net / data", f"MLP {'-'.join(map(str, sizes))} ({nets.param_count(a)} params), {n} synthetic samples"),
        ("training", f"batch {args.batch}, {steps} steps = 1 epoch, {args.optimizer} lr {args.lr}, weight decay "
                     f"{args.weight_decay} (plain: on the weights; curve: on φ(t)), jitted blocks of {block} steps; "
                     "curve: Bezier, 1 bend"),
        ("timing", f"{args.pairs} pairs of warm whole calls back to back, alternating which runs first, after two "
                   "warm-up calls each"),
        ("plain epoch (`train.fit`), median (min … max)",
         f"{np.median(t_plain):.3f} s ({t_plain.min():.3f} … {t_plain.max():.3f})"),
        ("curve epoch (`curves.train_curve`), median (min … max)",
         f"{np.median(t_curve):.3f} s ({t_curve.min():.3f} … {t_curve.max():.3f})"),
        ("overhead: median of the paired ratios curve / plain − 1", spread(ratios)),
        ("Garipov et al. A.2 (usually)", "< 15%"),
        ("our target (GPU)", "< 5%"),
        ("diagnostic, same step in one scan: `curves.point` vs the bend itself as the net (no curve), paired",
         spread(d_ratios)),
        ("first call incl. compilation: plain / curve", f"{first_plain:.2f} s / {first_curve:.2f} s"),
    ]
    notes = [
        f"Part (a): each of the {args.pairs} pairs times one warm `fit` call and one warm `train_curve` call (one "
        f"epoch each, compiled programs cached) back to back; the overhead is the median of the per-pair ratios, "
        f"with the smallest and largest ratio as its spread. The matmuls of a curve step are those of a plain "
        f"step; what it adds is the Bezier point φ(t) over all {nets.param_count(a)} weights, its VJP to the bend "
        f"and the L2 of φ(t) (memory-bound elementwise work). The diagnostic pair runs one epoch of the same "
        f"bend-training step (one `lax.scan`, written in this script like the library's) with `curves.point` "
        f"and with the bend itself as the net.",
    ]
    return rows, float(np.median(ratios)), notes


# --------------------------------------------------------------------------- (b) BN-recompute evaluation


def baseline_bn(model, curve, xb, momentum, ts, x, y, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-point loop: jitted point, jitted BN recompute for one point, jitted eval forward per batch."""
    point = jax.jit(curves.point)
    stats_fn = jax.jit(lambda p, m, xb: batchnorm.recompute_batch_stats(model, p, m, xb))

    @jax.jit
    def batch_sums(variables, xs, ys):
        out = model.apply(variables, xs, train=False)
        return jnp.sum(cross_entropy(out, ys)), jnp.sum(accuracy(out, ys))

    dtype = jax.tree_util.tree_leaves(curve.ends[0])[0].dtype

    def variables(t):
        params = point(curve, jnp.asarray(t, dtype))
        return {"params": params, **stats_fn(params, momentum, xb)}

    return per_point_means(batch_sums, (variables(t) for t in ts), x, y, batch)


def part_b(args, gpu: bool) -> tuple[list[tuple[str, str]], float, list[str]]:
    n_train = args.bn_train or (50000 if gpu else 4096)
    n_eval = args.bn_eval or (10000 if gpu else 2048)
    width = args.bn_width or (1024 if gpu else 256)
    widths = (width,) * args.bn_depth
    model = MLPBN(widths=widths, classes=CLASSES)
    x_tr = jax.random.normal(jax.random.PRNGKey(6), (n_train, D_IN), jnp.float32)
    x_ev = jax.random.normal(jax.random.PRNGKey(7), (n_eval, D_IN), jnp.float32)
    y_ev = jax.random.randint(jax.random.PRNGKey(8), (n_eval,), 0, CLASSES)
    v0 = model.init(jax.random.PRNGKey(10), x_tr[:2])
    v1 = model.init(jax.random.PRNGKey(11), x_tr[:2])
    curve = curves.perturb_bends(curves.bezier(v0["params"], v1["params"], 1), jax.random.PRNGKey(12), 0.02)
    theta = batchnorm.bn_point_theta(curve, model, v0, x_tr, batch_size=args.bn_batch)
    _, xb, momentum = theta
    ts = np.linspace(0.0, 1.0, args.points)
    point_fn = batchnorm.BNPoint(inner=curves.curve_point, model=model)
    apply_fn = batchnorm.BNEval(model)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(v0["params"]))
    print(f"(b) MLPBN 784-{'-'.join(map(str, widths))}-10 ({n_params} params); BN recompute over "
          f"{xb.shape[0]}×{xb.shape[1]} training samples; {n_eval} eval samples; {args.points} points", flush=True)

    batch = args.bn_eval_batch
    _, chunk = choose_sizes(jax.eval_shape(point_fn, theta, jnp.float32(0.5)), apply_fn, x_ev, args.points,
                            batch_size=batch)
    n_chunks = -(-args.points // chunk)

    def ours():
        return evaluate(point_fn, theta, ts, x_ev, y_ev, apply_fn=apply_fn, batch_size=batch).loss

    t_first, _, _ = timed(ours, 0)
    print(f"  ours: first call incl. compilation {t_first:.3f} s; eval batch {batch} (both sides), chunk {chunk} "
          f"points → {n_chunks} chunks", flush=True)
    t0 = time.perf_counter()
    baseline_bn(model, curve, xb, momentum, ts[:2], x_ev, y_ev, batch)  # compile every jitted piece
    t_base_first = time.perf_counter() - t0

    def base():
        return baseline_bn(model, curve, xb, momentum, ts, x_ev, y_ev, batch)[0]

    t_ours, t_base, ratios = paired_ratios(ours, base, args.bn_pairs)
    for r in range(args.bn_pairs):
        print(f"  pair {r + 1}: ours {t_ours[r]:.3f} s, baseline {t_base[r]:.3f} s, speed-up {ratios[r]:.2f}×",
              flush=True)
    res = evaluate(point_fn, theta, ts, x_ev, y_ev, apply_fn=apply_fn, batch_size=batch)
    base_loss, base_acc = baseline_bn(model, curve, xb, momentum, ts, x_ev, y_ev, batch)
    abs_err = float(np.max(np.abs(res.loss - base_loss)))
    rel_err = float(np.max(np.abs(res.loss - base_loss) / np.abs(base_loss)))
    acc_err = float(np.max(np.abs(res.acc - base_acc)))
    print(f"  max |Δloss| {abs_err:.2e} (relative {rel_err:.2e}); max |Δacc| {acc_err:.2e}; "
          f"loss range along the curve {res.loss.min():.4f} … {res.loss.max():.4f}", flush=True)
    ok = rel_err < 1e-3
    dense = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(v0["params"]) if p.ndim == 2)
    flops = 2 * dense * (xb.shape[0] * xb.shape[1] + n_eval) * args.points  # forward passes, both methods
    med_ours, med_base = float(np.median(t_ours)), float(np.median(t_base))
    rows = [
        ("part", f"(b) {args.points} points on a curve between two BatchNorm nets, BN statistics recomputed per point"),
        ("machine", machine_description()),
        ("net / data", f"flax `MLPBN` 784-{'-'.join(map(str, widths))}-10 ({n_params} params), Bezier 1 bend; "
                       f"BN recompute over {xb.shape[0] * xb.shape[1]} training samples (batches of {xb.shape[1]}); "
                       f"loss/acc over {n_eval} samples in batches of {batch} (both sides)"),
        ("load average (1, 5, 15 min) after the part", load_average()),
        ("timing", f"{args.bn_pairs} pairs of warm calls back to back, alternating which runs first"),
        ("ours: `evaluate` + `BNPoint` (vmap points, scan batches), median (min … max)",
         f"{med_ours:.3f} s ({t_ours.min():.3f} … {t_ours.max():.3f}); chunk {chunk} → {n_chunks} chunks"),
        ("ours, first call incl. compilation", f"{t_first:.3f} s"),
        (f"baseline: per-point loop (jitted point, BN recompute, eval batch {batch}), median (min … max)",
         f"{med_base:.3f} s ({t_base.min():.3f} … {t_base.max():.3f})"),
        ("baseline, 2-point warm-up incl. compilation", f"{t_base_first:.3f} s"),
        ("per point, ours / baseline (medians)",
         f"{1e3 * med_ours / args.points:.1f} ms / {1e3 * med_base / args.points:.1f} ms"),
        ("speed-up baseline / ours: median of the paired ratios (min … max)",
         f"{np.median(ratios):.2f}× ({ratios.min():.2f}× … {ratios.max():.2f}×)"),
        (f"forward-pass FP32 GFLOP/s ({args.points} points × (BN pass + eval)), ours / baseline (medians)",
         f"{flops / med_ours / 1e9:.0f} / {flops / med_base / 1e9:.0f}"),
        ("agreement: max abs / rel. difference of losses", f"{abs_err:.1e} / {rel_err:.1e} ({'OK' if ok else 'FAIL'})"),
        ("agreement: max abs difference of accuracies", f"{acc_err:.1e}"),
    ]
    if not ok:
        emit(rows, float(np.median(ratios)), None)
        sys.exit(f"results disagree: max rel. difference of the losses {rel_err:.2e} >= 1e-3")
    notes = [
        f"Part (b): both methods do the same {flops / 1e9:.1f} GFLOP of forward passes (one BN pass over "
        f"{xb.shape[0] * xb.shape[1]} training samples and one eval pass over {n_eval} samples per point) with the "
        f"same evaluation batch size ({batch}); ours reached {flops / med_ours / 1e9:.1f} GFLOP/s and the per-point "
        f"loop {flops / med_base / 1e9:.1f} GFLOP/s (medians). `evaluate` vectorises {chunk} points per chunk "
        f"(its memory budget); {args.points} points need {n_chunks} chunk(s).",
    ]
    return rows, float(np.median(ratios)), notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None, help="(a) training samples (default 25600 CPU, 60000 GPU)")
    ap.add_argument("--width", type=int, default=400, help="(a) hidden width")
    ap.add_argument("--depth", type=int, default=3, help="(a) hidden layers")
    ap.add_argument("--batch", type=int, default=128, help="(a) batch size")
    ap.add_argument("--optimizer", default="sgd", choices=["sgd", "momentum", "adam"], help="(a) both runs")
    ap.add_argument("--lr", type=float, default=0.01, help="(a) learning rate of both runs")
    ap.add_argument("--blocks", type=int, default=4, help="(a) jitted blocks (progress lines) per epoch")
    ap.add_argument("--weight-decay", type=float, default=1e-4, help="(a) both runs (curve: on φ(t))")
    ap.add_argument("--bn-train", type=int, default=None, help="(b) training samples for the BN recompute "
                                                                "(default 4096 CPU, 50000 GPU)")
    ap.add_argument("--bn-eval", type=int, default=None, help="(b) evaluation samples (default 2048 CPU, 10000 GPU)")
    ap.add_argument("--bn-width", type=int, default=None, help="(b) hidden width (default 256 CPU, 1024 GPU)")
    ap.add_argument("--bn-depth", type=int, default=2, help="(b) hidden layers")
    ap.add_argument("--bn-batch", type=int, default=128, help="(b) batch size of the BN-recompute pass (both)")
    ap.add_argument("--bn-eval-batch", type=int, default=128, help="(b) evaluation batch size of both sides")
    ap.add_argument("--points", type=int, default=121, help="(b) points on the curve")
    ap.add_argument("--pairs", type=int, default=9, help="(a) timed pairs plain / curve (>= 7)")
    ap.add_argument("--bn-pairs", type=int, default=3, help="(b) timed pairs ours / per-point loop")
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--skip-b", action="store_true")
    ap.add_argument("--out", help="append the result tables to this markdown file")
    args = ap.parse_args()
    if args.blocks < 1:
        ap.error("--blocks must be at least 1")
    if args.pairs < 7 or args.bn_pairs < 1:
        ap.error(f"--pairs must be at least 7 and --bn-pairs at least 1, got {args.pairs} and {args.bn_pairs}")
    gpu = jax.devices()[0].platform == "gpu"
    print(f"machine: {machine_description()}", flush=True)
    header = ("# bench_curves: curve-training overhead and BN-recompute evaluation\n\n"
              f"Machine: {machine_description()}.\n\n"
              "(a) Wall time of one epoch of `stability.curves.train_curve` (Bezier, 1 bend) against one epoch "
              "of `stability.core.train.fit` of the same MLP (same optimizer, batch size and steps; warm calls, "
              "compilation excluded), as the median of paired per-repeat ratios. Garipov et al. (2018), A.2: the "
              "gap is usually below 15%. "
              "(b) 121 points on a curve between two flax BatchNorm MLPs with the BN statistics recomputed at "
              "every point by one pass over the training batches: `evaluate` + `BNPoint` (vectorised) against a "
              "per-point Python loop of jitted pieces, same evaluation batch size, in the same process. Each block below is one run; its "
              "heading is the command. Synthetic data (x ~ N(0, 1), random labels).\n")
    for skip, part in ((args.skip_a, part_a), (args.skip_b, part_b)):
        if skip:
            continue
        rows, ratio, notes = part(args, gpu)
        emit(rows, ratio, args.out, header=header)
        print("\n".join(notes), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write("\n" + "\n\n".join(notes) + "\n")


if __name__ == "__main__":
    main()
