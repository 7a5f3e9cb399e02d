"""`stability connect` over 5 digits MLPs (in float64): symmetric matrices with a zero barrier diagonal, the
Theorem 1 certified bound above the sampled maximum on its path, a minimum spanning tree of k − 1 edges, heat
maps; the spanning-tree helper and the bad-input refusals, each with a negative control."""

from __future__ import annotations

import itertools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from stability import data
from stability.app import connect as C
from stability.app.cli import main
from stability.core import checkpoint, nets
from stability.core.graphs import check_symmetric, spanning_tree
from stability.core.train import TrainConfig, fit

K = 5


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Five tiny digits MLPs (float64, a few Adam steps from random weights) saved as checkpoints, then
    ``stability connect`` on them in-process; yields (out dir, summary, matrices, checkpoint paths)."""
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        ds = data.load("digits")
        root = tmp_path_factory.mktemp("connect")
        paths = []
        for s in range(K):
            net = nets.mlp(jax.random.PRNGKey(s), (64, 12, 12, 10), dtype=jnp.float64)
            cfg = TrainConfig(steps=120, batch_size=64, optimizer="adam", lr=1e-2, seed=s, log_every=120)
            net, _ = fit(net, ds.x_train, ds.y_train, cfg, progress=False)
            paths.append(root / f"m{s}.npz")
            checkpoint.save(paths[-1], net, {"data": "digits"})
        out = root / "out"
        rc = main(["connect", *map(str, paths), "--out", str(out), "--theorems", "1", "--n", "300", "--points", "9",
                   "--points-per-segment", "3", "--rounds", "1", "--bound-budget", "64"])
        assert rc == 0
        yield out, json.loads((out / "summary.json").read_text()), json.loads((out / "matrices.json").read_text()), paths
    finally:
        jax.config.update("jax_enable_x64", prev)


def _tree_is_minimal(w: np.ndarray, edges) -> bool:
    """The cycle property: every non-tree edge weighs at least the heaviest tree edge on the tree path it closes."""
    k = w.shape[0]
    adj = {i: [] for i in range(k)}
    for i, j, _ in edges:
        adj[i].append(j)
        adj[j].append(i)

    def path_max(a, b):
        stack = [(a, -1, -math.inf)]
        while stack:
            node, parent, best = stack.pop()
            if node == b:
                return best
            stack += [(n, node, max(best, w[node, n])) for n in adj[node] if n != parent]
        raise AssertionError("tree is not spanning")

    tree = {(i, j) for i, j, _ in edges}
    return all(w[i, j] >= path_max(i, j) for i, j in itertools.combinations(range(k), 2) if (i, j) not in tree)


def test_connect_writes_symmetric_matrices_heat_maps_and_spanning_trees(run):
    out, s, mats, _ = run
    methods = mats["methods"]
    assert methods == ["line", "aligned_wm", "theorem1"] and mats["labels"] == [f"m{k}" for k in range(K)]
    ends = np.array([n["loss"] for n in s["nets"]["nets"]])
    for m in methods:
        b = check_symmetric(mats[m]["barrier"], m, zero_diagonal=True)
        lv = check_symmetric(mats[m]["level"], m)
        assert b.shape == (K, K) and np.all(np.isfinite(b)) and np.array_equal(np.diag(lv), ends)
        off = ~np.eye(K, dtype=bool)
        assert np.allclose(b[off], (lv - np.maximum.outer(ends, ends))[off], rtol=0, atol=1e-12)
        tree = s["matrices"]["trees"][m]
        assert tree["connected"] and len(tree["edges"]) == K - 1
        assert all(b[i, j] == w for i, j, w in tree["edges"]) and _tree_is_minimal(b, tree["edges"])
        assert (out / f"heatmap_{m}.png").stat().st_size > 5000
    md = (out / "report.md").read_text()
    assert md.index("## Finding") < md.index("## The nets") < md.index("## Matrices")
    finding = s["finding"]["finding"]
    assert finding.startswith(f"All {K * (K - 1) // 2} pairs are connected below loss") and "Theorem 1" in finding
    assert "after weight matching up to" in finding and "certified for every t" in finding


def test_theorem1_certified_bound_is_above_the_sampled_maximum(run):
    _, s, _, _ = run
    pairs = s["pairs"]["pairs"]
    assert len(pairs) == K * (K - 1) // 2
    for p in pairs:
        t1 = p["methods"]["theorem1"]
        assert t1["certified"] and t1["level_kind"] == "certified" and t1["verdict"] in ("holds", "fails")
        assert t1["upper"] >= t1["sampled_max"] - 1e-12 * max(1.0, abs(t1["sampled_max"])), p
        assert t1["lower"] <= t1["upper"] and t1["detail"]["certificate"].startswith(f"{t1['detail']['n_segments']} of {t1['detail']['n_segments']} segments proved")
        assert t1["n_points"] == 3 * t1["detail"]["n_segments"]
        for m in ("line", "aligned_wm"):  # the straight lines are certified too (default), above their samples
            r = p["methods"][m]
            assert r["certified"] and r["upper"] >= r["sampled_max"] - 1e-12 * max(1.0, abs(r["sampled_max"]))
        wm = p["methods"]["aligned_wm"]["detail"]
        assert wm["lemma4_proved"] and wm["function_max_abs_diff"] <= 1e-10 and wm["objective_after"] >= wm["objective_before"]
    # negative control: a tampered result whose certified bound lies below its samples is flagged
    good = C.MethodResult("theorem1", sampled_max=1.0, upper=1.0, end_max=0.5)
    bad = C.MethodResult("theorem1", sampled_max=1.0, upper=0.9, end_max=0.5)
    assert good.consistent is True and bad.consistent is False and bad.barrier == pytest.approx(0.4)


def test_spanning_tree_keeps_zero_and_tied_edges_and_refuses_asymmetry():
    w = np.zeros((4, 4))  # every barrier exactly 0: scipy reads stored zeros as "no edge"; ranks keep them
    t = spanning_tree(w)
    assert len(t.edges) == 3 and t.connected and t.bottleneck == 0.0
    w = np.array([[0, 1, 3, 3], [1, 0, 1, 3], [3, 1, 0, -2], [3, 3, -2, 0]], float)
    t = spanning_tree(w)
    assert [e[:2] for e in t.edges] == [(2, 3), (0, 1), (1, 2)] and t.total == 0.0 and _tree_is_minimal(w, t.edges)
    w[0, 1] = w[1, 0] = w[0, 2] = w[2, 0] = w[0, 3] = w[3, 0] = np.nan  # node 0 unreachable: a forest
    t = spanning_tree(w)
    assert not t.connected and len(t.edges) == 2
    with pytest.raises(ValueError, match="symmetric: entry"):  # negative controls
        spanning_tree(np.array([[0, 1], [2, 0]]))
    with pytest.raises(ValueError, match="zero diagonal"):
        check_symmetric(np.eye(2), zero_diagonal=True)
    with pytest.raises(ValueError, match="square"):
        spanning_tree(np.zeros((2, 3)))


def test_bad_inputs_are_refused_in_one_line(run, tmp_path, capsys):
    _, _, _, paths = run
    other = tmp_path / "other.npz"
    checkpoint.save(other, nets.mlp(jax.random.PRNGKey(9), (64, 7, 10)), {"data": "digits"})
    cases = [
        ([str(paths[0])], "at least 2 checkpoints"),
        ([str(paths[0]), str(other)], "one architecture"),
        ([*map(str, paths[:2]), "--theorems", "4"], "theorems must be"),
        ([*map(str, paths[:2]), "--points", "1"], "points must be"),
        ([*map(str, paths[:2]), "--noise-p", "0.9"], "noise_p"),
        ([*map(str, paths[:2]), "--data", "teacher"], "inputs of shape"),
        ([*map(str, paths[:2]), "--n", "1"], "--n must be"),
    ]
    for argv, msg in cases:
        assert main(["connect", *argv, "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="align must be"):
        C.ConnectConfig(align="greedy").check()
    C.ConnectConfig().check()  # the defaults pass
