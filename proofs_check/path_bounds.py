"""Certified maximum loss along a constructed path, with the proved claims used as exact shortcuts.

:func:`path_bound` certifies every segment's claim (:func:`proofs_check.certify`) and passes ONLY the
claims whose status is ``proved`` to :func:`stability.theory.bounds.max_loss_bound`: a
``function_preserving`` / ``copy_shift`` segment is bounded by its end loss, a ``top_layer`` segment
by the larger end loss; every other segment (a failed or refused claim, ``dropout_interpolation``,
``free``) is bounded by propagation over sub-intervals. It lives here, not in ``stability``, because
the library does not import the checker.
"""

from __future__ import annotations

from typing import Any

from stability.theory.bounds import PROVED_CLAIMS, BoundResult, max_loss_bound
from stability.core.losses import Loss, cross_entropy, get_loss
from stability.theory.paths.path import Path

from .certificates import Certificate, certify

__all__ = ["path_bound", "bound_certified_path", "proved_claims"]


def proved_claims(cert: Certificate) -> list[str | None]:
    """Per segment: its claim when the status is ``proved`` and the claim is a shortcut, else ``None``."""
    return [v.claim if v.status == "proved" and v.claim in PROVED_CLAIMS else None for v in cert.verdicts]


def path_bound(path: Path, x, y, *, loss: Loss | str = cross_entropy, **kw: Any) -> BoundResult:
    """``lower ≤ max_t L(path(t)) ≤ upper`` over the whole path (segment ``k`` on ``[k/n, (k+1)/n]``).

    Keyword arguments go to :func:`stability.theory.bounds.max_loss_bound` (``rtol``, ``atol``, ``max_subintervals``,
    ``method``, …). A path whose segments do not meet exactly is refused: its way-point chain would not be
    the path the verdicts speak about.
    """
    if not isinstance(path, Path):
        raise ValueError(f"path must be a stability.theory.paths.Path, got {type(path).__name__}")
    if "certificate_claims" in kw:
        raise ValueError("path_bound derives certificate_claims from proofs_check.certify; do not pass them")
    loss = get_loss(loss)
    return bound_certified_path(path, certify(path, loss), x, y, loss=loss, **kw)


def bound_certified_path(path: Path, cert: Certificate, x, y, *, loss: Loss, **kw: Any) -> BoundResult:
    """:func:`path_bound` given ``cert = certify(path, loss)`` (the checks certify once and bound with it).

    The certificate must be the one of THIS path under THIS loss: its segment count and loss name are
    checked, and only its ``proved`` claims are used."""
    if len(cert.verdicts) != path.n_segments:
        raise ValueError(f"the certificate has {len(cert.verdicts)} segment verdicts, the path {path.n_segments}")
    if any(v.claim != seg.claim or v.label != seg.label for v, seg in zip(cert.verdicts, path.segments)):
        raise ValueError("the certificate's segments do not match the path's (claims or labels differ)")
    if cert.loss != loss.name:
        raise ValueError(f"the certificate was made for the loss {cert.loss!r}, the bound is asked for {loss.name!r}")
    if "certificate_claims" in kw:
        raise ValueError("the certificate claims come from cert; do not pass certificate_claims")
    if cert.junctions:
        raise ValueError(f"path is discontinuous ({cert.junctions[0]}); only a continuous path can be bounded")
    return max_loss_bound(path.poly(), x, y, loss=loss, certificate_claims=proved_claims(cert), **kw)
