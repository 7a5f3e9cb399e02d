"""Benchmark: (a) the overhead of one epoch of curve training over one epoch of plain training;
(b) 121 points on a curve between two BatchNorm nets, BN statistics recomputed at every point.

(a) Garipov et al. (2018), Appendix A.2: "the gap in time-complexity between one epoch of training
a single model and one epoch of the proposed method ... is usually below 15%" (our target on a GPU:
< 5%). One epoch (``n // batch`` steps) of ``stability.curves.train_curve`` (Bezier curve, 1 bend,
between two MLPs, ``stability.core.nets.apply``) against one epoch of ``stability.core.train.fit`` of the same
MLP: same optimizer, learning rate, batch size and number of steps, no dropout, both in jitted
``lax.scan`` blocks of the same size (``--blocks`` per epoch). Both are warmed up (compiled) first.
The epoch time is measured in steady state from the progress callbacks: the wall time of every
full-size block after the first, scaled to the epoch (a whole warm call is reported separately). Diagnostic
rows run one epoch of the same bend-training step (one ``lax.scan``, written here like the library's)
with three point functions — the bend itself as the net (no curve), ``curves.point`` and the same
Bezier written as ``Σ B_i(t)·w_i`` — to show where the curve step's extra time goes.

(b) Ours: ``stability.core.evaluate.evaluate`` with ``BNPoint(inner=curve_point, model)`` and
``BNEval(model)`` (vmap over a chunk of points: recompute every point's BN statistics with one
pass over the training batches, then ``lax.scan`` over the evaluation batches). Baseline, in the
same process: a per-point Python loop — jitted curve point, jitted ``recompute_batch_stats`` for
that one point, then a jitted eval-mode forward pass over the evaluation data in batches of
``--bn-eval-batch`` with the loss read back per batch (what per-point PyTorch scripts do). Both
use the same training batches for the statistics; the losses must agree (relative difference < 1e-3,
else the script exits non-zero).

    python benchmarks/bench_curves.py [--n 25600] [--width 400] [--depth 3] \\
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

from _table import best_time, emit, per_point_means, timed

D_IN, CLASSES = 784, 10


# --------------------------------------------------------------------------- (a) curve-training overhead


def load_average() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


class Stamps:
    """Progress callback for ``fit`` / ``train_curve``: records the wall time of every progress line.
    Each line is emitted after the block's mean loss was converted to a Python float (blocked on)."""

    def __init__(self) -> None:
        self.t: list[float] = []

    def __call__(self, _line: str) -> None:
        self.t.append(time.perf_counter())


def timed_call(fn) -> tuple[float, float, float]:
    """Run ``fn()`` -> history; return (whole call s, s per step, steps) for a warm (already compiled) call."""
    t0 = time.perf_counter()
    hist = fn()
    total = time.perf_counter() - t0
    steps = float(hist.step[-1])
    return total, total / steps, steps


def bernstein_sum_point(curve: curves.Curve, t: jax.Array):
    """The same quadratic Bezier point as ``curves.point`` (1 bend), written as ``Σ B_i(t)·w_i`` without
    stacking the control points (diagnostic only: is the library's form of φ(t) what costs time?)."""
    coef = curves._bernstein(t, 2)
    return jax.tree_util.tree_map(lambda w0, m, w1: coef[0] * w0 + coef[1] * m[0] + coef[2] * w1,
                                  curve.ends[0], curve.bends, curve.ends[1])


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
          f"{args.optimizer} lr {args.lr}", flush=True)

    cfg = TrainConfig(steps=steps, batch_size=args.batch, optimizer=args.optimizer, lr=args.lr, log_every=block)

    def plain():
        net, hist = fit(a, x, y, cfg, progress=False)
        jax.block_until_ready(net)
        return hist

    def curve_run():
        out, hist = curves.train_curve(curve, nets.apply, x, y,
                                       TrainConfig(steps=steps, batch_size=args.batch, optimizer=args.optimizer,
                                                   lr=args.lr, log_every=block), progress=False)
        jax.block_until_ready(out)
        return hist

    first_plain = timed_call(plain)[0]  # compile / warm up
    first_curve = timed_call(curve_run)[0]
    print(f"  first calls (incl. compilation): plain {first_plain:.2f} s, curve {first_curve:.2f} s", flush=True)
    p_call, p_step, c_call, c_step = [], [], [], []
    for r in range(args.repeats):  # interleaved, so load changes on a shared machine hit both
        tot, per, measured = timed_call(plain)
        p_call.append(tot), p_step.append(per)
        tot, per, _ = timed_call(curve_run)
        c_call.append(tot), c_step.append(per)
        print(f"  repeat {r + 1}: plain {p_step[-1] * steps:.3f} s/epoch (call {p_call[-1]:.3f} s), "
              f"curve {c_step[-1] * steps:.3f} s/epoch (call {c_call[-1]:.3f} s)", flush=True)
    plain_epoch, curve_epoch = min(p_step) * steps, min(c_step) * steps
    overhead = curve_epoch / plain_epoch - 1

    # diagnostic: the same bend-training step with three point functions, one epoch in one lax.scan each
    opt = make_optimizer(cfg)
    idx = jnp.asarray(MinibatchOrder(n, args.batch, 0).take(steps))
    ts = jax.random.uniform(jax.random.PRNGKey(5), (steps,), jnp.float32)
    diag = {}
    for name, fn in (("identity", identity_point), ("library", curves.point), ("sum", bernstein_sum_point)):
        diag[name] = best_time(lambda: diag_epoch(fn, opt, curve, x, y, idx, ts), args.repeats)
    print(f"  diagnostic step (one scan per epoch): no curve {diag['identity']:.3f} s, curves.point "
          f"{diag['library']:.3f} s, Σ B_i(t)·w_i {diag['sum']:.3f} s", flush=True)

    rows = [
        ("part", "(a) one epoch of curve training vs one epoch of plain training"),
        ("machine", machine_description()),
        ("load average (1, 5, 15 min) after the part", load_average()),
        ("net / data", f"MLP {'-'.join(map(str, sizes))} ({nets.param_count(a)} params), {n} synthetic samples"),
        ("training", f"batch {args.batch}, {steps} steps = 1 epoch, {args.optimizer} lr {args.lr}, "
                     f"jitted blocks of {block} steps; curve: Bezier, 1 bend"),
        ("plain epoch (`train.fit`, steady state)", f"{plain_epoch:.3f} s"),
        ("curve epoch (`curves.train_curve`, steady state)", f"{curve_epoch:.3f} s"),
        ("overhead curve / plain − 1", f"{100 * overhead:+.1f}%"),
        ("Garipov et al. A.2 (usually)", "< 15%"),
        ("our target (GPU)", "< 5%"),
        ("diagnostic, same step in one scan: point = the bend itself (no curve)", f"{diag['identity']:.3f} s"),
        ("diagnostic, same step: point = `curves.point` (Bezier)",
         f"{diag['library']:.3f} s ({100 * (diag['library'] / diag['identity'] - 1):+.0f}%)"),
        ("diagnostic, same step: point = B_0·w_0 + B_1·w_1 + B_2·w_2 (same Bezier, no stacking)",
         f"{diag['sum']:.3f} s ({100 * (diag['sum'] / diag['identity'] - 1):+.0f}%)"),
        ("whole warm call: plain / curve", f"{min(p_call):.3f} s / {min(c_call):.3f} s"),
        ("first call incl. compilation: plain / curve", f"{first_plain:.2f} s / {first_curve:.2f} s"),
        ("steady-state steps timed per call", f"{int(measured)} of {steps}; best of {args.repeats}"),
    ]
    notes = [
        f"Part (a): the epoch times are steady state (full-size blocks after the first of each call, scaled "
        f"to {steps} steps). A whole warm `fit` call took {min(p_call):.3f} s against its steady-state epoch of "
        f"{plain_epoch:.3f} s; `train_curve`'s whole warm call {min(c_call):.3f} s against {curve_epoch:.3f} s "
        f"steady (both cache their compiled programs per settings and shapes).",
        f"The matmuls of a curve step are those of a plain step; what it adds is the Bezier point φ(t) over all "
        f"{nets.param_count(a)} weights and its VJP to the bend (memory-bound elementwise work). The diagnostic "
        f"rows run one epoch of the same bend-training step (written in this script like the library's, one "
        f"`lax.scan` per epoch) with three point functions: the bend itself as the net ({diag['identity']:.3f} s), "
        f"`curves.point` ({diag['library']:.3f} s, "
        f"{100 * (diag['library'] / diag['identity'] - 1):+.0f}%) and the same quadratic Bezier written as "
        f"B_0(t)·w_0 + B_1(t)·w_1 + B_2(t)·w_2 ({diag['sum']:.3f} s, "
        f"{100 * (diag['sum'] / diag['identity'] - 1):+.0f}%). `curves.point` forms Σ B_i(t)·w_i leaf by leaf from "
        f"the end points and the bends and selects the exact end points (t = 0, 1) with two `where`s.",
    ]
    return rows, curve_epoch / plain_epoch, notes


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
        return {"params": params, "batch_stats": stats_fn(params, momentum, xb)}

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
    theta = batchnorm.bn_point_theta(curve, model, v0["params"], v0["batch_stats"], x_tr, batch_size=args.bn_batch)
    _, xb, momentum = theta
    ts = np.linspace(0.0, 1.0, args.points)
    point_fn = batchnorm.BNPoint(inner=curves.curve_point, model=model)
    apply_fn = batchnorm.BNEval(model)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(v0["params"]))
    print(f"(b) MLPBN 784-{'-'.join(map(str, widths))}-10 ({n_params} params); BN recompute over "
          f"{xb.shape[0]}×{xb.shape[1]} training samples; {n_eval} eval samples; {args.points} points", flush=True)

    auto_batch, auto_chunk = choose_sizes(jax.eval_shape(point_fn, theta, jnp.float32(0.5)), apply_fn, x_ev,
                                           args.points)
    n_chunks = -(-args.points // auto_chunk)
    even_chunk = -(-args.points // n_chunks)
    auto_chunk = even_chunk  # evaluate balances its chunks the same way

    def ours(chunk=None):
        return evaluate(point_fn, theta, ts, x_ev, y_ev, apply_fn=apply_fn, chunk=chunk)

    t_first, t_ours, res = timed(ours, args.repeats)
    print(f"  ours: {t_ours:.3f} s (first call incl. compilation {t_first:.3f} s); automatic sizes: eval batch "
          f"{auto_batch}, chunk {auto_chunk} → {n_chunks} chunks = {n_chunks * auto_chunk} evaluated points", flush=True)
    t_even = None
    if even_chunk != auto_chunk:
        t_even = best_time(lambda: ours(even_chunk).loss, args.repeats)
        print(f"  ours with chunk={even_chunk} ({n_chunks} chunks = {n_chunks * even_chunk} evaluated points): "
              f"{t_even:.3f} s", flush=True)

    t0 = time.perf_counter()
    baseline_bn(model, curve, xb, momentum, ts[:2], x_ev, y_ev, args.bn_eval_batch)  # compile every jitted piece
    t_base_first = time.perf_counter() - t0
    t_base = float("inf")
    for _ in range(args.baseline_repeats):
        t0 = time.perf_counter()
        base_loss, base_acc = baseline_bn(model, curve, xb, momentum, ts, x_ev, y_ev, args.bn_eval_batch)
        t_base = min(t_base, time.perf_counter() - t0)
    print(f"  baseline (per-point loop): {t_base:.3f} s (2-point warm-up incl. compilation {t_base_first:.3f} s)",
          flush=True)

    abs_err = float(np.max(np.abs(res.loss - base_loss)))
    rel_err = float(np.max(np.abs(res.loss - base_loss) / np.abs(base_loss)))
    acc_err = float(np.max(np.abs(res.acc - base_acc)))
    print(f"  max |Δloss| {abs_err:.2e} (relative {rel_err:.2e}); max |Δacc| {acc_err:.2e}; "
          f"loss range along the curve {res.loss.min():.4f} … {res.loss.max():.4f}", flush=True)
    ok = rel_err < 1e-3
    dense = sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(v0["params"]) if p.ndim == 2)
    flops = 2 * dense * (xb.shape[0] * xb.shape[1] + n_eval) * args.points  # forward passes, both methods
    rows = [
        ("part", f"(b) {args.points} points on a curve between two BatchNorm nets, BN statistics recomputed per point"),
        ("machine", machine_description()),
        ("net / data", f"flax `MLPBN` 784-{'-'.join(map(str, widths))}-10 ({n_params} params), Bezier 1 bend; "
                       f"BN recompute over {xb.shape[0] * xb.shape[1]} training samples (batches of {xb.shape[1]}); "
                       f"loss/acc over {n_eval} samples"),
        ("load average (1, 5, 15 min) after the part", load_average()),
        ("ours: `evaluate` + `BNPoint` (vmap points, scan batches)",
         f"{t_ours:.3f} s (automatic sizes: eval batch {auto_batch}, chunk {auto_chunk} → {n_chunks} chunks, "
         f"{n_chunks * auto_chunk} points evaluated incl. padding)"),
        ("ours, first call incl. compilation", f"{t_first:.3f} s"),
    ]
    if t_even is not None:
        rows.append((f"ours with `chunk={even_chunk}` (same {n_chunks} chunks, {n_chunks * even_chunk} points evaluated)",
                     f"{t_even:.3f} s"))
    rows += [
        (f"baseline: per-point loop (jitted point, BN recompute, eval batch {args.bn_eval_batch})", f"{t_base:.3f} s"),
        ("baseline, 2-point warm-up incl. compilation", f"{t_base_first:.3f} s"),
        ("per point, ours / baseline", f"{1e3 * t_ours / args.points:.1f} ms / {1e3 * t_base / args.points:.1f} ms"),
        ("speed-up (baseline / ours, automatic sizes)", f"{t_base / t_ours:.2f}×"),
    ]
    if t_even is not None:
        rows.append((f"speed-up with `chunk={even_chunk}`", f"{t_base / t_even:.2f}×"))
    rows += [
        (f"forward-pass FP32 GFLOP/s ({args.points} points × (BN pass + eval), padding not counted), ours / baseline",
         f"{flops / t_ours / 1e9:.0f} / {flops / t_base / 1e9:.0f}"),
        ("agreement: max abs / rel. difference of losses", f"{abs_err:.1e} / {rel_err:.1e} ({'OK' if ok else 'FAIL'})"),
        ("agreement: max abs difference of accuracies", f"{acc_err:.1e}"),
    ]
    if not ok:
        emit(rows, t_base / t_ours, None)
        sys.exit(f"results disagree: max rel. difference of the losses {rel_err:.2e} >= 1e-3")
    notes = [
        f"Part (b): both methods do the same {flops / 1e9:.1f} GFLOP of forward passes (one BN pass over "
        f"{xb.shape[0] * xb.shape[1]} training samples and one eval pass over {n_eval} samples per point); ours "
        f"reached {flops / t_ours / 1e9:.1f} GFLOP/s and the per-point loop {flops / t_base / 1e9:.1f} GFLOP/s."
        + (f" With batches of {xb.shape[1]} and width {width} one point's matmuls already occupy this machine, and "
           f"the loop's per-call overhead ({args.points} × (2 + {-(-n_eval // args.bn_eval_batch)}) jitted calls, "
           f"a host read-back per eval batch) is small next to {1e3 * t_base / args.points:.0f} ms of compute per "
           f"point, so vectorising over points has little to gain here."
           if t_base / min(t_ours, t_even or t_ours) < 1.25 else ""),
        f"`evaluate` chose chunks of {auto_chunk} points (its 512 MiB memory budget) and eval batches of "
        f"{auto_batch}; {args.points} points then need {n_chunks} chunk(s)"
        + (f" and the last one is padded to a full chunk, so {n_chunks * auto_chunk} points are evaluated "
           f"({100 * (n_chunks * auto_chunk / args.points - 1):.0f}% more than needed)."
           if n_chunks * auto_chunk > args.points else " (no padding).")
        + (f" With `chunk={even_chunk}` (the same {n_chunks} chunks, {n_chunks * even_chunk} points) ours took "
           f"{t_even:.3f} s." if t_even is not None else ""),
    ]
    return rows, t_base / t_ours, notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None, help="(a) training samples (default 25600 CPU, 60000 GPU)")
    ap.add_argument("--width", type=int, default=400, help="(a) hidden width")
    ap.add_argument("--depth", type=int, default=3, help="(a) hidden layers")
    ap.add_argument("--batch", type=int, default=128, help="(a) batch size")
    ap.add_argument("--optimizer", default="sgd", choices=["sgd", "momentum", "adam"], help="(a) both runs")
    ap.add_argument("--lr", type=float, default=0.01, help="(a) learning rate of both runs")
    ap.add_argument("--blocks", type=int, default=4, help="(a) jitted blocks (progress lines) per epoch, ≥ 2")
    ap.add_argument("--bn-train", type=int, default=None, help="(b) training samples for the BN recompute "
                                                                "(default 4096 CPU, 50000 GPU)")
    ap.add_argument("--bn-eval", type=int, default=None, help="(b) evaluation samples (default 2048 CPU, 10000 GPU)")
    ap.add_argument("--bn-width", type=int, default=None, help="(b) hidden width (default 256 CPU, 1024 GPU)")
    ap.add_argument("--bn-depth", type=int, default=2, help="(b) hidden layers")
    ap.add_argument("--bn-batch", type=int, default=128, help="(b) batch size of the BN-recompute pass (both)")
    ap.add_argument("--bn-eval-batch", type=int, default=128, help="(b) baseline's evaluation batch size")
    ap.add_argument("--points", type=int, default=121, help="(b) points on the curve")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats (best is reported)")
    ap.add_argument("--baseline-repeats", type=int, default=1, help="(b) timed repeats of the per-point loop")
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--skip-b", action="store_true")
    ap.add_argument("--out", help="append the result tables to this markdown file")
    args = ap.parse_args()
    if args.blocks < 2:
        ap.error("--blocks must be at least 2 (the first block of a fit call holds its compilation)")
    gpu = jax.devices()[0].platform == "gpu"
    print(f"machine: {machine_description()}", flush=True)
    header = ("# bench_curves: curve-training overhead and BN-recompute evaluation\n\n"
              f"Machine: {machine_description()}.\n\n"
              "(a) Wall time of one epoch of `stability.curves.train_curve` (Bezier, 1 bend) against one epoch "
              "of `stability.core.train.fit` of the same MLP (same optimizer, batch size and steps; steady state, "
              "compilation excluded). Garipov et al. (2018), A.2: the gap is usually below 15%. "
              "(b) 121 points on a curve between two flax BatchNorm MLPs with the BN statistics recomputed at "
              "every point by one pass over the training batches: `evaluate` + `BNPoint` (vectorised) against a "
              "per-point Python loop of jitted pieces, in the same process. Each block below is one run; its "
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
