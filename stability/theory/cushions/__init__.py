"""Noise stability of a ReLU net (Kuditipudi et al. 2019, Definitions 2–4; docs/THEORY.md §6).

For a sample set ``S`` and a net with pre-activations ``x^1 … x^d`` (``x^d = f(x)``) this
module measures, **per sample** and per layer (or layer pair):

* layer cushion ``μ_i = ‖A_i h^{i−1}‖ / (‖A_i‖_F ‖h^{i−1}‖)`` (Definition 2), ``h^{i−1}`` the actual
  input of layer ``i`` (``x^0`` for ``i = 1``, else ``P(φ(x^{i−1}))`` with the net's pooling ``P``)
  and ``‖A_i‖_F`` the Frobenius norm of layer ``i`` as a *linear operator* on that input
  (:func:`operator_fro_norm`: for a same-padded conv the border taps count fewer positions);
* interlayer cushion ``μ_{i,j} = ‖J^{i,j} x^i‖ / (‖J^{i,j}‖_2 ‖x^i‖)`` with the SPECTRAL norm (the
  paper's change from Arora et al.), ``μ_{i,i} = 1``, and ``μ_{i→} = min_{i≤j≤d} μ_{i,j}``;
* activation contraction ratio ``‖x^i‖ / ‖φ(x^i)‖`` for hidden layers (``c`` is its max);
* interlayer smoothness ``ρ`` (Definition 3) under Algorithm 1 masks, on a grid of ``t``, for
  several mask draws (per draw, per sample and per layer ``i``; the median over draws);
* Definition 4's ``ε = c·d^{3/2}·max_x‖f(x)‖ / (h_min^{1/2} · min_{2≤i≤d} μ_i μ_{i→})`` with its side
  conditions (``h_min``, ``ρ ≥ 3d``, the ``∞``-norm condition) and Lemma 3's column condition.

``J^{i,j}`` is the Jacobian at ``x^i`` of the map ``M^{i,j}: x^i ↦ x^j``. No Jacobian is ever
materialised: spectral norms come from LOBPCG (default; a three-term Krylov/Lanczos-type method)
or power iteration on ``JᵀJ``, applied through ``jax.linearize`` (jvp) and ``jax.vjp`` of the
per-layer maps, vmapped over samples and over all pairs ``(i, j)`` at once: ONE upward sweep
carries every pair's vector (a vector joins the stack at its start layer ``i`` and leaves it at its
end layer ``j``) and one downward sweep the transposes, so an iteration costs ``2(d−1)`` batched
layer applications. Every entry stops at a relative residual ``‖JᵀJv − σ²v‖ ≤ tol·σ²``; the
iteration count and convergence flag of every (sample, pair) are reported. The iteration runs in
jitted blocks driven from the host (XLA:CPU executes ``while_loop`` bodies far slower than the same
ops unrolled), and a batch whose samples have mostly converged continues on a quarter of them.

Mask draws come from :func:`stability.theory.dropout.algorithm1_deltas` (Algorithm 1: columns of
``A_2..A_d``, whole channels for conv nets); one draw is shared by every sample, as Definition 3
requires, and ``θ^i`` uses the draw's masks of layers ``2..i``.

Deviations and choices, stated once:

* **Biases.** The paper's nets are bias-free, where ``M^{i,j}(x^i) = J^{i,j} x^i``. With biases the
  smoothness test uses the linearisation error ``‖M(x̂) − M(x^i) − J(x̂ − x^i)‖`` (identical to the
  paper's ``‖M(x̂) − J x̂‖`` without biases), and cushions use the linear parts only.
* **Conv nets** (channel-wise, Remark 1): a hidden unit is a channel. ``h_i`` in ``h_min``, in the
  ``∞``-norm condition and in Algorithm 1 counts channels; the ``∞``-norm of ``φ(x̂)`` is taken over
  per-channel blocks (``max_c ‖φ(x̂)_c‖``), which is the ordinary ``∞``-norm for dense layers; a
  "column" in the column condition is the whole input-channel block of the operator.
* **Numerically exact linearity.** A linearisation error within ``100·eps`` of the magnitudes
  involved (no activation crossed zero) counts as 0, i.e. ``ρ = ∞`` for that term.
* Undefined entries (below the diagonal, ``φ(x^i) = 0``, ``J = 0``) are NaN (or ``inf``).

Every per-layer array has a last axis of length ``d`` indexed by paper layer ``i − 1``.
"""

from stability.theory.cushions.maps import interlayer_jvps
from stability.theory.cushions.measure import (DEFAULT_MEMORY_BUDGET, UnconvergedWarning, measure,
                                               remeasure_smoothness)
from stability.theory.cushions.operators import column_norms, column_ratio, operator_fro_norm
from stability.theory.cushions.result import DEFAULT_TS, Cushions, load
from stability.theory.cushions.smoothness import sample_masks
from stability.theory.cushions.spectral import spectral_norms

__all__ = [
    "Cushions", "measure", "load", "sample_masks", "operator_fro_norm", "column_norms", "column_ratio",
    "interlayer_jvps", "spectral_norms", "remeasure_smoothness", "UnconvergedWarning", "DEFAULT_TS",
    "DEFAULT_MEMORY_BUDGET",
]
