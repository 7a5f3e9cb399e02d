"""Loss-plane figures (Garipov et al. 2018, Figures 1, 7, 8)."""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

__all__ = ["plot_plane"]


def plot_plane(p: Any, grid: dict[str, np.ndarray], curves: dict[str, Sequence[Any]] | None = None,
               labels: Sequence[str] = ("w0", "w1", "w2"), title: str = "loss plane"):
    """Contour plot of the loss (log levels) with the three points and any curves projected onto the plane."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    loss = np.maximum(grid["loss"], 1e-6)
    levels = np.geomspace(loss.min(), loss.max(), 20) if loss.max() > loss.min() else 10
    cs = ax.contourf(grid["alpha"], grid["beta"], loss, levels=levels, norm=LogNorm(), cmap="viridis")
    fig.colorbar(cs, ax=ax, label="loss")
    for name, pts in (curves or {}).items():
        xy = np.array([p.project(w) for w in pts])
        ax.plot(xy[:, 0], xy[:, 1], lw=1.5, label=name)
    ax.scatter(p.coords[:, 0], p.coords[:, 1], c="white", edgecolors="k", zorder=5)
    for (a, b), lab in zip(p.coords, labels):
        ax.annotate(lab, (a, b), textcoords="offset points", xytext=(4, 4), color="white")
    if curves:
        ax.legend(fontsize=8)
    ax.set_title(title)
    return fig
