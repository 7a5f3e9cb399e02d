"""The command line: `stability train`, `stability demo`, `--help` everywhere, clear errors. (`curve`, `plane`,
`fge`, `cushions` and `reproduce` run in tests/test_readme_commands.py, bad inputs in tests/test_bad_inputs.py.)"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


from stability.core import checkpoint
from stability.app.cli import build_parser, main


def test_help_everywhere(capsys):
    r = subprocess.run([sys.executable, "-m", "stability.app.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage:" in r.stdout  # the module entry point itself
    names = list(build_parser()._subparsers._group_actions[0].choices)
    assert {"demo", "train", "curve", "plane", "fge", "cushions", "connect", "reproduce"} <= set(names)
    for name in names:  # every command's help, in this process (main() returns 0 after printing it)
        assert main([name, "--help"]) == 0, name
        out = capsys.readouterr().out
        assert "usage: stability " + name in out and "--out" in out, name


def test_train_writes_a_loadable_checkpoint(tmp_path, capsys):
    out = tmp_path / "ck" / "net.npz"
    rc = main(["train", "--data", "digits", "--widths", "16", "--steps", "60", "--log-every", "30", "--out", str(out)])
    assert rc == 0
    net, meta = checkpoint.load(out, with_meta=True)
    assert net.arch.widths == (16, 10) and meta["train"]["steps"] == 60
    assert json.loads(out.with_suffix(".json").read_text())["history"]["step"] == [30, 60]
    assert "training:" not in capsys.readouterr().err  # stderr is not a terminal here: no progress lines
    again = tmp_path / "ck" / "verbose.npz"
    assert main(["--verbose", "train", "--data", "digits", "--widths", "16", "--steps", "60", "--log-every", "30",
                 "--out", str(again)]) == 0
    err = capsys.readouterr().err
    assert "training: 30/60 steps (50%)" in err and "steps/s" in err and "left" in err  # steps, rate, time left


def test_train_conv_net_from_cli(tmp_path):
    out = tmp_path / "conv.npz"
    assert main(["train", "--arch", "conv", "--widths", "4,4", "--pool", "max", "--steps", "20", "--log-every", "10",
                 "--out", str(out)]) == 0
    assert checkpoint.load(out).arch.n_conv == 2


def test_unknown_dataset_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--data", "imagenet", "--out", str(tmp_path / "x.npz")]) == 2
    assert "digits" in capsys.readouterr().err
    assert main(["train", "--widths", "a,b", "--out", str(tmp_path / "x.npz")]) == 2  # one line, no SystemExit
    assert "argument --widths" in capsys.readouterr().err


@pytest.fixture(scope="module")
def demo_quick(tmp_path_factory):
    """One ``stability demo --quick`` run, read by the tests below: ``(out, summary, report)``."""
    out = tmp_path_factory.mktemp("demo") / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    return out, json.loads((out / "summary.json").read_text()), (out / "report.md").read_text()


def test_demo_quick_writes_report_summary_and_figures(demo_quick):
    out, summary, report = demo_quick
    line = summary["straight_line"]
    assert line["points"] >= 61 and len(line["train"]["loss"]) == line["points"]
    assert line["barrier"] > 0.1  # two independently trained nets: the straight line has a barrier
    assert summary["setup"]["history_a"]["test_acc"][-1] > 0.9
    for sec in summary:
        if sec == "meta":
            continue
        for fig in summary[sec].get("figures", []):
            assert (out / fig).stat().st_size > 1000 and f"]({fig})" in report
    assert "## The straight line" in report and "Machine:" in report
    assert "Wall time: " in report and "INCOMPLETE" not in report
    for sec in report.split("\n## ")[1:]:  # every section opens with its plain-language finding
        assert sec.split("\n", 2)[2].startswith("**Finding.**"), sec[:200]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert sorted(manifest["files"]) == sorted(p.name for p in out.iterdir() if p.name != "manifest.json")


def test_demo_paths_section_writes_numbers_and_figures(demo_quick):
    """The demo's paths section on its two trained nets (a narrow net trained for Theorem 3): the three theorem
    paths with their segment counts, certificates and verdicts, three figures, the dropout and noise numbers."""
    out, summary, md = demo_quick
    paths = summary["paths"]
    d = len(summary["setup"]["widths"]) + 1  # the demo's nets: hidden layers and the output layer
    for name, n_seg in (("theorem1", 2 * (4 * d - 6) + 8), ("theorem2", 10), ("theorem3", 13)):
        assert (out / f"paths_{name}.png").stat().st_size > 1000 and f"paths_{name}.png" in paths["figures"]
        assert paths[name]["n_segments"] == n_seg and paths[name]["certificate"]["no_refuted"]
        assert paths[name]["verdict"] in ("holds", "fails", "does not apply")
    assert paths["theorem1"]["verdict"] == "holds" and paths["theorem1"]["certificate"]["ok"]
    assert paths["theorem2"]["certificate"]["counts"] == {"proved": 8, "measured": 2, "refuted": 0}
    assert paths["theorem3"]["certificate"]["counts"] == {"proved": 11, "measured": 2, "refuted": 0}
    noise = paths["theorem2"]["noise"]
    assert noise["vacuity_ratio"] > 0 and noise["sqrt_p_eps"] > 0
    assert set(paths["dropout_stability"]) == {"A", "B"}
    line = paths["straight_line"]  # the section's own straight line, on its images: two trained nets, a barrier
    assert 0 < line["barrier"] <= line["max_loss"]
    assert "Paths from the theory" in md and "ε best of 20" in md and "](paths_theorem1.png)" in md


def test_demo_rejects_unknown_sections_before_training(tmp_path, capsys):
    assert main(["demo", "--quick", "--only", "straight_line", "nope", "--out", str(tmp_path / "d")]) == 2
    assert "unknown demo section" in capsys.readouterr().err and not (tmp_path / "d").exists()


def test_every_option_has_help_and_shows_its_default():
    import argparse

    parser = build_parser()
    top = parser.format_help()
    subs = parser._subparsers._group_actions[0].choices
    for name in subs:  # the top-level help lists every command, one line each, without RST markup
        assert any(line.split()[:1] == [name] for line in top.splitlines()), name
    assert "``" not in top
    for name, sub in subs.items():
        text = " ".join(sub.format_help().split())
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"{name} {action.dest}: no help text"
            shown = sub._get_formatter()._get_help_string(action)
            flag = isinstance(action, argparse._StoreTrueAction)
            if action.option_strings and not flag and not action.required:
                assert "default" in shown, f"{name} {action.option_strings}: no default shown"
        assert "``" not in text, name


def test_reproduce_without_a_name_says_what_to_do(capsys):
    assert main(["reproduce"]) == 2
    err = capsys.readouterr().err
    assert "name a reproduction" in err and "--list" in err and "garipov-fge" in err
