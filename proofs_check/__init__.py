"""Machine-checked statements about constructed paths (docs/THEORY.md §5, §10, §11).

``certify(path)`` gives every segment a status — proved (its exact claim holds, from its end points alone),
measured (no exact claim: its loss can only be evaluated) or refuted — and checks that the path connects the
nets it claims to. ``path_bound(path, x, y)`` certifies the maximum loss over the WHOLE path (every t), using
the proved claims as exact shortcuts. The ``check_*`` functions are executable theorem statements: build the
path, certify it, evaluate it, and decide a verdict — holds, fails, or does not apply (a premise fails, named).
"""

from .certificates import Certificate, Fault, SegmentVerdict, Status, certify, certify_segment, dead_closure
from .noise_bound import Lemma3Bound, Premise, lemma3_bound
from .path_bounds import path_bound
from .theorems import (TheoremVerdict, Verdict, check_lemma1, check_lemma2, check_path, check_theorem1,
                       check_theorem1_path, check_theorem2, check_theorem2_path, check_theorem3, check_theorem3_path)

__all__ = [
    "certify", "certify_segment", "dead_closure", "Certificate", "SegmentVerdict", "Status", "Fault", "path_bound",
    "TheoremVerdict", "Verdict", "Premise", "Lemma3Bound", "lemma3_bound", "check_path", "check_lemma1",
    "check_lemma2", "check_theorem1", "check_theorem1_path", "check_theorem2", "check_theorem2_path",
    "check_theorem3", "check_theorem3_path",
]
