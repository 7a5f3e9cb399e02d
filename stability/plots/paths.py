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
              parts: Sequence[tuple[str, int, int]] = (), failed: Sequence[int] = (),
              envelope: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
              envelope_of: tuple[PathEval, str] | None = None) -> plt.Figure:
    """Loss (left) and accuracy (right) against global ``t``; each segment's background span is
    coloured by its claim kind, way points are thin vertical lines, ``line`` (the straight line
    between the same end points, on global ``t``) is dashed, ``bound`` a dotted horizontal line,
    ``parts`` (name, first, last segment) are named above the axes, ``failed`` (refuted) segments hatched.
    ``envelope``: ``(t0, t1, upper)`` of a certified maximum (``BoundResult.envelope()``): the loss is ≤
    ``upper`` on ``[t0, t1]``; drawn as a blue step line, the band between it and the sampled loss shaded.
    ``envelope_of``: ``(evaluation, label)`` when the envelope was certified on other data than ``ev`` (e.g. the
    verdict's subset): that evaluation's loss is drawn thin and labelled, and the band is shaded against it."""
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
        if envelope is not None and lab == "loss":
            if envelope_of is None:
                _shade_envelope(ax, envelope, gt.reshape(-1), values.reshape(-1))
            else:
                other, other_label = envelope_of
                ogt, oloss = other.global_t().reshape(-1), other.loss.reshape(-1)
                ax.plot(ogt, oloss, color="#1b4f9c", lw=0.9, ls="-.", label=other_label, zorder=3)
                _shade_envelope(ax, envelope, ogt, oloss)
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
    if envelope is not None:
        _clip_to_curves(axes[0], ev, line)
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


def _shade_envelope(ax: plt.Axes, envelope: tuple[np.ndarray, np.ndarray, np.ndarray], gt: np.ndarray,
                    loss: np.ndarray) -> None:
    """The certified upper envelope as a step line; the band between it and the sampled loss is what the
    samples do not show (the true loss lies somewhere below the line)."""
    t0, t1, up = (np.asarray(a, np.float64) for a in envelope)
    order = np.argsort(gt, kind="stable")
    gs, ls = gt[order], loss[order]
    for a, b, u in zip(t0, t1, up):
        ts = np.linspace(a, b, 8)
        ax.fill_between(ts, np.interp(ts, gs, ls), np.full_like(ts, u), color="#2e86de", alpha=0.18, lw=0, zorder=2)
    xs = np.stack([t0, t1], 1).reshape(-1)
    ys = np.repeat(up, 2)
    ax.plot(xs, ys, color="#1b4f9c", lw=1.0, zorder=4, label="certified upper bound (every t)")


def _clip_to_curves(ax: plt.Axes, ev: PathEval, line: EvalResult | None) -> None:
    """Keep the sampled curves readable when the envelope is loose on a few sub-intervals."""
    top = float(np.nanmax(ev.loss))
    if line is not None and np.isfinite(line.loss).any():
        top = max(top, float(np.nanmax(line.loss)))
    lo, hi = ax.get_ylim()
    if hi > 1.6 * top > 0:
        ax.set_ylim(lo, 1.6 * top)
        ax.annotate("certified envelope clipped above", xy=(0.99, 0.98), xycoords="axes fraction", ha="right",
                    va="top", fontsize=7, color="#1b4f9c")
