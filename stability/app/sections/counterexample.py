"""Demo-report section for Theorem 4 (Kuditipudi et al. 2019, Appendix C; docs/THEORY.md §7).

``add_counterexample_section(report, ctx)`` writes the exact checks (:mod:`proofs_check.counterexample`),
the dataset figure (the appendix's Figure 4) and the barrier study of
:func:`stability.app.studies.counterexample_study.barrier_study`, every learned-curve number labelled EVIDENCE.
It ignores the demo's two digits nets: the counterexample brings its own data and minima.
"""

from __future__ import annotations

from stability.core.progress import get_logger

import time
from typing import Any, Sequence

from stability.app.studies import counterexample_study as study
from stability.plots import counterexample as ce_plots

__all__ = ["add_counterexample_section", "QUICK_HS", "FULL_HS"]

QUICK_HS = (2, 3)
FULL_HS = (2, 3, 4, 5, 6)


_log = get_logger("demo").info


def add_counterexample_section(report: Any, ctx: Any, *, hs: Sequence[int] | None = None,
                               cfg: "study.StudyConfig | None" = None) -> dict[str, Any]:
    """Theorem 4: exact facts for h = 2..8 and two non-default size choices, the dataset figure, and the
    barrier EVIDENCE (straight line, learned curves, crossing set, control) for ``QUICK_HS`` when
    ``ctx.quick`` (< 45 s on a 2-core CPU) or ``FULL_HS`` (< 3 min); ``hs`` / ``cfg`` override both."""
    from proofs_check.counterexample import check_theorem4

    t0 = time.perf_counter()
    sec = report.section("counterexample", "Theorem 4 counterexample")
    sec.text(
        "Appendix C's two-layer student `f(x) = wᵀφ(Ax)`, A ∈ R^{h×(h+2)}, no biases, squared error, on the "
        "dataset with k < l < m < n, k > h, l−k > h, m−l > 2, n−m > h (smallest: n = 3h+6; row offsets as in "
        "the appendix's Figure 4, see docs/THEORY.md §7). Two global minima: the 2-unit teacher (reads f1, f2, output "
        "weights (1, −1), h−2 zero units) and the h-unit student (A = [0 | I_h], output weights 1), because "
        "φ(f1) − φ(f2) = Σ_{j≥3} φ(fj) = y."
    )
    # ---- exact
    cases = [(h, None, None, None, None) for h in range(2, 9)] + [(3, 7, 15, 20, 30), (4, 9, 20, 24, 31)]
    # integer arithmetic for every case; the zero-tolerance pass through nets.apply for the first three
    # (each new shape costs an eager compile)
    verdicts = [check_theorem4(*c, forward=i < 3) for i, c in enumerate(cases)]
    sec.text("**Exact checks** (integer arithmetic; `proofs_check.counterexample.check_theorem4`): zero loss of "
             "both minimizers, the identity, and the data facts Lemma 6's proof uses (sign blocks forcing "
             "non-negative coefficients, increasing f1/f2 rows, period-h pattern of f3.., one positive feature "
             "per label-1 row, every residue in every block, dominance of rows k+1..l over rows 1..k).")
    sec.table(["h", "(k, l, m, n)", "facts checked", "all hold"],
              [[v.sizes.h, str(tuple(v.sizes[1:])), len(v.facts), "yes" if v.ok else
                "NO: " + ", ".join(f.name for f in v.failures())] for v in verdicts])
    fig = ce_plots.plot_dataset(3)
    report.figure(sec, fig, "thm4_data.png",
                  "Theorem 4 dataset for h = 3 (rows = samples; cf. the appendix's Figure 4)")

    # ---- evidence
    hs = tuple(hs) if hs is not None else (QUICK_HS if ctx.quick else FULL_HS)
    cfg = cfg if cfg is not None else (study.StudyConfig.quick() if ctx.quick else study.StudyConfig.demo())
    res = study.barrier_study(hs, cfg=cfg, seed=ctx.seed)
    sec.text(
        "**EVIDENCE, not proof.** Every path from the teacher (an output weight −1) to the student (all output "
        "weights +1) meets the crossing set S = {all output weights ≥ 0, one of them 0} (at the first time "
        "after which no output weight is negative) — an exact, elementary argument — so any path's barrier "
        "is ≥ inf_S L, and Lemma 6 says no point of S has loss 0. Below: the straight line's barrier; the best "
        "barrier (max mean loss on a grid of t) over learned curves (Garipov eq. 3: Bezier and polygonal "
        "chains, restarts from perturbed starts and from permutations of the student, and polychains started "
        "through the best point found on S); the lowest loss found on S by projected Adam with restarts (an "
        "upper estimate of inf_S L); and a control with the same widths on Gaussian inputs labelled by a "
        "random 2-unit teacher, from the embedded teacher to a trained student. All numbers are mean "
        "losses ½(f − y)² (end points: exactly 0 for the counterexample)."
    )
    sec.table(study.SUMMARY_HEADER, study.summary_rows(res))
    weak = [c["h"] for c in res["control"] if c["student_loss"] > 1e-8]
    if weak:
        sec.text(f"Control caveat: for h = {', '.join(map(str, weak))} no trained student reached a global minimum "
                 "(see the student-loss column); at h = 2 the student is no wider than the teacher, so the control "
                 "is not expected to connect there.")
    if res["klm"]:
        sec.text(f"**EVIDENCE: barrier vs k, l, m** (h = {res['klm'][0]['h']}; one block grown at a time from the "
                 "smallest sizes). `n·L` is the summed loss.")
        sec.table(["grown", "(k, l, m, n)", "straight line", "best learned curve", "crossing set S",
                   "n · best curve"],
                  [[r["varied"], str((r["k"], r["l"], r["m"], r["n"])), r["straight"], r["best_curve"],
                    r["crossing_set_best"], r["n"] * r["best_curve"]] for r in res["klm"]])
    report.figure(sec, ce_plots.plot_barriers(res), "thm4_barriers.png",
                  "EVIDENCE: barriers vs h (log scale), loss along the best learned curve, barrier vs k, l−k, m−l")
    secs = time.perf_counter() - t0
    sec.text(f"Section time: {secs:.1f} s ({'quick' if ctx.quick else 'full'} budget).")
    sec.data.update(exact=[v.to_dict() for v in verdicts], exact_all_hold=all(v.ok for v in verdicts),
                    evidence=res, seconds=round(secs, 2))
    report.add(sec)
    return sec.data
