"""Machine-checked statements about constructed paths (SPEC §5).

``certify(path)`` proves every segment's claim exactly from its end points; the ``check_*``
functions are executable theorem statements: build the path, certify it, evaluate loss and
accuracy on a dense grid of every segment, and compare with the theorem's bound. ``path_bound(path, x, y)``
certifies the maximum loss over the WHOLE path (all t), using the certified claims as exact shortcuts.
"""

from .certificates import Certificate, Fault, SegmentVerdict, certify, certify_segment, dead_closure
from .path_bounds import path_bound
from .theorems import (TheoremVerdict, check_lemma1, check_lemma2, check_path, check_theorem1, check_theorem2,
                       check_theorem3)

__all__ = [
    "certify", "certify_segment", "dead_closure", "Certificate", "SegmentVerdict", "Fault", "path_bound",
    "TheoremVerdict", "check_path", "check_lemma1", "check_lemma2", "check_theorem1", "check_theorem2",
    "check_theorem3",
]
