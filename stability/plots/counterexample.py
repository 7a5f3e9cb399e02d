"""Figures of the Theorem 4 counterexample: its dataset and the barrier study's curves."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from stability.theory.counterexample import dataset, sizes

Array = jax.Array


# --------------------------------------------------------------------------- figures


def plot_dataset(h: int = 3, k: int | None = None, l: int | None = None, m: int | None = None,
                 n: int | None = None):
    """The dataset matrix ``[X | y]`` as in the appendix's Figure 4, blocks outlined and entries printed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = sizes(h, k, l, m, n)
    X, y = dataset(*s, dtype=np.int64)
    M = np.concatenate([X, y[:, None]], axis=1).astype(float)
    fig, ax = plt.subplots(figsize=(1.0 + 0.42 * M.shape[1], 1.0 + 0.26 * M.shape[0]))
    shown = np.clip(M, -1, 1)
    shown[: s.l, :2] = np.sign(M[: s.l, :2]) * 0.5  # f_1, f_2 grow with i: colour by sign only
    ax.imshow(shown, cmap="RdBu", vmin=-1.6, vmax=1.6, aspect="auto")
    for i in range(M.shape[0]):
        for j in range(M.shape[1]):
            if M[i, j] != 0 or j == M.shape[1] - 1:
                ax.text(j, i, f"{int(M[i, j])}", ha="center", va="center", fontsize=7)
    for b in (s.k, s.l, s.m):
        ax.axhline(b - 0.5, color="k", lw=0.8)
    for b in (1.5, M.shape[1] - 1.5):
        ax.axvline(b, color="k", lw=0.8)
    ax.set_xticks(range(M.shape[1]), [f"f{j}" for j in range(1, h + 3)] + ["y"])
    ax.set_yticks([0, s.k - 1, s.l - 1, s.m - 1, s.n - 1],
                  ["x1", f"xk={s.k}", f"xl={s.l}", f"xm={s.m}", f"xn={s.n}"])
    ax.set_xlabel("feature of X (columns f1 … f_{h+2}) and the label y", fontsize=8)
    ax.set_ylabel("sample (row of X)", fontsize=8)
    ax.set_title(f"Theorem 4 dataset, h={h} (rows = samples)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_barriers(result: dict[str, Any]):
    """Left: barrier vs h (straight line, best learned curve, crossing set, control), log scale.
    Middle: loss along the best learned curve per h. Right: barrier vs the grown block (k, l−k, m−l).
    Every legend sits below its panel, off the series."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from stability.plots import STYLES

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    hs = [c["h"] for c in result["per_h"]]
    floor = 1e-8
    series = {
        "straight line": [c["straight"]["barrier"] for c in result["per_h"]],
        "best learned curve": [c["best_curve"]["barrier"] for c in result["per_h"]],
        "best point on crossing set S": [c["crossing_set_best"] for c in result["per_h"]],
        "control: straight line": [c["straight"]["barrier"] for c in result["control"]],
        "control: best learned curve": [c["best_curve"]["barrier"] for c in result["control"]],
    }
    styles = ["o-", "s-", "^--", "o:", "s:"]
    for (name, vals), st in zip(series.items(), styles):
        axes[0].plot(hs, np.maximum(vals, floor), st, label=name)
    axes[0].set_yscale("log")
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_xlabel("h (hidden units of the student)")
    axes[0].set_ylabel("barrier (mean loss ½(f−y)²) — log scale")
    axes[0].set_title("EVIDENCE: barrier vs h")
    for k, c in enumerate(result["per_h"]):
        loss = c["best_curve"].get("loss")
        if loss:
            st = STYLES[k % len(STYLES)]
            axes[1].plot(np.linspace(0, 1, len(loss)), loss, ls=st["ls"], marker=st["marker"],
                         markevery=max(1, len(loss) // 10), ms=4, label=f"h = {c['h']}")
    axes[1].set_xlabel("t (position along the curve, teacher → student)")
    axes[1].set_ylabel("train loss (mean ½(f−y)²)")
    axes[1].set_title("loss along the best learned curve")
    klm = result["klm"]
    if klm:
        base = next(r for r in klm if r["varied"] == "base")
        for which, st in (("k", "o-"), ("l-k", "s-"), ("m-l", "^-")):
            rows = [base] + [r for r in klm if r["varied"] == which]
            xs = [{"k": r["k"], "l-k": r["l"] - r["k"], "m-l": r["m"] - r["l"]}[which] for r in rows]
            axes[2].plot(xs, [r["best_curve"] for r in rows], st, label=f"best curve, vary {which}")
            axes[2].plot(xs, [r["crossing_set_best"] for r in rows], st.replace("-", ":"), alpha=0.6,
                         label=f"crossing set, vary {which}")
        axes[2].xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[2].set_xlabel("size of the grown block (rows)")
        axes[2].set_ylabel("barrier (mean loss ½(f−y)²)")
        axes[2].set_title(f"EVIDENCE: barrier vs k, l−k, m−l (h={base['h']})")
    else:
        axes[2].set_axis_off()
    for ax in axes:
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    fig.tight_layout()
    return fig
