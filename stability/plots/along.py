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
               xlabel: str = "t") -> plt.Figure:
    """Loss (left) and accuracy (right) along one or more paths/curves on shared axes."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, r in curves.items():
        axes[0].plot(r.ts, r.loss, label=name)
        if np.isfinite(r.acc).any():
            axes[1].plot(r.ts, r.acc, label=name)
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
