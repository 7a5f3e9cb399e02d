"""Theorem 4 (Kuditipudi et al. 2019, Appendix C; docs/THEORY.md §7): the dataset, both minimizers, the identity and
Lemma 6's data facts, checked exactly for many h and (k, l, m, n); invalid sizes rejected; tampering caught."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs_check.counterexample import check_identity, check_lemma6_facts, check_theorem4
from stability.app.studies import counterexample_study as study
from stability.theory import counterexample as ce
from stability.core import evaluate
from stability.core.losses import squared_error

# Written out by hand from docs/THEORY.md §7 / the appendix's Figure 4 for h = 3 (k, l, m, n) = (4, 8, 11, 15).
H3 = np.array([
    [1, 0, 1, -1, -1], [2, 1, -1, 1, -1], [3, 2, -1, -1, 1], [4, 3, 1, -1, -1],   # i ≤ k
    [5, 4, 0, 1, 0], [6, 5, 0, 0, 1], [7, 6, 1, 0, 0], [8, 7, 0, 1, 0],           # k < i ≤ l
    [-1, 0, 0, 0, 0], [0, -1, 0, 0, 0], [-1, 0, 0, 0, 0],                          # l < i ≤ m
    [0, 0, 0, 0, -1], [0, 0, -1, 0, 0], [0, 0, 0, -1, 0], [0, 0, 0, 0, -1],       # i > m
])


def test_dataset_for_h3_is_the_hand_written_matrix():
    X, y = ce.dataset(3)
    assert X.dtype == np.float64 and X.shape == (15, 5)
    np.testing.assert_array_equal(X, H3)
    np.testing.assert_array_equal(y, [1] * 8 + [0] * 7)


@settings(max_examples=15, deadline=None)
@given(h=st.integers(2, 8))
def test_default_sizes_exact_facts_and_zero_loss(x64, h):
    X, y = ce.dataset(h)
    assert X.shape == (3 * h + 6, h + 2) and y.shape == (3 * h + 6,)
    assert ce.sizes(h) == (h, h + 1, 2 * h + 2, 2 * h + 5, 3 * h + 6)
    verdict = check_theorem4(h, dtype=jnp.float64)
    verdict.raise_if_failed()
    names = [f.name for f in verdict.facts]
    for needed in ("identity: φ(f1) − φ(f2) = y", "identity: Σ_{j≥3} φ(fj) = y",
                   "teacher: loss = 0 exactly via nets.apply in float64",
                   "student: loss = 0 exactly via nets.apply in float64",
                   "sign blocks: every feature f_j has a label-0 row equal to −e_j (forces a_ij ≥ 0)"):
        assert needed in names


@pytest.mark.parametrize("h", [2, 5])
def test_zero_loss_through_the_batched_evaluator(x64, h):
    X, y = ce.dataset(h)
    teacher, student = ce.teacher_minimizer(h, jnp.float64), ce.student_minimizer(h, jnp.float64)
    res = evaluate.evaluate_nets([teacher, student], X, y, loss=squared_error)
    assert res.loss.tolist() == [0.0, 0.0]
    # the straight line between the two minima has a barrier (at t = 1/2 the loss is far from 0)
    assert evaluate.evaluate_line(teacher, student, 5, X, y, loss=squared_error).loss.max() > 0.1


@st.composite
def valid_sizes(draw):
    h = draw(st.integers(2, 7))
    k = h + 1 + draw(st.integers(0, 6))
    l = k + h + 1 + draw(st.integers(0, 6))
    m = l + 3 + draw(st.integers(0, 5))
    n = m + h + 1 + draw(st.integers(0, 6))
    return h, k, l, m, n


@settings(max_examples=15, deadline=None)
@given(s=valid_sizes())
def test_any_valid_sizes_satisfy_every_fact(s):
    h, k, l, m, n = s
    X, y = ce.dataset(*s)
    assert X.shape == (n, h + 2)
    assert check_theorem4(*s, forward=False).ok
    # unit-level view of the identity: the student's hidden unit u outputs φ(f_{u+3})
    hidden = np.maximum(X @ np.asarray(ce.student_minimizer(h).layers[0]["w"], np.float64).T, 0)
    np.testing.assert_array_equal(hidden, np.maximum(X[:, 2:], 0))


@settings(max_examples=15, deadline=None)
@given(s=valid_sizes(), data=st.data())
def test_any_single_tampered_entry_breaks_some_fact(s, data):
    X, y = ce.dataset(*s, dtype=np.int64)
    sz = ce.sizes(*s)
    i = data.draw(st.integers(0, X.shape[0] - 1))
    j = data.draw(st.integers(0, X.shape[1] - 1))
    delta = data.draw(st.sampled_from([-2, -1, 1, 2]))
    bad = X.copy()
    bad[i, j] += delta
    facts = check_identity(bad, y) + check_lemma6_facts(bad, y, sz)
    assert not all(f.holds for f in facts)
    y_bad = y.copy()
    y_bad[i] = 1 - y_bad[i]
    assert not all(f.holds for f in check_identity(X, y_bad))


@pytest.mark.parametrize("args, match", [
    ((3, 3), r"k > h"),
    ((3, 4, 7), r"l − k > h"),
    ((3, 4, 8, 10), r"m − l > 2"),
    ((3, 4, 8, 11, 14), r"n − m > h"),
    ((1,), r"h must be >= 2"),
    ((4, None, None, 12), r"m − l > 2"),
    ((4, None, None, 20, 23), r"n − m > h"),
])
def test_invalid_sizes_are_rejected_with_the_violated_condition(args, match):
    with pytest.raises(ValueError, match=match):
        ce.dataset(*args)
    with pytest.raises(ValueError, match=match):
        check_theorem4(*args)


def test_non_integer_sizes_are_rejected():
    with pytest.raises(TypeError, match="k must be an integer"):
        ce.sizes(3, k=4.0)
    with pytest.raises(TypeError, match="h must be an integer"):
        ce.dataset(True)
    with pytest.raises(ValueError, match="non-integer"):
        check_identity(np.full((3, 4), 0.5), np.zeros(3))


def test_dropping_one_student_unit_no_longer_fits():
    """One instance of Lemma 6's statement (h−1 positive weights): the student minus any unit has loss > 0."""
    for h in (2, 3, 5):
        X, y = ce.dataset(h)
        for u in range(h):
            net = ce.student_minimizer(h)
            w = np.asarray(net.layers[1]["w"]).copy()
            w[0, u] = 0.0
            assert ce.net_loss(net.replace_layer(1, w=jnp.asarray(w)), X, y) > 0


def test_minimizer_permutations_and_control_data():
    s = ce.student_minimizer(4, perm=[2, 0, 3, 1])
    X, y = ce.dataset(4)
    assert ce.net_loss(s, X, y) == 0.0
    with pytest.raises(ValueError, match="permutation"):
        ce.student_minimizer(4, perm=[0, 0, 1, 2])
    Xg, yg, teacher = ce.generic_teacher_data(3, 15, seed=1)
    assert Xg.shape == (15, 5) and ce.net_loss(teacher, Xg, yg) < 1e-12
    assert np.asarray(teacher.layers[1]["w"]).tolist() == [[1.0, -1.0, 0.0]]


def test_barrier_study_and_demo_section_write_their_outputs(tmp_path, monkeypatch):
    """A tiny-budget run of the whole pipeline: JSON + PNGs, the summary table, and the report section."""
    from stability.app.sections import counterexample as counterexample_demo
    from stability.app.report import Report

    tiny = study.StudyConfig(kinds=("polychain",), bends=(3,), restarts=2, via_crossing=1, steps=300, grid=21,
                          crossing_restarts=2, crossing_steps=300, control_students=2, control_steps=300,
                          control_restarts=1, klm_h=2, klm_scales=(1, 2))
    res = study.barrier_study((2,), cfg=tiny, out=tmp_path / "study")
    for name in ("thm4_barriers.json", "thm4_data.png", "thm4_barriers.png"):
        assert (tmp_path / "study" / name).stat().st_size > 0
    saved = json.loads((tmp_path / "study" / "thm4_barriers.json").read_text())
    assert saved["label"].startswith("EVIDENCE") and saved["hs"] == [2]
    case = res["per_h"][0]
    assert case["end_losses"] == [0.0, 0.0] and case["straight"]["barrier"] > 0.1
    assert len(case["curves"]) == 1 * 1 * 2 + 1 and case["crossing_set_best"] > 0
    assert case["best_curve"]["barrier"] == min(c["barrier"] for c in case["curves"])
    assert [r["varied"] for r in res["klm"]] == ["base", "k", "l-k", "m-l"]
    assert len(study.summary_rows(res)[0]) == len(study.SUMMARY_HEADER)

    monkeypatch.setattr(study.StudyConfig, "quick", classmethod(lambda cls: tiny))
    monkeypatch.setattr(counterexample_demo, "QUICK_HS", (2,))

    class Ctx:
        quick = True
        seed = 0

    report = Report(tmp_path / "demo")
    data = counterexample_demo.add_counterexample_section(report, Ctx())
    assert data["exact_all_hold"] is True
    assert set(data["proved"]) == {"2"} and data["proved"]["2"]["finished"]
    assert 0.0211 < data["proved"]["2"]["lower_bound"] <= data["evidence"]["per_h"][0]["crossing_set_best"]
    md = (tmp_path / "demo" / "report.md").read_text()
    assert "Theorem 4 counterexample" in md and "EVIDENCE" in md and "every path's barrier ≥" in md
    assert (tmp_path / "demo" / "thm4_data.png").exists() and (tmp_path / "demo" / "thm4_barriers.png").exists()
    assert "counterexample" in json.loads((tmp_path / "demo" / "summary.json").read_text())
