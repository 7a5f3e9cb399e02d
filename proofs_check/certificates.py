"""Exact per-segment certificates for constructed paths (docs/THEORY.md §5).

Every segment of a :class:`stability.theory.paths.Path` carries a claim. :func:`certify` verifies each
claim from the segment's two end points alone, exactly (float equality, no sampling):

* ``top_layer`` (type (a)): every parameter except ``A_d``, ``b_d`` is equal at both ends. The
  output is then affine in ``(A_d, b_d)`` with the features fixed, so for a loss convex in the
  output the loss on the segment is ≤ the max of its two end losses. Refused for a loss that
  does not declare ``convex_in_output``.
* ``function_preserving`` and ``copy_shift`` (type (b), Lemma 4 S2/S4): one *quotient* test.
  ``Z`` = units whose column is 0 at both ends, closed upward (a unit whose every nonzero
  outgoing weight, at either end, lands in ``Z`` is in ``Z``); ``Z`` is dead along the whole
  segment. The live units are merged into classes that provably compute the same feature at
  every t (layer 1: equal rows and biases at both ends; layer i > 1: equal class-summed rows
  and biases at both ends — class sums are linear in the weights, so equality at the ends
  holds along the segment). If the quotient net (one unit per class, class-summed columns) is
  the same at both ends, it is constant on the segment and ``f_t(x) = f_0(x)`` for every ``x``
  and every ``t``. This also recognises Lemma 1 step 4 (a top-layer move between two identical
  halves).
* ``dropout_interpolation`` / ``free``: no exact claim exists, so nothing is proved: the segment is
  **measured** (its loss is evaluated by :mod:`proofs_check.theorems`, never taken as proved).

Every segment ends up **proved** (its exact claim holds), **measured** (no exact claim, or a claim whose
premise does not hold, e.g. a top-layer claim under a loss that is not convex in the output) or
**refuted** (its claim fails). The path as a whole is also refuted when consecutive segments do not meet
bitwise or when it does not start and end exactly at the two nets its builder claims it connects
(``Path.connects``). :attr:`Certificate.ok` is true only when every segment is proved and nothing is
refuted; :attr:`Certificate.no_refuted` says that nothing is refuted.

A failure names the segment, its paper step and the offending parameter (layer, row, column).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, Sequence

import numpy as np

from stability.core import nets as _nets
from stability.core.units import EditNet
from stability.core.losses import Loss, cross_entropy, get_loss
from stability.theory.paths.path import CLAIM_KINDS, Path

__all__ = ["Fault", "SegmentVerdict", "Certificate", "Status", "STATUSES", "certify", "certify_segment",
           "dead_closure", "quotient_classes"]

_Params = list[tuple[np.ndarray, np.ndarray | None]]


@dataclasses.dataclass(frozen=True)
class Fault:
    """The parameter at fault: ``A_{layer+1}[index]`` (``param="w"``) or ``b_{layer+1}[index]``.

    ``row`` is the output unit (axis 0), ``col`` the input unit (axis 1, ``None`` for biases)."""

    layer: int
    param: str
    index: tuple[int, ...]
    start: float
    end: float
    why: str = ""
    others: tuple[tuple[int, ...], ...] = ()
    """Further entries of the same block that change (a class-summed mismatch cannot always be pinned
    on one entry: e.g. inside a copy-shift both columns move legitimately)."""
    related: tuple["Fault", ...] = ()
    """Why the unit is live: an outgoing weight into a live unit (preferably one that changes)."""

    def candidates(self) -> set[tuple[int, str, tuple[int, ...]]]:
        """Every ``(layer, param, index)`` this fault points at."""
        out = {(self.layer, self.param, self.index)} | {(self.layer, self.param, o) for o in self.others}
        for r in self.related:
            out |= r.candidates()
        return out

    @property
    def row(self) -> int:
        return self.index[0]

    @property
    def col(self) -> int | None:
        return self.index[1] if self.param == "w" and len(self.index) > 1 else None

    @property
    def name(self) -> str:
        letter = "A" if self.param == "w" else "b"
        return f"{letter}_{self.layer + 1}[{', '.join(map(str, self.index))}]"

    def __str__(self) -> str:
        msg = f"{self.name} (layer {self.layer}, row {self.row}"
        msg += f", col {self.col})" if self.col is not None else ")"
        msg += f": {self.start!r} at the start, {self.end!r} at the end"
        if self.others:
            msg += f" (also changing in the same block: {', '.join(map(str, self.others[:5]))})"
        msg += f"; {self.why}" if self.why else ""
        for r in self.related:
            msg += f"; live because of {r.name}: {r.start!r} at the start, {r.end!r} at the end"
        return msg

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "layer": self.layer, "param": self.param, "index": list(self.index),
                "row": self.row, "col": self.col, "start": self.start, "end": self.end, "why": self.why,
                "others": [list(o) for o in self.others], "related": [r.to_dict() for r in self.related]}


Status = Literal["proved", "measured", "refuted"]
STATUSES: tuple[Status, ...] = ("proved", "measured", "refuted")

_MEASURED_WHAT = {"dropout_interpolation": "Algorithm 1 (Lemma 3) segment", "free": "segment with no claim",
                  "top_layer": "top-layer segment whose claim does not apply"}


@dataclasses.dataclass(frozen=True)
class SegmentVerdict:
    """``status``: ``proved`` (the exact claim holds), ``measured`` (no exact claim applies: the segment's loss
    can only be evaluated) or ``refuted`` (the claim fails; ``fault`` names the parameter)."""

    index: int
    label: str
    claim: str
    status: Status
    reason: str
    fault: Fault | None = None

    @property
    def proved(self) -> bool:
        return self.status == "proved"

    def __str__(self) -> str:
        s = f"segment {self.index} ({self.label}) [{self.claim}]: {self.status}"
        if self.status != "proved":
            s += f" — {self.reason}"
        if self.fault is not None:
            s += f"; offending parameter {self.fault}"
        return s

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "label": self.label, "claim": self.claim, "status": self.status,
                "reason": self.reason, "fault": None if self.fault is None else self.fault.to_dict()}


@dataclasses.dataclass(frozen=True)
class Certificate:
    """Per-segment verdicts of :func:`certify`, the junction checks and the end-point checks.

    ``junctions``: consecutive segments that do not meet bitwise; ``endpoints``: where the path does not
    start or end exactly at the nets its builder claims it connects (``endpoints_stated`` is false when the
    path states no such nets: then there was nothing to check, and the summary says so)."""

    verdicts: tuple[SegmentVerdict, ...]
    junctions: tuple[str, ...]
    loss: str
    endpoints: tuple[str, ...] = ()
    endpoints_stated: bool = False

    @property
    def no_refuted(self) -> bool:
        """No segment refuted, every junction meets and the path connects the nets it claims to."""
        return all(v.status != "refuted" for v in self.verdicts) and not self.junctions and not self.endpoints

    @property
    def ok(self) -> bool:
        """Every segment PROVED exactly and nothing refuted (a measured segment makes this false)."""
        return self.no_refuted and all(v.proved for v in self.verdicts)

    def counts(self) -> dict[Status, int]:
        out: dict[Status, int] = {k: 0 for k in STATUSES}
        for v in self.verdicts:
            out[v.status] += 1
        return out

    def failures(self) -> list[SegmentVerdict]:
        """The refuted segments."""
        return [v for v in self.verdicts if v.status == "refuted"]

    def measured(self) -> list[SegmentVerdict]:
        return [v for v in self.verdicts if v.status == "measured"]

    def headline(self) -> str:
        """One line, e.g. ``11 of 13 segments proved exactly; 2 measured (2 Algorithm 1 (Lemma 3) segments);
        0 refuted``."""
        c = self.counts()
        n = len(self.verdicts)
        kinds: dict[str, int] = {}
        for v in self.measured():
            what = _MEASURED_WHAT.get(v.claim, f"{v.claim} segment")
            kinds[what] = kinds.get(what, 0) + 1
        what = ", ".join(f"{k_} {w}{'s' if k_ > 1 else ''}" for w, k_ in kinds.items())
        s = f"{c['proved']} of {n} segments proved exactly; {c['measured']} measured"
        s += f" ({what})" if what else ""
        s += f"; {c['refuted']} refuted"
        if self.junctions:
            s += f"; {len(self.junctions)} broken junction(s)"
        if self.endpoints:
            s += "; the path does not connect the nets it claims to"
        elif not self.endpoints_stated:
            s += "; end points not stated (not checked)"
        return s

    def summary(self) -> str:
        bad = [str(v) for v in self.failures()] + list(self.junctions) + list(self.endpoints)
        return self.headline() + ("" if not bad else "\n" + "\n".join(bad))

    def __str__(self) -> str:
        return self.summary()

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "no_refuted": self.no_refuted, "counts": self.counts(), "headline": self.headline(),
                "loss": self.loss, "junctions": list(self.junctions), "endpoints": list(self.endpoints),
                "endpoints_stated": self.endpoints_stated, "verdicts": [v.to_dict() for v in self.verdicts]}


# --------------------------------------------------------------------------- helpers


def _params(net: _nets.Net) -> _Params:
    return EditNet.of(net, copy=False).params()


def _first_diff(a: np.ndarray, b: np.ndarray) -> tuple[int, ...]:
    diff = a != b
    return tuple(int(v) for v in np.argwhere(diff)[0])


def _fault(p0: _Params, p1: _Params, layer: int, param: str, index: tuple[int, ...], why: str) -> Fault:
    a = p0[layer][0] if param == "w" else p0[layer][1]
    b = p1[layer][0] if param == "w" else p1[layer][1]
    return Fault(layer, param, tuple(int(v) for v in index), float(a[index]), float(b[index]), why)


def _reach(w0: np.ndarray, w1: np.ndarray, live_rows: np.ndarray) -> np.ndarray:
    """Mask over the columns (axis 1): some nonzero weight, at either end, into a live row."""
    nz = ((w0 != 0) | (w1 != 0))[live_rows]
    return np.moveaxis(nz, 1, 0).reshape(w0.shape[1], -1).any(axis=1)


def dead_closure(p0: _Params, p1: _Params) -> dict[int, np.ndarray]:
    """``Z``: hidden layer ``i`` → boolean mask of units dead along the whole segment (column 0 at
    both ends, closed upward), computed top-down."""
    d = len(p0)
    Z: dict[int, np.ndarray] = {}
    live_next = np.arange(p0[-1][0].shape[0])
    for i in range(d - 1, 0, -1):
        Z[i] = ~_reach(p0[i][0], p1[i][0], live_next)
        live_next = np.flatnonzero(~Z[i])
    return Z


def _key(*arrays: np.ndarray | None) -> bytes:
    parts = []
    for a in arrays:
        if a is None:
            parts.append(b"")
            continue
        a = np.asarray(a)
        if a.dtype == object:
            parts.append(repr(a.tolist()).encode())
        else:
            parts.append((np.ascontiguousarray(a) + 0.0).tobytes())
    return b"|".join(parts)


_EXP0 = {np.dtype(np.float16): -40, np.dtype(np.float32): -200, np.dtype(np.float64): -1200}


def _exact_ints(x: np.ndarray) -> np.ndarray:
    """Every (finite) float as the exact integer ``x · 2^{-E0}`` (an object array of Python ints)."""
    m, e = np.frexp(x.astype(np.float64))
    mant = np.ldexp(m, 53).astype(np.int64).astype(object)
    shift = (e.astype(np.int64) - 53 - _EXP0.get(x.dtype, -1200)).astype(object)
    return mant * np.power(2, shift)  # exact: Python ints


def _class_sum(w: np.ndarray, classes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """EXACT sums of the columns (axis 1) of ``w`` over each class, one canonical array per class:
    a single member as is; two members as the TwoSum pair ``(fl(a+b), a+b−fl(a+b))`` (a function of
    the exact sum); more members as exact Python integers. Equal arrays ⇔ equal real sums, so the
    test does not depend on the order of summation (copy-shifts permute columns inside a class)."""
    out = []
    for c in classes:
        cols = w[:, c]
        if len(c) == 1:
            out.append(cols[:, 0])
        elif len(c) == 2:
            a, b = cols[:, 0], cols[:, 1]
            with np.errstate(over="ignore", invalid="ignore"):
                s_ = a + b
                bb = s_ - a
                err = (a - (s_ - bb)) + (b - bb)
            out.append(np.stack([s_, err], axis=-1))
        else:
            out.append(_exact_ints(cols).sum(axis=1))
    return out


def _reps_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all(a == b)) if a.dtype == object else np.array_equal(a, b)


def _first_rep_diff(r0: list[np.ndarray], r1: list[np.ndarray], j: int | None = None) -> tuple[int, int] | None:
    """First ``(class, row)`` whose exact class sums differ (``j``: only that row)."""
    for k, (a, b) in enumerate(zip(r0, r1)):
        if j is not None:
            a, b = a[j:j + 1], b[j:j + 1]
        if not _reps_equal(a, b):
            ne = (a != b).reshape(a.shape[0], -1).any(axis=1)
            return k, (j if j is not None else int(np.flatnonzero(ne)[0]))
    return None


def quotient_classes(p0: _Params, p1: _Params, Z: dict[int, np.ndarray]):
    """Live units of every hidden layer merged into classes computing the same feature along the
    segment (layer 1: equal rows and biases at both ends; layer i > 1: equal exact class-summed rows
    and biases at both ends). Yields ``(i, classes, local, prev_classes, rows0, rows1, b0, b1)`` per
    layer, rows raw (layer 1) or as lists of exact class sums."""
    d = len(p0)
    prev: list[np.ndarray] | None = None
    for i in range(1, d):
        live = np.flatnonzero(~Z[i])
        w0, b0 = p0[i - 1]
        w1, b1 = p1[i - 1]
        r0 = w0[live] if prev is None else _class_sum(w0[live], prev)
        r1 = w1[live] if prev is None else _class_sum(w1[live], prev)
        c0 = None if b0 is None else b0[live]
        c1 = None if b1 is None else b1[live]
        groups: dict[bytes, list[int]] = {}
        for j in range(live.size):
            rows = (r0[j], r1[j]) if prev is None else tuple(r[j] for r in r0) + tuple(r[j] for r in r1)
            groups.setdefault(_key(*rows, None if c0 is None else c0[j:j + 1],
                                   None if c1 is None else c1[j:j + 1]), []).append(j)
        local = [np.asarray(g) for g in groups.values()]
        classes = [live[g] for g in local]
        yield i, classes, local, prev, r0, r1, c0, c1
        prev = classes


def _raw_fault(p0: _Params, p1: _Params, layer: int, rows: np.ndarray, cols: np.ndarray | None, why: str) -> Fault:
    w0, w1 = p0[layer][0], p1[layer][0]
    sub0 = w0[rows] if cols is None else w0[np.ix_(rows, cols)]
    sub1 = w1[rows] if cols is None else w1[np.ix_(rows, cols)]
    if not np.array_equal(sub0, sub1):
        def full(idx) -> tuple[int, ...]:
            idx = tuple(int(v) for v in idx)
            return (int(rows[idx[0]]),) + ((int(cols[idx[1]]),) if cols is not None else (idx[1],)) + idx[2:]

        diffs = [full(i) for i in np.argwhere(sub0 != sub1)[:64]]
        return dataclasses.replace(_fault(p0, p1, layer, "w", diffs[0], why), others=tuple(diffs[1:]))
    # equal raw entries but different class sums cannot happen; report the first row entry anyway
    full = (int(rows[0]), int(cols[0]) if cols is not None and cols.size else 0) + (0,) * (w0.ndim - 2)
    return _fault(p0, p1, layer, "w", full, why)


def _liveness_witness(p0: _Params, p1: _Params, Z: dict[int, np.ndarray], i: int, u: int) -> tuple[Fault, ...]:
    """Why unit ``u`` of hidden layer ``i`` is live: a chain of outgoing weights, each into a live unit
    of the next layer (preferring weights that change between the ends), up to the output."""
    chain: list[Fault] = []
    d = len(p0)
    while i < d:
        w0, w1 = p0[i][0][:, u], p1[i][0][:, u]
        live_rows = np.arange(w0.shape[0]) if i == d - 1 else np.flatnonzero(~Z[i + 1])
        mask = np.zeros(w0.shape, bool)
        mask[live_rows] = True
        nz = mask & ((w0 != 0) | (w1 != 0))
        changed = nz & (w0 != w1)
        pick = changed if changed.any() else nz
        if not pick.any():
            break
        idx = tuple(int(v) for v in np.argwhere(pick)[0])
        chain.append(_fault(p0, p1, i, "w", (idx[0], u) + idx[1:], f"outgoing weight of unit {u} of hidden layer {i}"))
        u, i = idx[0], i + 1
    return tuple(chain)


def _check_quotient(p0: _Params, p1: _Params) -> tuple[Fault | None, str]:
    d = len(p0)
    if d == 1:
        return _check_exact(p0, p1, range(1)), "no hidden layer"
    Z = dead_closure(p0, p1)
    prev = None
    n_classes = []
    for i, classes, local, prev_classes, r0, r1, c0, c1 in quotient_classes(p0, p1, Z):
        for cls, loc in zip(classes, local):
            j = loc[0]
            if prev_classes is None:
                bad = None if np.array_equal(r0[j], r1[j]) else 0
            else:
                diff = _first_rep_diff(r0, r1, j)
                bad = None if diff is None else diff[0]
            if bad is not None:
                cols = None if prev_classes is None else prev_classes[bad]
                why = (f"unit {int(cls[0])} of hidden layer {i} is live (outside the dead closure) and its "
                       + ("row" if prev_classes is None else "class-summed row") + " changes")
                f = _raw_fault(p0, p1, i - 1, cls, cols, why)
                return dataclasses.replace(f, related=_liveness_witness(p0, p1, Z, i, f.row)), ""
            if c0 is not None and c0[j] != c1[j]:
                f = _fault(p0, p1, i - 1, "b", (int(cls[0]),),
                           f"bias of live unit {int(cls[0])} of hidden layer {i} changes")
                return dataclasses.replace(f, related=_liveness_witness(p0, p1, Z, i, f.row)), ""
        n_classes.append(len(classes))
        prev = classes
    w0, b0 = p0[-1]
    w1, b1 = p1[-1]
    diff = _first_rep_diff(_class_sum(w0, prev), _class_sum(w1, prev))
    if diff is not None:
        c, row = diff
        return _raw_fault(p0, p1, d - 1, np.array([row]), prev[c],
                          f"the top layer's class-summed column of live hidden unit(s) {prev[c].tolist()} changes"), ""
    if b0 is not None and not np.array_equal(b0, b1):
        k = _first_diff(b0, b1)
        return _fault(p0, p1, d - 1, "b", k, "the output bias changes"), ""
    dead = sum(int(z.sum()) for z in Z.values())
    return None, f"dead closure {dead} unit(s); live classes per hidden layer {n_classes}"


def _check_exact(p0: _Params, p1: _Params, layers) -> Fault | None:
    for l in layers:
        for param, a, b in (("w", p0[l][0], p1[l][0]), ("b", p0[l][1], p1[l][1])):
            if a is None:
                continue
            if not np.array_equal(a, b):
                return _fault(p0, p1, l, param, _first_diff(a, b),
                              "a top-layer segment may only move A_d and b_d")
    return None


def certify_segment(start: _nets.Net | _Params, end: _nets.Net | _Params, claim: str,
                    loss: Loss | str = cross_entropy) -> tuple[Status, str, Fault | None]:
    """``(status, reason, fault)`` for one segment's claim, from its end points alone."""
    if claim not in CLAIM_KINDS:
        raise ValueError(f"unknown claim kind {claim!r}")
    p0 = start if isinstance(start, list) else _params(start)
    p1 = end if isinstance(end, list) else _params(end)
    if claim == "top_layer":
        loss = get_loss(loss)
        if not loss.convex_in_output:
            return ("measured", f"the top-layer claim does not apply: it needs a loss convex in the network output "
                    f"(docs/THEORY.md §0) and {loss.name!r} does not declare convex_in_output; the loss is only measured", None)
        fault = _check_exact(p0, p1, range(len(p0) - 1))
        if fault is not None:
            return "refuted", "a parameter below the top layer changes", fault
        return "proved", "only A_d, b_d move: loss ≤ max of the end losses (convex in the output)", None
    if claim in ("function_preserving", "copy_shift"):
        for l, (pa, pb) in enumerate(zip(p0, p1)):
            for name, a, b in (("w", pa[0], pb[0]), ("b", pa[1], pb[1])):
                if a is not None and not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
                    bad = a if not np.all(np.isfinite(a)) else b
                    idx = tuple(int(v) for v in np.argwhere(~np.isfinite(bad))[0])
                    return "refuted", "a parameter is not finite", _fault(p0, p1, l, name, idx, "not finite")
        fault, info = _check_quotient(p0, p1)
        if fault is not None:
            return "refuted", "the quotient net differs between the end points", fault
        return "proved", f"quotient net identical at both ends: f unchanged for every x, t ({info})", None
    return "measured", "no exact claim exists for this segment: its loss is measured, not proved", None


def _first_mismatch(pa: _Params, pb: _Params) -> Fault | None:
    for l, ((wa, ba), (wb, bb)) in enumerate(zip(pa, pb)):
        if not np.array_equal(wa, wb):
            return _fault(pa, pb, l, "w", _first_diff(wa, wb), "")
        if (ba is None) != (bb is None):
            return Fault(l, "b", (0,), float("nan"), float("nan"), "one net has a bias, the other not")
        if ba is not None and not np.array_equal(ba, bb):
            return _fault(pa, pb, l, "b", _first_diff(ba, bb), "")
    return None


def certify(path: Path, loss: Loss | str = cross_entropy) -> Certificate:
    """Verify every segment's claim exactly from its end points (proved / measured / refuted), that
    consecutive segments meet bitwise, and that the path starts and ends exactly at the nets it claims to
    connect (``path.connects``). Returns a :class:`Certificate` with one verdict per segment."""
    loss = get_loss(loss)
    cache: dict[int, _Params] = {}

    def params(net: _nets.Net) -> _Params:
        if id(net) not in cache:
            cache[id(net)] = _params(net)
        return cache[id(net)]

    verdicts = []
    for k, seg in enumerate(path.segments):
        status, reason, fault = certify_segment(params(seg.start), params(seg.end), seg.claim, loss)
        verdicts.append(SegmentVerdict(k, seg.label, seg.claim, status, reason, fault))
    junctions = []
    for k in range(1, path.n_segments):
        a, b = path.segments[k - 1].end, path.segments[k].start
        if a is b:
            continue
        bad = _first_mismatch(params(a), params(b))
        if bad is not None:
            junctions.append(f"segments {k - 1} and {k} do not meet: {bad.name} is {bad.start!r} at the end of "
                             f"{path.segments[k - 1].label!r} but {bad.end!r} at the start of "
                             f"{path.segments[k].label!r}")
    endpoints = []
    connects = getattr(path, "connects", None)
    if connects is not None:
        for which, net, claimed in (("start", path.start, connects[0]), ("end", path.end, connects[1])):
            if net.arch != claimed.arch:
                endpoints.append(f"the path's {which} has architecture {net.arch}, the claimed net {claimed.arch}")
                continue
            bad = _first_mismatch(params(net), params(claimed))
            if bad is not None:
                endpoints.append(f"the path does not {which} at the net it claims to connect: {bad.name} is "
                                 f"{bad.start!r} on the path but {bad.end!r} in the claimed {which} net")
    return Certificate(tuple(verdicts), tuple(junctions), loss.name, tuple(endpoints), connects is not None)
