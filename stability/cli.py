"""The ``stability`` command line: ``demo`` (the main job) and ``train``.

Every command writes its results into one directory (``summary.json``, ``report.md``, PNGs),
atomically, and prints progress lines to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["main", "DemoContext", "DEMO_SECTIONS"]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclasses.dataclass
class DemoContext:
    """What every demo section receives: the two trained nets, the data and the run's options."""

    net_a: Any
    net_b: Any
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    quick: bool
    seed: int
    dataset: Any = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def _section_straight_line(report, ctx: DemoContext) -> dict[str, Any]:
    from . import plots
    from .evaluate import evaluate_line

    n_points = 61 if ctx.quick else 121
    t0 = time.perf_counter()
    tr = evaluate_line(ctx.net_a, ctx.net_b, n_points, ctx.x_train, ctx.y_train)
    te = evaluate_line(ctx.net_a, ctx.net_b, n_points, ctx.x_test, ctx.y_test)
    secs = time.perf_counter() - t0
    ends = max(tr.loss[0], tr.loss[-1])
    sec = report.section("straight_line", "The straight line between the two nets")
    sec.text(
        f"Loss and accuracy at {n_points} equally spaced points of θ(t) = (1−t)·θ_A + t·θ_B, "
        f"evaluated in one batched call per split ({secs:.2f} s for both splits)."
    )
    sec.table(
        ["", "train loss", "train acc", "test loss", "test acc"],
        [["θ_A (t=0)", float(tr.loss[0]), float(tr.acc[0]), float(te.loss[0]), float(te.acc[0])],
         ["θ_B (t=1)", float(tr.loss[-1]), float(tr.acc[-1]), float(te.loss[-1]), float(te.acc[-1])],
         [f"max over t (at t={tr.ts[np.argmax(tr.loss)]:.3f})", float(tr.loss.max()), float(tr.acc.min()),
          float(te.loss.max()), float(te.acc.min())]],
    )
    sec.text(f"Barrier (max train loss − max end-point loss): **{tr.loss.max() - ends:.4f}**.")
    fig = plots.plot_along({"train": tr, "test": te}, title="straight line θ_A → θ_B")
    report.figure(sec, fig, "straight_line.png", "Loss and accuracy along the straight line")
    sec.data.update(points=n_points, train=tr.to_dict(), test=te.to_dict(), barrier=float(tr.loss.max() - ends),
                    max_train_loss=float(tr.loss.max()), eval_seconds=secs)
    report.add(sec)
    return sec.data


def _optional_sections() -> list[tuple[str, Callable]]:
    """Sections contributed by later analyses (paths, cushions, curves …), in report order."""
    found = []
    try:
        from .paths.demo import add_paths_section
    except ImportError:
        pass
    else:
        found.append(("paths", add_paths_section))
    return found


DEMO_SECTIONS: list[tuple[str, Callable]] = [("straight_line", _section_straight_line)]


def _train_pair(ds, quick: bool, seed: int, widths: Sequence[int], log: Callable[[str], None]):
    import jax

    from . import nets
    from .train import TrainConfig, fit

    cfg = TrainConfig(steps=1500 if quick else 5000, batch_size=64, optimizer="sgd", lr=0.1, schedule="cosine",
                      dropout=0.1, log_every=500 if quick else 1000)
    out = []
    for k, s in enumerate((seed, seed + 1)):
        log(f"training net {'AB'[k]} (seed {s}, {cfg.steps} steps)")
        net = nets.mlp(jax.random.PRNGKey(s), (ds.input_shape[0], *widths, ds.num_classes))
        net, hist = fit(net, ds.x_train, ds.y_train, dataclasses.replace(cfg, seed=s),
                        x_test=ds.x_test, y_test=ds.y_test, log=log)
        out.append((net, hist))
    return out, cfg


def cmd_demo(args: argparse.Namespace) -> int:
    from . import checkpoint, data, plots
    from .report import Report

    t0 = time.perf_counter()
    out = Path(args.out)
    report = Report(out, title="stability demo: two nets on the digits data")
    report.meta["command"] = "stability " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report.meta["seed"] = args.seed
    ds = data.load("digits")
    _log(f"data: {ds.summary()}")
    widths = (64, 64)
    (pair, cfg) = _train_pair(ds, args.quick, args.seed, widths, _log)
    (net_a, hist_a), (net_b, hist_b) = pair
    checkpoint.save(out / "net_a.npz", net_a, {"seed": args.seed, "train": cfg.to_dict()})
    checkpoint.save(out / "net_b.npz", net_b, {"seed": args.seed + 1, "train": cfg.to_dict()})

    sec = report.section("setup", "Data and training")
    sec.text(f"Data: {ds.summary()}. Two dense ReLU nets {ds.input_shape[0]}–{'–'.join(map(str, widths))}–"
             f"{ds.num_classes}, trained from seeds {args.seed} and {args.seed + 1} "
             f"({cfg.steps} SGD steps, batch {cfg.batch_size}, lr {cfg.lr} {cfg.schedule}, dropout {cfg.dropout}). "
             f"Checkpoints: `net_a.npz`, `net_b.npz`.")
    sec.table(["net", "final train loss", "test loss", "test acc"],
              [["A", hist_a["loss"][-1], hist_a["test_loss"][-1], hist_a["test_acc"][-1]],
               ["B", hist_b["loss"][-1], hist_b["test_loss"][-1], hist_b["test_acc"][-1]]])
    report.figure(sec, plots.plot_history({"A": hist_a, "B": hist_b}), "training.png", "Training curves")
    sec.data.update(dataset=ds.summary(), widths=list(widths), train_config=cfg.to_dict(),
                    history_a=hist_a, history_b=hist_b)
    report.add(sec)

    ctx = DemoContext(net_a, net_b, ds.x_train, ds.y_train, ds.x_test, ds.y_test, args.quick, args.seed, ds)
    for name, fn in DEMO_SECTIONS + _optional_sections():
        if args.only and name not in args.only:
            continue
        _log(f"section: {name}")
        fn(report, ctx)
    report.meta["wall_seconds"] = round(time.perf_counter() - t0, 2)
    report.write()
    _log(f"wrote {out / 'report.md'} and {out / 'summary.json'} in {time.perf_counter() - t0:.1f} s")
    return 0


def _parse_ints(s: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in s.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {s!r}")
    return vals


def cmd_train(args: argparse.Namespace) -> int:
    import jax

    from . import checkpoint, data, nets
    from .io import write_json
    from .train import TrainConfig, fit

    kwargs = {"layout": "image"} if args.arch == "conv" else {}
    if args.source:
        kwargs["source"] = args.source
    ds = data.load(args.data, **kwargs)
    if args.n_train:
        ds = ds.subset(n_train=args.n_train)
    _log(f"data: {ds.summary()}")
    key = jax.random.PRNGKey(args.seed)
    classes = ds.num_classes or 1
    if args.arch == "mlp":
        net = nets.mlp(key, (int(np.prod(ds.input_shape)), *args.widths, classes), bias=not args.no_bias)
    else:
        net = nets.conv(key, ds.input_shape, args.widths, classes, pool=None if args.pool == "none" else args.pool,
                        bias=not args.no_bias, head=args.head)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                      schedule=args.schedule, weight_decay=args.weight_decay, dropout=args.dropout,
                      loss="cross_entropy" if ds.task == "classification" else "squared_error", seed=args.seed,
                      log_every=args.log_every)
    net, hist = fit(net, ds.x_train, ds.y_train, cfg, x_test=ds.x_test, y_test=ds.y_test, log=_log)
    out = Path(args.out)
    checkpoint.save(out, net, {"data": args.data, "train": cfg.to_dict(), "history": hist})
    write_json(out.with_suffix(".json"), {"data": ds.summary(), "arch": net.arch.to_dict(), "train": cfg.to_dict(),
                                          "history": hist})
    _log(f"saved {out} (and {out.with_suffix('.json')})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stability", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="train two nets on digits and write the full report",
                       description="Main job: two nets on scikit-learn's bundled digits, every analysis of the "
                                   "library between them, written to DIR (summary.json, report.md, PNGs).")
    d.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    d.add_argument("--quick", action="store_true", help="fewer steps and points (under 3 minutes on a 2-core CPU)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--only", nargs="*", help="run only these sections (e.g. straight_line paths)")
    d.set_defaults(fn=cmd_demo)

    t = sub.add_parser("train", help="train a net and save a checkpoint",
                       description="Train a dense or conv ReLU net and save it (one .npz, written atomically).")
    t.add_argument("--data", default="digits", help="digits | mnist | cifar10 | teacher")
    t.add_argument("--source", help="data directory (MNIST IDX files, CIFAR-10 python batches)")
    t.add_argument("--arch", choices=["mlp", "conv"], default="mlp")
    t.add_argument("--widths", type=_parse_ints, default=(64, 64), help="hidden widths / conv channels, e.g. 64,64")
    t.add_argument("--pool", choices=["none", "max", "avg"], default="none")
    t.add_argument("--head", choices=["flatten", "gap"], default="flatten")
    t.add_argument("--no-bias", action="store_true")
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--optimizer", choices=["sgd", "momentum", "adam"], default="sgd")
    t.add_argument("--lr", type=float, default=0.1)
    t.add_argument("--schedule", choices=["constant", "cosine", "linear", "step"], default="constant")
    t.add_argument("--weight-decay", type=float, default=0.0)
    t.add_argument("--dropout", type=float, default=0.0)
    t.add_argument("--n-train", type=int, help="use only the first N training samples")
    t.add_argument("--log-every", type=int, default=200)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", required=True, help="checkpoint path (.npz)")
    t.set_defaults(fn=cmd_train)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError, KeyError) as e:
        _log(f"stability {args.command}: error: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
