"""`stability reproduce ainsworth-mlp --quick`: the straight-line barriers before and after weight and
activation matching on MNIST MLPs — structure and exact relations, not the paper's number (quick scale)."""

from __future__ import annotations

import numpy as np
import pytest

from stability.app.reproduce import ainsworth_mlp as am
from tests._reproduce_helpers import quick_run, summary

METHODS = ["naive", "weight matching", "activation matching (distance)", "activation matching (correlation)"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    return quick_run(tmp_path_factory, "ainsworth-mlp")


def test_quick_run_reports_barriers_before_and_after_matching(quick):
    out, headline = quick
    s = summary(out)
    md = (out / "report.md").read_text()
    assert "| quantity | paper | ours | note |" in md and "Figure 2" in md and "≈ 0" in md
    assert (out / "ainsworth_mlp_interp.png").stat().st_size > 5000
    sec = s["barriers"]
    (pair,) = sec["pairs"]
    ends_train = sec["end_losses"]["train"]
    n = len(sec["ts"])
    assert n == am.QUICK.points and sec["ts"][0] == 0.0 and sec["ts"][-1] == 1.0
    for m in METHODS:
        for split in ("train", "test"):
            r = pair[m][split]
            loss = np.array(r["loss"])
            assert loss.shape == (n,) and np.all(np.isfinite(loss))
            assert r == {**r, **am.barriers(loss)}  # the recorded barriers are those of the recorded curve
            assert r["paper_barrier"] >= r["max_end_barrier"] >= 0.0  # the mean of the ends ≤ their max
        # every line starts at θ_A and ends at θ_B or an aligned copy computing θ_B's function
        assert pair[m]["train"]["loss"][0] == pytest.approx(ends_train[0], rel=1e-5)
        assert pair[m]["train"]["loss"][-1] == pytest.approx(ends_train[1], rel=1e-4)
    for name, al in pair["alignments"].items():
        assert al["function_check"]["max_abs_diff"] <= 1e-4 * (1 + al["function_check"]["output_scale"]), name
        better = al["objective_after"] >= al["objective_before"] if al["sense"] == "max" else \
            al["objective_after"] <= al["objective_before"]
        assert better, name
    assert headline["train_barrier"]["naive"] == pair["naive"]["train"]["paper_barrier"]


def test_barrier_definitions_and_bad_scales():
    flat = am.barriers(np.full(5, 0.3))
    assert flat["paper_barrier"] == 0.0 and flat["max_end_barrier"] == 0.0
    bump = am.barriers(np.array([0.1, 0.5, 1.1, 0.4, 0.3]))  # negative control: a bump is a positive barrier
    assert bump["paper_barrier"] == pytest.approx(0.9) and bump["max_end_barrier"] == pytest.approx(0.8)
    for bad in (dict(n_nets=1), dict(points=2), dict(widths=()), dict(epochs=0), dict(n_train=1)):
        with pytest.raises(ValueError, match="ainsworth-mlp scale"):
            am.Scale(**bad).check()
    am.FULL.check()
    am.QUICK.check()
