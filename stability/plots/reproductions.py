"""Figures of the reproductions (Kuditipudi et al. Figure 2; Garipov et al. Table 1 budgets and the Table 2
curve-budget sweep; Ainsworth et al. Figure 2)."""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from stability.plots import STYLES, legend_below, legend_outside  # noqa: E402

__all__ = ["fig2_left", "fig2_centre", "fig2_right", "fge_budgets", "ensemble_size_curves", "curve_budget_sweep",
           "interpolation_losses"]


def fig2_left(keep: Sequence[float], loss: tuple[np.ndarray, np.ndarray], acc: tuple[np.ndarray, np.ndarray],
              base_loss: np.ndarray, base_acc: np.ndarray, paper: dict[str, list[tuple[float, float]]], draws: int,
              trials: int, channels: int) -> plt.Figure:
    """Figure 2 (left): best-of-draws dropout loss and accuracy against 1 − p, mean ± std over trials."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, ((m, sd), lab) in zip(axes, ((loss, "loss"), (acc, "accuracy"))):
        ax.errorbar(keep, m, yerr=sd, marker="o", capsize=3, label=f"ours: best of {draws}, {trials} trials")
        base = base_loss if lab == "loss" else base_acc
        ax.errorbar([1.0], [np.mean(base)], yerr=[np.std(base)], marker="s", color="0.4", capsize=3,
                    ls="none", label="no dropout")
        pts = paper[lab]
        if pts:
            ax.plot(*zip(*pts), "x", color="#c0392b", ms=8, mew=2, label="paper (read off Figure 2)")
        ax.set_xlabel("1 − p (fraction of filters kept)")
        ax.set_ylabel(lab)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    legend_below(fig, handles, labels)
    fig.suptitle(f"Dropout stability of MNIST conv nets ({channels} filters/layer)")
    fig.tight_layout()
    return fig


def fig2_centre(ev: Any, paper_loss: tuple[float, float], paper_acc: float, p: float) -> plt.Figure:
    """Figure 2 (centre): the straight line from a net to one dropout version of itself (``ev``: its EvalResult)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    axes[0].plot(ev.ts, ev.loss, marker=".", label="ours")
    axes[0].axhspan(*paper_loss, color="#c0392b", alpha=0.15, label="paper (≈ .03–.06)")
    axes[1].plot(ev.ts, ev.acc, marker=".", label="ours")
    axes[1].axhline(paper_acc, color="#c0392b", ls="--", label="paper (≈ .99)")
    for ax, lab in zip(axes, ("loss", "accuracy")):
        ax.set_xlabel("t (0: the net, 1: its dropout version)")
        ax.set_ylabel(lab)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    fig.suptitle(f"Straight line from a net to a p = {p:g} dropout version of itself")
    fig.tight_layout()
    return fig


def fig2_right(widths: Sequence[int], means: Sequence[float], stds: Sequence[float], wide_loss: float,
               paper: dict[int, Any], trials: int, channels: int) -> plt.Figure:
    """Figure 2 (right): loss of narrow nets against their width; ``paper[w]`` a (low, high) reading or None."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.errorbar(widths, means, yerr=stds, marker="o", capsize=3, label=f"ours ({trials} trials)")
    ax.axhline(wide_loss, color="0.5", ls=":", label=f"wide nets ({channels} filters)")
    pts = [(w, v) for w, v in paper.items() if v is not None]
    if pts:
        ax.errorbar([w for w, _ in pts], [np.mean(v) for _, v in pts],
                    yerr=[(np.max(v) - np.min(v)) / 2 for _, v in pts], fmt="x", color="#c0392b", ms=8, mew=2,
                    capsize=3, label="paper (read off Figure 2)")
    ax.set_xticks(list(widths))
    ax.set_xlabel("filters per conv layer")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    legend_outside(ax)
    ax.set_title("Narrow MNIST conv nets")
    fig.tight_layout()
    return fig


def fge_budgets(budgets: Sequence[int], by: dict[tuple[int, str], dict[str, float]]) -> plt.Figure:
    """Test error and NLL of the equal-budget ensembles (Ind, SSE, FGE) against the budget."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, mark in (("Ind", "o"), ("SSE", "s"), ("FGE", "D")):
        for ax, key in zip(axes, ("error", "nll")):
            ax.plot(budgets, [by[k, name][key] for k in budgets], marker=mark, label=name)
    for ax, lab in zip(axes, ("test error (%)", "test NLL")):
        ax.set_xlabel("budget (runs of B steps)")
        ax.set_ylabel(lab)
        ax.set_xticks(list(budgets))
        ax.grid(alpha=0.3)
    legend_outside(axes[1])
    fig.tight_layout()
    return fig


def ensemble_size_curves(curves: dict[str, dict[str, list[float]]]) -> plt.Figure:
    """Test error (%) and NLL against the number of ensemble members, one line per method (``curves``:
    method → ``{"members": [1, 2, …], "error": [...], "nll": [...]}``, members in training order)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for k, (name, c) in enumerate(curves.items()):
        st = STYLES[k % len(STYLES)]
        for ax, key in zip(axes, ("error", "nll")):
            ax.plot(c["members"], c[key], ls=st["ls"], marker=st["marker"], ms=5, lw=1.5, label=name,
                    color=f"C{k}")
    axes[0].set_ylabel("test error (%)")
    axes[1].set_ylabel("test NLL (nats per sample)")
    for ax in axes:
        ax.set_xlabel("ensemble members (in training order; runs of one budget unit each)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    legend_below(fig, handles, labels)
    fig.suptitle("Test error and NLL against the ensemble size")
    fig.tight_layout()
    return fig


def interpolation_losses(ts: np.ndarray, curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "") -> plt.Figure:
    """Loss along straight lines θ_A → ·: ``curves[name] = (train loss, test loss)`` on the grid ``ts``; solid
    train, dashed test (Ainsworth et al. 2023, Figure 2 layout)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (name, (train, test)) in enumerate(curves.items()):
        c = "0.45" if k == 0 else colors[k % len(colors)]
        ax.plot(ts, train, color=c, lw=2, marker="." if k else None, label=f"{name} (train)")
        ax.plot(ts, test, color=c, lw=1.5, ls="--", label=f"{name} (test)")
    ax.set_xticks([0, 1])
    ax.set_xticklabels(["θ_A", "θ_B (aligned)"])
    ax.set_xlabel("λ")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, framealpha=0.6)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def curve_budget_sweep(records: Sequence[dict[str, Any]], limits: dict[tuple[str, str], float],
                       paper: dict[str, dict[str, float]], title: str = "") -> plt.Figure:
    """Table 2 against the curve-training budget: length ratio (left) and max train loss along the curve (right)
    against epochs, one line per (penalty, curve kind). ``records`` hold ``penalty``, ``kind``, ``epochs``,
    ``length ratio`` and ``max loss`` (plain); ``limits[(penalty, kind)]`` is the length ratio of the penalty's
    own minimiser (dotted); ``paper[kind]`` the paper's ``length ratio`` (red crosses at the right) and
    ``max loss`` (its loss + L2; red dotted lines)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = {"Bezier": "#1f77b4", "Polychain": "#2ca02c"}
    styles = {"point": "-", "bends": "--"}
    eps = sorted({float(r["epochs"]) for r in records})
    for (pen, kind) in sorted({(r["penalty"], r["kind"]) for r in records}):
        rs = sorted((r for r in records if r["penalty"] == pen and r["kind"] == kind), key=lambda r: r["epochs"])
        ep = [r["epochs"] for r in rs]
        lab = f"{kind}, L2 on {'φ(t)' if pen == 'point' else 'the bend'}"
        axes[0].plot(ep, [r["length ratio"] for r in rs], styles[pen], marker="o", color=colors[kind], label=lab)
        axes[1].plot(ep, [r["max loss"] for r in rs], styles[pen], marker="o", color=colors[kind], label=lab)
        if (pen, kind) in limits:
            axes[0].axhline(limits[pen, kind], ls=":", lw=1, color=colors[kind])
            axes[0].annotate(f"{limits[pen, kind]:.2f}: minimiser of the {'φ(t)' if pen == 'point' else 'bend'} L2",
                             (eps[0], limits[pen, kind]), fontsize=7, color=colors[kind], va="bottom")
    for kind, vals in paper.items():
        axes[0].plot([eps[-1]], [vals["length ratio"]], "x", color="#c0392b", ms=8, mew=2)
        axes[0].annotate(f"paper {kind} {vals['length ratio']:g}", (eps[-1], vals["length ratio"]), fontsize=7,
                         color="#c0392b", xytext=(-70, -10), textcoords="offset points")
        axes[1].axhline(vals["max loss"], color="#c0392b", ls=":", lw=1)
        axes[1].annotate(f"paper {kind} {vals['max loss']:g} (loss + L2)", (eps[0], vals["max loss"]), fontsize=7,
                         color="#c0392b", va="bottom")
    axes[0].set_ylabel("length ratio (curve / segment)")
    axes[1].set_ylabel("max train loss along the curve (plain)")
    axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(eps, [f"{e:g}" for e in eps])
        ax.set_xlabel("curve-training epochs")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
