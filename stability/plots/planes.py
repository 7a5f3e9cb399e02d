"""Loss-plane figures (Garipov et al. 2018, Figures 1, 7, 8)."""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from stability.plots import STYLES  # noqa: E402

__all__ = ["plot_plane", "log_ticks"]


def log_ticks(lo: float, hi: float, want: int = 5) -> list[float]:
    """Readable colour-bar ticks for a log scale over ``[lo, hi]``: 1-2-5 values when the range spans enough of
    them, else ``want`` geometrically spaced values rounded to 2 significant digits (never a single tick)."""
    lo, hi = float(lo), float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        return [lo] if np.isfinite(lo) else []
    ticks = [m * 10.0 ** e for e in range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1)
             for m in (1, 2, 5)]
    ticks = [t for t in ticks if lo <= t <= hi]
    if len(ticks) > 7:
        ticks = [t for t in ticks if f"{t:.0e}"[0] == "1"] or ticks[:: max(1, len(ticks) // 6)]
    if len(ticks) < 3:
        ticks = sorted({float(f"{v:.2g}") for v in np.geomspace(lo, hi, want)})
        ticks = [t for t in ticks if lo <= t <= hi] or [lo, hi]
    return ticks


def plot_plane(p: Any, grid: dict[str, np.ndarray], curves: dict[str, Sequence[Any]] | None = None,
               labels: Sequence[str] = ("w0", "w1", "w2"), title: str = "loss plane",
               loss_label: str = "train loss (mean)"):
    """Filled contours of the loss on the plane (log colour scale with several readable ticks), the three points
    and any curves projected onto the plane; α and β are Euclidean coordinates along the plane's orthonormal
    directions u, v (weight-space distance from the first point)."""
    fig, ax = plt.subplots(figsize=(7.2, 5.0))
    loss = np.maximum(np.asarray(grid["loss"], np.float64), 1e-12)
    lo, hi = float(loss.min()), float(loss.max())
    if hi > lo:
        levels = np.geomspace(lo, hi, 25)
        cs = ax.contourf(grid["alpha"], grid["beta"], loss, levels=levels, norm=LogNorm(lo, hi), cmap="viridis")
        cbar = fig.colorbar(cs, ax=ax, pad=0.02)
        cbar.set_ticks(log_ticks(lo, hi))
        cbar.set_ticklabels([f"{t:.3g}" for t in log_ticks(lo, hi)])
        cbar.minorticks_off()
        cbar.set_label(f"{loss_label}, log colour scale")
    else:
        cs = ax.contourf(grid["alpha"], grid["beta"], loss, cmap="viridis")
        fig.colorbar(cs, ax=ax, label=loss_label)
    for k, (name, pts) in enumerate((curves or {}).items()):
        xy = np.array([p.project(w) for w in pts])
        st = STYLES[k % len(STYLES)]
        ax.plot(xy[:, 0], xy[:, 1], lw=1.8, ls=st["ls"], color=("#e41a1c", "white", "#ff7f0e", "#984ea3")[k % 4],
                label=name)
    ax.scatter(p.coords[:, 0], p.coords[:, 1], c="white", edgecolors="k", s=45, zorder=5)
    for (a, b), lab in zip(p.coords, labels):
        ax.annotate(lab, (a, b), textcoords="offset points", xytext=(5, 5), color="white", fontsize=10,
                    fontweight="bold")
    ax.set_xlabel("α: distance along u in weight space (‖Δθ‖₂)")
    ax.set_ylabel("β: distance along v in weight space (‖Δθ‖₂)")
    ax.set_aspect("equal", adjustable="box")
    if curves:
        leg = ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=len(curves), fontsize=8,
                        title="projected onto the plane", title_fontsize=8, frameon=True)
        leg.get_frame().set_facecolor("0.55")  # the white segment line must show in the legend too
        leg.get_frame().set_edgecolor("none")
    ax.set_title(title)
    return fig
