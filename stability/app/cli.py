"""The stability command line: seven commands, each checking every argument before any work starts.

Every command except train writes its results into one directory: report.md, summary.json, PNG figures and
manifest.json (the list of every file the run wrote). A new or empty directory is used as is; the directory of
an earlier run (it has a manifest.json) is reused and the earlier run's files are removed first; a non-empty
directory without a manifest is refused. Until a run finishes, its report.md opens with an INCOMPLETE line
(with the reason if it failed or was interrupted). train writes one checkpoint NAME.npz and its side-car
NAME.json.

Exit status: 0 done, 1 the run failed after it started, 2 a usage or input error (found before any work),
130 interrupted. Errors are one line; --debug shows the traceback.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from stability.core.progress import configure_logging, get_logger

__all__ = ["main", "build_parser", "UsageError", "COMMANDS"]


_log = get_logger("cli").info

DATASETS = ("digits", "mnist", "cifar10", "teacher")
IMAGE_DATASETS = ("digits", "mnist", "cifar10")
DEMO_SECTIONS = ("straight_line", "paths", "cushions", "curves", "counterexample")

COMMANDS = {
    "demo": "the main job: two nets on the bundled digits data and every analysis between them",
    "train": "train a dense or conv ReLU net and save it as a checkpoint (.npz)",
    "curve": "learn a Bezier / polygonal-chain curve between two checkpoints (Table 2 row, loss plane)",
    "plane": "train-loss plane through three checkpoints",
    "fge": "FGE vs snapshot vs independent ensembles at equal training budgets",
    "cushions": "noise stability of a checkpoint (cushions, contraction, smoothness, ε) and Lemma 3",
    "connect": "connect k checkpoints pairwise by every method: matrices, heat maps, spanning trees",
    "reproduce": "reproduce a figure or table of the papers (--list names them)",
}
"""Every command and its one-line description (the top-level help lists them in this order)."""

_STARTED = {"work": False}
_MESH: dict[str, Any] = {"mesh": None}


def _mesh() -> Any:
    """The device mesh of this run (set by :func:`main` from ``--devices``; ``None``: one device)."""
    return _MESH["mesh"]


def _check_batch_devices(flag: str, batch: int) -> None:
    """Data-parallel training splits each minibatch evenly over the mesh: refuse an uneven split before work."""
    mesh = _mesh()
    if mesh is not None and mesh.size > 1 and batch % mesh.size:
        raise ValueError(f"{flag}: a minibatch of {batch} does not split over {mesh.size} devices; use a multiple "
                         f"of {mesh.size} or --devices with a divisor of {batch}")


def _setup_devices(args: argparse.Namespace) -> None:
    """Start ``jax.distributed`` when the environment asks for it, check ``--devices`` and build the mesh —
    before any work (a bad value is a one-line usage error)."""
    from stability.core import mesh as mesh_lib

    mesh_lib.distributed_init()
    try:
        devices = mesh_lib.check_devices(getattr(args, "devices", None))
    except ValueError as e:
        raise ValueError(f"--devices: {e}") from None
    _MESH["mesh"] = mesh_lib.make_mesh(devices)


def _work_starts() -> None:
    """Mark the end of argument checking: an error from here on is a failed run (exit 1), not a usage error."""
    _STARTED["work"] = True


class UsageError(ValueError):
    """A command-line usage error (one line; exit status 2)."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(message)
        self.prog, self.message = prog, message


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block) and never exit the interpreter."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(self.prog, f"{message} (see '{self.prog} --help')")


class _Formatter(argparse.HelpFormatter):
    """Shows every option's default unless its help already states one (flags and required options have none to
    show); keeps multi-line descriptions as written and wraps one-paragraph ones."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        h = action.help or ""
        if "default" in h or action.required or action.default in (argparse.SUPPRESS,) or isinstance(action, (
                argparse._StoreTrueAction, argparse._HelpAction, argparse._VersionAction)) or not action.option_strings:
            return h
        d = action.default
        if isinstance(d, (tuple, list)):
            d = ",".join(str(v) for v in d)
        return f"{h} (default: {d})"


# --------------------------------------------------------------------------- argument types


def _type(desc: str, conv: Callable[[str], Any], ok: Callable[[Any], bool]) -> Callable[[str], Any]:
    """An argparse type: ``conv`` the string, then ``ok`` it; otherwise "expected DESC, got 'VALUE'"."""

    def parse(s: str) -> Any:
        try:
            v = conv(s)
        except (ValueError, TypeError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {desc}, got {s!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"expected {desc}, got {s!r}")
        return v

    parse.__name__ = desc
    return parse


def _int(s: str) -> int:
    return int(s.strip())


_positive_int = _type("an integer ≥ 1", _int, lambda v: v >= 1)
_nonneg_int = _type("an integer ≥ 0", _int, lambda v: v >= 0)
_at_least_2 = _type("an integer ≥ 2", _int, lambda v: v >= 2)
_even_cycle = _type("an even integer ≥ 2", _int, lambda v: v >= 2 and v % 2 == 0)
_positive_float = _type("a finite number > 0", float, lambda v: math.isfinite(v) and v > 0)
_nonneg_float = _type("a finite number ≥ 0", float, lambda v: math.isfinite(v) and v >= 0)
_probability = _type("a probability in (0, 1)", float, lambda v: 0.0 < v < 1.0)
_dropout_rate = _type("a dropout rate in [0, 1)", float, lambda v: 0.0 <= v < 1.0)


def _int_list(s: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers ≥ 1 (e.g. 64,64), got {s!r}") from None
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers ≥ 1 (e.g. 64,64), got {s!r}")
    return vals


def _grid(s: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in s.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in [0, 1], got {s!r}") from None
    if not vals or any(not 0.0 <= v <= 1.0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers in [0, 1], got {s!r}")
    return vals


# --------------------------------------------------------------------------- shared checks


def _is_checkpoint(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return "__stability__.npy" in z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _check_out_dir(out: str) -> None:
    from stability.app.report import check_out_dir

    check_out_dir(out, "--out")


def _load_checkpoint(path: str, what: str):
    """``(net, meta)`` of a checkpoint argument; every failure names the argument."""
    from stability.core import checkpoint

    try:
        return checkpoint.load(path, with_meta=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what}: no checkpoint at {path}") from None
    except ValueError as e:
        raise ValueError(f"{what}: {e}") from None


def _data_name(args: argparse.Namespace, meta: dict[str, Any], what: str) -> str:
    """``--data``, or the dataset the checkpoint records (``stability train`` and the demo record it)."""
    if args.data:
        return args.data
    name = meta.get("data")
    if name not in DATASETS:
        raise ValueError(f"--data: {what} records no dataset; pass --data NAME (one of {', '.join(DATASETS)})")
    _log(f"data: {name} (recorded in {what})")
    return name


def _source(args: argparse.Namespace, meta: dict[str, Any]) -> str | None:
    return args.source or (meta.get("source") if not args.data or args.data == meta.get("data") else None)


def _load_data_for(net, name: str, source: str | None, what: str):
    """The dataset ``name`` in the layout ``net`` reads; refuses a mismatch of input shape or of classes."""
    from stability import data
    from stability.core.losses import check_targets

    kwargs: dict[str, Any] = {}
    if name in IMAGE_DATASETS:
        kwargs["layout"] = "image" if net.arch.n_conv else "flat"
    if source:
        kwargs["source"] = source
    if name == "mnist" and net.arch.n_conv and net.arch.in_shape[0] == 32:
        kwargs["pad_to"] = 32
    ds = data.load(name, **kwargs)
    if tuple(ds.input_shape) != tuple(net.arch.in_shape):
        raise ValueError(f"--data: {what} reads inputs of shape {tuple(net.arch.in_shape)}, dataset {name!r} has "
                         f"{tuple(ds.input_shape)}")
    loss = "cross_entropy" if ds.task == "classification" else "squared_error"
    try:
        check_targets(ds.y_train, net.arch.widths[-1], loss, f"the labels of {name!r}")
    except ValueError as e:
        raise ValueError(f"--data: {e} ({what})") from None
    return ds


def _subset(ds, n_train: int | None, name: str):
    if n_train is None:
        return ds
    if n_train > ds.x_train.shape[0]:
        raise ValueError(f"--n-train: {n_train} exceeds the {ds.x_train.shape[0]} training samples of {name}")
    return ds.subset(n_train=n_train)


def _command_line() -> str:
    return "stability " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _new_report(out: str, title: str):
    from stability.app.report import Report

    report = Report(out, title=title)
    report.meta["command"] = _command_line()
    return report


# --------------------------------------------------------------------------- commands


def _cmd_demo(args: argparse.Namespace) -> int:
    from stability.app.demo import run_demo

    return run_demo(args, on_start=_work_starts)


def cmd_train(args: argparse.Namespace) -> int:
    """``stability train``: check every option, load the data, build the net, then train and save."""
    import jax

    from stability import data
    from stability.app.report import check_out_file
    from stability.core import checkpoint, nets
    from stability.core.io import write_json
    from stability.core.train import TrainConfig, fit

    out = check_out_file(args.out, "--out", ".npz", is_ours=_is_checkpoint)
    side = out.with_suffix(".json")
    if side.is_dir():
        raise ValueError(f"--out: the side-car {side} is a directory")
    if args.arch == "conv" and args.data not in IMAGE_DATASETS:
        raise ValueError(f"--arch: conv nets need image data ({', '.join(IMAGE_DATASETS)}); dataset {args.data!r} "
                         f"is flat: use --arch mlp")
    kwargs: dict[str, Any] = {"layout": "image"} if args.arch == "conv" else {}
    if args.source:
        kwargs["source"] = args.source
    ds = _subset(data.load(args.data, **kwargs), args.n_train, args.data)
    n = ds.x_train.shape[0]
    if args.batch_size > n:
        raise ValueError(f"--batch-size: {args.batch_size} is more than the {n} training samples; give at most {n}")
    _log(f"data: {ds.summary()}")
    key = jax.random.PRNGKey(args.seed)
    classes = ds.num_classes or 1
    try:
        if args.arch == "mlp":
            arch = nets.Arch(in_shape=(int(np.prod(ds.input_shape)),), widths=(*args.widths, classes),
                             bias=not args.no_bias)
        else:
            arch = nets.Arch(in_shape=tuple(ds.input_shape), widths=(*args.widths, classes), n_conv=len(args.widths),
                             pool=((None if args.pool == "none" else args.pool),) * len(args.widths),
                             head=args.head, bias=not args.no_bias)
            arch.weight_shapes()  # pooling that shrinks the image to nothing fails here
    except ValueError as e:
        raise ValueError(f"--widths/--pool: {e} (data {args.data!r}, input shape {tuple(ds.input_shape)})") from None
    net = nets.init(key, arch)
    _check_batch_devices("--batch-size", min(args.batch_size, n))
    log_every = args.log_every or max(1, n // args.batch_size)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr,
                      schedule=args.schedule, weight_decay=args.weight_decay, dropout=args.dropout,
                      loss="cross_entropy" if ds.task == "classification" else "squared_error", seed=args.seed,
                      log_every=log_every)
    _work_starts()
    net, hist = fit(net, ds.x_train, ds.y_train, cfg, x_test=ds.x_test, y_test=ds.y_test, mesh=_mesh())
    recorded = {"data": args.data, "source": args.source, "n_train": args.n_train}
    checkpoint.save(out, net, {**recorded, "train": cfg.to_dict(), "history": hist.to_dict()})
    write_json(side, {"files": [out.name, side.name], "command": _command_line(), "data": ds.summary(), **recorded,
                      "arch": net.arch.to_dict(), "train": cfg.to_dict(), "history": hist.to_dict()})
    _log(f"saved {out} and its side-car {side}")
    return 0


def cmd_curve(args: argparse.Namespace) -> int:
    """``stability curve A B``: learn a curve between two checkpoints; Table 2 row and a loss plane."""
    from stability.app.sections.curves import (DISPLAY_COLUMNS, certified_maxima, curve_finding, curve_rows,
                                               display_row, plane_figure)
    from stability.core.evaluate import line_point
    from stability.core.nets import apply, check_same_arch
    from stability.core.polycurve import PolyCurve
    from stability.core.train import TrainConfig
    from stability.curves import curve as curves

    _check_out_dir(args.out)
    a, meta = _load_checkpoint(args.a, "A")
    b, _ = _load_checkpoint(args.b, "B")
    try:
        check_same_arch(a, b, "the two checkpoints")
    except ValueError as e:
        raise ValueError(f"A, B: {' '.join(str(e).split())}") from None
    name = _data_name(args, meta, f"checkpoint {args.a}")
    ds = _load_data_for(a, name, _source(args, meta), f"checkpoint {args.a}")
    if args.batch_size > ds.x_train.shape[0]:
        raise ValueError(f"--batch-size: {args.batch_size} is more than the {ds.x_train.shape[0]} training samples")
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, optimizer="adam", lr=args.lr, schedule="cosine",
                      seed=args.seed, log_every=max(1, args.steps // 10))
    _check_batch_devices("--batch-size", args.batch_size)
    make = curves.bezier if args.kind == "bezier" else curves.polychain
    report = _new_report(args.out, f"Learned {args.kind} curve between {args.a} and {args.b}")
    _work_starts()
    with report.running():
        curve, hist = curves.train_curve(make(a, b, args.bends), apply, ds.x_train, ds.y_train, cfg,
                                          mesh=_mesh())
        _log("certifying the maximum train loss over every t (segment and curve)")
        bounds = certified_maxima({"Segment": PolyCurve.segment(a, b), args.kind: curves.as_polycurve(curve)},
                                  ds.x_train, ds.y_train)
        rows = curve_rows({"Segment": (line_point, (a, b)), args.kind: (curves.curve_point, curve)},
                          (ds.x_train, ds.y_train), (ds.x_test, ds.y_test), n=args.points, certified=bounds)
        sec = report.section("curve", f"{args.kind} curve with {args.bends} bend(s), {args.steps} steps")
        sec.finding(curve_finding(rows, args.kind) + " Over every t (certified): " +
                    "; ".join(f"{k} train loss ≤ {b.upper:.4g}" for k, b in bounds.items()) + ".")
        sec.text(f"Trained on eq. (3) of Garipov et al. (one t ~ U(0, 1) per minibatch, Adam, lr {args.lr} cosine, "
                 f"batch {args.batch_size}) on {name} ({ds.x_train.shape[0]} training samples); both rows are "
                 f"evaluated on {args.points} equally spaced t. Int is the arc-length mean; errors in %. `train loss "
                 "Max` is the grid's largest value (a lower bound of the maximum over t); the certified column "
                 "encloses the maximum over every t: " + "; ".join(f"{k}: {b.describe()}" for k, b in bounds.items())
                 + ".")
        sec.table(["curve"] + DISPLAY_COLUMNS, [[k] + display_row(r["row"]) for k, r in rows.items()])
        fig, grid = plane_figure(a, b, curve, ds.x_train, ds.y_train, resolution=args.plane_resolution)
        report.figure(sec, fig, "plane.png", "Train loss on the plane through θ_A, the middle bend and θ_B")
        sec.data.update(rows={k: r["row"] for k, r in rows.items()}, history=hist.to_dict(), data=name)
        report.add(sec)
        report.write_json("curve_points.json", {k: {"train": r["train"], "test": r["test"]} for k, r in rows.items()})
    _log(f"wrote {args.out}/report.md")
    return 0


def cmd_plane(args: argparse.Namespace) -> int:
    """``stability plane A B C``: train loss on the plane through three checkpoints."""
    from stability.app.sections.curves import plane_finding
    from stability.core.evaluate import evaluate_nets
    from stability.core.nets import check_same_arch
    from stability.curves import planes
    from stability.plots.planes import plot_plane

    _check_out_dir(args.out)
    loaded = [_load_checkpoint(p, k) for p, k in ((args.a, "A"), (args.b, "B"), (args.c, "C"))]
    ws = [w for w, _ in loaded]
    for k, w in zip("BC", ws[1:]):
        try:
            check_same_arch(ws[0], w, f"A and {k}")
        except ValueError as e:
            raise ValueError(f"A, {k}: {' '.join(str(e).split())}") from None
    name = _data_name(args, loaded[0][1], f"checkpoint {args.a}")
    ds = _load_data_for(ws[0], name, _source(args, loaded[0][1]), f"checkpoint {args.a}")
    try:
        p = planes.plane(*ws)
    except ValueError as e:
        raise ValueError(f"A, B, C: {e}") from None
    report = _new_report(args.out, "Loss plane through three nets")
    _work_starts()
    with report.running():
        grid = planes.evaluate_plane(p, ds.x_train, ds.y_train, resolution=args.resolution, progress=True)
        ends = evaluate_nets(ws, ds.x_train, ds.y_train)
        sec = report.section("plane", "Train loss on the plane")
        sec.finding(plane_finding(grid, ends.loss, ("A", "B", "C")))
        sec.text(f"Train loss of {name} ({ds.x_train.shape[0]} samples) on a {args.resolution}×{args.resolution} "
                 f"grid of the plane w(α, β) = A + α·u + β·v through the three checkpoints (u, v orthonormal; the "
                 f"grid covers the three points plus 20% on every side).")
        sec.table(["point", "α", "β", "train loss", "train acc"],
                  [[lab, float(c[0]), float(c[1]), float(l), float(acc)]
                   for lab, c, l, acc in zip(("A", "B", "C"), p.coords, ends.loss, ends.acc)])
        report.figure(sec, plot_plane(p, grid, {"segment A→C": [ws[0], ws[2]]}, labels=("A", "B", "C"),
                                      title="train loss on the plane through A, B, C"),
                      "plane.png", "Train loss on the plane through the three checkpoints")
        sec.data.update(coords=p.coords, alpha=grid["alpha"], beta=grid["beta"], loss=grid["loss"], acc=grid["acc"],
                        point_loss=ends.loss, point_acc=ends.acc, data=name)
        report.add(sec)
    _log(f"wrote {args.out}/report.md")
    return 0


def cmd_fge(args: argparse.Namespace) -> int:
    """``stability fge``: equal-budget ensembles (Garipov Table 1 layout) and their ensemble-size curves."""
    import jax

    from stability import data
    from stability.app.sections.curves import ensemble_size_curves, fge_finding
    from stability.core import nets
    from stability.core.train import TrainConfig
    from stability.curves import ensembles
    from stability.plots import reproductions as reproduction_plots

    _check_out_dir(args.out)
    if args.alpha2 > args.alpha1:
        raise ValueError(f"--alpha2: the FGE cycle falls from α1 to α2 ≤ α1; got α2 = {args.alpha2} > α1 = "
                         f"{args.alpha1}")
    kwargs: dict[str, Any] = {"layout": "flat"} if args.data in IMAGE_DATASETS else {}
    ds = _subset(data.load(args.data, **kwargs), args.n_train, args.data)
    if ds.task != "classification":
        raise ValueError(f"--data: ensembles are compared by test error: {args.data!r} is not a classification task")
    pre = int(round(0.75 * args.budget_steps))
    if args.budget_steps - pre < args.cycle:
        raise ValueError(f"--cycle: FGE gets {args.budget_steps - pre} steps after pre-training (25% of "
                         f"--budget-steps {args.budget_steps}), less than one cycle of {args.cycle}; raise "
                         f"--budget-steps to at least {4 * args.cycle} or shorten --cycle")
    batch = min(64, ds.x_train.shape[0])
    cfg = TrainConfig(steps=args.budget_steps, batch_size=batch, optimizer="momentum", lr=args.lr, schedule="cosine",
                      seed=args.seed, log_every=max(1, args.budget_steps // 4))
    _check_batch_devices("--devices (FGE trains with minibatches of 64)", batch)
    report = _new_report(args.out, f"FGE vs snapshot vs independent ensembles on {args.data}")

    def make(s: int):
        return nets.mlp(jax.random.PRNGKey(s), (ds.input_shape[0], *args.widths, ds.num_classes))

    _work_starts()
    with report.running():
        rows, runs = ensembles.compare_budgets(make, ds, cfg, budgets=args.budgets, fge_cycle=args.cycle,
                                               fge_alphas=(args.alpha1, args.alpha2), return_members=True,
                                               mesh=_mesh())
        sizes = ensemble_size_curves(runs.members, ds.x_test, ds.y_test)
        sec = report.section("fge", "Equal-budget ensembles (Garipov Table 1 layout)")
        sec.finding(fge_finding(rows, sizes))
        sec.text(f"Budget B = {cfg.steps} SGD steps (momentum 0.9, lr {args.lr} cosine, batch {batch}) on "
                 f"{ds.summary()}; FGE: from the independent run's state at 75% of the budget (momentum kept), then cycle c = {args.cycle}, α1 = {args.alpha1}, "
                 f"α2 = {args.alpha2}; SSE: cosine restarts, 2 snapshots per run; a kB budget ensembles k "
                 f"independent runs of each method.")
        sec.table(["budget", "method", "members", "test err %", "NLL"],
                  [[f"{r['budget']}B", r["method"], r["members"], r["error"], r["nll"]] for r in rows])
        report.figure(sec, reproduction_plots.ensemble_size_curves(sizes), "fge_ensemble_size.png",
                      "Test error against the number of ensemble members, per method (members in training order)")
        sec.data.update(rows=rows, ensemble_size=sizes)
        report.add(sec)
    _log(f"wrote {args.out}/report.md")
    return 0


def _cmd_connect(args: argparse.Namespace) -> int:
    import jax

    from stability.app.connect import run_command

    if args.curves or (args.narrow is None and 3 in args.theorems):  # minibatches of 128 (curve) and 64 (θ*)
        _check_batch_devices("--devices", 64)
    return run_command(args, on_start=_work_starts, mesh=_mesh() if jax.process_count() == 1 else None)


def cmd_reproduce(args: argparse.Namespace) -> int:
    """``stability reproduce NAME``: check the name, ``--set`` values and output directories, then run."""
    from stability.app import reproduce

    if args.list:
        for name in reproduce.names():
            rep = reproduce.get(name)
            print(f"{name:17s} {rep.paper}: {rep.title}" + (f"  [data: {rep.needs}]" if rep.needs else ""))
        return 0
    if not args.name:
        raise UsageError("stability reproduce", "name a reproduction (or 'all'): one of "
                         f"{', '.join(reproduce.names())}; 'stability reproduce --list' describes them")
    overrides = {}
    for item in args.set or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set: expected NAME=VALUE, got {item!r}")
        if key.strip() in overrides:
            raise ValueError(f"--set: {key.strip()} is set twice")
        overrides[key.strip()] = value.strip()
    todo = reproduce.names() if args.name == "all" else [args.name]
    if overrides and len(todo) > 1:
        raise ValueError("--set: it applies to one reproduction's scale; name the reproduction instead of 'all'")
    root = Path(args.out) if args.out else Path("reproduce_out")
    outs = {name: root / name if (args.name == "all" or not args.out) else root for name in todo}
    for name in todo:  # every check before anything runs
        reproduce.scale_for(name, quick=args.quick, overrides=overrides)
        _check_out_dir(str(outs[name]))
    _work_starts()
    for name in todo:
        reproduce.run(name, outs[name], quick=args.quick, seed=args.seed, source=args.source, overrides=overrides)
    return 0


def cmd_cushions(args: argparse.Namespace) -> int:
    """``stability cushions CHECKPOINT [--data NAME] --out DIR``."""
    import jax

    from proofs_check.lemma3 import check_lemma3
    from stability.app.sections.cushions import write_cushions_section
    from stability.theory import cushions

    t0 = time.perf_counter()
    _check_out_dir(args.out)
    net, meta = _load_checkpoint(args.checkpoint, "CHECKPOINT")
    if net.depth < 2:
        raise ValueError(f"CHECKPOINT: {args.checkpoint} holds a net without hidden layers; noise stability needs "
                         f"at least one")
    name = _data_name(args, meta, f"checkpoint {args.checkpoint}")
    ds = _load_data_for(net, name, _source(args, meta), f"checkpoint {args.checkpoint}")
    n = min(args.n, len(ds.x_train))
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(len(ds.x_train), n, replace=False))
    x, y = ds.x_train[idx], ds.y_train[idx]
    report = _new_report(args.out, f"stability cushions: {Path(args.checkpoint).name} on {name}")
    report.meta.update(checkpoint=str(args.checkpoint), data=name, n=n, seed=args.seed)
    _log(f"data: {ds.summary()}; measuring on {n} training samples")
    km, kl = jax.random.split(jax.random.PRNGKey(args.seed))
    _work_starts()
    with report.running():
        res = cushions.measure(net, x, km, p=args.p, draws=args.draws, ts=args.ts, tol=args.tol,
                               max_iter=args.max_iter, method=args.method, batch_size=args.batch_size,
                               mesh=_mesh() if jax.process_count() == 1 else None)
        res.save(report.register("cushions.npz"))
        lemma = None
        if args.lemma3_draws > 0 and ds.task == "classification":
            _log(f"Lemma 3: {args.lemma3_draws} draws per p")
            lemma = check_lemma3(net, x, y, kl, draws=args.lemma3_draws, noise=res)
        write_cushions_section(report, "cushions", f"Noise stability of {Path(args.checkpoint).name}",
                               {"net": res}, lemma3=lemma)
    out = Path(args.out)
    _log(f"wrote {out / 'report.md'}, {out / 'summary.json'} and {out / 'cushions.npz'} "
         f"in {time.perf_counter() - t0:.1f} s")
    return 0


# --------------------------------------------------------------------------- the parser


def _common() -> argparse.ArgumentParser:
    """--quiet / --verbose / --debug, accepted before or after the command (SUPPRESS: the later one wins)."""
    c = argparse.ArgumentParser(add_help=False)
    c.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS,
                   help="no progress lines (only warnings and errors)")
    c.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="progress lines even when stderr is not a terminal")
    c.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="on an error, show the Python traceback")
    c.add_argument("--devices", type=_positive_int, default=argparse.SUPPRESS, metavar="N",
                   help="local devices to split data-heavy work over (default: all; docs/SCALING.md). Several "
                        "processes: set STABILITY_COORDINATOR, STABILITY_NUM_PROCESSES, STABILITY_PROCESS_ID")
    return c


OUT_DIR_HELP = ("output directory: new, empty, or an earlier run's (its files, listed in its manifest.json, are "
                "removed first); a non-empty directory without a manifest is refused")


def add_cushions_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser] = ()) -> argparse.ArgumentParser:
    """Add ``stability cushions CHECKPOINT [--data NAME] --out DIR [--n N] [--p P] [--draws K]``."""
    c = subparsers.add_parser(
        "cushions", parents=list(parents), formatter_class=_Formatter,
        description="Measure the noise-stability quantities of Kuditipudi et al. (2019), Definitions 2–4, of a "
                    "trained net on N training samples; write cushions.npz (per-sample arrays), histograms (PNG), "
                    "report.md, summary.json and manifest.json into DIR, with the Lemma 3 check.")
    c.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint written by 'stability train' (.npz)")
    c.add_argument("--data", choices=DATASETS,
                   help="dataset to measure on (default: the one the checkpoint records)")
    c.add_argument("--source", help="data directory for mnist / cifar10 (default: the one the checkpoint records)")
    c.add_argument("--out", required=True, metavar="DIR", help=OUT_DIR_HELP)
    c.add_argument("--n", type=_positive_int, default=1000, help="training samples to measure on (default 1000)")
    c.add_argument("--p", type=_probability, default=0.5, help="Algorithm 1 dropout probability for ρ (default 0.5)")
    c.add_argument("--draws", type=_positive_int, default=5, help="Algorithm 1 mask draws for ρ (default 5)")
    c.add_argument("--ts", type=_grid, default=(0.0, 0.25, 0.5, 0.75),
                   help="t grid of Definition 3, comma-separated numbers in [0, 1] (default 0,0.25,0.5,0.75)")
    c.add_argument("--method", choices=["lobpcg", "power"], default="lobpcg",
                   help="spectral-norm solver on JᵀJ (jvp/vjp only): lobpcg or power iteration")
    c.add_argument("--tol", type=_positive_float, default=1e-4, help="solver: relative residual tolerance")
    c.add_argument("--max-iter", type=_positive_int, default=200, help="solver: iteration cap")
    c.add_argument("--batch-size", type=_positive_int, help="samples per jitted chunk (default: what fits 512 MiB)")
    c.add_argument("--lemma3-draws", type=_nonneg_int, default=20, help="mask draws per p for the Lemma 3 check (0: skip)")
    c.add_argument("--seed", type=_nonneg_int, default=0, help="seed of the sample choice and the mask draws")
    c.set_defaults(fn=cmd_cushions)
    return c


def build_parser() -> argparse.ArgumentParser:
    """The ``stability`` parser: every command of :data:`COMMANDS`, every option with help and its default."""
    from stability.app.reproduce import names as reproduce_names

    listing = "\n".join(f"  {k:10s} {v}" for k, v in COMMANDS.items())
    common = _common()
    p = _Parser(prog="stability", formatter_class=_Formatter, parents=[common],
                description="Mode connectivity of ReLU nets, executable (Kuditipudi et al. 2019; Garipov et al. 2018)."
                            f"\n\ncommands:\n{listing}\n\n'stability COMMAND --help' describes each command.",
                epilog=__doc__.split("\n\n", 1)[1])
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser,
                           help="one of the commands listed above")
    sub.required = True
    par = [common]

    d = sub.add_parser("demo", parents=par, formatter_class=_Formatter,
                       description="Main job: two nets on scikit-learn's bundled digits, every analysis of the "
                                   "library between them, written to DIR (report.md, summary.json, PNGs, "
                                   "manifest.json, the two checkpoints).")
    d.add_argument("--out", default="demo_out", metavar="DIR", help=OUT_DIR_HELP)
    d.add_argument("--quick", action="store_true", help="fewer steps and points (under 3 minutes on a 2-core CPU)")
    d.add_argument("--seed", type=_nonneg_int, default=0, help="seed of net A (net B uses seed + 1)")
    d.add_argument("--only", nargs="*", metavar="SECTION",
                   help=f"run only these sections, from: {', '.join(DEMO_SECTIONS)} (default: all)")
    d.set_defaults(fn=_cmd_demo)

    t = sub.add_parser("train", parents=par, formatter_class=_Formatter,
                       description="Train a dense or conv ReLU net and save it: NAME.npz (the checkpoint, written "
                                   "atomically) and NAME.json (its side-car: data, architecture, settings, history).")
    t.add_argument("--data", choices=DATASETS, default="digits", help="dataset")
    t.add_argument("--source", help="data directory: MNIST IDX files or CIFAR-10 python batches (default: none)")
    t.add_argument("--arch", choices=["mlp", "conv"], default="mlp", help="dense (mlp) or convolutional net")
    t.add_argument("--widths", type=_int_list, default=(64, 64), help="hidden widths / conv channels, e.g. 64,64")
    t.add_argument("--pool", choices=["none", "max", "avg"], default="none", help="2×2 pooling after each conv")
    t.add_argument("--head", choices=["flatten", "gap"], default="flatten", help="conv head: flatten or global mean")
    t.add_argument("--no-bias", action="store_true", help="bias-free layers (the paper's nets)")
    t.add_argument("--steps", type=_positive_int, default=2000, help="SGD steps")
    t.add_argument("--batch-size", type=_positive_int, default=64, help="minibatch size")
    t.add_argument("--optimizer", choices=["sgd", "momentum", "adam"], default="sgd", help="optimizer")
    t.add_argument("--lr", type=_positive_float, default=0.1, help="learning rate")
    t.add_argument("--schedule", choices=["constant", "cosine", "linear", "step"], default="constant",
                   help="learning-rate schedule")
    t.add_argument("--weight-decay", type=_nonneg_float, default=0.0, help="L2 coefficient (wd/2·‖θ‖²)")
    t.add_argument("--dropout", type=_dropout_rate, default=0.0, help="dropout rate on every hidden layer")
    t.add_argument("--n-train", type=_positive_int, help="use only the first N training samples (default: all)")
    t.add_argument("--log-every", type=_positive_int,
                   help="steps between logged losses (default: one epoch, training samples // batch size)")
    t.add_argument("--seed", type=_nonneg_int, default=0, help="seed of the initialisation, minibatches and dropout")
    t.add_argument("--out", required=True, metavar="NAME.npz",
                   help="checkpoint path ending in .npz; the side-car NAME.json is written beside it")
    t.set_defaults(fn=cmd_train)

    c = sub.add_parser("curve", parents=par, formatter_class=_Formatter,
                       description="Train a curve on eq. (3) of Garipov et al. between two saved nets; write the "
                                   "Table 2 row (vs the straight segment) and a loss plane to DIR.")
    c.add_argument("a", metavar="A", help="checkpoint of the first end point")
    c.add_argument("b", metavar="B", help="checkpoint of the second end point")
    c.add_argument("--data", choices=DATASETS, help="dataset (default: the one checkpoint A records)")
    c.add_argument("--source", help="data directory for mnist / cifar10 (default: the one checkpoint A records)")
    c.add_argument("--kind", choices=["bezier", "polychain"], default="bezier", help="curve family")
    c.add_argument("--bends", type=_positive_int, default=1, help="bends (control points between the ends)")
    c.add_argument("--steps", type=_positive_int, default=2000, help="Adam steps on eq. (3)")
    c.add_argument("--batch-size", type=_positive_int, default=128, help="minibatch size")
    c.add_argument("--lr", type=_positive_float, default=1e-2, help="learning rate (cosine schedule)")
    c.add_argument("--points", type=_at_least_2, default=121, help="evaluation points on each curve")
    c.add_argument("--plane-resolution", type=_at_least_2, default=21, help="grid points per side of the plane")
    c.add_argument("--seed", type=_nonneg_int, default=0, help="seed of the minibatches and of t")
    c.add_argument("--out", required=True, metavar="DIR", help=OUT_DIR_HELP)
    c.set_defaults(fn=cmd_curve)

    pl = sub.add_parser("plane", parents=par, formatter_class=_Formatter,
                        description="Evaluate the train loss on a grid over the plane through three saved nets.")
    for name in ("a", "b", "c"):
        pl.add_argument(name, metavar=name.upper(), help=f"checkpoint {name.upper()}")
    pl.add_argument("--data", choices=DATASETS, help="dataset (default: the one checkpoint A records)")
    pl.add_argument("--source", help="data directory for mnist / cifar10 (default: the one checkpoint A records)")
    pl.add_argument("--resolution", type=_at_least_2, default=21, help="grid points per side")
    pl.add_argument("--out", required=True, metavar="DIR", help=OUT_DIR_HELP)
    pl.set_defaults(fn=cmd_plane)

    f = sub.add_parser("fge", parents=par, formatter_class=_Formatter,
                       description="Garipov Table 1 layout on dense nets: test error and NLL per budget, and test "
                                   "error against the number of ensemble members.")
    f.add_argument("--data", choices=DATASETS, default="digits", help="dataset (a classification task)")
    f.add_argument("--n-train", type=_positive_int, help="use only the first N training samples (default: all)")
    f.add_argument("--widths", type=_int_list, default=(64, 64), help="hidden widths, e.g. 64,64")
    f.add_argument("--budget-steps", type=_positive_int, default=1000, help="B: SGD steps of one budget unit")
    f.add_argument("--budgets", type=_int_list, default=(1, 2, 3), help="budgets in units of B, e.g. 1,2,3")
    f.add_argument("--cycle", type=_even_cycle, default=40, help="FGE cycle length c in steps (even)")
    f.add_argument("--alpha1", type=_positive_float, default=0.05, help="FGE: largest learning rate of a cycle")
    f.add_argument("--alpha2", type=_positive_float, default=0.0005, help="FGE: smallest learning rate (≤ α1)")
    f.add_argument("--lr", type=_positive_float, default=0.05, help="learning rate of Ind, SSE and FGE pre-training")
    f.add_argument("--seed", type=_nonneg_int, default=0, help="seed of run 0 (run r uses seed + r)")
    f.add_argument("--out", required=True, metavar="DIR", help=OUT_DIR_HELP)
    f.set_defaults(fn=cmd_fge)

    r = sub.add_parser("reproduce", parents=par, formatter_class=_Formatter,
                       description=f"Reproduce a published figure/table: {', '.join(reproduce_names())} (or "
                                   "'all'). Writes "
                                   "summary.json, report.md (with a 'paper' column), PNG figures and manifest.json "
                                   "to DIR. Without a name, says what to do.")
    r.add_argument("name", nargs="?", metavar="NAME",
                   choices=[*reproduce_names(), "all"],
                   help="reproduction name, or 'all' (see --list)")
    r.add_argument("--list", action="store_true", help="list the reproductions and exit")
    r.add_argument("--out", metavar="DIR",
                   help="output directory (default: reproduce_out/NAME; with 'all', one subdirectory each); "
                        + OUT_DIR_HELP.split(": ", 1)[1])
    r.add_argument("--quick", action="store_true", help="CPU smoke-test scale (minutes on a 2-core CPU)")
    r.add_argument("--seed", type=_nonneg_int, default=0, help="base seed")
    r.add_argument("--source", help="data directory: CIFAR-10 python batches (kuditipudi-fig3), MNIST IDX files "
                                    "(default: none)")
    r.add_argument("--set", action="append", metavar="NAME=VALUE",
                   help="override one field of the run's scale, checked against the field's type and range "
                        "(e.g. --set n_train=10000); repeatable (default: none)")
    r.set_defaults(fn=cmd_reproduce)

    add_cushions_parser(sub, par)

    from stability.app.connect import add_arguments as add_connect_arguments

    cn = sub.add_parser("connect", parents=par, formatter_class=_Formatter, help=COMMANDS["connect"],
                        description="For every pair of the checkpoints: the straight line, the aligned straight line, "
                                    "the Theorem 1/2/3 paths (verdicts and certified bounds) and optionally a learned "
                                    "Bezier curve; one matrix and heat map per method, the minimum spanning tree of "
                                    "each barrier matrix, report.md (opening with the finding) and summary.json in DIR.")
    add_connect_arguments(cn)
    cn.set_defaults(fn=_cmd_connect)
    return p


def _one_line(e: BaseException) -> str:
    if isinstance(e, KeyError) and e.args and isinstance(e.args[0], str):
        text = e.args[0]
    else:
        text = str(e)
    return " ".join(text.split()) or type(e).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0 done, 1 failed run, 2 usage or input error, 130 interrupted).
    Every error is one line on stderr; ``--debug`` adds the traceback."""
    _STARTED["work"] = False
    _MESH["mesh"] = None
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        print(f"{e.prog}: error: {e.message}", file=sys.stderr, flush=True)
        return 2
    except SystemExit as e:  # --help
        return int(e.code or 0) if isinstance(e.code, int) or e.code is None else 2
    debug = getattr(args, "debug", False)
    configure_logging(quiet=getattr(args, "quiet", False), verbose=getattr(args, "verbose", False))
    prog = f"stability {args.command}"
    try:
        _setup_devices(args)
        return args.fn(args)
    except UsageError as e:
        if debug:
            traceback.print_exc()
        print(f"{e.prog}: error: {e.message}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"{prog}: interrupted" + ("; the report is marked INCOMPLETE" if _STARTED["work"] else ""),
              file=sys.stderr, flush=True)
        return 130
    except Exception as e:  # noqa: BLE001 — every error class ends in one line, never a raw traceback
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (--debug shows the traceback)"
        if not _STARTED["work"] and isinstance(e, (ValueError, TypeError, LookupError, OSError)):
            print(f"{prog}: error: {_one_line(e)}", file=sys.stderr, flush=True)
            return 2
        print(f"{prog}: failed: {type(e).__name__}: {_one_line(e)}{hint}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
