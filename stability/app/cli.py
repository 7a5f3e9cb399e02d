"""The ``stability`` command line: ``demo`` (the main job) and ``train``.

Every command writes its results into one directory (``summary.json``, ``report.md``, PNGs),
atomically, and prints progress lines to stderr.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from stability.core.progress import configure_logging, get_logger

__all__ = ["main", "build_parser"]


_log = get_logger("cli").info


def _cmd_demo(args: argparse.Namespace) -> int:
    from stability.app.demo import run_demo

    return run_demo(args)


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

    from stability.core import checkpoint
    from stability import data
    from stability.core import nets
    from stability.core.io import write_json
    from stability.core.train import TrainConfig, fit

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
    net, hist = fit(net, ds.x_train, ds.y_train, cfg, x_test=ds.x_test, y_test=ds.y_test)
    out = Path(args.out)
    checkpoint.save(out, net, {"data": args.data, "train": cfg.to_dict(), "history": hist.to_dict()})
    write_json(out.with_suffix(".json"), {"data": ds.summary(), "arch": net.arch.to_dict(), "train": cfg.to_dict(),
                                          "history": hist.to_dict()})
    _log(f"saved {out} (and {out.with_suffix('.json')})")
    return 0


def _load_data_for(net, name: str, source: str | None):
    from stability import data

    kwargs: dict[str, Any] = {"layout": "image" if net.arch.n_conv else "flat"}
    if source:
        kwargs["source"] = source
    if name == "mnist" and net.arch.n_conv and net.arch.in_shape[0] == 32:
        kwargs["pad_to"] = 32
    return data.load(name, **kwargs)


def _new_report(out: str, title: str):
    from stability.app.report import Report

    report = Report(out, title=title)
    report.meta["command"] = "stability " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    return report


def cmd_curve(args: argparse.Namespace) -> int:
    from stability.core import checkpoint
    from stability.core.train import TrainConfig
    from stability.curves import curve as curves
    from stability.app.sections.curves import DISPLAY_COLUMNS, certified_maxima, curve_rows, display_row, plane_figure
    from stability.core.evaluate import line_point
    from stability.core.polycurve import PolyCurve
    from stability.core.io import write_json
    from stability.core.nets import apply, check_same_arch

    a, b = checkpoint.load(args.a), checkpoint.load(args.b)
    check_same_arch(a, b, "the two checkpoints")
    ds = _load_data_for(a, args.data, args.source)
    report = _new_report(args.out, f"Learned {args.kind} curve between {args.a} and {args.b}")
    make = curves.bezier if args.kind == "bezier" else curves.polychain
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, optimizer="adam", lr=args.lr, schedule="cosine",
                      seed=args.seed, log_every=max(1, args.steps // 10))
    curve, hist = curves.train_curve(make(a, b, args.bends), apply, ds.x_train, ds.y_train, cfg)
    _log("certifying the maximum train loss over every t (segment and curve)")
    bounds = certified_maxima({"Segment": PolyCurve.segment(a, b), args.kind: curves.as_polycurve(curve)},
                              ds.x_train, ds.y_train)
    rows = curve_rows({"Segment": (line_point, (a, b)), args.kind: (curves.curve_point, curve)},
                      (ds.x_train, ds.y_train), (ds.x_test, ds.y_test), n=args.points, certified=bounds)
    sec = report.section("curve", f"{args.kind} curve with {args.bends} bend(s), {args.steps} steps")
    sec.text(f"Every row on {args.points} equally spaced t; `train loss Max` is the grid's largest value (a lower "
             "bound of the maximum over t); the certified column encloses the maximum over every t: "
             + "; ".join(f"{k}: {b.describe()}" for k, b in bounds.items()) + ".")
    sec.table(["curve"] + DISPLAY_COLUMNS, [[k] + display_row(r["row"]) for k, r in rows.items()])
    fig, _ = plane_figure(a, b, curve, ds.x_train, ds.y_train, resolution=args.plane_resolution)
    report.figure(sec, fig, "plane.png", "Train loss plane through θ_A, the middle bend and θ_B")
    sec.data.update(rows={k: r["row"] for k, r in rows.items()}, history=hist.to_dict())
    report.add(sec)
    write_json(Path(args.out) / "curve_points.json", {k: {"train": r["train"], "test": r["test"]} for k, r in rows.items()})
    _log(f"wrote {args.out}/report.md")
    return 0


def cmd_plane(args: argparse.Namespace) -> int:
    from stability.core import checkpoint
    from stability.curves import planes
    from stability.plots.planes import plot_plane

    ws = [checkpoint.load(p) for p in (args.a, args.b, args.c)]
    ds = _load_data_for(ws[0], args.data, args.source)
    report = _new_report(args.out, "Loss plane through three nets")
    p = planes.plane(*ws)
    grid = planes.evaluate_plane(p, ds.x_train, ds.y_train, resolution=args.resolution, progress=True)
    sec = report.section("plane", "Train loss on the plane")
    report.figure(sec, plot_plane(p, grid, {"segment A→C": [ws[0], ws[2]]}, labels=("A", "B", "C")),
                  "plane.png", "Train loss on the plane through the three checkpoints")
    sec.data.update(coords=p.coords, alpha=grid["alpha"], beta=grid["beta"], loss=grid["loss"], acc=grid["acc"])
    report.add(sec)
    _log(f"wrote {args.out}/report.md")
    return 0


def cmd_fge(args: argparse.Namespace) -> int:
    import jax

    from stability import data
    from stability.curves import ensembles
    from stability.core import nets
    from stability.core.train import TrainConfig

    ds = data.load(args.data)
    if args.n_train:
        ds = ds.subset(n_train=args.n_train)
    report = _new_report(args.out, f"FGE vs snapshot vs independent ensembles on {args.data}")
    cfg = TrainConfig(steps=args.budget_steps, batch_size=64, optimizer="momentum", lr=args.lr, schedule="cosine",
                      seed=args.seed, log_every=max(1, args.budget_steps // 4))
    make = lambda s: nets.mlp(jax.random.PRNGKey(s), (ds.input_shape[0], *args.widths, ds.num_classes))  # noqa: E731
    rows = ensembles.compare_budgets(make, ds, cfg, budgets=args.budgets, fge_cycle=args.cycle,
                                     fge_alphas=(args.alpha1, args.alpha2))
    sec = report.section("fge", "Equal-budget ensembles (Garipov Table 1 layout)")
    sec.text(f"Budget B = {cfg.steps} SGD steps; FGE: from the independent run's state at 75% of the budget "
             f"(momentum kept), then cycle c = {args.cycle}, "
             f"α1 = {args.alpha1}, α2 = {args.alpha2}; SSE: cosine restarts, 2 snapshots per run; a kB budget ensembles k independent runs of each method.")
    sec.table(["budget", "method", "members", "test err %", "NLL"],
              [[f"{r['budget']}B", r["method"], r["members"], r["error"], r["nll"]] for r in rows])
    sec.data["rows"] = rows
    report.add(sec)
    _log(f"wrote {args.out}/report.md")
    return 0


def _cmd_connect(args: argparse.Namespace) -> int:
    from stability.app.connect import run_command

    return run_command(args)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from stability.app import reproduce

    if args.list or not args.name:
        for name in reproduce.names():
            rep = reproduce.get(name)
            print(f"{name:17s} {rep.paper}: {rep.title}" + (f"  [data: {rep.needs}]" if rep.needs else ""))
        return 0 if args.list else 2
    overrides = {}
    for item in args.set or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects NAME=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    todo = reproduce.names() if args.name == "all" else [args.name]
    if overrides and len(todo) > 1:
        raise ValueError("--set applies to one reproduction's scale; name it instead of 'all'")
    for name in todo:
        reproduce.get(name)  # unknown names fail before anything runs
    root = Path(args.out) if args.out else Path("reproduce_out")
    for name in todo:
        out = root / name if (args.name == "all" or not args.out) else root
        reproduce.run(name, out, quick=args.quick, seed=args.seed, source=args.source, overrides=overrides)
    return 0


def cmd_cushions(args: argparse.Namespace) -> int:
    """``stability cushions CHECKPOINT --data NAME --out DIR``."""
    import jax

    from stability.core import checkpoint
    from stability.theory import cushions
    from stability import data
    from proofs_check.lemma3 import check_lemma3
    from stability.app.report import Report
    from stability.app.sections.cushions import write_cushions_section

    t0 = time.perf_counter()
    net, meta = checkpoint.load(args.checkpoint, with_meta=True)
    kwargs: dict[str, Any] = {}
    if args.source:
        kwargs["source"] = args.source
    if args.data in ("digits", "mnist", "cifar10"):
        kwargs["layout"] = "image" if net.arch.n_conv > 0 else "flat"
    ds = data.load(args.data, **kwargs)
    if tuple(ds.input_shape) != tuple(net.arch.in_shape):
        raise ValueError(f"the checkpoint's net reads inputs of shape {net.arch.in_shape}, dataset {args.data!r} "
                         f"has {ds.input_shape}")
    n = min(args.n, len(ds.x_train))
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(len(ds.x_train), n, replace=False))
    x, y = ds.x_train[idx], ds.y_train[idx]
    _log(f"data: {ds.summary()}; measuring on {n} training samples")
    key = jax.random.PRNGKey(args.seed)
    km, kl = jax.random.split(key)
    res = cushions.measure(net, x, km, p=args.p, draws=args.draws, ts=args.ts, tol=args.tol, max_iter=args.max_iter,
                           method=args.method, batch_size=args.batch_size)
    out = Path(args.out)
    report = Report(out, title=f"stability cushions: {Path(args.checkpoint).name} on {args.data}")
    report.meta["command"] = "stability " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report.meta.update(checkpoint=str(args.checkpoint), data=args.data, n=n, seed=args.seed)
    res.save(out / "cushions.npz")
    lemma = None
    if args.lemma3_draws > 0 and ds.task == "classification":
        _log(f"Lemma 3: {args.lemma3_draws} draws per p")
        lemma = check_lemma3(net, x, y, kl, draws=args.lemma3_draws, noise=res)
    write_cushions_section(report, "cushions", f"Noise stability of {Path(args.checkpoint).name}",
                           {"net": res}, lemma3=lemma)
    report.meta["wall_seconds"] = round(time.perf_counter() - t0, 2)
    report.write()
    _log(f"wrote {out / 'report.md'}, {out / 'summary.json'} and {out / 'cushions.npz'} "
         f"in {time.perf_counter() - t0:.1f} s")
    return 0


def _positive_int(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _probability(s: str) -> float:
    v = float(s)
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in (0, 1), got {s!r}")
    return v


def _grid(s: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in s.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {s!r}") from None
    if not vals or any(not 0.0 <= v <= 1.0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected values in [0, 1], got {s!r}")
    return vals


def add_cushions_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``stability cushions CHECKPOINT --data NAME --out DIR [--n N] [--p P] [--draws K]``."""
    c = subparsers.add_parser(
        "cushions", help="noise stability (layer/interlayer cushion, contraction, smoothness, ε) of a checkpoint",
        description="Measure the noise-stability quantities of Kuditipudi et al. (2019), Definitions 2–4, of a "
                    "trained net on N training samples; write cushions.npz (per-sample arrays), histograms (PNG), "
                    "report.md and summary.json into DIR, with the Lemma 3 check.")
    c.add_argument("checkpoint", help="a checkpoint written by `stability train` (.npz)")
    c.add_argument("--data", required=True, help="digits | mnist | cifar10 | teacher")
    c.add_argument("--source", help="data directory (MNIST IDX files, CIFAR-10 python batches)")
    c.add_argument("--out", required=True, help="output directory")
    c.add_argument("--n", type=_positive_int, default=1000, help="training samples to measure on (default 1000)")
    c.add_argument("--p", type=_probability, default=0.5, help="Algorithm 1 dropout probability for ρ (default 0.5)")
    c.add_argument("--draws", type=_positive_int, default=5, help="Algorithm 1 mask draws for ρ (default 5)")
    c.add_argument("--ts", type=_grid, default=(0.0, 0.25, 0.5, 0.75),
                   help="t grid of Definition 3, comma-separated (default 0,0.25,0.5,0.75)")
    c.add_argument("--method", choices=["lobpcg", "power"], default="lobpcg",
                   help="spectral-norm solver on JᵀJ (jvp/vjp only): lobpcg (default) or power iteration")
    c.add_argument("--tol", type=float, default=1e-4, help="solver: relative residual tolerance (default 1e-4)")
    c.add_argument("--max-iter", type=_positive_int, default=200, help="solver: iteration cap (default 200)")
    c.add_argument("--batch-size", type=_positive_int, help="samples per jitted chunk (default: fit 512 MiB)")
    c.add_argument("--lemma3-draws", type=int, default=20, help="mask draws per p for the Lemma 3 check (0: skip)")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(fn=cmd_cushions)
    return c


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stability", description=__doc__.splitlines()[0])
    p.add_argument("--quiet", action="store_true", help="no progress lines (only warnings and errors)")
    p.add_argument("--verbose", action="store_true", help="progress lines even when stderr is not a terminal")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="train two nets on digits and write the full report",
                       description="Main job: two nets on scikit-learn's bundled digits, every analysis of the "
                                   "library between them, written to DIR (summary.json, report.md, PNGs).")
    d.add_argument("--out", default="demo_out", help="output directory (default: demo_out)")
    d.add_argument("--quick", action="store_true", help="fewer steps and points (under 3 minutes on a 2-core CPU)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--only", nargs="*", help="run only these sections (e.g. straight_line paths)")
    d.set_defaults(fn=_cmd_demo)

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

    c = sub.add_parser("curve", help="learn a Bezier / polygonal-chain curve between two checkpoints",
                       description="Train a curve on eq. (3) of Garipov et al. between two saved nets; write the "
                                   "Table 2 row (vs the segment) and a loss plane to DIR.")
    c.add_argument("a", help="checkpoint of the first end point")
    c.add_argument("b", help="checkpoint of the second end point")
    c.add_argument("--data", default="digits")
    c.add_argument("--source", help="data directory (MNIST IDX files, CIFAR-10 python batches)")
    c.add_argument("--kind", choices=["bezier", "polychain"], default="bezier")
    c.add_argument("--bends", type=int, default=1)
    c.add_argument("--steps", type=int, default=2000)
    c.add_argument("--batch-size", type=int, default=128)
    c.add_argument("--lr", type=float, default=1e-2)
    c.add_argument("--points", type=int, default=121)
    c.add_argument("--plane-resolution", type=int, default=21)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", required=True)
    c.set_defaults(fn=cmd_curve)

    pl = sub.add_parser("plane", help="loss plane through three checkpoints",
                        description="Evaluate the train loss on a grid over the plane through three saved nets.")
    for name in ("a", "b", "c"):
        pl.add_argument(name, help="checkpoint")
    pl.add_argument("--data", default="digits")
    pl.add_argument("--source")
    pl.add_argument("--resolution", type=int, default=21)
    pl.add_argument("--out", required=True)
    pl.set_defaults(fn=cmd_plane)

    f = sub.add_parser("fge", help="FGE vs snapshot vs independent ensembles at equal budgets",
                       description="Garipov Table 1 layout on dense nets: test error and NLL per budget.")
    f.add_argument("--data", default="digits")
    f.add_argument("--n-train", type=int)
    f.add_argument("--widths", type=_parse_ints, default=(64, 64))
    f.add_argument("--budget-steps", type=int, default=1000, help="B: steps of one budget unit")
    f.add_argument("--budgets", type=_parse_ints, default=(1, 2, 3))
    f.add_argument("--cycle", type=int, default=40, help="FGE cycle length c (even)")
    f.add_argument("--alpha1", type=float, default=0.05)
    f.add_argument("--alpha2", type=float, default=0.0005)
    f.add_argument("--lr", type=float, default=0.05)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--out", required=True)
    f.set_defaults(fn=cmd_fge)

    r = sub.add_parser("reproduce", help="reproduce a figure or table of the papers",
                       description="Reproduce a published figure/table: kuditipudi-fig2, kuditipudi-fig3, "
                                   "kuditipudi-thm4, garipov-table2, garipov-fge (or 'all'). Writes summary.json, "
                                   "report.md (with a 'paper' column) and PNG figures to DIR.")
    r.add_argument("name", nargs="?", help="reproduction name, or 'all' (see --list)")
    r.add_argument("--list", action="store_true", help="list the reproductions and exit")
    r.add_argument("--out", help="output directory (default: reproduce_out/NAME; with 'all', one subdirectory each)")
    r.add_argument("--quick", action="store_true", help="CPU smoke-test scale (minutes on a 2-core CPU)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--source", help="data directory: CIFAR-10 python batches (kuditipudi-fig3), MNIST IDX files")
    r.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="override one field of the run's scale (e.g. --set n_train=10000); repeatable")
    r.set_defaults(fn=cmd_reproduce)

    add_cushions_parser(sub)

    from stability.app.connect import add_arguments as add_connect_arguments

    cn = sub.add_parser("connect", help="connect k minima pairwise by every method: matrices, heat maps, spanning tree",
                        description="For every pair of the checkpoints: the straight line, the aligned straight line, "
                                    "the Theorem 1/2/3 paths (verdicts and certified bounds) and optionally a learned "
                                    "Bezier curve; one matrix and heat map per method, the minimum spanning tree of "
                                    "each barrier matrix, report.md (opening with the finding) and summary.json in DIR.")
    add_connect_arguments(cn)
    cn.set_defaults(fn=_cmd_connect)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(quiet=args.quiet, verbose=args.verbose)
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError, KeyError) as e:
        print(f"stability {args.command}: error: {e}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
