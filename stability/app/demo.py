"""``stability demo``: the main job. Two nets trained on scikit-learn's bundled digits, every analysis of the
library between them, one report (``summary.json``, ``report.md``, PNGs) written section by section."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from stability.core.progress import get_logger

__all__ = ["DemoContext", "demo_sections", "run_demo"]


_log = get_logger("demo").info


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


def demo_sections() -> list[tuple[str, Callable]]:
    """Every analysis of the demo report, in report order (imported lazily: the CLI starts fast)."""
    from stability.app.sections.counterexample import add_counterexample_section
    from stability.app.sections.straight_line import add_straight_line_section
    from stability.app.sections.curves import add_curves_section
    from stability.app.sections.cushions import add_cushions_section
    from stability.app.sections.paths import add_paths_section

    return [("straight_line", add_straight_line_section), ("paths", add_paths_section),
            ("cushions", add_cushions_section), ("curves", add_curves_section),
            ("counterexample", add_counterexample_section)]


def _train_pair(ds, quick: bool, seed: int, widths: Sequence[int]):
    import jax

    from stability.core import nets
    from stability.core.train import TrainConfig, fit

    epoch = max(1, ds.x_train.shape[0] // 64)  # one logged point per epoch: the training figure shows every epoch
    cfg = TrainConfig(steps=1500 if quick else 5000, batch_size=64, optimizer="sgd", lr=0.1, schedule="cosine",
                      dropout=0.1, log_every=epoch)
    out = []
    for k, s in enumerate((seed, seed + 1)):
        _log(f"training net {'AB'[k]} (seed {s}, {cfg.steps} steps)")
        net = nets.mlp(jax.random.PRNGKey(s), (ds.input_shape[0], *widths, ds.num_classes))
        net, hist = fit(net, ds.x_train, ds.y_train, dataclasses.replace(cfg, seed=s),
                        x_test=ds.x_test, y_test=ds.y_test)
        out.append((net, hist))
    return out, cfg


def _setup_finding(ds, hist_a, hist_b, cfg) -> str:
    accs = [100 * h.test_acc[-1] for h in (hist_a, hist_b)]
    return (f"Both nets fit the {ds.x_train.shape[0]} training digits: after {cfg.steps} SGD steps their train loss "
            f"is {hist_a.loss[-1]:.3g} (A) and {hist_b.loss[-1]:.3g} (B), and they classify {accs[0]:.1f}% and "
            f"{accs[1]:.1f}% of the {ds.x_test.shape[0]} test digits correctly. These are the two end points every "
            f"later section connects.")


def run_demo(args: argparse.Namespace, on_start: Callable[[], None] | None = None) -> int:
    """Run the demo with the parsed ``stability demo`` options; returns the exit code. Every option and the
    output directory are checked first; ``on_start`` is called when the work begins. The report is marked
    INCOMPLETE (with the reason) if a section fails or the run is interrupted."""
    from stability.core import checkpoint
    from stability import data
    from stability.plots import along as plots
    from stability.app.report import Report, check_out_dir

    sections = demo_sections()
    unknown = sorted(set(args.only or ()) - {name for name, _ in sections})
    if unknown:
        raise ValueError(f"--only: unknown demo section(s) {unknown}; known: {[n for n, _ in sections]}")
    if args.seed < 0:
        raise ValueError(f"--seed must be an integer ≥ 0, got {args.seed}")
    check_out_dir(args.out, "--out")
    t0 = time.perf_counter()
    out = Path(args.out)
    ds = data.load("digits")
    report = Report(out, title="stability demo: two nets on the digits data")
    report.meta["command"] = "stability " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report.meta["seed"] = args.seed
    if on_start is not None:
        on_start()
    with report.running():
        _log(f"data: {ds.summary()}")
        widths = (64, 64)
        (pair, cfg) = _train_pair(ds, args.quick, args.seed, widths)
        (net_a, hist_a), (net_b, hist_b) = pair
        for name, net, seed in (("net_a.npz", net_a, args.seed), ("net_b.npz", net_b, args.seed + 1)):
            checkpoint.save(report.register(name), net, {"data": "digits", "seed": seed, "train": cfg.to_dict()})

        sec = report.section("setup", "Data and training")
        sec.finding(_setup_finding(ds, hist_a, hist_b, cfg))
        sec.text(f"Data: {ds.summary()}. Two dense ReLU nets {ds.input_shape[0]}–{'–'.join(map(str, widths))}–"
                 f"{ds.num_classes}, trained from seeds {args.seed} and {args.seed + 1} "
                 f"({cfg.steps} SGD steps, batch {cfg.batch_size}, lr {cfg.lr} {cfg.schedule}, dropout {cfg.dropout}). "
                 f"Checkpoints: `net_a.npz`, `net_b.npz`.")
        sec.table(["net", "final train loss", "test loss", "test acc"],
                  [["A", hist_a.loss[-1], hist_a.test_loss[-1], hist_a.test_acc[-1]],
                   ["B", hist_b.loss[-1], hist_b.test_loss[-1], hist_b.test_acc[-1]]])
        report.figure(sec, plots.plot_history({"A": hist_a, "B": hist_b}, epoch_steps=cfg.log_every),
                      "training.png", "Training curves: train loss and test error at the end of every epoch")
        sec.data.update(dataset=ds.summary(), widths=list(widths), train_config=cfg.to_dict(),
                        history_a=hist_a.to_dict(), history_b=hist_b.to_dict())
        report.add(sec)

        ctx = DemoContext(net_a, net_b, ds.x_train, ds.y_train, ds.x_test, ds.y_test, args.quick, args.seed, ds)
        for name, fn in sections:
            if args.only and name not in args.only:
                continue
            _log(f"section: {name}")
            fn(report, ctx)
    _log(f"wrote {out / 'report.md'} and {out / 'summary.json'} in {time.perf_counter() - t0:.1f} s")
    return 0
