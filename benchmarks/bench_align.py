"""Measurement: permutation alignment of two independently trained digits MLPs, and the barrier it removes.

Trains two dense ReLU nets 64–h–h–10 on the digits data from seeds ``seed`` and ``seed+1`` with the
demo's recipe (SGD, batch 64, lr 0.1 cosine, dropout 0.1; 1500 steps ``--quick``, 5000 otherwise), then
aligns net B to net A with weight matching (identity and forward starts) and activation matching
(correlation and squared distance, on the training inputs), and evaluates the straight line θ_A → π(θ_B)
on the training data at ``--points`` equally spaced t (a sampled maximum: a lower bound of the line's
true maximum). Barrier = max loss on the line − max of the two end losses. Also builds and certifies the
Lemma 4 path θ_B → π(θ_B) in the widened architecture (``stability.theory.align.permutation_path``).

    python benchmarks/bench_align.py [--quick] [--widths 64,64] [--points 25] [--seed 0] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax

from stability.theory import align
from stability import data
from stability.core import nets
from stability.core.evaluate import evaluate_line
from stability.app.report import machine_description
from stability.core.train import TrainConfig, fit

from _table import emit


def train_pair(ds, quick: bool, seed: int, widths: tuple[int, ...]) -> list[nets.Net]:
    cfg = TrainConfig(steps=1500 if quick else 5000, batch_size=64, optimizer="sgd", lr=0.1, schedule="cosine",
                      dropout=0.1, log_every=1500 if quick else 5000)
    out = []
    for s in (seed, seed + 1):
        net = nets.mlp(jax.random.PRNGKey(s), (ds.input_shape[0], *widths, ds.num_classes))
        net, _ = fit(net, ds.x_train, ds.y_train, dataclasses.replace(cfg, seed=s), progress=False)
        out.append(net)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--widths", default="64,64")
    ap.add_argument("--points", type=int, default=25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    widths = tuple(int(w) for w in args.widths.split(","))
    ds = data.load("digits")
    t0 = time.perf_counter()
    a, b = train_pair(ds, args.quick, args.seed, widths)
    train_s = time.perf_counter() - t0
    x, y = ds.x_train, ds.y_train

    def barrier(other: nets.Net) -> tuple[float, float]:
        res = evaluate_line(a, other, args.points, x, y)
        return float(res.loss.max() - max(res.loss[0], res.loss[-1])), float(res.loss.max())

    rows: list[tuple[str, str]] = [
        ("machine", machine_description()), ("nets", f"64–{'–'.join(map(str, widths))}–10, digits, "
                                                     f"{'1500' if args.quick else '5000'} SGD steps each "
                                                     f"(train {train_s:.1f} s for both)"),
        ("line points", f"{args.points} equally spaced t (sampled max: a lower bound)"),
    ]
    b0, m0 = barrier(b)
    rows.append(("unaligned: line barrier (max loss)", f"{b0:.4f} ({m0:.4f})"))
    results = {}
    for name, fn in [
        ("weight matching, identity start", lambda: align.weight_matching(a, b, seed=args.seed, init="identity")),
        ("weight matching, forward start", lambda: align.weight_matching(a, b, seed=args.seed, init="forward")),
        ("activation matching, correlation", lambda: align.activation_matching(a, b, x, objective="correlation")),
        ("activation matching, distance", lambda: align.activation_matching(a, b, x, objective="distance")),
    ]:
        fn()  # warm-up (compilation)
        t1 = time.perf_counter()
        r = fn()
        secs = time.perf_counter() - t1
        bar, mx = barrier(r.aligned)
        results[name] = r
        conv = "" if r.converged is None else f", converged={r.converged} after {r.iterations} sweeps"
        fc = r.function_check
        rows.append((f"{name}: line barrier (max loss)", f"{bar:.4f} ({mx:.4f})"))
        rows.append((f"{name}: ‖θ_A − π θ_B‖ before → after", f"{r.distance_before:.4f} → {r.distance_after:.4f}"))
        rows.append((f"{name}: time, units moved", f"{secs:.3f} s{conv}, {list(r.changed_units)}"))
        rows.append((f"{name}: max |f_aligned − f_B|", f"{fc.max_abs_diff:.3g} on {fc.n_inputs} {fc.source} inputs "
                                                       f"(bitwise equal: {fc.bitwise})"))
    r = results["weight matching, identity start"]
    t1 = time.perf_counter()
    path = align.permutation_path(b, r.perms, widen=True)
    from proofs_check import certify

    cert = certify(path)
    rows.append(("Lemma 4 path θ_B → π θ_B (weight matching)",
                 f"{path.n_segments} segments in widths {list(path.info.path_widths)} (widened={path.info.widened}), "
                 f"certificate ok={cert.ok} {cert.counts()}, {time.perf_counter() - t1:.2f} s"))
    emit(rows, b0 / max(1e-12, min(v for v in [barrier(res.aligned)[0] for res in results.values()])), args.out,
         header="# Permutation alignment of two digits MLPs (`benchmarks/bench_align.py`)\n\n"
                "RATIO = unaligned barrier / best aligned barrier.\n")


if __name__ == "__main__":
    main()
