"""The warning categories the library emits. This module imports nothing heavy (no JAX), so a process that only
reports a warning — pytest-xdist's controller rebuilds each worker's warning from its category's module — stays
small."""

from __future__ import annotations

__all__ = ["UnconvergedWarning"]


class UnconvergedWarning(RuntimeWarning):
    """Some spectral norms of :func:`stability.theory.cushions.measure` did not reach the solver tolerance (their
    ``σ`` is a lower bound)."""
