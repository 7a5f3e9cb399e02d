"""Piecewise-linear paths in weight space: :class:`Segment`, :class:`Path`, batched evaluation.

A path is a list of straight segments, each with its two end nets, a *claim kind* (what
``proofs_check.certify`` verifies exactly from the end points, docs/THEORY.md §5) and a label naming
the paper's step. The whole path at every ``t`` is evaluated by ONE call of
:func:`stability.core.evaluate.evaluate` with the module-level point function :func:`path_point`
over the stacked way points (no Python loop over ``t``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Iterable, Literal, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stability.core import nets as _nets
from stability.core.evaluate import (Algebra, EvalResult, Precision, choose_sizes, describes, evaluate,
                                     evaluate_combination)
from stability.core.losses import Loss, cross_entropy
from stability.core.polycurve import Combination

if TYPE_CHECKING:
    from stability.core.polycurve import PolyCurve

__all__ = ["ClaimKind", "CLAIM_KINDS", "FUNCTION_PRESERVING", "Segment", "Path", "Part", "PathEval", "path_point", "nets_equal", "DropoutDraw",
           "Lemma1Info", "Lemma4Info", "Theorem1Info", "Theorem2Info", "Theorem3Info"]

ClaimKind = Literal["top_layer", "function_preserving", "copy_shift", "dropout_interpolation", "free"]
CLAIM_KINDS: tuple[str, ...] = ("top_layer", "function_preserving", "copy_shift", "dropout_interpolation", "free")
FUNCTION_PRESERVING: tuple[str, ...] = ("function_preserving", "copy_shift")
"""Claim kinds that, once proved, mean ``f`` is the same function at every point of the segment."""
"""``top_layer`` (type (a): only ``A_d``, ``b_d`` move; loss ≤ max of the ends for a convex loss),
``function_preserving`` (type (b): f unchanged for every input at every t), ``copy_shift``
(Lemma 4 S2/S4: a column moves between two units computing the same feature; f unchanged),
``dropout_interpolation`` (Lemma 3: θ → Algorithm 1 output; probabilistic, numerical only),
``free`` (no claim)."""


def nets_equal(a: _nets.Net, b: _nets.Net) -> bool:
    """Bitwise (exact) equality of two nets of one architecture."""
    if a is b:
        return True
    if a.arch != b.arch:
        return False
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(u), np.asarray(v)) for u, v in zip(la, lb))


@dataclasses.dataclass(frozen=True, eq=False)
class Segment:
    """One straight segment ``(1−t)·start + t·end`` with its claim kind and paper step."""

    start: _nets.Net
    end: _nets.Net
    claim: str
    label: str

    def __post_init__(self) -> None:
        if self.claim not in CLAIM_KINDS:
            raise ValueError(f"unknown claim kind {self.claim!r}; known: {', '.join(CLAIM_KINDS)}")
        _nets.check_same_arch(self.start, self.end, f"the end points of segment {self.label!r}")

    def at(self, t: float) -> _nets.Net:
        dtype = jax.tree_util.tree_leaves(self.start)[0].dtype
        return _nets.lerp(self.start, self.end, jnp.asarray(t, dtype))

    def reversed(self) -> "Segment":
        label = self.label[:-len(" (reversed)")] if self.label.endswith(" (reversed)") else self.label + " (reversed)"
        return Segment(self.end, self.start, self.claim, label)

    def relabel(self, prefix: str) -> "Segment":
        return Segment(self.start, self.end, self.claim, f"{prefix}{self.label}")


def _chain_coef(n_way: int, s: np.ndarray) -> np.ndarray:
    """``(len(s), n_way)``: point ``s`` of :func:`path_point` as ``(1 − u)·w_k + u·w_{k+1}``."""
    n = n_way - 1
    k = np.clip(np.floor(s), 0, n - 1).astype(np.int64)
    u = s - k
    coef = np.zeros((s.size, n_way))
    rows = np.arange(s.size)
    coef[rows, k] = 1.0 - u
    coef[rows, k + 1] += u
    return coef


def _path_combination(waypoints: _nets.Net, s: np.ndarray) -> Combination:
    n_way = int(jax.tree_util.tree_leaves(waypoints)[0].shape[0])
    return Combination(waypoints, _chain_coef(n_way, s))


@describes(_path_combination)
def path_point(waypoints: _nets.Net, s: Array) -> _nets.Net:
    """Point function of a path: ``waypoints`` is a stacked net with ``n+1`` way points; ``s ∈ [0, n]``
    is segment ``⌊s⌋`` at local time ``s − ⌊s⌋`` (the last segment ends at ``s = n``)."""
    n = jax.tree_util.tree_leaves(waypoints)[0].shape[0] - 1
    k = jnp.clip(jnp.floor(s), 0, n - 1).astype(jnp.int32)
    frac = (s - k).astype(s.dtype)
    a = jax.tree_util.tree_map(lambda w: w[k], waypoints)
    b = jax.tree_util.tree_map(lambda w: w[k + 1], waypoints)
    return _nets.lerp(a, b, frac)


Array = jax.Array


@dataclasses.dataclass(frozen=True)
class PathEval:
    """Loss and accuracy on a grid of local times ``t`` (shape ``(m,)``) on every segment: ``(n, m)``."""

    t: np.ndarray
    loss: np.ndarray
    acc: np.ndarray
    claims: tuple[str, ...]
    labels: tuple[str, ...]
    once: tuple[int, ...] = ()
    """Segments evaluated once: their function-preserving claim was PROVED (passed in as ``proved``), so the loss
    at their start stands for every point (``Path.evaluate(..., every_point=True)`` evaluates them anyway)."""

    @property
    def n_segments(self) -> int:
        return self.loss.shape[0]

    def global_t(self) -> np.ndarray:
        """Times on ``[0, 1]`` for the whole path (segment ``k`` covers ``[k/n, (k+1)/n]``)."""
        n = self.n_segments
        return (np.arange(n)[:, None] + self.t[None, :]) / n

    def flat(self) -> EvalResult:
        """One :class:`EvalResult` over global ``t`` (boundary points appear twice)."""
        return EvalResult(self.global_t().reshape(-1), self.loss.reshape(-1), self.acc.reshape(-1))

    def segment_max(self) -> np.ndarray:
        return self.loss.max(axis=1)

    @property
    def max_loss(self) -> float:
        return float(self.loss.max())

    @property
    def min_acc(self) -> float:
        return float(np.nanmin(self.acc)) if np.isfinite(self.acc).any() else float("nan")

    def worst(self) -> tuple[int, float, float]:
        """``(segment, local t, global t)`` of the largest loss."""
        k, j = np.unravel_index(int(np.argmax(self.loss)), self.loss.shape)
        return int(k), float(self.t[j]), float((k + self.t[j]) / self.n_segments)

    def to_dict(self) -> dict[str, Any]:
        return {"t": self.t.tolist(), "loss": self.loss.tolist(), "acc": self.acc.tolist(),
                "claims": list(self.claims), "labels": list(self.labels), "evaluated_once": list(self.once)}


CPU_CHUNK_BYTES = 16 * 2**20
"""On CPU, points per evaluation chunk are chosen so that chunk × batch activations stay near this
size (cache-friendly) in the structure-blind evaluation (``algebra="off"``): on the 2-core benchmark machine
this is about 2× faster than chunks sized by the memory budget alone (``benchmarks/bench_paths.py``). The
structure-aware evaluation sizes its own batches and chunks (``stability.core.evaluate.CPU_POINT_BYTES``)."""


def _cpu_chunk(net: _nets.Net, x, n_points: int, batch_size: int | None) -> int:
    x = jnp.asarray(x)
    batch, chunk = choose_sizes(net, _nets.apply, x, n_points, batch_size=batch_size)
    shapes = jax.eval_shape(lambda p, xx: _nets.forward(p, xx), net, x[:1])
    act = sum(int(np.prod(sh.shape[1:])) for sh in shapes) * np.dtype(jax.tree_util.tree_leaves(net)[0].dtype).itemsize
    target = max(1, CPU_CHUNK_BYTES // max(1, batch * act))
    return int(max(1, min(chunk, 2 ** int(np.log2(target)))))


class Part(NamedTuple):
    """A named run of segments ``start … stop−1`` of a path (e.g. Theorem 1's "Lemma 2" part)."""

    name: str
    start: int
    stop: int


@dataclasses.dataclass(frozen=True)
class DropoutDraw:
    """The Algorithm 1 draw behind a Lemma 3 segment: the dropout probability, how many draws the builder took
    (it redraws until enough columns are dropped), the dropped column count and multipliers per hidden layer,
    the kept sets, ``p·h_min`` and the column condition ``max_j ‖[A_i]_j‖/(√p‖A_i‖_F)`` for layers 2..d."""

    p: float
    draws: int
    dropped: tuple[int, ...]
    deltas: tuple[np.ndarray, ...]
    kept: dict[str, Any]
    p_times_hmin: float
    column_condition: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["deltas"] = [np.asarray(v).tolist() for v in self.deltas]
        return d


@dataclasses.dataclass(frozen=True)
class Lemma1Info:
    """Lemma 1's record: the kept sets, the way-point index of every ``θ_k`` and whether the path is compact."""

    kept: dict[str, Any]
    theta_k: dict[int, int]
    compact: bool


@dataclasses.dataclass(frozen=True)
class Lemma4Info:
    """Lemma 4's record: the target slot of every nonzero unit, per hidden layer."""

    targets: dict[int, list[int]]


@dataclasses.dataclass(frozen=True)
class Theorem1Info:
    compact: bool
    kept_a: dict[str, Any]
    kept_b: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Theorem2Info:
    p: float
    draw_a: DropoutDraw
    draw_b: DropoutDraw


@dataclasses.dataclass(frozen=True)
class Theorem3Info:
    """Theorem 3's record: ``p``, the narrow widths ``h*_i``, where θ*'s units were placed and the index of the
    way point that IS the placed narrow net."""

    p: float
    narrow_widths: tuple[int, ...]
    narrow_positions: tuple[tuple[int, ...], ...]
    narrow_waypoint: int
    draw_a: DropoutDraw
    draw_b: DropoutDraw


class Path:
    """A piecewise-linear path: a tuple of :class:`Segment` whose ends meet exactly.

    ``at(t)`` uses one time unit per segment: segment ``k`` covers ``t ∈ [k/n, (k+1)/n]``. ``name`` and
    ``parts`` (named runs of segments) describe it; ``info`` is its builder's typed record
    (:class:`Lemma1Info`, :class:`DropoutDraw`, :class:`Theorem3Info`, …); ``connects`` the two nets it claims to
    connect.
    """

    def __init__(self, segments: Iterable[Segment], *, name: str = "path", parts: Sequence[Part] | None = None,
                 info: Any = None, check: bool = True, connects: tuple[_nets.Net, _nets.Net] | None = None) -> None:
        self.segments: tuple[Segment, ...] = tuple(segments)
        if not self.segments:
            raise ValueError("a path needs at least one segment")
        self.name = name
        self.parts: tuple[Part, ...] = (tuple(Part(*q) for q in parts) if parts is not None
                                        else (Part(name, 0, len(self.segments)),))
        self.info = info
        if connects is not None:
            if len(connects) != 2:
                raise ValueError(f"connects must be the pair (start net, end net), got {len(connects)} items")
            for net in connects:
                _nets.check_same_arch(self.segments[0].start, net, "the path and the nets it claims to connect")
        self.connects: tuple[_nets.Net, _nets.Net] | None = None if connects is None else tuple(connects)
        """The two nets the builder claims this path connects (``None``: not stated); ``certify`` checks that the
        first segment starts and the last ends bitwise at them."""
        if check:
            for k in range(1, len(self.segments)):
                a, b = self.segments[k - 1], self.segments[k]
                if not nets_equal(a.end, b.start):
                    raise ValueError(f"path is discontinuous: segment {k - 1} ({a.label!r}) ends where segment {k} "
                                     f"({b.label!r}) does not start")
        self._stacked: _nets.Net | None = None

    # ---- structure
    def __len__(self) -> int:
        return len(self.segments)

    @property
    def n_segments(self) -> int:
        return len(self.segments)

    @property
    def start(self) -> _nets.Net:
        return self.segments[0].start

    @property
    def end(self) -> _nets.Net:
        return self.segments[-1].end

    @property
    def claims(self) -> tuple[str, ...]:
        return tuple(s.claim for s in self.segments)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(s.label for s in self.segments)

    def waypoints(self) -> list[_nets.Net]:
        """``[start, end of segment 0, end of segment 1, …]`` (``n+1`` nets)."""
        return [self.segments[0].start] + [s.end for s in self.segments]

    def boundaries(self) -> np.ndarray:
        """Global times of the ``n+1`` way points."""
        return np.arange(self.n_segments + 1) / self.n_segments

    def stacked(self) -> _nets.Net:
        """The way points stacked along a leading axis (cached), the ``theta`` of :func:`path_point`."""
        if self._stacked is None:
            self._stacked = _nets.stack(self.waypoints())
        return self._stacked

    def poly(self) -> "PolyCurve":
        """The path's algebra (:class:`stability.core.polycurve.PolyCurve`): the chain through its way points,
        segment ``k`` on ``[k/n, (k+1)/n]``."""
        from stability.core.polycurve import PolyCurve

        return PolyCurve.chain(jax.tree_util.tree_map(np.asarray, self.stacked()))

    def locate(self, t: float) -> tuple[int, float]:
        """Global ``t ∈ [0, 1]`` → ``(segment index, local time)``."""
        if not 0.0 <= float(t) <= 1.0:
            raise ValueError(f"t must lie in [0, 1], got {t}")
        s = float(t) * self.n_segments
        k = min(int(np.floor(s)), self.n_segments - 1)
        return k, s - k

    def at(self, t: float) -> _nets.Net:
        """The net at global time ``t`` (exactly the way point at ``t = k/n``)."""
        k, u = self.locate(t)
        return self.segments[k].at(u)

    # ---- algebra
    def concat(self, *others: "Path") -> "Path":
        """This path followed by ``others`` (their ends must meet exactly); each keeps its parts."""
        segs = list(self.segments)
        parts = list(self.parts)
        for o in others:
            n0 = len(segs)
            segs += list(o.segments)
            parts += [Part(q.name, q.start + n0, q.stop + n0) for q in o.parts]
        stated = self.connects is not None and all(o.connects is not None for o in others)
        return Path(segs, name=" + ".join([self.name] + [o.name for o in others]), parts=parts,
                    connects=(self.connects[0], others[-1].connects[1]) if stated and others else self.connects)

    def __add__(self, other: "Path") -> "Path":
        return self.concat(other)

    def _like(self, segments: Sequence[Segment], *, check: bool, **changes: Any) -> "Path":
        kw = {"name": self.name, "parts": self.parts, "info": self.info, "connects": self.connects, **changes}
        return Path(segments, check=check, **kw)

    def reversed(self) -> "Path":
        """The same path walked backwards (every claim kind is symmetric in its end points)."""
        n = self.n_segments
        name = self.name[:-len(" (reversed)")] if self.name.endswith(" (reversed)") else self.name + " (reversed)"
        return self._like([s.reversed() for s in reversed(self.segments)], check=False, name=name,
                          parts=[Part(q.name, n - q.stop, n - q.start) for q in reversed(self.parts)],
                          connects=None if self.connects is None else (self.connects[1], self.connects[0]))

    def relabel(self, prefix: str) -> "Path":
        return self._like([s.relabel(prefix) for s in self.segments], check=False)

    def replace_segment(self, k: int, segment: Segment, *, check: bool = True) -> "Path":
        """A copy with segment ``k`` replaced (``check=False`` allows a break, e.g. to test certificates); the
        nets the path claims to connect stay the same."""
        segs = list(self.segments)
        segs[k] = segment
        return self._like(segs, check=check)

    def part(self, name_prefix: str) -> Part:
        """The first part whose name starts with ``name_prefix``."""
        for q in self.parts:
            if q.name.startswith(name_prefix):
                return q
        raise ValueError(f"the path has no part named {name_prefix!r}: {[q.name for q in self.parts]}")

    @staticmethod
    def straight(a: _nets.Net, b: _nets.Net, label: str = "straight line") -> "Path":
        """The one-segment straight line (claim ``free``: its loss can only be measured)."""
        return Path([Segment(a, b, "free", label)], name=label, connects=(a, b))

    def summary(self) -> str:
        rows = [f"{k:>3}  {s.claim:<22} {s.label}" for k, s in enumerate(self.segments)]
        return f"Path with {self.n_segments} segments\n" + "\n".join(rows)

    def __repr__(self) -> str:
        kinds = {c: self.claims.count(c) for c in CLAIM_KINDS if c in self.claims}
        return f"Path({self.n_segments} segments, {kinds})"

    # ---- evaluation
    def evaluate(self, x, y, points_per_segment: int = 61, *, loss: Loss | str = cross_entropy,
                 proved: Iterable[int] = (), every_point: bool = False, algebra: Algebra = "auto",
                 precision: Precision = "fp32", **kw) -> PathEval:
        """Loss and accuracy at ``points_per_segment`` equally spaced local times on every segment.

        Structure-aware (``algebra="auto"``): the path is the chain combination of its stacked way points, and
        :func:`stability.core.evaluate.evaluate_combination` evaluates the layers every segment keeps fixed once per
        batch, its first changing layer once per end point and only the layers above per point (a top-layer segment
        costs one product of the top layer per point). ``proved``: indices of segments whose claim the caller PROVED
        (``proofs_check.certify``); a proved ``function_preserving`` / ``copy_shift`` segment computes the same
        function at every ``t``, so its start is evaluated once for all its points unless ``every_point``.
        ``algebra="off"``: every point as a whole net in ONE vmapped :func:`stability.core.evaluate.evaluate` call."""
        m = int(points_per_segment)
        if m < 2:
            raise ValueError(f"points_per_segment must be ≥ 2, got {points_per_segment}")
        n = self.n_segments
        proved = tuple(int(k) for k in proved)
        bad = [k for k in proved if not 0 <= k < n]
        if bad:
            raise ValueError(f"proved segment indices must lie in 0..{n - 1}, got {bad}")
        if algebra not in ("auto", "off", "require"):
            raise ValueError(f"algebra must be 'auto', 'off' or 'require', got {algebra!r}")
        t = np.linspace(0.0, 1.0, m)
        s = (np.arange(n)[:, None] + t[None, :]).reshape(-1)
        once: tuple[int, ...] = ()
        if algebra == "off":
            if kw.get("chunk") is None and jax.default_backend() == "cpu":
                kw["chunk"] = _cpu_chunk(self.start, x, s.size, kw.get("batch_size"))
            res = evaluate(path_point, self.stacked(), s, x, y, loss=loss, algebra="off", precision=precision, **kw)
        else:
            coef = _chain_coef(n + 1, s)
            if not every_point:
                once = tuple(sorted(k for k in set(proved) if self.segments[k].claim in FUNCTION_PRESERVING))
                for k in once:                       # f(θ(t)) = f(θ(0)) for every t: proved, so evaluate θ(0)
                    coef[k * m:(k + 1) * m] = 0.0
                    coef[k * m:(k + 1) * m, k] = 1.0
            res = evaluate_combination(Combination(self.stacked(), coef), x, y, ts=s, loss=loss, precision=precision,
                                       **kw)
        return PathEval(t, res.loss.reshape(n, m), res.acc.reshape(n, m), self.claims, self.labels, once)
