"""Loss and error along paths, curves and training runs (headless Agg backend); functions return figures,
:class:`stability.app.report.Report` saves them."""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402
import numpy as np  # noqa: E402

from stability.core.evaluate import EvalResult  # noqa: E402
from stability.plots import STYLES, legend_below, wants_log  # noqa: E402

__all__ = ["plot_along", "plot_history", "error_axis"]


def error_axis(ax: plt.Axes, errors: Sequence[np.ndarray], label: str) -> None:
    """Label ``ax`` as an error axis in %; symmetric-log when the errors span orders of magnitude (a run at 0%
    error stays visible at 0 instead of vanishing from a log axis)."""
    vals = np.concatenate([np.asarray(e, np.float64).reshape(-1) for e in errors]) if errors else np.zeros(0)
    vals = vals[np.isfinite(vals)]
    pos = vals[vals > 0]
    if pos.size and (vals.max() / max(pos.min(), 1e-12) > 30 or np.any(vals == 0) and vals.max() > 1):
        if np.any(vals == 0):
            lt = max(0.05, float(pos.min()))
            ax.set_yscale("symlog", linthresh=lt, linscale=0.5)
            label += " — symmetric log scale"
            # ticks inside the linear band (0 < v < linthresh) would crowd the 0 tick: no labels there
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: "" if 0 < abs(v) < lt else f"{v:g}"))
        else:
            ax.set_yscale("log")
            label += " — log scale"
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_ylabel(label)


def plot_along(curves: dict[str, EvalResult], title: str = "", boundaries: Sequence[float] = (),
               xlabel: str = "t (position along the curve, 0 = θ_A, 1 = θ_B)", loss_label: str = "loss (mean)",
               err_label: str = "error (%)",
               envelopes: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None) -> plt.Figure:
    """Loss (left) and error in % (right) along one or more paths/curves; a log loss axis (and a symmetric-log
    error axis) when the series differ by orders of magnitude; each series its own line style and markers; one
    legend below the panels. ``envelopes[name]``: ``(t0, t1, upper)`` of a certified maximum
    (``BoundResult.envelope()``) of that curve's loss: drawn as dotted steps in the curve's colour, the band
    between it and the sampled loss shaded."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    envelopes = envelopes or {}
    n = max((len(r.ts) for r in curves.values()), default=1)
    every = max(1, n // 12)
    errs = []
    top = 0.0
    for k, (name, r) in enumerate(curves.items()):
        st = STYLES[k % len(STYLES)]
        kw = dict(ls=st["ls"], marker=st["marker"], markevery=(k % every, every), ms=4, lw=1.5, label=name,
                  color=f"C{k}")
        axes[0].plot(r.ts, r.loss, **kw)
        top = max(top, float(np.nanmax(r.loss)) if np.isfinite(r.loss).any() else 0.0)
        if name in envelopes:
            t0, t1, up = (np.asarray(v, np.float64) for v in envelopes[name])
            for a, b, u in zip(t0, t1, up):
                ts = np.linspace(a, b, 6)
                axes[0].fill_between(ts, np.interp(ts, r.ts, r.loss), np.full_like(ts, u), color=f"C{k}",
                                     alpha=0.15, lw=0)
            axes[0].plot(np.stack([t0, t1], 1).reshape(-1), np.repeat(up, 2), color=f"C{k}", lw=0.8,
                         ls=(0, (1, 1)), label="_nolegend_")
        if np.isfinite(r.acc).any():
            e = 100.0 * (1.0 - np.asarray(r.acc))
            errs.append(e)
            axes[1].plot(r.ts, e, **kw)
    if envelopes:  # one legend entry for every curve's envelope
        axes[0].plot([], [], color="0.3", lw=0.8, ls=(0, (1, 1)), label="dotted steps: certified upper bound, every t")
    if wants_log(*[r.loss for r in curves.values()]):
        axes[0].set_yscale("log")
    elif envelopes and top > 0:
        lo, hi = axes[0].get_ylim()
        if hi > 1.6 * top:
            axes[0].set_ylim(lo, 1.6 * top)
    axes[0].set_ylabel(loss_label + (" — log scale" if axes[0].get_yscale() == "log" else ""))
    if errs:
        error_axis(axes[1], errs, err_label)
    else:
        axes[1].set_axis_off()
    for ax in axes:
        for b in boundaries:
            ax.axvline(b, color="0.8", lw=0.6, zorder=0)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    legend_below(fig, handles, labels)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(histories: dict[str, Any], title: str = "training", epoch_steps: int | None = None) -> plt.Figure:
    """Training loss (log scale) and test error in % at every logged point (``histories``: name → ``History``),
    against epochs when ``epoch_steps`` (steps per epoch) is given, else against steps."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    scale = float(epoch_steps) if epoch_steps else 1.0
    errs = []
    for k, (name, h) in enumerate(histories.items()):
        st = STYLES[k % len(STYLES)]
        x = np.asarray(h.step, np.float64) / scale
        every = max(1, len(x) // 10)
        kw = dict(ls=st["ls"], marker=st["marker"], markevery=(k % every, every), ms=4, lw=1.4, label=f"net {name}",
                  color=f"C{k}")
        axes[0].plot(x, h.loss, **kw)
        if h.test_acc:
            e = 100.0 * (1.0 - np.asarray(h.test_acc))
            errs.append(e)
            axes[1].plot(x, e, **kw)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("train loss (mean over the epoch) — log scale")
    if errs:
        error_axis(axes[1], errs, "test error (%)")
    else:
        axes[1].set_axis_off()
    for ax in axes:
        ax.set_xlabel("epoch" if epoch_steps else "step")
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    legend_below(fig, handles, labels)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
