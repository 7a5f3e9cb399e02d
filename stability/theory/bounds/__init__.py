"""Sound upper bounds of the maximum loss along a whole curve in weight space (not at sampled points).

:func:`max_loss_bound` certifies ``lower ≤ max_{t∈[0,1]} L(θ(t)) ≤ upper`` for a
:class:`~stability.core.polycurve.PolyCurve` of dense or conv ReLU nets under cross-entropy or squared
error: exactly from the end points where a piece carries a proved claim, elsewhere by Taylor-model
propagation in ``t`` with adaptive bisection, in float64 with outward rounding. Modules:
:mod:`.rounding` (the error model), :mod:`.taylor` (enclosures of each layer), :mod:`.loss_bounds`
(the convex loss majorants), :mod:`.coefficients` (Taylor coefficients of the curve's polynomials),
:mod:`.program` (the compiled program), :mod:`.driver` (bisection and :class:`BoundResult`).
The argument is written out in ``docs/theory/bounds.md``.
"""

from stability.theory.bounds.driver import PROVED_CLAIMS, BoundResult, Method, Stop, max_loss_bound

__all__ = ["max_loss_bound", "BoundResult", "PROVED_CLAIMS", "Method", "Stop"]
