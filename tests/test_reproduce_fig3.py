"""``stability reproduce kuditipudi-fig3`` (Kuditipudi et al. 2019, Figure 3 / Figure 5 / Appendix D) at the
quick (CPU smoke-test) scale: structure and sanity of the report, not the paper's numbers."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle

import jax
import numpy as np
import pytest

from stability.app import reproduce
from stability.data import DataNotFoundError
from stability.app.report import Report
from stability.app.reproduce import ReproContext
from stability.app.reproduce import kuditipudi_fig3 as fig3
from tests._reproduce_helpers import quick_run, summary



# --------------------------------------------------------------------------- fast checks


def test_missing_cifar_directory_fails_before_training(tmp_path, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("training started before the data directory was checked")

    monkeypatch.setattr(fig3, "fit", no_training)
    with pytest.raises(DataNotFoundError, match="does not exist") as err:
        reproduce.run("kuditipudi-fig3", tmp_path / "out", quick=True, source=str(tmp_path / "no-such-cifar"))
    assert isinstance(err.value, FileNotFoundError)


def test_scales_declare_vgg11_and_the_papers_dropout():
    assert fig3.FULL.channels == (64, 128, 256, 256, 512, 512, 512, 512)
    assert fig3.FULL.pool == ("max", "max", None, "max", None, "max", None, "max")
    assert fig3.dropout_rates(fig3.FULL) == (0.25, 0.25, 0.25) + (0.5,) * 5 + (0.5,) * len(fig3.FULL.dense)
    assert fig3.dropout_rates(fig3.QUICK) == (0.25, 0.25, 0.25, 0.5)
    full = fig3.FULL
    assert (full.batch, full.lr, full.weight_decay, full.halve_every_epochs, full.optimizer) == \
        (128, 0.05, 5e-4, 30, "momentum")


@pytest.mark.parametrize("widths, p", [((8, 8, 16, 16), 0.5), ((64, 128, 256, 256, 512, 512, 512, 512, 512), 0.5),
                                       ((8, 7, 3), 0.75), ((10, 10), 0.3)])
def test_narrow_widths_meet_the_theorem3_premise(widths, p):
    hstar = fig3.narrow_widths_for(widths, p)
    assert all(1 <= a <= b for a, b in zip(hstar, widths))
    assert 1.5 * max(a / b for a, b in zip(hstar, widths)) <= p <= 0.75
    assert all(1.5 * ((a + 1) / b) > p for a, b in zip(hstar, widths))  # the largest (theorem3 arithmetic)


def test_narrow_widths_reject_impossible_premises():
    with pytest.raises(ValueError, match="hidden layer 2 has 2 units"):
        fig3.narrow_widths_for((16, 2), 0.5)
    with pytest.raises(ValueError, match="0 < p ≤ 3/4"):
        fig3.narrow_widths_for((16, 16), 0.8)


def test_cifar_source_is_read_as_32x32x3_images(tmp_path):
    """With ``source`` the data are CIFAR-10 (a tiny fake directory in the standard python-batch format)."""
    rng = np.random.default_rng(0)
    cifar = tmp_path / "cifar-10-batches-py"
    cifar.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (8, 3072), dtype=np.uint8),
                 b"labels": [int(v) for v in rng.integers(0, 10, 8)]}
        (cifar / name).write_bytes(pickle.dumps(batch))
    ctx = ReproContext(report=Report(tmp_path / "out"), quick=True, source=str(tmp_path))
    ds, tag, what = fig3._data(ctx, dataclasses.replace(fig3.QUICK, n_train=40, n_test=8))
    assert tag == "cifar10" and "CIFAR-10" in what and "MNIST" not in what
    assert ds.input_shape == (32, 32, 3) and ds.x_train.shape == (40, 32, 32, 3) and ds.x_test.shape[0] == 8
    net = fig3._make_net(fig3.QUICK, jax.random.PRNGKey(0), ds)
    assert net.arch.in_shape == (32, 32, 3) and net.arch.widths == (8, 8, 16, 16, 10)


# --------------------------------------------------------------------------- the quick run


SAMPLES = 24  # noise-stability samples of the quick run here (the quick scale: 48)
EPOCHS, NARROW_EPOCHS = 6, 3  # training of the quick run here (the quick scale: 10 and 5 epochs)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    # the quick scale, with a smaller budget for the certified maximum (its own tests are in test_bounds.py), fewer
    # noise-stability samples and shorter training (θ_A, θ_B: 186 steps instead of 310, still ~0.9 train accuracy)
    return quick_run(tmp_path_factory, "kuditipudi-fig3", {"bound_subintervals": "8", "cushion_samples": str(SAMPLES),
                                                           "cushion_batch": str(SAMPLES), "epochs": str(EPOCHS),
                                                           "narrow_epochs": str(NARROW_EPOCHS)})


def test_report_files_and_paper_columns(quick):
    out, headline = quick
    s = summary(out)
    md = (out / "report.md").read_text()
    assert set(s) >= {"meta", "setup", "noise_stability", "noise_stability_vs_paper", "theorem3"}
    assert s["meta"]["seed"] == 0 and s["meta"]["quick"] is True and s["meta"]["wall_seconds_total"] > 0
    assert s["meta"]["scale_settings"]["channels"] == [8, 8, 16, 16]
    assert "| quantity | paper | ours | note |" in md and "Seed: 0" in md
    for key in ("setup", "noise_stability_vs_paper", "theorem3"):
        rows = s[key]["comparison"]
        assert rows and all({"quantity", "paper", "ours", "note"} <= set(r) for r in rows)
    for name in ("fig3_theorem3_path.png", "fig5_straight_line.png", "fig3_net_a_layer3.png",
                 "fig3_net_a_layer_cushion.png", "fig3_net_a_interlayer_min.png", "fig3_net_a_contraction.png",
                 "fig3_net_a_smoothness.png"):
        assert (out / name).stat().st_size > 1000, name
        assert f"]({name})" in md
    json.dumps(headline)  # JSON-able
    assert s["meta"]["headline"] == json.loads(json.dumps(headline))


def test_report_says_it_used_padded_mnist(quick):
    out, headline = quick
    s = summary(out)
    md = (out / "report.md").read_text()
    assert headline["data"] == "mnist-padded-32" == s["setup"]["data"] == s["meta"]["data"]
    assert "MNIST padded to 32×32" in md and "NOT the paper's CIFAR-10" in md
    assert "MNIST padded to 32×32" in headline["data_note"]
    assert s["setup"]["dataset_meta"]["pad_to"] == 32
    for net in ("A", "B"):
        acc = headline["acc"][net]
        assert all(0.0 <= acc[k] <= 1.0 for k in ("train_acc_dropout", "test_acc_dropout", "train_acc", "test_acc"))
        assert acc["train_acc"] > 0.5  # trained well above chance (10 classes)


def test_theorem3_path_is_proved_where_it_can_be_and_ends_at_the_two_nets(quick):
    out, headline = quick
    t3 = summary(out)["theorem3"]
    v = t3["verdict"]
    assert headline["no_refuted"] is True and v["certificate"]["no_refuted"] is True
    assert v["certificate"]["counts"] == {"proved": 11, "measured": 2, "refuted": 0} and v["certified"] is False
    cb = t3["path_certified_max"]  # the certified maximum over every t, on the verdict's images, within its budget
    assert cb["lower"] <= cb["upper"] and cb["budget"] == 8 and cb["n_subintervals"] <= 8
    assert headline["proved_segments"] == 11
    assert headline["n_segments"] == v["n_segments"] == 13 == len(t3["claims"])
    assert t3["claims"][0] == t3["claims"][-1] == "dropout_interpolation"
    # the path's ends (evaluated on the evaluation images) have θ_A's and θ_B's losses
    setup = summary(out)["setup"]["accuracy"]
    la, lb = setup["A"]["train_loss"], setup["B"]["train_loss"]
    assert t3["path_end_losses"] == pytest.approx([la, lb], rel=1e-5)
    assert headline["theorem3_end_losses"] == pytest.approx([la, lb], rel=1e-5)
    # the chosen Algorithm 1 draw is the one the path used
    loss = np.asarray(t3["evaluation"]["loss"])
    assert [loss[1, 0], loss[-1, 0]] == pytest.approx(t3["mask_draws"]["chosen_losses"], rel=1e-5)
    # Theorem 3's premise and the exact Lemma 2 sub-claims
    hs, hstar = t3["wide_widths"], t3["narrow_widths"]
    assert 1.5 * max(a / b for a, b in zip(hstar, hs)) <= t3["p"] <= 0.75
    assert v["extra"]["lemma2_part_holds"] is True and v["numerics_ok"] is True
    assert loss.shape == (13, fig3.QUICK.points_per_segment) and np.all(np.isfinite(loss))
    assert headline["theorem3_peak_loss"] == pytest.approx(loss.max())
    assert headline["theorem3_peak_loss"] >= max(la, lb) - 1e-6
    assert 0.0 <= headline["path_min_acc"] <= 1.0
    # the verdict: decided, with ε, the empirical constant and the vacuity ratio (on the cushion samples)
    assert v["verdict"] in ("holds", "fails", "does not apply") and headline["theorem3_verdict"] == v["verdict"]
    assert v["noise"]["lemma3"]["A"]["samples"] == SAMPLES
    assert headline["epsilon"] > 0 and headline["vacuity_ratio"] > 0 and math.isfinite(headline["empirical_constant"])
    md = (out / "report.md").read_text()
    assert "**Finding.**" in md and f"**{v['verdict']}**" in md and "vacuity ratio" in md


def test_straight_line_peaks_above_its_ends(quick):
    out, headline = quick
    t3 = summary(out)["theorem3"]
    line = t3["line"]
    ends = t3["line_end_losses"]
    assert ends == pytest.approx(t3["path_end_losses"], rel=1e-5)  # same end points as the path
    assert len(line["t"]) == 13 * fig3.QUICK.points_per_segment
    assert headline["line_peak_loss"] == pytest.approx(max(line["loss"]))
    assert headline["line_peak_loss"] >= max(ends)
    assert headline["line_min_acc"] == pytest.approx(min(line["acc"]))
    assert 0.0 <= headline["line_min_acc"] <= 1.0


def test_cushion_quantities_are_finite_and_in_range(quick):
    out, headline = quick
    s = summary(out)
    res = s["noise_stability"]["net A"]
    d = res["depth"]
    assert d == 5 and res["n"] == SAMPLES and res["draws"] == fig3.QUICK.cushion_draws

    def values(q, layers):
        vals = [res[q][k][i - 1] for k in ("min", "median", "max") for i in layers]
        assert all(v is not None and math.isfinite(v) for v in vals), (q, vals)
        return vals

    assert all(0.0 < v <= 1.0 + 1e-6 for v in values("layer_cushion", range(1, d + 1)))
    assert all(0.0 < v <= 1.0 + 1e-6 for v in values("interlayer_min", range(1, d)))
    assert all(v >= 1.0 - 1e-6 for v in values("contraction", range(1, d)))  # ‖x‖ ≥ ‖φ(x)‖
    assert all(v > 0.0 for v in values("smoothness_median", range(2, d)))
    assert res["c"] >= 1.0 - 1e-6 and res["rho"] > 0.0 and res["solver"]["converged_fraction"] > 0.9
    vs = s["noise_stability_vs_paper"]
    assert vs["overview_layer"] == headline["noise_stability"]["layer"] == 3
    med = headline["noise_stability"]["layer_cushion_median"]
    assert 0.0 < med <= 1.0 and med == pytest.approx(res["layer_cushion"]["median"][2])
