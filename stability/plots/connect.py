"""Figures of ``stability connect``: one heat map per connection method over k minima, with the minimum
spanning tree's edges outlined."""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

__all__ = ["pair_heatmap"]


def pair_heatmap(matrix: np.ndarray, labels: Sequence[str], *, title: str, value_label: str,
                 tree: Sequence[tuple[int, int, float]] = (), marks: np.ndarray | None = None,
                 vmin: float | None = None, vmax: float | None = None) -> plt.Figure:
    """Heat map of a symmetric ``k × k`` matrix (NaN cells blank), every cell annotated; the cells of the
    spanning-tree edges ``tree`` (both halves) are outlined; ``marks[i, j]`` (a short string, e.g. a verdict
    letter) is printed under the value."""
    m = np.asarray(matrix, np.float64)
    k = m.shape[0]
    fig, ax = plt.subplots(figsize=(1.2 + 0.9 * k, 0.8 + 0.8 * k))
    masked = np.ma.masked_invalid(m)
    finite = m[np.isfinite(m)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if hi <= lo:
        hi = lo + 1e-12
    im = ax.imshow(masked, cmap="viridis", vmin=lo, vmax=hi)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label(value_label, fontsize=8)
    for i in range(k):
        for j in range(k):
            v = m[i, j]
            txt = "–" if not np.isfinite(v) else f"{v:.3g}"
            if marks is not None and marks[i][j]:
                txt += f"\n{marks[i][j]}"
            light = np.isfinite(v) and (v - lo) / (hi - lo) < 0.6
            ax.text(j, i, txt, ha="center", va="center", fontsize=7, color="white" if light else "black")
    for i, j, _ in tree:
        for a, b in ((i, j), (j, i)):
            ax.add_patch(Rectangle((b - 0.5, a - 0.5), 1, 1, fill=False, ec="#e74c3c", lw=2))
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
