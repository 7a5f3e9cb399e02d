"""Permutation alignment of two ReLU nets, and the Lemma 4 path from a net to its aligned copy.

Permuting the hidden units of a net (a unit's row and column together, :func:`stability.core.units.permute_units`)
never changes the function it computes. Aligning θ_B to θ_A means choosing one permutation per hidden layer
so that the permuted θ_B is "close" to θ_A; the straight line between θ_A and the aligned θ_B then often
has a much lower loss barrier than the line to θ_B itself. Two matchings of Ainsworth, Hayase & Srinivasa,
"Git Re-Basin: Merging Models modulo Permutation Symmetries" (ICLR 2023), Section 3:

* :func:`weight_matching` (their Algorithm 1, "weight matching"): coordinate descent over hidden layers,
  each step an exact linear assignment that maximises ``Σ_l ⟨W^A_l, P_l W^B_l P_{l−1}ᵀ⟩`` (biases included)
  over ``P_i`` with every other permutation fixed;
* :func:`activation_matching` ("activation matching"): per hidden layer, the assignment that maximises
  the correlation (or minimises the squared distance) of the two nets' hidden activations on data.

Everything goes through the hidden-unit view of :mod:`stability.core.units` (:func:`~stability.core.units.unit_spec`):
unit ``u`` of hidden layer ``i`` owns axis-0 slice ``u`` of ``layers[i-1]`` (``w`` and ``b``) and axis-1
slice ``u`` of ``A_{i+1}``, so a conv unit is a channel (its whole kernel slice) and, for the dense
layer after ``flatten``, a column is every input position of the channel. Permutations follow
``permute_units``: **new unit k is old unit perm[k]**.

:func:`permutation_path` turns a permutation into a certifiable path with Lemma 4 of Kuditipudi et al.
(2019, Appendix A): five segments, every one function-preserving, from θ_B to its permuted copy. Lemma 4
needs at least ``⌈h_i/2⌉`` zero units per hidden layer, which trained nets rarely have; ``widen=True``
embeds θ_B (exactly the same function) into a net with extra zero units and builds the path there.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Iterable, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from stability.core import nets as _nets
from stability.core.progress import Progress, get_logger
from stability.core import units as _units
from stability.core.evaluate import padded_batches
from stability.theory.paths.lemma2 import lemma4
from stability.theory.paths.path import Path, nets_equal
from stability.theory.paths.theorems import embed_narrow

_log = get_logger("align")

__all__ = [
    "AlignMethod", "ActivationObjective", "WeightInit", "FunctionCheck", "AlignResult", "check_perms", "apply_perms",
    "weight_objective", "weight_matching", "activation_matching", "permutation_path",
]

AlignMethod = Literal["weight_matching", "activation_matching"]
ActivationObjective = Literal["correlation", "distance"]
ACTIVATION_OBJECTIVES: tuple[str, ...] = ("correlation", "distance")
WeightInit = Literal["identity", "forward"]
WEIGHT_INITS: tuple[str, ...] = ("identity", "forward")

Perms = Sequence[Sequence[int] | np.ndarray]


# --------------------------------------------------------------------------- validation


def _one_line(s: str) -> str:
    return " ".join(str(s).split())


def _check_pair(net_a: _nets.Net, net_b: _nets.Net) -> None:
    if not isinstance(net_a, _nets.Net) or not isinstance(net_b, _nets.Net):
        raise ValueError(f"net_a and net_b must be stability.core.nets.Net, got {type(net_a).__name__} and "
                         f"{type(net_b).__name__}")
    if net_a.arch != net_b.arch:
        raise ValueError(_one_line(f"net_b's architecture {net_b.arch} differs from net_a's {net_a.arch}; "
                                   "alignment needs two nets of one architecture"))
    da, db = _dtype(net_a), _dtype(net_b)
    if da != db:
        raise ValueError(f"net_a has dtype {da} but net_b {db}; alignment needs one dtype")
    if net_a.depth < 2:
        raise ValueError(f"alignment needs nets with at least one hidden layer, got depth {net_a.depth}")


def _dtype(net: _nets.Net) -> np.dtype:
    return np.dtype(jax.tree_util.tree_leaves(net)[0].dtype)


def check_perms(net: _nets.Net, perms: Perms, what: str = "perms") -> tuple[np.ndarray, ...]:
    """Validate one permutation per hidden layer of ``net`` (``permute_units`` convention) and return them
    as int64 arrays; a one-line ``ValueError`` names the first bad entry (wrong count, length, non-integer
    dtype, duplicates or out-of-range values)."""
    hs = _nets.widths(net)
    if isinstance(perms, (str, bytes)) or not isinstance(perms, Iterable):
        raise ValueError(f"{what} must be a sequence of {len(hs)} permutations (one per hidden layer), "
                         f"got {type(perms).__name__}")
    perms = list(perms)
    if len(perms) != len(hs):
        raise ValueError(f"{what} must hold one permutation per hidden layer ({len(hs)}), got {len(perms)}")
    out = []
    for i, (p, h) in enumerate(zip(perms, hs), start=1):
        try:
            a = np.asarray(p)
        except ValueError:
            raise ValueError(f"{what}[{i - 1}] (hidden layer {i}) is not an array of integers") from None
        if a.ndim != 1 or a.size != h:
            raise ValueError(f"{what}[{i - 1}] (hidden layer {i}) must be a 1-D permutation of range({h}), "
                             f"got shape {a.shape}")
        if a.dtype.kind not in "iu":
            raise ValueError(f"{what}[{i - 1}] (hidden layer {i}) must hold integers, got dtype {a.dtype}")
        a = a.astype(np.int64)
        if a.size and (a.min() < 0 or a.max() >= h or np.unique(a).size != h):
            raise ValueError(_one_line(f"{what}[{i - 1}] (hidden layer {i}) must be a permutation of range({h}) "
                                       f"(distinct values in 0..{h - 1}), got {a.tolist()}"))
        out.append(a)
    return tuple(out)


def apply_perms(net: _nets.Net, perms: Perms) -> _nets.Net:
    """``net`` with hidden layer ``i`` permuted by ``perms[i-1]`` (new unit k = old unit perms[i-1][k]).
    A pure re-indexing: the same function, every weight moved bit for bit."""
    for i, p in enumerate(check_perms(net, perms), start=1):
        net = _units.permute_units(net, i, p)
    return net


def _check_x(net: _nets.Net, x: Any, what: str = "x", min_n: int = 1) -> np.ndarray:
    a = np.asarray(x)
    want = net.arch.in_shape
    if a.ndim != len(want) + 1 or tuple(a.shape[1:]) != tuple(want):
        raise ValueError(f"{what} must have shape (N, {', '.join(map(str, want))}) for this net, got {a.shape}")
    if a.shape[0] < min_n:
        raise ValueError(f"{what} must hold at least {min_n} samples, got {a.shape[0]}")
    if not np.issubdtype(a.dtype, np.number) or not np.all(np.isfinite(a)):
        raise ValueError(f"{what} must be finite numbers")
    return a


def _check_int(v: Any, name: str, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ValueError(f"{name} must be an integer ≥ {lo}, got {v!r}")
    return int(v)


# --------------------------------------------------------------------------- unit-view matrices (NumPy, float64)


class _Params:
    """Float64 NumPy copies of a net's parameters, addressed ``(layer, param)``."""

    def __init__(self, net: _nets.Net) -> None:
        self.arch = net.arch
        e = _units.EditNet.of(net, copy=False)
        self.p: dict[tuple[int, str], np.ndarray] = {(l, "w"): w.astype(np.float64) for l, w in enumerate(e.w)}
        self.p.update({(l, "b"): b.astype(np.float64) for l, b in enumerate(e.b) if b is not None})

    def unit_matrix(self, i: int) -> list[np.ndarray]:
        """Hidden layer ``i``'s units as ``(h_i, ·)`` matrices: one per row/column parameter of its unit spec."""
        spec = _units.unit_spec(self.arch)[i]
        out = []
        for l, k, ax in spec.rows + spec.cols:
            a = np.moveaxis(self.p[(l, k)], ax, 0)
            out.append(a.reshape(a.shape[0], -1))
        return out

    def permute(self, i: int, perm: np.ndarray) -> None:
        spec = _units.unit_spec(self.arch)[i]
        for l, k, ax in spec.rows + spec.cols:
            self.p[(l, k)] = np.take(self.p[(l, k)], perm, axis=ax)


def weight_objective(net_a: _nets.Net, net_b: _nets.Net) -> float:
    """``⟨θ_A, θ_B⟩`` summed over every weight and bias, in float64: the weight-matching objective of the
    identity alignment (Ainsworth et al. 2023, eq. 1); ``‖θ_A − θ_B‖² = ‖θ_A‖² + ‖θ_B‖² − 2⟨θ_A, θ_B⟩``."""
    _check_pair(net_a, net_b)
    a, b = _Params(net_a), _Params(net_b)
    return _inner(a, b)


def _inner(a: _Params, b: _Params) -> float:
    return float(sum(np.vdot(a.p[k], b.p[k]) for k in sorted(a.p)))


def _per_weight_layer(a: _Params, b: _Params) -> tuple[float, ...]:
    return tuple(float(sum(np.vdot(a.p[k], b.p[k]) for k in sorted(a.p) if k[0] == l)) for l in range(a.arch.depth))


def _distance(a: _Params, b: _Params) -> float:
    return float(math.sqrt(sum(float(np.sum((a.p[k] - b.p[k]) ** 2)) for k in sorted(a.p))))


# --------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class FunctionCheck:
    """Measured ``max |f_aligned(x) − f_B(x)|`` over ``n_inputs`` inputs (``source``: ``"given"`` data or
    ``"random normal"``). Permuting hidden units is exact in real arithmetic; in floating point the
    reordered sums of the next layer may round differently, so ``bitwise`` says whether every output
    agreed to the last bit."""

    max_abs_diff: float
    output_scale: float
    n_inputs: int
    source: str
    bitwise: bool

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, eq=False)
class AlignResult:
    """Result of :func:`weight_matching` or :func:`activation_matching`.

    ``perms[i-1]``: permutation of hidden layer ``i`` (new unit k = θ_B's unit ``perms[i-1][k]``);
    ``aligned``: θ_B permuted by them (the same function, checked in ``function_check``).
    ``objective`` names what was optimised, ``sense`` its direction; ``objective_before`` is the identity
    alignment's value, ``objective_after`` the returned one. ``history`` (weight matching): the objective
    before the first sweep and after every sweep over the hidden layers. ``converged``: weight matching
    stopped because a whole sweep improved no layer (a coordinate-wise optimum, not necessarily the global
    one); ``False`` means it stopped at ``max_iter`` sweeps (unconverged: flagged). ``None`` for activation
    matching, which solves each layer's assignment exactly in one step. ``distance_before`` /
    ``distance_after``: ``‖θ_A − θ_B‖₂`` and ``‖θ_A − aligned‖₂`` over all parameters (float64).
    ``per_layer_before`` / ``per_layer_after``: the objective's terms — per weight layer ``l = 0..d−1``
    (weight matching) or per hidden layer ``1..d−1`` (activation matching).
    """

    method: AlignMethod
    perms: tuple[np.ndarray, ...]
    aligned: _nets.Net
    objective: str
    sense: Literal["max", "min"]
    objective_before: float
    objective_after: float
    history: tuple[float, ...]
    converged: bool | None
    iterations: int
    distance_before: float
    distance_after: float
    per_layer_before: tuple[float, ...]
    per_layer_after: tuple[float, ...]
    function_check: FunctionCheck
    seconds: float
    settings: dict[str, Any]

    @property
    def changed_units(self) -> tuple[int, ...]:
        """Units per hidden layer that moved (``perm[k] ≠ k``)."""
        return tuple(int(np.sum(p != np.arange(p.size))) for p in self.perms)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "perms": [p.tolist() for p in self.perms], "objective": self.objective,
            "sense": self.sense, "objective_before": self.objective_before, "objective_after": self.objective_after,
            "history": list(self.history), "converged": self.converged, "iterations": self.iterations,
            "distance_before": self.distance_before, "distance_after": self.distance_after,
            "per_layer_before": list(self.per_layer_before), "per_layer_after": list(self.per_layer_after),
            "changed_units": list(self.changed_units), "function_check": self.function_check.to_dict(),
            "seconds": self.seconds, "settings": dict(self.settings),
        }


_apply = jax.jit(_nets.apply)


def _function_check(net_b: _nets.Net, aligned: _nets.Net, x: np.ndarray | None, seed: int,
                    max_inputs: int = 256) -> FunctionCheck:
    """Measure ``max |f_aligned − f_B|`` (one jitted forward per net); a gap far beyond rounding is a bug."""
    dtype = _dtype(net_b)
    if x is None:
        x = np.random.default_rng(seed).normal(size=(16, *net_b.arch.in_shape))
        source = "random normal"
    else:
        source = "given"
    x = jnp.asarray(np.asarray(x)[:max_inputs], dtype)
    fb, fa = np.asarray(_apply(net_b, x)), np.asarray(_apply(aligned, x))
    diff = float(np.max(np.abs(fa - fb), initial=0.0))
    scale = float(np.max(np.abs(fb), initial=0.0))
    if not diff <= math.sqrt(np.finfo(dtype).eps) * (1.0 + scale):
        raise AssertionError(f"the aligned net changes the function by {diff} (output scale {scale}): "
                             "a permutation of hidden units must not (bug)")
    return FunctionCheck(diff, scale, int(x.shape[0]), source, bool(np.array_equal(fa, fb)))


# --------------------------------------------------------------------------- weight matching


def weight_matching(net_a: _nets.Net, net_b: _nets.Net, *, seed: int = 0, max_iter: int = 100,
                    init: WeightInit | Perms = "identity", rtol: float = 1e-10, x: Any = None,
                    progress: bool = False) -> AlignResult:
    """Weight matching (Ainsworth et al. 2023, Section 3.2 and Algorithm 1): permutations ``P_i`` of θ_B's
    hidden layers maximising ``Σ_l ⟨W^A_l, P_l W^B_l P_{l−1}ᵀ⟩ + ⟨b^A_l, P_l b^B_l⟩`` (``P_0 = P_d = I``),
    i.e. minimising ``‖θ_A − π(θ_B)‖₂``.

    Coordinate descent: each sweep visits the hidden layers in an order drawn from
    ``numpy.random.default_rng(seed)`` (deterministic for a seed); at layer ``i`` the objective is linear
    in ``P_i`` with the others fixed, and ``scipy.optimize.linear_sum_assignment`` maximises it exactly over
    the unit-view inner products ``C[j, k] = ⟨row^A_j, row^B_k⟩ + ⟨col^A_j, col^B_k⟩`` (conv: whole kernel
    slices; after ``flatten``: every position of a channel). A layer's permutation changes only when its
    objective rises by more than ``rtol`` times the sum of the magnitudes involved, so the recorded history
    never decreases. Stops after a sweep that improves no layer (``converged=True``, a coordinate-wise
    optimum) or after ``max_iter`` sweeps (``converged=False``).

    ``init``: where the descent starts. ``"identity"`` (Ainsworth et al.'s choice); ``"forward"``: layer by
    layer from the input, the assignment maximising the row term alone ``Σ_j ⟨row^A_j, row^B_{P(j)}⟩`` given
    the layers below (the input and output are never permuted, so the rows of layer 1 are directly
    comparable) — when θ_B is an exact permutation of θ_A whose rows are pairwise distinct in every layer,
    this start IS that permutation (proved in exact arithmetic, by induction over the layers:
    ``Σ_j ⟨r_j, r_{τ(j)}⟩ = Σ_j ‖r_j‖² − ½ Σ_j ‖r_j − r_{τ(j)}‖²`` is largest only at ``τ = id``; in floating
    point, barring gaps below rounding), and the descent cannot leave that global optimum; from
    ``"identity"`` the descent can stop at a coordinate-wise optimum that is not global (an instance is in
    ``tests/test_align.py``); or explicit permutations. ``x``: inputs for the function check (default 16 standard-normal inputs drawn from ``seed``).
    ``progress``: one line per sweep on stderr.
    """
    _check_pair(net_a, net_b)
    seed = _check_int(seed, "seed", 0)
    max_iter = _check_int(max_iter, "max_iter", 1)
    if not (isinstance(rtol, (int, float)) and 0.0 <= float(rtol) < 1.0):
        raise ValueError(f"rtol must be a float in [0, 1), got {rtol!r}")
    if isinstance(init, str):
        if init not in WEIGHT_INITS:
            raise ValueError(f"init must be one of {WEIGHT_INITS} or one permutation per hidden layer, got {init!r}")
        start = None
    else:
        start = check_perms(net_b, init, "init")
    x = None if x is None else _check_x(net_b, x)
    t0 = time.perf_counter()
    d = net_a.depth
    hs = _nets.widths(net_b)
    A, B = _Params(net_a), _Params(net_b)
    perms = [np.arange(h) for h in hs] if start is None else [p.copy() for p in start]
    if start is not None:
        for i, p in enumerate(perms, start=1):
            B.permute(i, p)
    elif init == "forward":
        for i in range(1, d):
            k = len(_units.unit_spec(net_b.arch)[i].rows)
            C = sum(a @ b.T for a, b in zip(A.unit_matrix(i)[:k], B.unit_matrix(i)[:k]))
            _, sigma = linear_sum_assignment(C, maximize=True)
            B.permute(i, sigma)
            perms[i - 1] = perms[i - 1][sigma]
    Bid = _Params(net_b)
    obj_id, dist_before = _inner(A, Bid), _distance(A, Bid)
    rng = np.random.default_rng(seed)
    history = [_inner(A, B)]
    converged, it = False, 0
    units_a = {i: A.unit_matrix(i) for i in range(1, d)}
    while it < max_iter:
        it += 1
        improved = 0
        for i in rng.permutation(np.arange(1, d)):
            i = int(i)
            C = sum(a @ b.T for a, b in zip(units_a[i], B.unit_matrix(i)))
            _, sigma = linear_sum_assignment(C, maximize=True)
            diag = np.arange(C.shape[0])
            old, new = float(C[diag, diag].sum()), float(C[diag, sigma].sum())
            scale = float(np.abs(C[diag, diag]).sum() + np.abs(C[diag, sigma]).sum())
            if np.array_equal(sigma, diag) or not new > old + rtol * scale:
                continue
            B.permute(i, sigma)
            perms[i - 1] = perms[i - 1][sigma]  # B's unit j is now θ_B's unit perms[σ[j]]
            improved += 1
        history.append(_inner(A, B))
        if progress:
            _log.info(f"weight matching: sweep {it}, objective {history[-1]:.6g}, {improved} layer(s) improved")
        if improved == 0:
            converged = True
            break
    perms_t = tuple(np.asarray(p, np.int64) for p in perms)
    aligned = apply_perms(net_b, perms_t)
    fc = _function_check(net_b, aligned, x, seed)
    per_before, per_after = _per_weight_layer(A, Bid), _per_weight_layer(A, B)
    return AlignResult(
        method="weight_matching", perms=perms_t, aligned=aligned,
        objective="⟨θ_A, π(θ_B)⟩ (sum over all weights and biases)", sense="max",
        objective_before=obj_id, objective_after=history[-1], history=tuple(history), converged=converged,
        iterations=it, distance_before=dist_before, distance_after=_distance(A, B),
        per_layer_before=per_before, per_layer_after=per_after, function_check=fc,
        seconds=time.perf_counter() - t0,
        settings={"seed": seed, "max_iter": max_iter, "rtol": float(rtol),
                  "init": "explicit" if start is not None else init,
                  "per_layer": "⟨W^A_l, W^B_l⟩ + ⟨b^A_l, b^B_l⟩ of each weight layer l = 0..d-1"},
    )


# --------------------------------------------------------------------------- activation matching


def _hidden_acts(net: _nets.Net, x: jax.Array) -> list[jax.Array]:
    """``φ(x^i)`` of every hidden layer (before pooling) as ``(samples·positions, h_i)``."""
    pre = _nets.forward(net, x)
    return [jax.nn.relu(p).reshape(-1, p.shape[-1]) for p in pre[:-1]]


def _act_stats_impl(net_a: _nets.Net, net_b: _nets.Net, x: jax.Array, mask: jax.Array):
    """Per hidden layer: ``(Σ a bᵀ, Σ a, Σ b, Σ a², Σ b²)`` over the (unmasked) samples and positions."""
    out = []
    for a, b in zip(_hidden_acts(net_a, x), _hidden_acts(net_b, x)):
        m = jnp.repeat(mask, a.shape[0] // mask.shape[0])[:, None]
        am, bm = a * m, b * m
        out.append((am.T @ b, am.sum(0), bm.sum(0), (am * a).sum(0), (bm * b).sum(0)))
    return out


_act_stats = jax.jit(_act_stats_impl)


def activation_matching(net_a: _nets.Net, net_b: _nets.Net, x: Any, *,
                        objective: ActivationObjective = "correlation", batch_size: int = 256,
                        progress: bool = False) -> AlignResult:
    """Activation matching (Ainsworth et al. 2023, Section 3.1): for every hidden layer ``i`` independently,
    the permutation of θ_B's units that maximises ``Σ_j corr(a^A_j, a^B_{π(j)})`` (``"correlation"``,
    Pearson correlation) or minimises ``Σ_j ‖a^A_j − a^B_{π(j)}‖²`` (``"distance"``), where ``a_j`` is unit
    ``j``'s post-ReLU activation over the samples of ``x`` (conv: over samples and positions, a unit being a
    channel), solved exactly by ``scipy.optimize.linear_sum_assignment``. The layers decouple because a
    unit's activation does not depend on how the layers below are ordered.

    A unit with zero variance on ``x`` (e.g. dead on every sample) has correlation 0 with every unit, so
    such units are matched arbitrarily (the function is unaffected). Statistics are accumulated over
    batches of ``batch_size`` (one compiled program per architecture and batch shape) in the nets' dtype,
    then in float64. ``progress``: a line on stderr about every tenth of the batches.
    """
    _check_pair(net_a, net_b)
    if objective not in ACTIVATION_OBJECTIVES:
        raise ValueError(f"objective must be one of {ACTIVATION_OBJECTIVES}, got {objective!r}")
    batch_size = _check_int(batch_size, "batch_size", 1)
    x = _check_x(net_a, x, "x", min_n=2 if objective == "correlation" else 1)
    t0 = time.perf_counter()
    dtype = _dtype(net_a)
    n = x.shape[0]
    bs = min(batch_size, n)
    xb, _, mb = padded_batches(jnp.asarray(x, dtype), jnp.zeros((n,), jnp.int32), bs)
    mb = mb.astype(dtype)
    sums = None
    bar = Progress(n, "activation matching", unit="samples", enabled=progress)
    for k in range(xb.shape[0]):
        part = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), _act_stats(net_a, net_b, xb[k], mb[k]))
        sums = part if sums is None else jax.tree_util.tree_map(np.add, sums, part)
        bar.advance(min(bs, n - k * bs))
    hs = _nets.widths(net_b)
    positions = [int(np.prod(s.shape[1:-1])) for s in
                 jax.eval_shape(lambda p, v: _nets.forward(p, v), net_a, xb[0][:1])[:-1]]
    perms, before, after = [], [], []
    for (S, sa, sb, qa, qb), h, pos in zip(sums, hs, positions):
        m = float(n * pos)
        if objective == "correlation":
            mu_a, mu_b = sa / m, sb / m
            va, vb = np.maximum(qa / m - mu_a ** 2, 0.0), np.maximum(qb / m - mu_b ** 2, 0.0)
            va[va <= 1e-12 * np.maximum(qa / m, np.finfo(np.float64).tiny)] = 0.0
            vb[vb <= 1e-12 * np.maximum(qb / m, np.finfo(np.float64).tiny)] = 0.0
            cov = S / m - np.outer(mu_a, mu_b)
            den = np.sqrt(np.outer(va, vb))
            C = np.divide(cov, den, out=np.zeros_like(cov), where=den > 0)
            _, p = linear_sum_assignment(C, maximize=True)
        else:
            C = qa[:, None] + qb[None, :] - 2.0 * S
            _, p = linear_sum_assignment(C)
        diag = np.arange(h)
        before.append(float(C[diag, diag].sum()))
        after.append(float(C[diag, p].sum()))
        perms.append(np.asarray(p, np.int64))
    perms_t = tuple(perms)
    aligned = apply_perms(net_b, perms_t)
    fc = _function_check(net_b, aligned, x, 0)
    A, Bid, Bal = _Params(net_a), _Params(net_b), _Params(aligned)
    what = ("Σ over hidden units of the Pearson correlation of matched activations" if objective == "correlation"
            else "Σ over hidden units of the squared distance of matched activations (summed over samples·positions)")
    return AlignResult(
        method="activation_matching", perms=perms_t, aligned=aligned, objective=what,
        sense="max" if objective == "correlation" else "min",
        objective_before=float(sum(before)), objective_after=float(sum(after)), history=(), converged=None,
        iterations=1, distance_before=_distance(A, Bid), distance_after=_distance(A, Bal),
        per_layer_before=tuple(before), per_layer_after=tuple(after), function_check=fc,
        seconds=time.perf_counter() - t0,
        settings={"objective": objective, "n_samples": int(n), "batch_size": int(bs),
                  "per_layer": "objective per hidden layer 1..d-1"},
    )


# --------------------------------------------------------------------------- Lemma 4 from an alignment


def _nonzero_counts(net: _nets.Net) -> list[int]:
    zero = _units.zero_units(net)
    return [h - int(zero[i].size) for i, h in enumerate(_nets.widths(net), start=1)]


def permutation_path(net: _nets.Net, perms: Perms, *, widen: bool = False) -> Path:
    """The Lemma 4 path (Kuditipudi et al. 2019, Appendix A; docs/THEORY.md §3) from θ_B = ``net`` to
    ``apply_perms(net, perms)``: 5 straight segments, each ``function_preserving`` or ``copy_shift``, so
    ``proofs_check.certify`` proves the function constant along the whole path.

    Premise of Lemma 4: at least ``⌈h_i/2⌉`` zero units (row and column 0) in every hidden layer, i.e. at
    most ``⌊h_i/2⌋`` nonzero units ``n_i``. When it holds the path lives in ``net``'s own architecture.
    When it fails, ``widen=False`` raises a ``ValueError``; ``widen=True`` embeds ``net`` into the
    architecture with hidden widths ``H_i = max(h_i, 2·n_i)`` (``2·h_i`` for a net without zero units), its
    units at positions ``0..h_i−1`` and zero units after them (:func:`stability.theory.paths.embed_narrow`: exactly
    the same function), extends each permutation by the identity on the added units, and runs Lemma 4
    there. The path then starts at the embedded θ_B and ends, bit for bit, at the embedded permuted copy —
    it is a path in the WIDENED architecture, not in ``net``'s (``path.info.widened``, ``path.info.path_widths``).
    No function-preserving permutation path in the original width is claimed.
    """
    if not isinstance(net, _nets.Net):
        raise ValueError(f"net must be a stability.core.nets.Net, got {type(net).__name__}")
    if net.depth < 2:
        raise ValueError(f"permutation_path needs a net with at least one hidden layer, got depth {net.depth}")
    if not isinstance(widen, bool):
        raise ValueError(f"widen must be True or False, got {widen!r}")
    perms_t = check_perms(net, perms)
    hs = _nets.widths(net)
    n = _nonzero_counts(net)
    holds = all(ni <= h // 2 for ni, h in zip(n, hs))
    if not holds and not widen:
        i = next(k for k, (ni, h) in enumerate(zip(n, hs), start=1) if ni > h // 2)
        raise ValueError(f"Lemma 4 premise violated: hidden layer {i} has {hs[i - 1] - n[i - 1]} zero units of "
                         f"{hs[i - 1]}, needs at least ⌈h/2⌉ = {math.ceil(hs[i - 1] / 2)}; pass widen=True to build "
                         f"the path in the architecture widened by zero units (hidden widths max(h_i, 2·n_i))")
    target = apply_perms(net, perms_t)
    wide = tuple(max(h, 2 * ni) for h, ni in zip(hs, n))
    widened = wide != tuple(hs)
    if widened:
        arch = dataclasses.replace(net.arch, widths=wide + (net.arch.widths[-1],))
        start, end = embed_narrow(net, arch), embed_narrow(target, arch)
        run = tuple(np.concatenate([p, np.arange(h, H)]) for p, h, H in zip(perms_t, hs, wide))
    else:
        start, end, run = net, target, perms_t
    path = lemma4(start, run)
    if not nets_equal(path.end, end):
        raise AssertionError("Lemma 4 did not end exactly at the permuted net (bug)")
    info = PermutationPathInfo(
        targets=path.info.targets, widened=widened, original_widths=tuple(hs), path_widths=tuple(wide),
        nonzero_units=tuple(n), perms=tuple(tuple(p.tolist()) for p in perms_t),
        note=("the path lives in the widened architecture: θ_B and its permuted copy embedded with zero units at "
              "positions h_i..H_i−1" if widened else "the path lives in the net's own architecture"))
    return Path(path.segments, name="Lemma 4 (permutation path)", info=info, check=False, connects=(start, end))


@dataclasses.dataclass(frozen=True)
class PermutationPathInfo:
    """:func:`permutation_path`'s record: Lemma 4's targets, whether the path lives in a widened architecture
    (and its widths), the nonzero units counted and the permutations applied."""

    targets: dict[int, list[int]]
    widened: bool
    original_widths: tuple[int, ...]
    path_widths: tuple[int, ...]
    nonzero_units: tuple[int, ...]
    perms: tuple[tuple[int, ...], ...]
    note: str
