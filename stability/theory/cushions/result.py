"""The result of :func:`stability.theory.cushions.measure`: per-sample arrays, Definitions 2–4 summaries,
convergence flags and its ``.npz`` file format."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

from stability.core.io import atomic_write

Array = jax.Array


DEFAULT_TS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
"""The ``t`` grid of Definition 3 (``t = 1`` is the unperturbed net, trivially smooth)."""


_FORMAT = "stability-cushions"
_VERSION = 1


# --------------------------------------------------------------------------- result


def _nanmin(a: np.ndarray, axis=None):
    """``np.nanmin`` that returns NaN for all-NaN slices without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmin(np.asarray(a, dtype=np.float64), axis=axis)


@dataclasses.dataclass(frozen=True, eq=False)
class Cushions:
    """Per-sample noise-stability quantities of one net on a sample set (Definitions 2–4).

    Per-layer arrays have a last axis of length ``d`` (index ``i − 1`` for paper layer ``i``);
    pair arrays are ``(N, d, d)`` with ``[:, i−1, j−1]`` for the pair ``(i, j)``. Undefined
    entries are NaN. ``smoothness`` is ``(draws, N, d)``: per mask draw, sample and start layer
    ``i`` the largest ``ρ`` satisfying Definition 3's inequalities for every ``j ≥ i`` and ``t``.
    """

    p: float
    ts: np.ndarray
    tol: float
    max_iter: int
    widths: tuple[int, ...]            # hidden units per layer (channels for conv layers)
    dims: tuple[int, ...]              # size of x^i per sample, i = 1..d
    deltas: tuple[np.ndarray, ...]     # Algorithm 1 multipliers, per hidden layer (draws, h)
    layer_cushion: np.ndarray          # (N, d)      μ_i
    interlayer_cushion: np.ndarray     # (N, d, d)   μ_{i,j}
    spectral_norm: np.ndarray          # (N, d, d)   ‖J^{i,j}‖_2
    power_iters: np.ndarray            # (N, d, d)   solver iterations used (LOBPCG or power iteration)
    converged: np.ndarray              # (N, d, d)   reached the tolerance
    contraction: np.ndarray            # (N, d)      ‖x^i‖/‖φ(x^i)‖, NaN at layer d
    smoothness: np.ndarray             # (K, N, d)   ρ per draw, NaN at layer 1, inf at layer d
    inf_norm_ratio: np.ndarray         # (N, d)      √h_i·max_u‖a_u‖/‖a‖, a = P(φ(x̂^i)), max over draws and t
    pre_norm: np.ndarray               # (N, d)      ‖x^i‖
    column_ratio: np.ndarray           # (d,)        max_j ‖[A_i]_j‖/(√p‖A_i‖_F), NaN at layer 1
    seconds: float = float("nan")
    method: str = "lobpcg"             # spectral-norm solver

    # ---- derived per-sample values

    @property
    def depth(self) -> int:
        return len(self.dims)

    @property
    def n(self) -> int:
        return int(self.layer_cushion.shape[0])

    @property
    def draws(self) -> int:
        return int(self.smoothness.shape[0])

    @property
    def h_min(self) -> int:
        """Smallest hidden width (units that Algorithm 1 drops independently)."""
        return int(min(self.widths)) if self.widths else 0

    @property
    def interlayer_min(self) -> np.ndarray:
        """``μ_{i→} = min_{i≤j≤d} μ_{i,j}`` per sample, ``(N, d)`` (pairs with ``J = 0`` are skipped)."""
        d = self.depth
        m = np.where(np.triu(np.ones((d, d), bool))[None], self.interlayer_cushion, np.nan)
        return _nanmin(m, axis=2)

    @property
    def output_norm(self) -> np.ndarray:
        """``‖f(x)‖`` per sample."""
        return self.pre_norm[:, -1]

    @property
    def smoothness_median(self) -> np.ndarray:
        """Median over mask draws of the per-sample, per-layer ``ρ``: ``(N, d)``."""
        with np.errstate(all="ignore"):
            return np.median(self.smoothness, axis=0)

    # ---- Definition 2–4 summaries (min / max over the sample set)

    def rho(self) -> float:
        """Definition 3: the largest ``ρ`` that holds for every sample, layer pair and ``t`` in at
        least half of the mask draws (the ``⌈K/2⌉``-th largest per-draw minimum)."""
        if self.draws == 0 or self.depth < 3:
            return float("inf")
        per_draw = np.array([np.nanmin(np.where(np.isnan(s), np.inf, s)) for s in self.smoothness])
        return float(np.sort(per_draw)[::-1][math.ceil(self.draws / 2) - 1])

    def c(self) -> float:
        """Activation contraction ``c = max_{x, i} ‖x^i‖/‖φ(x^i)‖`` (hidden layers)."""
        return float(np.nanmax(self.contraction)) if self.depth > 1 else 1.0

    def epsilon(self, q: float | None = None) -> float:
        """Definition 4's ``ε = c·d^{3/2}·max_x‖f(x)‖ / (h_min^{1/2} · min_{2≤i≤d} μ_i μ_{i→})``.

        ``q=None`` is the paper's (minima and maxima over the sample set). ``q`` in (0, 0.5) gives a
        robust variant (not the paper's) with ``q``-quantiles in place of minima and ``1−q`` in place
        of maxima, per quantity."""
        d = self.depth
        if d < 2:
            return float("nan")
        lc, im = self.layer_cushion[:, 1:], self.interlayer_min[:, 1:]
        with np.errstate(all="ignore"):
            if q is None:
                c, fmax = self.c(), float(np.nanmax(self.output_norm))
                mu, mu_to = np.nanmin(lc, axis=0), np.nanmin(im, axis=0)
            else:
                if not 0.0 < q < 0.5:
                    raise ValueError(f"quantile q must be in (0, 0.5), got {q}")
                # order statistics (no interpolation: contraction may be ∞ where φ(x^i) = 0)
                c = float(np.nanquantile(np.nanmax(self.contraction[:, :-1], axis=1), 1 - q, method="higher"))
                fmax = float(np.nanquantile(self.output_norm, 1 - q, method="higher"))
                mu = np.nanquantile(lc, q, axis=0, method="lower")
                mu_to = np.nanquantile(im, q, axis=0, method="lower")
            den = math.sqrt(self.h_min) * float(np.nanmin(mu * mu_to))
        return float(c * d ** 1.5 * fmax / den) if den > 0 else float("inf")

    # ---- convergence of the spectral-norm solver (σ is a lower bound of ‖J‖₂ until it converges)

    def unconverged_fraction(self) -> np.ndarray:
        """``(d, d)``: per pair ``(i, j)``, ``i < j``, the fraction of samples whose ``‖J^{i,j}‖₂`` did not reach
        the solver tolerance (NaN on and below the diagonal)."""
        d = self.depth
        out = np.full((d, d), np.nan)
        iu = np.triu_indices(d, 1)
        if self.n:
            out[iu] = np.mean(~self.converged[:, iu[0], iu[1]], axis=0)
        return out

    def epsilon_converged(self) -> bool:
        """Whether every spectral norm entering ``μ_{i→}`` for ``i ≥ 2`` (hence ``ε``) converged. An unconverged
        ``σ`` under-estimates ``‖J‖₂``, so ``μ_{i→}`` is over-estimated and ``ε`` under-estimated."""
        d = self.depth
        rows = [(i, j) for i in range(1, d) for j in range(i + 1, d)]  # 0-based (i, j): paper 2 ≤ i < j ≤ d
        return bool(all(self.converged[:, i, j].all() for i, j in rows)) if rows else True

    def convergence_note(self) -> str | None:
        """``None`` when every spectral norm converged, else one line for reports and verdicts."""
        frac = self.unconverged_fraction()
        if not np.any(frac[np.isfinite(frac)] > 0):
            return None
        worst = np.nanmax(frac)
        i, j = np.unravel_index(int(np.nanargmax(frac)), frac.shape)
        msg = (f"UNCONVERGED: {np.nanmean(np.where(np.isfinite(frac), frac, np.nan)) * 100:.1f}% of the spectral norms "
               f"(worst pair ({i + 1}, {j + 1}): {worst * 100:.1f}% of samples) did not reach tol = {self.tol:g} in "
               f"{self.max_iter} iterations; σ is then a lower bound, so μ_(i→) may be over- and ε under-estimated")
        return msg + ("" if self.epsilon_converged() else "; ε is computed from unconverged entries")

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers: Definition 2–4 scalars, side conditions, per-layer distributions."""
        d = self.depth

        def per_layer(a: np.ndarray) -> dict[str, list[float | None]]:
            out: dict[str, list[float | None]] = {"min": [], "median": [], "max": []}
            for i in range(d):
                col = np.asarray(a[..., i], np.float64).reshape(-1)
                col = col[np.isfinite(col)]
                for k, f in (("min", np.min), ("median", np.median), ("max", np.max)):
                    out[k].append(float(f(col)) if col.size else None)
            return out

        rho = self.rho()
        finite = self.converged[:, np.triu_indices(d, 1)[0], np.triu_indices(d, 1)[1]] if d > 1 else np.ones(1, bool)
        iters = self.power_iters[:, np.triu_indices(d, 1)[0], np.triu_indices(d, 1)[1]] if d > 1 else np.zeros(1)
        return {
            "n": self.n, "depth": d, "p": self.p, "ts": self.ts.tolist(), "draws": self.draws,
            "widths": list(self.widths), "h_min": self.h_min,
            "c": self.c(), "rho": rho, "epsilon": self.epsilon(), "epsilon_q05": self.epsilon(0.05),
            "mu_min": [None if not np.isfinite(v) else float(v) for v in _nanmin(self.layer_cushion, axis=0)],
            "mu_to_min": [None if not np.isfinite(v) else float(v) for v in _nanmin(self.interlayer_min, axis=0)],
            "max_output_norm": float(np.nanmax(self.output_norm)),
            "side_conditions": {
                "h_min": self.h_min, "rho_ge_3d": bool(rho >= 3 * d), "three_d": 3 * d,
                "inf_norm_constant_max": float(np.nanmax(self.inf_norm_ratio)) if d > 1 else None,
                "inf_norm_constant_per_layer": per_layer(self.inf_norm_ratio)["max"][:-1],
                "column_ratio": [None if not np.isfinite(v) else float(v) for v in self.column_ratio],
                "column_ratio_max": float(np.nanmax(self.column_ratio)) if d > 1 else None,
            },
            "solver": {"method": self.method, "tol": self.tol, "max_iter": self.max_iter,
                       "converged_fraction": float(np.mean(finite)),
                       "unconverged_fraction_per_pair": self.unconverged_fraction().tolist(),
                       "epsilon_converged": self.epsilon_converged(), "note": self.convergence_note(),
                       "iterations_median": float(np.median(iters)), "iterations_max": int(np.max(iters))},
            "epsilon_flag": None if self.epsilon_converged() else "computed from unconverged spectral norms "
                                                                   "(may be under-estimated)",
            "layer_cushion": per_layer(self.layer_cushion),
            "interlayer_min": per_layer(self.interlayer_min),
            "contraction": per_layer(self.contraction),
            "smoothness_median": per_layer(self.smoothness_median),
            "seconds": self.seconds,
        }

    # ---- persistence

    _ARRAYS = ("ts", "layer_cushion", "interlayer_cushion", "spectral_norm", "power_iters", "converged",
               "contraction", "smoothness", "inf_norm_ratio", "pre_norm", "column_ratio")

    def save(self, path: str | os.PathLike) -> Path:
        """Write every array and setting to one ``.npz`` (atomically); :func:`load` reads it back."""
        header = {"format": _FORMAT, "version": _VERSION, "p": self.p, "tol": self.tol, "max_iter": self.max_iter,
                  "widths": list(self.widths), "dims": list(self.dims), "seconds": self.seconds,
                  "method": self.method}
        arrays = {"__header__": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
        arrays.update({k: np.asarray(getattr(self, k)) for k in self._ARRAYS})
        arrays.update({f"deltas{l}": np.asarray(v) for l, v in enumerate(self.deltas)})
        return atomic_write(path, lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Cushions":
        with np.load(Path(path), allow_pickle=False) as z:
            if "__header__" not in z.files:
                raise ValueError(f"{path} is not a saved Cushions result")
            header = json.loads(bytes(z["__header__"]).decode())
            if header.get("format") != _FORMAT or header.get("version") != _VERSION:
                raise ValueError(f"{path} has format {header.get('format')!r} v{header.get('version')}, "
                                 f"expected {_FORMAT!r} v{_VERSION}")
            arrays = {k: z[k] for k in cls._ARRAYS}
            deltas = tuple(z[f"deltas{l}"] for l in range(len(header["widths"])))
        return cls(p=float(header["p"]), tol=float(header["tol"]), max_iter=int(header["max_iter"]),
                   widths=tuple(header["widths"]), dims=tuple(header["dims"]), deltas=deltas,
                   seconds=float(header["seconds"]) if header["seconds"] is not None else float("nan"),
                   method=header.get("method", "lobpcg"), **arrays)


def load(path: str | os.PathLike) -> Cushions:
    """Read a :class:`Cushions` written by :meth:`Cushions.save`."""
    return Cushions.load(path)
