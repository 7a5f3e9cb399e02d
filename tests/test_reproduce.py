"""`stability reproduce`: the registry and command line, and the quick (CPU smoke-test) scale of the
garipov-table2, garipov-fge and kuditipudi-thm4 reproductions — structure and sanity, not the papers' numbers."""

from __future__ import annotations

import numpy as np
import pytest

from stability.app import reproduce
from stability.app.cli import main
from tests._reproduce_helpers import quick_run, summary


def test_registry_lists_the_seven_reproductions(capsys):
    assert reproduce.names() == ["kuditipudi-thm1", "kuditipudi-fig2", "kuditipudi-fig3", "kuditipudi-thm4",
                                 "garipov-table2", "garipov-fge", "ainsworth-mlp"]
    assert main(["reproduce", "--list"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in reproduce.names())


def test_bad_names_and_settings_fail_clearly(tmp_path, capsys):
    assert main(["reproduce", "garipov-table3", "--out", str(tmp_path / "x")]) == 2
    assert "argument NAME: invalid choice: 'garipov-table3'" in capsys.readouterr().err
    assert main(["reproduce", "garipov-fge", "--quick", "--set", "widthz=3", "--out", str(tmp_path / "y")]) == 2
    assert "unknown scale setting(s) ['widthz']" in capsys.readouterr().err
    assert main(["reproduce", "garipov-fge", "--quick", "--set", "widths", "--out", str(tmp_path / "z")]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err
    assert main(["reproduce", "all", "--set", "seed=1"]) == 2
    assert not (tmp_path / "x").exists()


BOUND_SAMPLES, BOUND_SUBINTERVALS = 16, 8


@pytest.fixture(scope="module")
def table2(tmp_path_factory):
    # the certified maxima on 16 images with at most 8 sub-intervals (the quick scale: 256 images, 32 sub-intervals)
    return quick_run(tmp_path_factory, "garipov-table2", {"bound_samples": str(BOUND_SAMPLES),
                                                          "bound_subintervals": str(BOUND_SUBINTERVALS)})


def test_table2_quick_structure_and_sanity(table2):
    out, headline = table2
    s = summary(out)
    md = (out / "report.md").read_text()
    assert s["meta"]["seed"] == 0 and "CPU" in s["meta"]["machine"] and s["meta"]["wall_seconds"] > 0
    assert "| curve | source |" in md and "| paper |" in md and "Seed: 0" in md
    assert "The maximum over every t, certified" in md and f"--set bound_samples={BOUND_SAMPLES}" in s["meta"]["command"]
    for f in ("table2_fc_along.png", "table2_conv_along.png", "table2_fc_plane.png"):
        assert (out / f).stat().st_size > 1000
    for model in ("fc", "conv"):
        rows = s[f"table2_{model}"]["rows"]
        assert set(rows) == {"Single", "Segment", "Bezier", "Polychain"}
        seg, bez, poly = rows["Segment"], rows["Bezier"], rows["Polychain"]
        assert seg["length ratio"] == pytest.approx(1.0, abs=1e-4)
        for r in (seg, bez, poly):  # every curve starts and ends at the two trained nets
            assert r["train loss Min"] <= rows["Single"]["train loss Min"] + 1e-6
            assert r["train loss Min"] <= r["train loss Int"] <= r["train loss Max"]
        assert bez["length ratio"] >= 1.0 - 1e-6 and poly["length ratio"] >= 1.0 - 1e-6
        # learned curves lower the straight line's barrier
        assert bez["train loss Max"] < seg["train loss Max"] and poly["train loss Max"] < seg["train loss Max"]
        cert = s[f"table2_{model}"]["certified"]
        assert set(cert) == {"Segment", "Bezier", "Polychain"}
        for c in cert.values():  # the certified enclosure contains every sampled value on the same images
            assert c["samples"] == BOUND_SAMPLES and c["lower"] <= c["upper"] and c["grid_max"] <= c["upper"] + 1e-9
            assert c["stop"] in ("tolerance", "budget") and c["n_subintervals"] <= BOUND_SUBINTERVALS
        along = s[f"table2_{model}"]["along"]["Segment"]["train"]
        assert len(along["t"]) == 11 and np.isclose(along["loss"][0], rows["Single"]["train loss Min"]) or \
            np.isclose(along["loss"][-1], rows["Single"]["train loss Min"])
    assert headline["FC"]["Bezier"]["train loss Max"] == s["table2_fc"]["rows"]["Bezier"]["train loss Max"]


def test_fge_quick_structure_and_sanity(tmp_path):
    out = tmp_path / "fge"
    assert main(["reproduce", "garipov-fge", "--quick", "--out", str(out)]) == 0
    s = summary(out)
    rows = s["table1"]["rows"]
    assert [(r["budget"], r["method"]) for r in rows] == [(b, m) for b in (1, 2) for m in ("Ind", "SSE", "FGE")]
    members = {(r["budget"], r["method"]): r["members"] for r in rows}
    assert members[1, "Ind"] == 1 and members[2, "FGE"] == 2 * members[1, "FGE"] >= 4
    assert all(0 <= r["error"] < 20 and 0 < r["nll"] < 1 for r in rows)
    singles = np.mean([m["nll"] for m in s["table1"]["singles"]])
    assert min(r["nll"] for r in rows if r["budget"] == 2) <= singles  # ensembling helps NLL
    assert (out / "fge_budgets.png").exists() and "paper VGG-16 CIFAR-10" in (out / "report.md").read_text()
    assert s["meta"]["command"].startswith("stability reproduce garipov-fge --out ") and "--quick" in s["meta"]["command"]


def test_thm4_quick_exact_facts_and_positive_barriers(tmp_path):
    out = tmp_path / "thm4"
    headline = reproduce.run("kuditipudi-thm4", out, quick=True)
    assert headline["exact_all_hold"] is True
    assert set(headline["best_curve_barrier"]) == {"2", "3"}
    assert all(v > 1e-3 for v in headline["crossing_set_best"].values())  # no zero-loss point found on S
    assert all(v > 1e-3 for v in headline["best_curve_barrier"].values())
    assert headline["control_best_curve_barrier"]["3"] < min(headline["best_curve_barrier"].values())
    # proved lower bound on every path's barrier ≤ what a learned path and a found point of S reach
    assert set(headline["proved_barrier_lower_bound"]) == {"2", "3"} and all(headline["proved_search_finished"].values())
    for h, lb in headline["proved_barrier_lower_bound"].items():
        assert 0.009 < lb <= min(headline["best_curve_barrier"][h], headline["crossing_set_best"][h])
    md = (out / "report.md").read_text()
    assert "## Paper vs ours" in md and "EVIDENCE" in md and "PROVED" in md
    assert (out / "thm4_barriers.png").exists() and (out / "thm4_data.png").exists()


def test_theorem1_quick_holds_on_two_conv_nets(tmp_path_factory):
    """``kuditipudi-thm1 --quick`` (digits stand-in): every segment proved, the bound holds for every t, the
    straight line is higher than the path."""
    out, headline = quick_run(tmp_path_factory, "kuditipudi-thm1", {"n_eval": "64"})  # the bound: 64 images
    s = summary(out)
    v = s["theorem1"]["verdict"]
    assert headline["verdict"] == v["verdict"] == "holds", v["reason"]
    assert v["certificate"]["ok"] and v["max_loss_kind"].startswith("every t")
    assert headline["n_segments"] == 2 * (4 * 4 - 6) + 8 and headline["max_loss"] <= headline["bound"] + v["tol"]
    assert (out / "thm1_path.png").stat().st_size > 1000 and "**Finding.**" in (out / "report.md").read_text()
