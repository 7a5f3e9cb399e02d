"""Figure: loss and accuracy along a constructed path, segments shaded by claim kind, with the
straight line between the same end points on the same axes."""

from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from stability.core.evaluate import EvalResult  # noqa: E402
from stability.theory.paths.path import CLAIM_KINDS, PathEval  # noqa: E402
from stability.plots import wants_log  # noqa: E402

__all__ = ["plot_path", "CLAIM_COLORS", "CLAIM_NAMES"]

CLAIM_COLORS = {"top_layer": "#f6c28b", "function_preserving": "#b9e0b0", "copy_shift": "#a8c8ee",
                "dropout_interpolation": "#eeaaaa", "free": "#dddddd"}
CLAIM_NAMES = {"top_layer": "top layer (a): loss ≤ max of ends", "function_preserving": "function preserving (b)",
               "copy_shift": "copy-shift (Lemma 4)", "dropout_interpolation": "Algorithm 1 segment (Lemma 3): measured only",
               "free": "no claim: measured only"}


def plot_path(ev: PathEval, line: EvalResult | None = None, title: str = "", bound: float | None = None,
              parts: Sequence[tuple[str, int, int]] = (), failed: Sequence[int] = ()) -> plt.Figure:
    """Loss (left) and accuracy (right) against global ``t``; each segment's background span is
    coloured by its claim kind, way points are thin vertical lines, ``line`` (the straight line
    between the same end points, on global ``t``) is dashed, ``bound`` a dotted horizontal line,
    ``parts`` (name, first, last segment) are named above the axes, ``failed`` (refuted) segments hatched."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.0))
    n = ev.n_segments
    gt = ev.global_t()
    for ax, values, lab in ((axes[0], ev.loss, "loss"), (axes[1], ev.acc, "accuracy")):
        for k, claim in enumerate(ev.claims):
            ax.axvspan(k / n, (k + 1) / n, color=CLAIM_COLORS[claim], alpha=0.55, lw=0,
                       hatch="xx" if k in failed else None, zorder=0)
        for k in range(n + 1):
            ax.axvline(k / n, color="white", lw=0.6, zorder=1)
        if np.isfinite(values).any():
            ax.plot(gt.reshape(-1), values.reshape(-1), color="black", lw=1.4, label="constructed path", zorder=3)
        if line is not None:
            vals = line.loss if lab == "loss" else line.acc
            if np.isfinite(vals).any():
                ax.plot(line.ts, vals, color="#c0392b", lw=1.2, ls="--", label="straight line", zorder=2)
        if bound is not None and lab == "loss" and np.isfinite(bound):
            top = max(float(np.nanmax(values)), float(np.nanmax(line.loss)) if line is not None else 0.0)
            if bound <= 1.5 * top:
                ax.axhline(bound, color="#2c3e50", lw=1.0, ls=":", label="theorem bound", zorder=2)
            else:  # a vacuous bound would flatten every curve: name it instead of drawing it
                ax.plot([], [], color="#2c3e50", lw=1.0, ls=":", label=f"theorem bound = {bound:.3g} (off scale)")
        for j, (name, a, b) in enumerate(parts):
            ax.annotate(name, xy=((a + b) / 2 / n, 1.01 + 0.06 * (j % 2)), xycoords=("data", "axes fraction"),
                        ha="center", va="bottom", fontsize=7)
            if a > 0:
                ax.axvline(a / n, color="0.35", lw=1.0, zorder=1)
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"t (segment k covers [k/{n}, (k+1)/{n}])")
        if lab == "loss" and wants_log(values, line.loss if line is not None else []):
            ax.set_yscale("log")  # a path peaking far above the straight line: both stay readable
            ax.set_ylabel("loss (mean) — log scale")
        else:
            ax.set_ylabel("loss (mean)" if lab == "loss" else "accuracy (fraction correct)")
        ax.grid(alpha=0.25, zorder=1)
    kinds = [c for c in CLAIM_KINDS if c in ev.claims]
    handles, labels = axes[0].get_legend_handles_labels()
    handles += [Patch(color=CLAIM_COLORS[c], alpha=0.55) for c in kinds]
    labels += [CLAIM_NAMES[c] for c in kinds]
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(4, len(labels)), bbox_to_anchor=(0.5, -0.02),
               frameon=False)
    if title:
        fig.suptitle(title, y=1.06 if parts else 1.0)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig
