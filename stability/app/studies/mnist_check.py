"""Theorem 1 on the paper's MNIST conv nets (Appendix D.1): train two, connect them, certify, measure.

Two nets ``conv(key, (28, 28, 1), (32, 32, 32), 10)`` (3 same-padded 3×3 conv layers of 32
channels, dense output), SGD lr 0.1, batch 64, normalised images, channel-wise dropout during
training (so they are dropout stable in the sense of Definition 1 with channels as units).
Kept sets: best of 20 fixed-count draws (the paper) and the greedy importance search; the
better one per net. Loss along the Theorem 1 path (compact) and along the straight line on a
random batch of ``--n-eval`` training images (the paper uses 4096)::

    python -m stability.paths.mnist_check --out mnist_paths            # GPU: the paper's setting
    python -m stability.paths.mnist_check --data digits --channels 16 --steps 2000 --n-eval 1437 --out DIR
                                                                       # CPU stand-in: 8×8 digits images

Writes ``DIR/mnist_theorem1.json`` and ``DIR/mnist_theorem1.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path as FsPath

import jax
import numpy as np

from stability.core import nets
from stability.theory.dropout import best_of_n, greedy_search
from stability.app.report import machine_description
from stability.core.train import KerasDecay, TrainConfig, fit
from stability.plots.paths import plot_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=["mnist", "digits"], default="mnist")
    ap.add_argument("--channels", type=int, default=32, help="channels of each of the 3 conv layers (paper: 32)")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--dropout", type=float, default=0.1, help="channel-wise dropout rate during training")
    ap.add_argument("--n-eval", type=int, default=4096, help="random training images for losses (paper: 4096)")
    ap.add_argument("--points", type=int, default=61, help="points per segment")
    ap.add_argument("--rounds", type=int, default=6, help="greedy search rounds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="mnist_paths")
    args = ap.parse_args(argv)
    from proofs_check.theorems import check_theorem1

    from stability import data

    t_all = time.perf_counter()
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    if args.data == "mnist":
        ds = data.load("mnist", layout="image", normalize=True)
    else:
        ds = data.load("digits", layout="image")
    log(f"data: {ds.summary()}; machine: {machine_description()}")
    cfg = TrainConfig(steps=args.steps, batch_size=64, lr=0.1, dropout=args.dropout, log_every=max(1, args.steps // 5))
    trained = []
    for s in (args.seed, args.seed + 1):
        # the paper's Keras defaults (Glorot-uniform init, lr decay 1e-6): He init diverges at lr 0.1 on this net
        net = nets.keras_init(s, nets.Arch(in_shape=ds.input_shape, widths=(args.channels,) * 3 + (10,), n_conv=3))
        net, _ = fit(net, ds.x_train, ds.y_train, dataclasses.replace(cfg, seed=s), log=log,
                     schedule=KerasDecay(0.1, 1e-6))
        trained.append(net)
    t_train = time.perf_counter() - t_all
    idx = np.random.default_rng(args.seed).choice(ds.x_train.shape[0], min(args.n_eval, ds.x_train.shape[0]),
                                                  replace=False)
    x, y = ds.x_train[idx], ds.y_train[idx]
    searches, keeps = {}, []
    for tag, net, k in zip("AB", trained, jax.random.split(jax.random.PRNGKey(args.seed + 99))):
        b = best_of_n(net, x, y, k, p=0.5, n=20)
        g = greedy_search(net, x, y, p=0.5, rounds=args.rounds)
        keeps.append((g if g.eps <= b.eps else b).kept)
        searches[tag] = {"best_of_20_eps": b.eps, "greedy_eps": g.eps, "L": b.best.base_loss}
        log(f"net {tag}: L = {b.best.base_loss:.4f}, ε best of 20 = {b.eps:.4f}, ε greedy = {g.eps:.4f}")
    t0 = time.perf_counter()
    v = check_theorem1(trained[0], keeps[0], trained[1], keeps[1], x, y, compact=True, points_per_segment=args.points)
    t_check = time.perf_counter() - t0
    log(v.summary())
    out = FsPath(args.out)
    out.mkdir(parents=True, exist_ok=True)
    title = f"Theorem 1 on two {args.data} conv nets ({args.channels} channels, {args.steps} steps)"
    fig = plot_path(v.evaluation, v.line, title=title,
                    bound=v.bound, parts=v.path.meta["parts"])
    fig.savefig(out / "mnist_theorem1.png", dpi=120, bbox_inches="tight")
    result = {"machine": machine_description(), "args": vars(args), "searches": searches,
              "theorem1": {k: val for k, val in v.to_dict().items() if k != "segment_checks"},
              "train_seconds": t_train, "check_seconds": t_check, "seconds": time.perf_counter() - t_all}
    (out / "mnist_theorem1.json").write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps({"max_loss": v.max_loss, "bound": v.bound, "eps": v.epsilon, "L": v.endpoint_losses,
                      "line_max_loss": v.line_max_loss, "line_barrier": v.line_barrier, "verdict": v.verdict,
                      "reason": v.reason, "certificate": v.certificate.headline(), "seconds": result["seconds"]},
                     indent=1))
    return 0 if v.verdict == "holds" else 1


if __name__ == "__main__":
    sys.exit(main())
