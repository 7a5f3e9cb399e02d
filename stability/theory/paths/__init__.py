"""Paths from the theory (Kuditipudi et al. 2019): Lemma 1, Lemma 4, Lemma 2, Theorems 1–3.

Every builder returns a :class:`Path` — a list of straight :class:`Segment` s, each carrying a
claim kind that ``proofs_check.certify`` verifies exactly from its two end points (docs/THEORY.md §5)
and a label naming the paper's step. ``Path.evaluate`` measures loss/accuracy along the
whole path in one batched call.
"""

from stability.theory.paths.lemma1 import lemma1, theta_k
from stability.theory.paths.lemma2 import lemma2, lemma4
from stability.theory.paths.path import (CLAIM_KINDS, ClaimKind, DropoutDraw, Lemma1Info, Lemma4Info, Part, Path,
                                         PathEval, Segment, Theorem1Info, Theorem2Info, Theorem3Info, nets_equal,
                                         path_point)
from stability.theory.paths.theorems import (embed_narrow, lemma3, lemma5_min_dropped, narrow_widths, theorem1,
                                             theorem2, theorem3)

__all__ = [
    "Path", "Segment", "Part", "PathEval", "ClaimKind", "CLAIM_KINDS", "path_point", "nets_equal", "DropoutDraw",
    "Lemma1Info", "Lemma4Info", "Theorem1Info", "Theorem2Info", "Theorem3Info",
    "lemma1", "theta_k", "lemma4", "lemma2", "lemma3", "theorem1", "theorem2", "theorem3",
    "embed_narrow", "narrow_widths", "lemma5_min_dropped",
]
