"""Matplotlib figures (headless Agg backend); functions return figures, :class:`Report` saves them."""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stability.core.evaluate import EvalResult  # noqa: E402

__all__ = ["plot_along", "plot_history"]


def plot_along(curves: dict[str, EvalResult], title: str = "", boundaries: Sequence[float] = (),
               xlabel: str = "t", envelopes: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
               ) -> plt.Figure:
    """Loss (left) and accuracy (right) along one or more paths/curves on shared axes. ``envelopes[name]``:
    ``(t0, t1, upper)`` of a certified maximum (``BoundResult.envelope()``) of that curve's loss: drawn as thin
    steps in the curve's colour, the band between it and the sampled loss shaded."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    envelopes = envelopes or {}
    top = 0.0
    for name, r in curves.items():
        (line,) = axes[0].plot(r.ts, r.loss, label=name)
        top = max(top, float(np.nanmax(r.loss)) if np.isfinite(r.loss).any() else 0.0)
        if name in envelopes:
            t0, t1, up = (np.asarray(v, np.float64) for v in envelopes[name])
            for a, b, u in zip(t0, t1, up):
                ts = np.linspace(a, b, 6)
                axes[0].fill_between(ts, np.interp(ts, r.ts, r.loss), np.full_like(ts, u), color=line.get_color(),
                                     alpha=0.15, lw=0)
            axes[0].plot(np.stack([t0, t1], 1).reshape(-1), np.repeat(up, 2), color=line.get_color(), lw=0.8,
                         ls=(0, (1, 1)), label="_nolegend_")
        if np.isfinite(r.acc).any():
            axes[1].plot(r.ts, r.acc, label=name)
    if envelopes:  # one legend entry for every curve's envelope
        axes[0].plot([], [], color="0.3", lw=0.8, ls=(0, (1, 1)), label="dotted steps: certified upper bound, every t")
    if envelopes and top > 0:
        lo, hi = axes[0].get_ylim()
        if hi > 1.6 * top:
            axes[0].set_ylim(lo, 1.6 * top)
    for ax, lab in zip(axes, ("loss", "accuracy")):
        for b in boundaries:
            ax.axvline(b, color="0.8", lw=0.6, zorder=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(lab)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(histories: dict[str, Any], title: str = "training") -> plt.Figure:
    """Training loss (and test accuracy where recorded) against step (``histories``: name → ``History``)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for name, h in histories.items():
        axes[0].plot(h.step, h.loss, label=name)
        if h.test_acc:
            axes[1].plot(h.step, h.test_acc, label=name)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step"); axes[0].set_ylabel("train loss")
    axes[1].set_xlabel("step"); axes[1].set_ylabel("test accuracy")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
