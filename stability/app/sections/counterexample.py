"""Demo-report section for Theorem 4 (Kuditipudi et al. 2019, Appendix C; docs/THEORY.md §7).

``add_counterexample_section(report, ctx)`` writes the exact checks (:mod:`proofs_check.counterexample`),
the dataset figure (the appendix's Figure 4), the barrier study of
:func:`stability.app.studies.counterexample_study.barrier_study` (every learned-curve number labelled EVIDENCE) and, beside
it, the PROVED lower bound on every path's barrier (:mod:`proofs_check.thm4_barrier`).
It ignores the demo's two digits nets: the counterexample brings its own data and minima.
"""

from __future__ import annotations

import decimal
import time
from typing import Any, Sequence

from stability.app.studies import counterexample_study as study
from stability.core.progress import get_logger
from stability.plots import counterexample as ce_plots

__all__ = ["add_counterexample_section", "proved_rows", "fmt_down", "fmt_up", "QUICK_HS", "FULL_HS",
           "PROVED_MAX_H_QUICK", "PROVED_MAX_H_FULL"]

QUICK_HS = (2, 3)
FULL_HS = (2, 3, 4, 5, 6)
# The proved bound's search time grows fast with h (shared 2-core CPU): h ≤ 3 < 2 s, h = 4 ≈ 20 s,
# h = 5 ≈ 5 min, h = 6 does not finish in 10 min (docs/theory/theorem4_barrier.md).
PROVED_MAX_H_QUICK = 3
PROVED_MAX_H_FULL = 4


def fmt_down(x: float, digits: int = 6) -> str:
    """``x`` to ``digits`` significant digits rounded DOWN (a printed lower bound stays a lower bound)."""
    return format(decimal.Context(prec=digits, rounding=decimal.ROUND_FLOOR).create_decimal(x), "g")


def fmt_up(x: float, digits: int = 6) -> str:
    """``x`` to ``digits`` significant digits rounded UP (a printed upper bound stays an upper bound)."""
    return format(decimal.Context(prec=digits, rounding=decimal.ROUND_CEILING).create_decimal(x), "g")


PROVED_HEADER = ["h", "PROVED: every path's barrier ≥", "a point of S has loss",
                 "EVIDENCE: best learned curve's barrier (t-grid)", "curve − proved", "search"]


def proved_rows(evidence: dict[str, Any], proved: dict[int, Any], max_h: int) -> list[list[Any]]:
    """One row per h of the study: the proved lower bound on every path's barrier (``min_S L``), the loss of
    the best point of S found, the best learned curve's barrier (max on a grid of t; that curve's true max,
    at least this, bounds the smallest barrier from above), and their gap; h above ``max_h`` are marked
    not computed."""
    rows = []
    for case in evidence["per_h"]:
        h, curve = case["h"], case["best_curve"]["barrier"]
        b = proved.get(h)
        if b is None:
            rows.append([h, f"not computed (h > {max_h} in this budget)", "–", curve, "–", "–"])
            continue
        status = f"{b['nodes_solved']} nodes, {b['seconds']:.1f} s" + ("" if b["finished"] else
                                                                       f", NOT finished ({b['stop_reason']})")
        rows.append([h, fmt_down(b["lower_bound"]), fmt_up(b["upper_bound"]), curve,
                     fmt_up(curve - b["lower_bound"], 3), status])
    return rows


_log = get_logger("demo").info


def _finding(verdicts: list, res: dict[str, Any], proved: dict[int, Any]) -> str:
    """Plain sentences: the exact facts, the proved lower bound on every path's barrier and the evidence."""
    ok = all(v.ok for v in verdicts)
    hs = sorted({v.sizes.h for v in verdicts})
    s = (f"Both global minima have exactly zero loss and every data fact Lemma 6 uses holds for h = {hs[0]}–{hs[-1]} "
         f"(exact integer arithmetic)" if ok else "Some exact checks FAIL (see the table)")
    if proved:
        bits = ", ".join(f"h = {h}: ≥ {fmt_down(b['lower_bound'], 3)}" + ("" if b["finished"] else " (search NOT "
                                                                          "finished)") for h, b in sorted(proved.items()))
        s += (f". PROVED: every path between the two minima has a barrier of at least ({bits}), so no zero-loss path "
              f"connects them, as Theorem 4 says")
    curves = ", ".join(f"h = {c['h']}: {c['best_curve']['barrier']:.3g}" for c in res["per_h"])
    lines = ", ".join(f"{c['straight']['barrier']:.3g}" for c in res["per_h"])
    ctl = ", ".join(f"h = {c['h']}: {c['best_curve']['barrier']:.2g}" + (" (not expected to connect: the student is "
                                                                         "no wider than the teacher)" if c["h"] == 2
                                                                         else "")
                    for c in res["control"])
    return (s + f". EVIDENCE: the best learned curves still have barriers {curves} (straight lines: {lines}); on "
            f"generic data (the control) the best curves reach {ctl}.")


def add_counterexample_section(report: Any, ctx: Any, *, hs: Sequence[int] | None = None,
                               cfg: "study.StudyConfig | None" = None, proved_max_h: int | None = None,
                               ) -> dict[str, Any]:
    """Theorem 4: exact facts for h = 2..8 and two non-default size choices, the dataset figure, the
    barrier EVIDENCE (straight line, learned curves, crossing set, control) for ``QUICK_HS`` when
    ``ctx.quick`` (< 45 s on a 2-core CPU) or ``FULL_HS`` (< 3 min), and the PROVED lower bound on every
    path's barrier for the h ≤ ``proved_max_h`` among them (default ``PROVED_MAX_H_QUICK`` /
    ``PROVED_MAX_H_FULL``); ``hs`` / ``cfg`` / ``proved_max_h`` override these."""
    from proofs_check.counterexample import check_theorem4
    from proofs_check.thm4_barrier import prove_barrier_bound

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

    # ---- proved
    max_h = proved_max_h if proved_max_h is not None else (PROVED_MAX_H_QUICK if ctx.quick else PROVED_MAX_H_FULL)
    proved = {}
    for h in hs:
        if h <= max_h:
            _log(f"Theorem 4: proved lower bound on min over S, h = {h}")
            proved[h] = prove_barrier_bound(h, seed=ctx.seed, progress_every=2000).to_dict()
    sec.text(
        "**PROVED: a lower bound on the barrier of every path.** The smallest output weight is continuous "
        "along any continuous path, −1 at the teacher and +1 at the student (any permutation of it), so it is "
        "0 somewhere: the path meets S. On S the unit with output weight 0 is silent and w·φ(a·x) = φ(w a·x) "
        "for w ≥ 0, so the net is h−1 ReLU units with output weights 1 and every path's barrier is ≥ min_S L. "
        "That minimum is bounded from below by a branch and bound over the activation patterns of the "
        "label-1 rows (convex relaxations, one convex QP per node) whose every node bound is a dual "
        "certificate checked in exact rational arithmetic (`proofs_check.thm4_barrier`; the argument is in "
        "docs/theory/theorem4_barrier.md). Lower bounds are printed rounded down, upper bounds rounded up. "
        "Every path has barrier ≥ the proved column. The best learned curve is one path: its barrier "
        "(measured as the max over a grid of t, a lower estimate of that curve's true max) is an upper "
        "estimate of the smallest barrier, so the smallest barrier lies between the proved column and about "
        "the curve's value; the gap column is their difference."
        + (f" This budget proves h ≤ {max_h} only (h = 4 takes ≈ 20 s, h = 5 ≈ 5 min, h = 6 does not finish "
           "in 10 min)." if any(h > max_h for h in hs) else ""))
    sec.table(PROVED_HEADER, proved_rows(res, proved, max_h))
    secs = time.perf_counter() - t0
    sec.text(f"Section time: {secs:.1f} s ({'quick' if ctx.quick else 'full'} budget).")
    sec.lines.insert(0, f"**Finding.** {_finding(verdicts, res, proved)}\n")
    sec.data.update(exact=[v.to_dict() for v in verdicts], exact_all_hold=all(v.ok for v in verdicts),
                    evidence=res, proved={str(h): b for h, b in proved.items()}, proved_max_h=max_h,
                    seconds=round(secs, 2))
    report.add(sec)
    return sec.data
