"""Benchmark: evaluating whole Theorem 1/2/3 paths, structure-aware vs structure-blind vs per-point, in paired medians.

For trained digits MLPs of ``--depths`` hidden layers (width ``--width``, two nets per depth trained
deterministically with the demo's recipe for ``--steps`` SGD steps), the paths of Theorem 1 (compact, or literal
with ``--literal``; Appendix D.1 fixed-count kept sets, p = 1/2), Theorem 2 (p = 3/4, Lemma 5-conditioned draws)
and Theorem 3 (a narrow net of widths ``h/8`` trained for ``--steps`` Adam steps, p = 1.5·max h*/h, Lemma
5-conditioned draws) are evaluated at ``--points`` points per segment on the digits training split by:

* ours — ``Path.evaluate(x, y, m, algebra="auto", proved=…)``: the path as the chain combination of its way points
  (layers a segment keeps fixed once per batch, its first changing layer once per way point, only the layers above
  per point), and the segments ``proofs_check.certify`` PROVED function-preserving evaluated once (their start);
* ``every_point=True`` — the same structure-aware evaluation, but every point of every segment evaluated (what the
  proved shortcut buys is the difference to ours);
* the structure-blind evaluator — ``algebra="off"``: every point materialised as a whole net in ONE vmapped
  ``stability.core.evaluate.evaluate`` call (what ``Path.evaluate`` did before);
* the per-point loop a competent user writes — a jitted point function, then a jitted forward + loss + accuracy per
  data batch summed on the device and read back once per point — at its BEST batch size (searched over
  ``--batches`` on every 11th point).

Each comparison alternates the two sides in ``--pairs`` pairs after a warm-up call each (order swapped every pair)
and reports the median of the per-pair ratios with its min/max; the machine and the load average before the first
and after the last pair are in the table. Every side's losses must agree with the per-point loop within
``|Δloss| ≤ 1e-4·max(1, |loss|)`` and accuracies within one sample; the script exits non-zero otherwise.

    python benchmarks/bench_paths.py [--depths 3,4,5,6] [--width 64] [--theorems 1,2,3] [--literal] [--points 61]
        [--pairs 7] [--steps 500] [--samples N] [--out FILE.md]
    python benchmarks/bench_paths.py --smoke --out /tmp/paths.md      # every code path at a tiny size
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from proofs_check.certificates import certify
from stability import data
from stability.core import nets
from stability.core.losses import accuracy, cross_entropy
from stability.core.train import TrainConfig, fit
from stability.theory import dropout
from stability.theory.paths import Path, path_point, theorem1, theorem2, theorem3

from _table import best_batch, machine_load, paired, point_loop

LOSS_RTOL = 1e-4
"""Largest accepted ``|Δloss| / max(1, |loss|)`` between any side and the per-point loop (float32)."""


@jax.jit
def _batch_sums(net: nets.Net, xs, ys):
    out = nets.apply(net, xs)
    return jnp.sum(cross_entropy(out, ys)), jnp.sum(accuracy(out, ys))


def train_pair(x, y, depth: int, width: int, steps: int) -> tuple[nets.Net, nets.Net]:
    """Two MLPs ``in-width×depth-10`` trained with the demo's recipe (SGD 0.1 cosine, dropout 0.1, batch 64),
    seeds 0 and 1 (deterministic on one machine)."""
    cfg = TrainConfig(steps=steps, batch_size=64, optimizer="sgd", lr=0.1, schedule="cosine", dropout=0.1,
                      log_every=max(1, steps))
    out = []
    for s in (0, 1):
        net = nets.mlp(jax.random.PRNGKey(s), (x.shape[1],) + (width,) * depth + (10,))
        out.append(fit(net, x, y, dataclasses.replace(cfg, seed=s), progress=False)[0])
    return out[0], out[1]


def train_narrow(net: nets.Net, x, y, steps: int) -> nets.Net:
    """Theorem 3's narrow net θ*: hidden widths ``max(1, h/8)``, Adam 0.01 cosine (as the demo's paths section)."""
    hstar = tuple(max(1, h // 8) for h in nets.widths(net))
    arch = dataclasses.replace(net.arch, widths=hstar + (net.arch.widths[-1],))
    narrow = nets.init(jax.random.PRNGKey(2), arch, jax.tree_util.tree_leaves(net)[0].dtype)
    cfg = TrainConfig(steps=steps, batch_size=64, optimizer="adam", lr=0.01, schedule="cosine", seed=2,
                      log_every=max(1, steps))
    return fit(narrow, x, y, cfg, progress=False)[0]


def build_paths(a: nets.Net, b: nets.Net, x, y, theorems: list[str], literal: bool, steps: int) -> list[Path]:
    out = []
    for th in theorems:
        if th == "1":
            ka = dropout.fixed_count(a, 0.5, jax.random.PRNGKey(2))
            kb = dropout.fixed_count(b, 0.5, jax.random.PRNGKey(3))
            out.append(theorem1(a, ka, b, kb, compact=not literal))
        elif th == "2":
            out.append(theorem2(a, b, jax.random.PRNGKey(4), p=0.75))
        elif th == "3":
            narrow = train_narrow(a, x, y, steps)
            p3 = min(0.75, 1.5 * max(hn / h for hn, h in zip(nets.widths(narrow), nets.widths(a))))
            out.append(theorem3(a, b, narrow, p3, jax.random.PRNGKey(5)))
    return out


def macs(arch: nets.Arch) -> int:
    """Multiply-adds per sample of a forward pass of a dense net."""
    return sum(int(np.prod(s)) for s in arch.weight_shapes())


@dataclasses.dataclass
class RowResult:
    depth: int
    name: str
    segments: int
    points: int
    proved: int
    once: int
    cells: dict


def measure_path(path: Path, depth: int, x, y, args) -> RowResult:
    m = args.points
    n = x.shape[0]
    cert = certify(path)
    proved = [v.index for v in cert.verdicts if v.status == "proved"]
    refuted = [v.index for v in cert.verdicts if v.status == "refuted"]
    if refuted:
        raise SystemExit(f"{path.name}: segments {refuted} refuted by proofs_check.certify (bug in the builder)")
    ours = lambda: path.evaluate(x, y, m, algebra="auto", proved=proved)
    every = lambda: path.evaluate(x, y, m, algebra="auto", every_point=True)
    off = lambda: path.evaluate(x, y, m, algebra="off")
    stacked = path.stacked()
    point = jax.jit(functools.partial(path_point, stacked))
    t = np.linspace(0.0, 1.0, m)
    s = (np.arange(path.n_segments)[:, None] + t[None, :]).reshape(-1)
    dtype = jax.tree_util.tree_leaves(stacked)[0].dtype
    thetas = [jnp.asarray(v, dtype) for v in s]
    cands = [bb for bb in args.batches if bb <= n] or [n]
    best, cand_times = best_batch(lambda bb: point_loop(point, _batch_sums, thetas[::11], x, y, bb)[0], cands)
    loop = lambda: point_loop(point, _batch_sums, thetas, x, y, best)

    ref_loss, ref_acc = loop()
    res = {"ours": ours(), "every point": every(), "off": off()}
    errs = {}
    for k, r in res.items():
        le = float(np.max(np.abs(r.loss.reshape(-1) - ref_loss) / np.maximum(1.0, np.abs(ref_loss))))
        ae = float(np.max(np.abs(r.acc.reshape(-1) - ref_acc)))
        errs[k] = (le, ae)
        if not (le <= LOSS_RTOL and ae <= 1.5 / n):
            raise SystemExit(f"{path.name}, depth {depth}: {k!r} disagrees with the per-point loop: max rel. loss "
                             f"difference {le:.1e} (allowed {LOSS_RTOL:g}), max accuracy difference {ae:.1e} "
                             f"(allowed one sample, {1 / n:.1e})")
    once = len(res["ours"].once)
    p_off = paired(ours, off, args.pairs)
    p_loop = paired(ours, lambda: loop()[0], args.pairs)
    p_every = paired(every, off, args.pairs)
    flops = 2.0 * n * s.size * macs(path.start.arch)
    off_med = float(np.median(p_off.b))
    cells = {
        "ours": _t(p_off.a),
        "every": _t(p_every.a),
        "off": _t(p_off.b),
        "loop": f"{_t(p_loop.b)}, batch {best}",
        "search": ", ".join(f"{bb}: {tt:.3f}" for bb, tt in cand_times.items()),
        "vs_off": _r(p_off),
        "vs_loop": _r(p_loop),
        "every_vs_off": _r(p_every),
        "ratio_off": p_off.ratio,
        "ratio_loop": p_loop.ratio,
        "err": max(e[0] for e in errs.values()),
        "acc_err": max(e[1] for e in errs.values()),
        "flops": f"{flops / 1e9:.2f} GFLOP → off: {flops / off_med / 1e9:.1f} GFLOP/s",
        "load": f"{p_off.load_before} → {p_every.load_after}",
    }
    print(f"depth {depth}, {path.name}: ours {cells['ours']}; every point {cells['every']}; off {cells['off']}; "
          f"loop {cells['loop']}; vs off {cells['vs_off']}; vs loop {cells['vs_loop']}; every vs off "
          f"{cells['every_vs_off']}", flush=True)
    return RowResult(depth, path.name, path.n_segments, s.size, len(proved), once, cells)


def _t(v) -> str:
    v = np.asarray(v)
    return f"{np.median(v):.3f} s ({v.min():.3f}–{v.max():.3f})"


def _r(p) -> str:
    r = p.ratios
    return f"{np.median(r):.1f}× ({r.min():.1f}–{r.max():.1f})"


def table(rows: list[RowResult]) -> str:
    head = ("| depth | path | segments × points | proved (evaluated once) | ours: `auto` + proved | `every_point=True` | "
            "`algebra=\"off\"` | per-point loop (best batch) | **ours vs off** | **ours vs loop** | every-point vs off "
            "| max rel. Δloss / Δacc vs loop | per-point-equivalent FLOPs | load before → after |")
    lines = [head, "|" + "---|" * 14]
    for r in rows:
        c = r.cells
        lines.append(f"| {r.depth} | {r.name} | {r.segments} × {r.points // r.segments} = {r.points} | "
                     f"{r.proved} ({r.once}) | {c['ours']} | {c['every']} | {c['off']} | {c['loop']} | {c['vs_off']} | "
                     f"{c['vs_loop']} | {c['every_vs_off']} | {c['err']:.1e} / {c['acc_err']:.1e} | {c['flops']} | "
                     f"{c['load']} |")
    lines.append("\nPer-point loop, batch-size search (median s over every 11th point): "
                 + "; ".join(f"depth {r.depth} {r.name}: {r.cells['search']}" for r in rows) + ".")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", default="3,4,5,6", help="hidden layers of the MLPs (comma-separated)")
    ap.add_argument("--width", type=int, default=64, help="hidden width")
    ap.add_argument("--theorems", default="1,2,3", help="comma-separated of 1, 2, 3")
    ap.add_argument("--literal", action="store_true", help="Theorem 1 with literal Lemma 1 (6d−10) instead of "
                                                          "compact (4d−6)")
    ap.add_argument("--points", type=int, default=61, help="points per segment")
    ap.add_argument("--pairs", type=int, default=7, help="alternated pairs per comparison (≥ 7 for a table)")
    ap.add_argument("--steps", type=int, default=500, help="training steps of every net")
    ap.add_argument("--samples", type=int, default=0, help="use the first N digits training samples (0: all)")
    ap.add_argument("--batches", default="128,256,512,1024,2048", help="candidate batch sizes of the per-point loop")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (depth 2, width 16, 5 points, 1 pair, 20 steps, "
                                                         "256 samples): proves the script runs, measures nothing")
    ap.add_argument("--out", help="append the result table to this markdown file")
    args = ap.parse_args()
    if args.smoke:
        args.depths, args.width, args.points, args.pairs, args.steps, args.samples = "2", 16, 5, 1, 20, 256
    theorems = args.theorems.split(",")
    bad = [t for t in theorems if t not in ("1", "2", "3")]
    if bad or args.points < 2 or args.pairs < 1 or args.width < 8:
        ap.error(f"--theorems must be of 1, 2, 3 (got {bad}), --points ≥ 2, --pairs ≥ 1, --width ≥ 8")
    depths = [int(d) for d in args.depths.split(",")]
    args.batches = [int(b) for b in args.batches.split(",")]
    ds = data.load("digits")
    x_np, y_np = ds.x_train, ds.y_train
    if args.samples:
        x_np, y_np = x_np[:args.samples], y_np[:args.samples]
    x, y = jnp.asarray(x_np), jnp.asarray(y_np)
    machine, load0 = machine_load()
    print(f"machine: {machine}; load {load0}; {x.shape[0]} digits samples", flush=True)
    rows = []
    t_all = time.perf_counter()
    for d in depths:
        a, b = train_pair(x, y, d, args.width, args.steps)
        for path in build_paths(a, b, x, y, theorems, args.literal, args.steps):
            rows.append(measure_path(path, d, x, y, args))
    tab = table(rows)
    print(tab)
    target = [r for r in rows if r.depth == 4 and r.name.startswith("Theorem 1")]
    verdict = ""
    if target:
        r = target[0]
        ok_off, ok_loop = r.cells["ratio_off"] >= 3.0, r.cells["ratio_loop"] >= 3.0
        verdict = (f"\nTarget (≥ 3× on the depth-4 {r.name} path on CPU): "
                   f"{'met' if ok_off else 'NOT met'} against the structure-blind evaluator "
                   f"(median {r.cells['ratio_off']:.1f}×), {'met' if ok_loop else 'NOT met'} against the per-point "
                   f"loop (median {r.cells['ratio_loop']:.1f}×) — measured on this machine, in this run.\n")
        print(verdict.strip())
    if args.out:
        cmd = "python " + " ".join(["benchmarks/bench_paths.py"] + sys.argv[1:])
        import os
        new = not os.path.exists(args.out)
        with open(args.out, "a") as f:
            if new:
                f.write(HEADER)
            f.write(f"\n### {time.strftime('%Y-%m-%d')} — `{cmd}`\n\n"
                    f"Machine: {machine}. MLPs {x.shape[1]}-{args.width}×depth-10 trained {args.steps} steps; "
                    f"{x.shape[0]} digits training samples; {args.points} points per segment; {args.pairs} "
                    f"alternated pairs per comparison after a warm-up call each; times are medians (min–max); "
                    f"ratios are medians of the per-pair ratios (min–max). Losses of every side agree with the "
                    f"per-point loop within {LOSS_RTOL:g}·max(1, |loss|) and accuracies within one sample (asserted). "
                    f"Total run {time.perf_counter() - t_all:.0f} s.\n\n{tab}\n{verdict}")


HEADER = """# bench_paths: whole Theorem 1/2/3 paths, structure-aware vs structure-blind vs per-point (paired medians)

Ours = `Path.evaluate(..., algebra="auto", proved=…)`: the chain combination of the way points (layers a segment
keeps fixed once per batch, its first changing layer once per way point, the layers above per point) and every
segment `proofs_check.certify` PROVED function-preserving evaluated once. `every_point=True` = the same without the
proved shortcut. `algebra="off"` = every point as a whole net in one vmapped `evaluate` call (structure-blind).
Per-point loop = jitted point function + jitted forward/loss per data batch, summed on the device, at its best
batch size (searched). Each block below is one run; its heading is the command.
"""


if __name__ == "__main__":
    main()
