"""Lemma 3's bound with every constant its proof makes explicit (Kuditipudi et al. 2019, Appendix B).

Lemma 3 says: for an ε-noise-stable net θ and θ¹ = Algorithm 1 (dropout probability p ≤ 3/4) on layers
2..d, with probability at least 1/4 over the masks, ``L(θ_t) ≤ L(θ) + Õ(√p·ε)`` for every t on the segment
``θ_t = θ + t(θ¹ − θ)``. The proof is explicit up to two O(1) constants of its assumptions (the ∞-norm
condition and the column condition, which we MEASURE on the net) and the log factor of a union bound (which
we COMPUTE). docs/THEORY.md ("Theorems 2 and 3: the noise-stability bound") derives, with the appendix's
equation numbers, what :func:`lemma3_bound` evaluates:

* Lemma 5 (vector Bernstein, Lemma 8) per layer ``i = 2..d``, with ``q = max(1, p/(1−p))``,
  ``C_∞`` the measured constant of ``‖x‖_∞ ≤ C_∞‖x‖/√h_{i−1}`` on the inputs of layer i and ``C_col`` that of
  ``max_j ‖[A_i]_j‖ ≤ C_col·√p·‖A_i‖_F``: per term ``R ≤ q·C_∞·C_col·√p/√h_{i−1}`` and total variance
  ``σ² ≤ p/(1−p)·C_∞²/h_{i−1}`` (both relative to ``‖A_i‖_F‖U‖‖x‖``), so with probability ≥ 1 − δ_i every pair
  of ``G_i`` satisfies ``‖U(Â_i − A_i)x‖ ≤ η_i‖A_i‖_F‖U‖‖x‖``, ``η_i = R·L_i/3 + √((R·L_i/3)² + 2σ²L_i)``,
  ``L_i = ln((D_i + 1)·|G_i|/δ_i)``, ``D_i`` the largest dimension of ``x^j, j ≥ i``, ``|G_i| = m(d−i+1)|Q|``,
  ``δ_i = 1/(4(d−1))``.
* The induction of Lemma 3 (eqs. (1)–(7)) needs ``η_i ≤ ε′μ_iμ_{i→}/(6cd)``: ``ε′ = max_i 6cd·η_i/(μ_iμ_{i→})``
  (cushions and ``c`` as in Definition 4, minima over the samples), ``ρ ≥ 3d`` and ``ε′ ≤ 1``; then
  ``‖f_θ(x) − f_{θ_t}(x)‖ ≤ ε′‖f_θ(x)‖`` at each ``t`` of a finite net ``Q``.
* The ε′-net step: ``‖f_{θ_{t+κ}}(x) − f_{θ_t}(x)‖ ≤ |κ|·Lip`` with
  ``Lip = Σ_{i≥2} q‖A_i‖·N_{i−1}·Π_{j>i} ‖A_j‖/(1−p)`` (``N_k`` bounds the norm of layer k's output on
  the path, biases included; ``‖A‖`` bounded by the operator Frobenius norm), so ``Q`` with spacing ``2τ``,
  ``τ = ε′F/Lip``, ``F = max_x‖f_θ(x)‖``, gives ``Δ = 2ε′F ≥ ‖f_θ(x) − f_{θ_t}(x)‖`` for every ``t`` and sample
  (``|Q|`` enters ``L_i``: solved by fixed-point iteration).
* The loss: cross-entropy is √2-Lipschitz in the logits, so the excess is ``√2·Δ``; for ½‖f − y‖² it is
  ``Δ·(max_x‖f(x) − y‖ + Δ/2)``.

With probability ≥ 1/2 − Σδ_i = 1/4 over the masks (smoothness holds with probability ≥ 1/2 by Definition 3):
``L(θ_t) ≤ L(θ) + excess`` for every t. A premise that fails makes the bound "does not apply".
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stability.theory import cushions as _cushions
from stability.core import nets as _nets
from stability.core.losses import Loss, get_loss

__all__ = ["Premise", "PremiseStatus", "Lemma3Bound", "lemma3_bound", "lipschitz_in_t", "zero_output_loss"]

PremiseStatus = Literal["held", "failed", "measured"]
"""``held`` / ``failed``: a premise with a threshold, checked; ``measured``: an O(1) constant of an assumption,
measured on the net and used in the bound (it cannot fail; a large value makes the bound loose)."""


@dataclasses.dataclass(frozen=True)
class Premise:
    """One premise of a lemma or theorem with its measured value."""

    name: str
    status: PremiseStatus
    value: Any
    requirement: str
    note: str = ""

    def _value(self) -> str:
        return f"{self.value:.4g}" if isinstance(self.value, float) else str(self.value)

    def short(self) -> str:
        """``name = value (needs requirement)``, for one-line reasons."""
        return f"{self.name} = {self._value()} (needs {self.requirement})"

    def __str__(self) -> str:
        s = f"{self.name}: {self.status} ({self._value()}; needs {self.requirement})"
        return s + (f" — {self.note}" if self.note else "")

    def to_dict(self) -> dict[str, Any]:
        v = self.value
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        return {"name": self.name, "status": self.status, "value": v, "requirement": self.requirement,
                "note": self.note}


@dataclasses.dataclass(frozen=True)
class Lemma3Bound:
    """The explicit Lemma 3 bound of one net at one dropout probability (see the module docstring)."""

    p: float
    epsilon: float                    # Definition 4's ε on the sample set
    sqrt_p_eps: float                 # √p·ε: the paper's scale of the excess
    eps_rel: float                    # ε′: relative output change at the points of Q
    delta: float                      # Δ = 2ε′F: output change at every t (probability ≥ 1/4)
    excess: float                     # the loss excess the explicit bound allows
    loss: str
    eta: tuple[float, ...]            # η_i, i = 2..d
    log_factor: tuple[float, ...]     # L_i, i = 2..d
    net_points: int                   # |Q|
    lipschitz: float                  # Lip of t ↦ f_{θ_t}(x)
    c_inf: tuple[float, ...]          # measured ∞-norm constants, layers 2..d
    c_col: tuple[float, ...]          # measured column constants, layers 2..d
    premises: tuple[Premise, ...]
    samples: int

    @property
    def failed(self) -> tuple[Premise, ...]:
        return tuple(q for q in self.premises if q.status == "failed")

    @property
    def applies(self) -> bool:
        return not self.failed

    @property
    def constant(self) -> float:
        """The constant the explicit bound puts in front of √p·ε (``excess / (√p·ε)``)."""
        return self.excess / self.sqrt_p_eps if self.sqrt_p_eps > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["premises"] = [q.to_dict() for q in self.premises]
        d.update(applies=self.applies, failed=[q.name for q in self.failed], constant=self.constant)
        return d


def _bias_map_norm(net: _nets.Net, k: int, dims: Sequence[int]) -> float:
    """‖b_k‖ as a vector over layer k's whole output (a conv bias repeats at every position)."""
    if net.bias(k) is None:
        return 0.0
    b = np.asarray(net.bias(k), np.float64)
    positions = dims[k - 1] // net.arch.widths[k - 1]
    return float(np.linalg.norm(b) * math.sqrt(positions))


def lipschitz_in_t(net: _nets.Net, p: float, max_input_norm: float) -> float:
    """``Lip``: an upper bound of ``‖d/dt f_{θ_t}(x)‖`` on the Lemma 3 segment for every Algorithm 1 draw at
    ``p`` and every input of norm ≤ ``max_input_norm`` (the ε′-net step of Lemma 3's proof, with biases).

    Uses ``‖Â_i − A_i‖ ≤ q‖A_i‖`` (``q = max(1, p/(1−p))``), ``‖A_{i,t}‖ ≤ ‖A_i‖/(1−p)``, 1-Lipschitz ReLU and
    pooling, and the operator Frobenius norm as an upper bound of the spectral norm."""
    d = net.depth
    dims = _dims(net)
    norms = [float(_cushions.operator_fro_norm(net, i)) for i in range(1, d + 1)]
    q = max(1.0, p / (1.0 - p))
    N = [float(max_input_norm)]
    for k in range(1, d):  # N[k]: norm bound of layer k's output anywhere on the segment
        grow = norms[k - 1] if k == 1 else norms[k - 1] / (1.0 - p)
        N.append(grow * N[k - 1] + _bias_map_norm(net, k, dims))
    lip = 0.0
    for i in range(2, d + 1):
        term = q * norms[i - 1] * N[i - 1]
        for j in range(i + 1, d + 1):
            term *= norms[j - 1] / (1.0 - p)
        lip += term
    return lip


def _dims(net: _nets.Net) -> tuple[int, ...]:
    dtype = jax.tree_util.tree_leaves(net)[0].dtype
    shapes = jax.eval_shape(lambda x: _nets.forward(net, x), jax.ShapeDtypeStruct((1,) + net.arch.in_shape, dtype))
    return tuple(int(np.prod(s.shape[1:])) for s in shapes)


def _bernstein_eta(R: float, var: float, L: float) -> float:
    """The ``t`` (relative) at which Lemma 8's tail ``exp(−t²/2/(σ² + Rt/3))`` equals ``e^{−L}``."""
    a = R * L / 3.0
    return a + math.sqrt(a * a + 2.0 * var * L)


def lemma3_bound(net: _nets.Net, noise: _cushions.Cushions, x, y, *, loss: Loss | str = "cross_entropy"
                 ) -> Lemma3Bound:
    """Lemma 3's explicit bound for ``net`` at ``noise.p`` (``noise`` = :func:`stability.theory.cushions.measure` of
    ``net`` on the samples ``x``, at the dropout probability of the Algorithm 1 draws in question; use
    :func:`stability.theory.cushions.remeasure_smoothness` for another p). ``y`` is only used for the squared error's
    local Lipschitz constant. See the module docstring for the formula and docs/THEORY.md for the derivation."""
    loss = get_loss(loss)
    d = net.depth
    if d < 2:
        raise ValueError("Lemma 3 needs a net with at least one hidden layer")
    x = np.asarray(x)
    m = int(x.shape[0])
    if noise.n != m:
        raise ValueError(f"noise was measured on {noise.n} samples, x has {m}")
    p = float(noise.p)
    hs = _nets.widths(net)
    dims = noise.dims
    c = noise.c()
    F = float(np.nanmax(noise.output_norm))
    eps = noise.epsilon()
    with np.errstate(all="ignore"):
        mu = np.nanmin(noise.layer_cushion, axis=0)              # (d,)
        mu_to = np.nanmin(noise.interlayer_min, axis=0)          # (d,)
        c_inf = [float(np.nanmax(noise.inf_norm_ratio[:, i - 2])) for i in range(2, d + 1)]
    c_col = [float(noise.column_ratio[i - 1]) for i in range(2, d + 1)]
    q = max(1.0, p / (1.0 - p))
    delta_i = 1.0 / (4.0 * (d - 1))
    x_norm = float(np.max(np.linalg.norm(x.reshape(m, -1).astype(np.float64), axis=1)))
    lip = lipschitz_in_t(net, p, x_norm)

    def solve(n_q: int) -> tuple[float, list[float], list[float]]:
        etas, logs = [], []
        worst = 0.0
        for i in range(2, d + 1):
            h = hs[i - 2]
            D = max(dims[j - 1] for j in range(i, d + 1))
            G = m * (d - i + 1) * n_q
            L = math.log((D + 1) * G / delta_i)
            R = q * c_inf[i - 2] * c_col[i - 2] * math.sqrt(p / h)
            var = p / (1.0 - p) * c_inf[i - 2] ** 2 / h
            eta = _bernstein_eta(R, var, L)
            etas.append(eta)
            logs.append(L)
            den = mu[i - 1] * mu_to[i - 1]
            worst = max(worst, 6.0 * c * d * eta / den if den > 0 else math.inf)
        return worst, etas, logs

    n_q = 1
    for _ in range(60):  # |Q| enters only through logs: a handful of rounds reach the fixed point
        eps_rel, etas, logs = solve(n_q)
        if not math.isfinite(eps_rel) or eps_rel * F == 0.0 or lip == 0.0:
            break
        tau = eps_rel * F / lip
        need = int(math.ceil(1.0 / (2.0 * tau))) + 1
        if need <= n_q:
            break
        n_q = need
    delta = 2.0 * eps_rel * F
    if loss.name == "cross_entropy":
        excess, lip_ok = math.sqrt(2.0) * delta, True
    elif loss.name == "squared_error":
        out = np.asarray(_nets.apply(net, x), np.float64)
        yv = np.asarray(y)
        target = np.eye(out.shape[-1])[yv.astype(np.int64)] if np.issubdtype(yv.dtype, np.integer) \
            else yv.reshape(out.shape)
        resid = float(np.max(np.linalg.norm(out - target, axis=1)))
        excess, lip_ok = delta * (resid + delta / 2.0), True
    else:
        excess, lip_ok = math.inf, False

    rho = noise.rho()
    prem = [
        Premise("p ≤ 3/4", "held" if p <= 0.75 else "failed", p, "p ≤ 0.75", "Lemma 3's range of p"),
        Premise("ρ ≥ 3d", "held" if rho >= 3 * d else "failed", float(rho), f"ρ ≥ 3d = {3 * d}",
                f"Definition 3, used in eqs. (6)–(7); measured with {noise.draws} Algorithm 1 draws at p = {p:g} and "
                f"t ∈ {{{', '.join(f'{t:g}' for t in noise.ts)}}} (a sample of t, not all t)"),
        Premise("ε′ ≤ 1", "held" if eps_rel <= 1.0 else "failed", float(eps_rel), "ε′ ≤ 1",
                "Lemma 3's induction needs (i−1)ε′/d < 1 so that ‖x̂^{i−1}‖ ≤ 2‖x^{i−1}‖"),
        Premise("converged spectral norms", "held" if noise.epsilon_converged() else "failed",
                noise.convergence_note() or "all converged", "every σ entering μ_{i→} and ε at the solver tolerance",
                "an unconverged σ under-estimates ‖J‖₂, over-estimates μ_{i→} and under-estimates ε"),
        Premise("loss Lipschitz in the output", "held" if lip_ok else "failed", loss.name,
                "cross-entropy (√2) or squared error (local constant)"),
        Premise("∞-norm condition C_∞", "measured", float(max(c_inf)), "an O(1) constant",
                f"Lemma 5's ‖x‖_∞ ≤ C_∞‖x‖/√h on the inputs of layers 2..d; per layer "
                f"{', '.join(f'{v:.3g}' for v in c_inf)}; used in the bound"),
        Premise("column condition C_col", "measured", float(max(c_col)), "an O(1) constant",
                f"Lemma 3/5's ‖[A_i]_j‖ ≤ C_col·√p·‖A_i‖_F (operator norms); per layer "
                f"{', '.join(f'{v:.3g}' for v in c_col)}; used in the bound"),
        Premise("Ω̃(1/h_min) < p", "measured", float(p * min(hs)), "asymptotic (constants and logs hidden)",
                "p·h_min shown; the explicit bound does not use it (it only makes the bound small)"),
    ]
    return Lemma3Bound(
        p=p, epsilon=float(eps), sqrt_p_eps=float(math.sqrt(p) * eps), eps_rel=float(eps_rel), delta=float(delta),
        excess=float(excess), loss=loss.name, eta=tuple(etas), log_factor=tuple(logs), net_points=int(n_q),
        lipschitz=float(lip), c_inf=tuple(c_inf), c_col=tuple(c_col), premises=tuple(prem), samples=m)


def zero_output_loss(loss: Loss | str, y, n_outputs: int) -> float:
    """The loss of the predictor ``f ≡ 0`` on the labels ``y`` (cross-entropy: ``log C``; squared error:
    ``mean ½‖y‖²``): the top of the "loss range" a bound must beat to be informative."""
    loss = get_loss(loss)
    out = jnp.zeros((len(y), n_outputs), jnp.float32)
    return float(jnp.mean(loss(out, jnp.asarray(y))))
