"""The noise-stability report section (Definitions 2–4, docs/THEORY.md §6): tables, Figure 3 / Appendix D.3
style histograms and the Lemma 3 check. Used by ``stability demo`` (:func:`add_cushions_section`), by
``stability cushions`` and by the kuditipudi-fig3 reproduction (:func:`write_cushions_section`)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from stability.core.progress import get_logger

__all__ = ["add_cushions_section", "write_cushions_section", "cushions_finding", "PAPER_VGG11"]

PAPER_VGG11 = {
    "layer_cushion": [.35, .35, .18, .175, .11, .13, .23, .28],
    "interlayer_min": [.03, .035, .05, .06, .13, .3, .65, .75],
    "contraction": "1.2–1.45",
    "smoothness": "4–6",
}
"""The paper's VGG-11 readings (Appendix D.3, modes per layer 1..8), for comparing shapes only."""


_log = get_logger("demo").info


def _fmt(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not np.isfinite(v):
            return "∞" if v > 0 else ("−∞" if v < 0 else "n/a")
        return float(f"{v:.4g}")
    return v


def _layer_table(res) -> tuple[list[str], list[list[Any]]]:
    """Per layer: medians (and the minimum/maximum Definition 2 takes) of every quantity."""
    import warnings

    d = res.depth
    rho_med = res.smoothness_median
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        rows = []
        for i in range(1, d + 1):
            c = i - 1
            rows.append([
                i, res.widths[c] if c < len(res.widths) else res.dims[c],
                _fmt(np.nanmedian(res.layer_cushion[:, c])), _fmt(np.nanmin(res.layer_cushion[:, c])),
                _fmt(np.nanmedian(res.interlayer_min[:, c])), _fmt(np.nanmin(res.interlayer_min[:, c])),
                _fmt(np.nanmedian(res.contraction[:, c])) if i < d else "–",
                _fmt(np.nanmax(res.contraction[:, c])) if i < d else "–",
                _fmt(np.nanmedian(rho_med[:, c])) if 2 <= i < d else "–",
                _fmt(np.nanmin(res.smoothness[:, :, c])) if 2 <= i < d else "–",
                _fmt(np.nanmax(res.inf_norm_ratio[:, c])) if i < d else "–",
                _fmt(res.column_ratio[c]) if i >= 2 else "–",
            ])
    header = ["layer i", "units", "μ_i median", "μ_i min", "μ_i→ median", "μ_i→ min", "contraction median",
              "contraction max", "ρ_i median", "ρ_i min", "∞-norm const max", "column ratio"]
    return header, rows


def cushions_finding(results: dict[str, Any], lemma3=None) -> str:
    """Plain sentences: each net's Definition 4 ε with the quantities behind it, whether ρ ≥ 3d holds, and the
    Lemma 3 verdicts with whether the bound is informative (vacuity ratio below 1) or vacuous."""
    parts = []
    for name, res in results.items():
        s = res.summary()
        sc = s["side_conditions"]
        flag = " (from UNCONVERGED spectral norms: may be too small)" if s["epsilon_flag"] else ""
        parts.append(f"{name}: ε = {_fmt(s['epsilon'])}{flag} (c = {_fmt(s['c'])}, ρ = {_fmt(s['rho'])}; the "
                     f"side condition ρ ≥ 3d = {sc['three_d']} {'holds' if sc['rho_ge_3d'] else 'FAILS'})")
    first = next(iter(results.values()))
    out = (f"Definition 4's noise-stability ε, measured on {first.n} training samples with Algorithm 1 at "
           f"p = {first.p:g}: " + "; ".join(parts) + ".")
    if lemma3 is not None:
        ls = lemma3.summary()
        verdicts = ", ".join(f"p = {_fmt(p)}: {v}" for p, v in zip(ls["ps"], ls["verdict"]))
        vac = ls["vacuity_ratio"]
        if vac is None:
            info = "its scale cannot be compared with the loss range (the net is no better than the zero-output net)"
        else:
            n_inf = sum(1 for v in vac if v is not None and v <= 1)
            info = (f"the bound is informative (√p·ε below the loss range) at {n_inf} of {len(vac)} p"
                    if n_inf else "the bound is vacuous at every p: √p·ε exceeds the whole loss range")
        out += (f" Lemma 3 (the segment θ → θ¹ stays under L(θ) + Õ(√p·ε) for a quarter of the mask draws): "
                f"{verdicts}; {info}.")
    return out


def write_cushions_section(report, key: str, title: str, results: dict[str, Any], lemma3=None,
                           figure_prefix: str = "cushions", overview_layer: int | None = None,
                           figures_for: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Add one report section for one or more measured nets (``results``: name → Cushions) and an
    optional :class:`proofs_check.lemma3.Lemma3Check`; histograms for the nets in ``figures_for``
    (default: all). Returns the section's data."""
    from stability.plots import cushions as cushion_plots

    sec = report.section(key, title)
    first = next(iter(results.values()))
    sec.finding(cushions_finding(results, lemma3))
    sec.text(
        f"Per-sample noise-stability quantities of Kuditipudi et al. (2019), Definitions 2–4, on "
        f"{first.n} training samples: layer cushion μ_i, interlayer cushion μ_{{i,j}} with the SPECTRAL norm of "
        f"the interlayer Jacobian ({'LOBPCG' if first.method == 'lobpcg' else 'power iteration'} on JᵀJ with "
        f"jvp/vjp, relative residual ≤ {first.tol:g}, at most {first.max_iter} iterations; no Jacobian is "
        f"materialised), μ_i→ = min_j μ_{{i,j}}, activation "
        f"contraction ‖x^i‖/‖φ(x^i)‖, and interlayer smoothness ρ (Definition 3) under {first.draws} "
        f"Algorithm 1 mask draws with p = {first.p:g} on the grid t ∈ {{{', '.join(f'{t:g}' for t in first.ts)}}}. "
        "Conv layers count channels as units and use the Frobenius norm of the conv as an operator. "
        "With biases, ρ uses the linearisation error ‖M(x̂) − M(x^i) − J(x̂ − x^i)‖ "
        "(the paper's nets are bias-free)."
    )
    rows = []
    data: dict[str, Any] = {}
    for name, res in results.items():
        s = res.summary()
        data[name] = s
        sc = s["side_conditions"]
        pi = s["solver"]
        eps = f"{_fmt(s['epsilon'])}" + ("" if s["epsilon_flag"] is None else " (UNCONVERGED)")
        rows.append([name, _fmt(s["c"]), _fmt(s["rho"]), sc["three_d"], "yes" if sc["rho_ge_3d"] else "no",
                     s["h_min"], _fmt(s["max_output_norm"]), eps, _fmt(s["epsilon_q05"]),
                     _fmt(sc["inf_norm_constant_max"]), _fmt(sc["column_ratio_max"]),
                     f"{100 * pi['converged_fraction']:.1f}% / {pi['iterations_median']:.0f} / {pi['iterations_max']}",
                     f"{res.seconds:.2f}"])
    sec.table(["net", "c", "ρ (Def. 3)", "3d", "ρ ≥ 3d", "h_min", "max ‖f(x)‖", "ε (Def. 4)", "ε (q=0.05)",
               "∞-norm const", "column ratio", "‖J‖₂ solver: converged / median / max iters", "seconds"], rows)
    for name, res in results.items():
        note = res.convergence_note()
        if note is not None:
            sec.text(f"**{name}: {note}.** Its ε and μ_i→ above are flagged: they may be too optimistic.")
    sec.text("ε (Def. 4) uses minima over the samples as the paper does; ε (q=0.05) replaces each minimum "
             "(maximum) by the 5% (95%) quantile and is NOT the paper's quantity — it shows how much a few "
             "outlying samples drive ε. The ∞-norm constant is "
             "max √h_i·‖φ(x̂^i_i(t))‖_∞/‖φ(x̂^i_i(t))‖ "
             "(Definition 4 asks O(1)); the column ratio is Lemma 3's max_j ‖[A_i]_j‖/(√p‖A_i‖_F).")
    for name, res in results.items():
        header, lrows = _layer_table(res)
        sec.text(f"**{name}, per layer** (ρ_i: median over samples of the median over draws; min over draws "
                 "and samples; ρ_d = ∞ since M^{d,d} is the identity):")
        sec.table(header, lrows)
    sec.text("For shape comparison, the paper's VGG-11 on CIFAR-10 (Appendix D.3 modes, layers 1..8): μ_i ≈ "
             + " ".join(f"{v:g}" for v in PAPER_VGG11["layer_cushion"]) + "; μ_i→ ≈ "
             + " ".join(f"{v:g}" for v in PAPER_VGG11["interlayer_min"])
             + f"; contraction ≈ {PAPER_VGG11['contraction']}; ρ modes ≈ {PAPER_VGG11['smoothness']}.")
    for name, res in results.items():
        if figures_for is not None and name not in figures_for:
            continue
        tag = f"{figure_prefix}_{name}".replace(" ", "_").lower()
        for q, fig in cushion_plots.plot_cushions(res, title=name).items():
            report.figure(sec, fig, f"{tag}_{q}.png",
                          f"{name}: {q.replace('_', ' ')} per layer (histogram over samples)")
        layer = overview_layer or max(1, min(res.depth - 1, 6))
        report.figure(sec, cushion_plots.plot_layer_overview(res, layer, f"{name}: layer {layer} (cf. Figure 3 left)"),
                      f"{tag}_layer{layer}.png", f"{name}: every quantity for layer {layer}")
    if lemma3 is not None:
        ls = lemma3.summary()
        data["lemma3"] = ls
        verdicts = ", ".join(f"p = {_fmt(p)}: **{v}**" for p, v in zip(ls["ps"], ls["verdict"]))
        sec.text(
            f"**Lemma 3** (straight segment θ → θ^1, Algorithm 1 on layers 2..d; {ls['draws']} mask draws per p, "
            f"loss sampled at {len(ls['ts'])} points per segment, L(θ) = {ls['base_loss']:.4g}, Definition 4's "
            f"ε = {_fmt(ls['epsilon'])}). The lemma says that with probability ≥ 1/4 over the masks the whole segment "
            f"stays under L(θ) + Õ(√p·ε). Its verdict per p, with the explicit bound of docs/THEORY.md and every "
            f"premise measured at that p: {verdicts}. C_1/4 is the empirical constant (the smallest C with a "
            f"quarter of the draws under L(θ) + C·√p·ε); the vacuity ratio is √p·ε over the loss range (the loss "
            f"of the zero-output net minus L(θ)): above 1 the paper's scale already exceeds anything a net can lose.")
        vac = ls["vacuity_ratio"] or [None] * len(ls["ps"])
        sec.table(["p", "verdict", "√p·ε", "explicit excess", "fraction under it", "C_1/4", "vacuity ratio",
                   "median max ΔL", "max ΔL", "end acc (median)", "reason"],
                  [[_fmt(p), f"**{v}**", _fmt(b), _fmt(e), _fmt(f), _fmt(c), _fmt(vr), _fmt(m), _fmt(mx), _fmt(ea), r]
                   for p, v, b, e, f, c, vr, m, mx, ea, r in zip(
                       ls["ps"], ls["verdict"], ls["sqrt_p_eps"], ls["explicit_excess"],
                       ls["fraction_under_explicit_bound"], ls["C_quarter"], vac, ls["max_increase_median"],
                       ls["max_increase_max"], ls["end_acc_median"], ls["reason"])])
    sec.data.update(data)
    report.add(sec)
    return sec.data


def add_cushions_section(report, ctx) -> dict[str, Any]:
    """The ``stability demo`` section: noise stability of both demo nets on training samples (tables),
    histograms for net A, and the Lemma 3 check for net A (quick: 300 samples, 3 draws, t ∈ {0, ½};
    else 1000 samples, 5 draws, t ∈ {0, ¼, ½, ¾})."""
    import jax

    from stability.theory import cushions
    from proofs_check.lemma3 import check_lemma3

    t0 = time.perf_counter()
    n = min(300 if ctx.quick else 1000, len(ctx.x_train))
    rng = np.random.default_rng(ctx.seed)
    idx = np.sort(rng.choice(len(ctx.x_train), n, replace=False))
    x, y = np.asarray(ctx.x_train)[idx], np.asarray(ctx.y_train)[idx]
    draws = 3 if ctx.quick else 5
    ts = (0.0, 0.5) if ctx.quick else cushions.DEFAULT_TS
    key = jax.random.PRNGKey(ctx.seed)
    ka, kb, kl = jax.random.split(key, 3)
    results = {
        "net A": cushions.measure(ctx.net_a, x, ka, p=0.5, draws=draws, ts=ts),
        "net B": cushions.measure(ctx.net_b, x, kb, p=0.5, draws=draws, ts=ts),
    }
    lemma = check_lemma3(ctx.net_a, x, y, kl, ps=(0.1, 0.25, 0.5) if ctx.quick else (0.1, 0.25, 0.5, 0.75),
                         draws=20 if ctx.quick else 50, n_t=6 if ctx.quick else 11, noise=results["net A"])
    data = write_cushions_section(report, "cushions", "Noise stability (Definitions 2–4) and Lemma 3", results,
                                  lemma3=lemma, figures_for=("net A",))
    data["seconds"] = time.perf_counter() - t0
    return data
