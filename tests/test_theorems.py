"""Executable theorem statements (proofs_check.theorems) on random nets and on two trained digits MLPs."""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np
import pytest

from proofs_check import check_lemma1, check_lemma2, check_path, check_theorem1, check_theorem2, check_theorem3
from stability.theory import dropout
from stability.core import nets
from stability.theory.paths import Path, Segment
from tests._path_helpers import inputs, random_net


def _toy(seed: int, arch: nets.Arch, n: int = 80):
    net = random_net(arch, seed)
    x = np.asarray(inputs(net, n=n, seed=seed + 100))
    y = np.random.default_rng(seed).integers(0, arch.widths[-1], size=n).astype(np.int32)
    return net, x, y


ARCH = nets.Arch(in_shape=(4,), widths=(7, 6, 5, 3))
CONV = nets.Arch(in_shape=(5, 5, 2), widths=(4, 5, 3), n_conv=2, pool=("max", None), head="gap")


@pytest.mark.parametrize(("arch", "compact"), [(ARCH, False), (CONV, True)], ids=["dense-literal", "conv-compact"])
def test_check_lemma1_holds_with_measured_epsilon(x64, arch, compact):
    net, x, y = _toy(0, arch)
    keep = [[0, 2, 5], [1, 4], [0, 2]][: arch.depth - 1] if arch is ARCH else [[1, 3], [0, 4]]
    v = check_lemma1(net, keep, x, y, r=2.0, compact=compact, points_per_segment=21, line=compact)
    assert v.certified and v.numerics_ok and v.verdict == "holds", v.summary()
    assert v.max_loss_kind.startswith("every t")  # every segment proved: the max over t is at a way point
    assert v.n_segments == (4 * arch.depth - 6 if compact else 6 * arch.depth - 10)
    assert v.extra["theta_k_match"]
    eps = v.extra["stability"]["eps"]
    assert v.bound == pytest.approx(v.endpoint_losses["L(θ)"] + max(eps, 0.0))
    assert v.margin >= 0 and 0 <= v.worst_t <= 1 and len(v.segment_max_loss) == v.n_segments
    assert v.evaluation.loss.shape == (v.n_segments, 21)
    fp = [c for c in v.segment_checks if c.claim == "function_preserving"]
    assert fp and all(c.max_fn_change is not None and c.max_fn_change <= 1e-12 * max(1, 10) for c in fp)
    d = v.to_dict()
    assert d["verdict"] == "holds" and d["certificate"]["ok"] and d["n_segments"] == v.n_segments


def test_check_lemma2_and_theorem1(x64):
    a, x, y = _toy(1, ARCH)
    b, _, _ = _toy(2, ARCH)
    ka, kb = [[0, 1, 2], [3], [1, 2]], [[4, 5], [0, 1, 2], [0]]
    v = check_theorem1(a, ka, b, kb, x, y, r=2.0, points_per_segment=11)
    assert v.certified and v.numerics_ok and v.verdict == "holds", v.summary()
    assert v.n_segments == 2 * (6 * 4 - 10) + 8 and v.extra["lemma2_part_holds"]
    sa, sb = v.extra["stability_a"], v.extra["stability_b"]
    assert v.epsilon == pytest.approx(max(sa["eps"], sb["eps"], 0.0))
    parts = v.extra["part_max_loss"]
    assert set(parts) == {"Lemma 1 (θ_A)", "Lemma 2", "Lemma 1 (θ_B) reversed"}
    assert v.line is not None and v.line.loss.shape == (v.n_segments * 11,)
    # Lemma 2 alone between the two dropout versions: bounded by the max of its ends
    from stability.theory.paths import theta_k
    a1, b1 = theta_k(a, ka, 1, 2.0), theta_k(b, kb, 1, 2.0)
    v2 = check_lemma2(a1, b1, x, y, points_per_segment=11, line=False)
    assert v2.certified and v2.verdict == "holds" and v2.n_segments == 8 and v2.line is None, v2.summary()
    assert v2.bound == pytest.approx(max(v2.endpoint_losses.values()))


def test_check_theorem2_and_3_decide_with_the_noise_bound(x64):
    a, x, y = _toy(3, ARCH)
    b, _, _ = _toy(4, ARCH)
    v = check_theorem2(a, b, jax.random.PRNGKey(0), x, y, points_per_segment=11, line=False)
    assert v.n_segments == 10 and not v.certified and v.certificate.no_refuted and v.numerics_ok, v.summary()
    assert v.verdict in ("holds", "fails", "does not apply") and v.bound is not None and v.noise is not None
    assert v.max_loss_kind.startswith("sampled")
    assert v.extra["lemma2_part_holds"]
    assert v.measured_excess == pytest.approx(v.max_loss - max(v.endpoint_losses.values()))
    assert len(v.extra["column_condition"]["A"]) == 3
    narrow = random_net(dataclasses.replace(ARCH, widths=(2, 3, 2, 3)), 9)
    v3 = check_theorem3(a, b, narrow, 0.75, jax.random.PRNGKey(1), x, y, points_per_segment=11, line=False)
    assert v3.n_segments == 13 and v3.certificate.no_refuted and v3.numerics_ok, v3.summary()
    assert v3.verdict in ("holds", "fails", "does not apply") and v3.extra["lemma2_part_holds"]
    assert set(v3.endpoint_losses) == {"L(θ_A)", "L(θ_B)", "L(θ*)"}
    assert v3.measured_excess == pytest.approx(v3.max_loss - max(v3.endpoint_losses.values()))


def test_check_path_flags_a_wrong_claim_numerically_and_exactly(x64):
    a, x, y = _toy(5, ARCH)
    b, _, _ = _toy(6, ARCH)
    path = Path([Segment(a, b, "function_preserving", "a lie")])
    v = check_path(path, x, y, points_per_segment=5, bound=10.0, line=False)
    assert not v.certified and not v.numerics_ok and v.verdict == "fails" and "refut" in v.reason
    assert v.segment_checks[0].max_fn_change > 1e-3
    assert v.certificate.failures()[0].fault is not None


def _digits():
    try:
        from stability import data
        ds = data.load("digits")
        return ds.x_train, ds.y_train
    except (ImportError, AttributeError):  # pragma: no cover - the loader exists in this repo
        from sklearn.datasets import load_digits
        x, y = load_digits(return_X_y=True)
        return (x / 16.0).astype(np.float32), y.astype(np.int32)


def test_trained_digits_theorem1_below_bound_and_far_below_the_straight_line():
    """Two MLPs trained with dropout on digits: the Theorem 1 path (greedy kept sets) stays below
    max{L_A, L_B} + ε (+ tolerance) while the straight line's barrier is far above it."""
    from stability.core.train import TrainConfig, fit

    t0 = time.perf_counter()
    x, y = _digits()
    cfg = TrainConfig(steps=800, batch_size=64, lr=0.1, schedule="cosine", dropout=0.2, log_every=800)
    trained = []
    for seed in (0, 1):
        net = nets.mlp(jax.random.PRNGKey(seed), (64, 48, 48, 10))
        net, _ = fit(net, x, y, dataclasses.replace(cfg, seed=seed), progress=False)
        trained.append(net)
    keeps = [dropout.greedy_search(n, x, y, p=0.5, rounds=4).kept for n in trained]
    v = check_theorem1(trained[0], keeps[0], trained[1], keeps[1], x, y, compact=True, points_per_segment=61)
    print("\n" + v.summary())
    print(f"L_A={v.endpoint_losses['L(θ_A)']:.4f} L_B={v.endpoint_losses['L(θ_B)']:.4f} eps={v.epsilon:.4f} "
          f"path max={v.max_loss:.4f} bound={v.bound:.4f} line max={v.line_max_loss:.4f} "
          f"line barrier={v.line_barrier:.4f} ({time.perf_counter() - t0:.1f}s)")
    assert v.certified and v.numerics_ok and v.verdict == "holds", v.summary()
    assert v.max_loss <= v.bound + v.tol
    assert max(v.endpoint_losses.values()) < 0.3 and v.epsilon < 0.3
    # "far above": the straight line's barrier exceeds the path's excess by a wide margin
    assert v.line_barrier > 0.3
    assert v.line_max_loss > 3 * v.max_loss
    assert v.evaluation.min_acc > 0.9
