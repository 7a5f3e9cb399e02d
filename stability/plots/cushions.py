"""Histograms of the noise-stability quantities, in the style of Kuditipudi et al. 2019, Figure 3
(left) and Appendix D.3: one panel per layer for each quantity, over the samples.

Functions return matplotlib figures; :class:`stability.app.report.Report` saves them as PNG.
"""

from __future__ import annotations

import math
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stability.theory.cushions import Cushions  # noqa: E402

__all__ = ["QUANTITIES", "quantity_values", "plot_layer_histograms", "plot_cushions", "plot_layer_overview"]

QUANTITIES: dict[str, str] = {
    "layer_cushion": "layer cushion $\\mu_{%d}$",
    "interlayer_min": "interlayer cushion $\\mu_{%d\\rightarrow}$",
    "contraction": "activation contraction $\\|x^{%d}\\|/\\|\\phi(x^{%d})\\|$",
    "smoothness": "interlayer smoothness $\\rho_{%d}$ (median over draws)",
}
"""Quantity key → x-axis label template (``%d`` is the layer)."""


def quantity_values(res: Cushions, name: str) -> tuple[np.ndarray, list[int]]:
    """Per-sample values ``(N, d)`` of one quantity and the (1-based) layers worth plotting:
    ``μ_i`` for 1..d, ``μ_{i→}`` for 1..d−1 (``μ_{d→} = 1``), contraction for hidden layers,
    ``ρ_i`` for 2..d−1 (``ρ_d`` is ∞: ``M^{d,d}`` is the identity)."""
    d = res.depth
    if name == "layer_cushion":
        return res.layer_cushion, list(range(1, d + 1))
    if name == "interlayer_min":
        return res.interlayer_min, list(range(1, d))
    if name == "contraction":
        return res.contraction, list(range(1, d))
    if name == "smoothness":
        return res.smoothness_median, list(range(2, d))
    raise ValueError(f"unknown quantity {name!r}; known: {sorted(QUANTITIES)}")


def _label(name: str, layer: int) -> str:
    tmpl = QUANTITIES[name]
    return tmpl % ((layer,) * tmpl.count("%d"))


def _hist(ax: plt.Axes, v: np.ndarray, bins: int, color: str) -> None:
    v = np.asarray(v, np.float64)
    finite = v[np.isfinite(v)]
    n_inf, n_nan = int(np.sum(np.isinf(v))), int(np.sum(np.isnan(v)))
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        if lo > 0 and hi / lo > 100:  # heavy right tail (ρ): log-spaced bins
            ax.hist(finite, bins=np.geomspace(lo, hi * (1 + 1e-9), bins + 1), color=color, alpha=0.85)
            ax.set_xscale("log")
        else:
            ax.hist(finite, bins=bins if hi > lo else 1, color=color, alpha=0.85)
    extra = [f"{n_inf} = ∞"] * bool(n_inf) + [f"{n_nan} undefined"] * bool(n_nan)
    if extra:
        ax.text(0.98, 0.95, ", ".join(extra), transform=ax.transAxes, ha="right", va="top", fontsize=7)


def plot_layer_histograms(values: np.ndarray, layers: Sequence[int], name: str, title: str = "",
                          bins: int = 30, color: str = "C0", max_cols: int = 4) -> plt.Figure:
    """One histogram panel per layer of ``values[:, layer−1]`` (Appendix D.3's layout)."""
    layers = list(layers)
    if not layers:
        raise ValueError(f"no layers to plot for {name!r}")
    cols = min(max_cols, len(layers))
    rows = math.ceil(len(layers) / cols)
    # a figure is at least ~7 inches wide: one or two panels get large panels and fonts, not a thumbnail
    pw, ph = (7.0, 4.2) if cols == 1 else (5.0, 3.4) if cols == 2 else (3.6, 2.8)
    fs = 10 if cols <= 2 else 8
    fig, axes = plt.subplots(rows, cols, figsize=(pw * cols, ph * rows), squeeze=False)
    for ax in axes.ravel()[len(layers):]:
        ax.axis("off")
    for ax, layer in zip(axes.ravel(), layers):
        _hist(ax, values[:, layer - 1], bins, color)
        ax.set_title(f"layer {layer}", fontsize=fs + 1)
        ax.set_xlabel(_label(name, layer), fontsize=fs)
        ax.tick_params(labelsize=fs - 1)
        ax.grid(alpha=0.3)
    for r in range(rows):
        axes[r, 0].set_ylabel("samples (count)", fontsize=fs)
    if title:
        fig.suptitle(title, fontsize=fs + 2)
    fig.tight_layout()
    return fig


def plot_cushions(res: Cushions, title: str = "", bins: int = 30) -> dict[str, plt.Figure]:
    """One figure per quantity (layer cushion, interlayer cushion, contraction, smoothness), each
    with one panel per layer; quantities with nothing to plot (e.g. ρ of a 2-layer net) are skipped."""
    figs = {}
    for k, name in enumerate(QUANTITIES):
        values, layers = quantity_values(res, name)
        if layers:
            label = name.replace("_", " ")
            figs[name] = plot_layer_histograms(values, layers, name, f"{title}: {label}" if title else label,
                                               bins=bins, color=f"C{k}")
    return figs


def plot_layer_overview(res: Cushions, layer: int, title: str = "", bins: int = 30) -> plt.Figure:
    """Figure 3 (left): the distributions of every quantity for ONE layer, side by side."""
    if not 1 <= layer <= res.depth:
        raise IndexError(f"layer must be in 1..{res.depth}, got {layer}")
    names = [n for n in QUANTITIES if layer in quantity_values(res, n)[1]]
    fig, axes = plt.subplots(1, len(names), figsize=(max(3.6 * len(names), 7.0), 3.0), squeeze=False)
    for k, (ax, name) in enumerate(zip(axes[0], names)):
        _hist(ax, quantity_values(res, name)[0][:, layer - 1], bins, f"C{list(QUANTITIES).index(name)}")
        ax.set_xlabel(_label(name, layer), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("samples (count)", fontsize=8)
    fig.suptitle(title or f"noise stability of layer {layer}", fontsize=10)
    fig.tight_layout()
    return fig
