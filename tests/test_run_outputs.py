"""Results that cannot be mistaken: the manifest of every run, stale files of an earlier run removed, a run that
fails or is interrupted leaves its report marked INCOMPLETE with the reason, finished reports say "Wall time",
files honour the umask, ``cushions`` never leaves ``cushions.npz`` without its report, and a checkpoint and its
side-car never share a name. The demo runs with 30 training steps and one or two sections."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from stability.app import cli
from stability.app import demo as demo_module
from tests._demo_helpers import tiny_pair
from stability.app.report import MANIFEST, Report
from stability.core.io import write_text

pytestmark = pytest.mark.filterwarnings("ignore:UNCONVERGED")


def _figure_section(key: str):
    """A cheap section that writes one figure, ``{key}.png`` (so a later run has something stale to remove)."""

    def add(report, ctx):
        from stability.plots import along

        sec = report.section(key, f"Section {key}")
        sec.finding(f"Section {key} for the tests.")
        report.figure(sec, along.plot_history({"A": _tiny_hist()}), f"{key}.png", key)
        report.add(sec)

    return add


def _tiny_hist():
    from stability.core.train import History

    return History(step=[1, 2], loss=[1.0, 0.5], lr=[0.1, 0.1], test_loss=[1.0, 0.6], test_acc=[0.5, 0.7])


@pytest.fixture()
def tiny_demo(monkeypatch):
    sections = [("first", _figure_section("first")), ("extra", _figure_section("extra"))]
    monkeypatch.setattr(demo_module, "_train_pair", tiny_pair)
    monkeypatch.setattr(demo_module, "demo_sections", lambda: list(sections))
    return sections


def _manifest(out: Path) -> dict:
    return json.loads((out / MANIFEST).read_text())


def test_finished_run_manifest_and_stale_files(tiny_demo, tmp_path):
    out = tmp_path / "d"
    assert cli.main(["demo", "--out", str(out)]) == 0
    m = _manifest(out)
    assert m["status"] == "complete" and m["reason"] is None
    assert sorted(m["files"]) == sorted(p.name for p in out.iterdir() if p.name != MANIFEST)
    assert "extra.png" in m["files"] and "net_a.npz" in m["files"]
    md = (out / "report.md").read_text()
    assert "Wall time: " in md and "so far" not in md and "INCOMPLETE" not in md
    for sec in md.split("\n## ")[1:]:  # every section opens with its finding
        assert sec.split("\n", 2)[2].startswith("**Finding.**"), sec[:200]
    # the same directory again, one section only: the earlier run's extra.png is removed, nothing stale is left
    assert cli.main(["demo", "--only", "first", "--out", str(out)]) == 0
    m2 = _manifest(out)
    assert "extra.png" not in m2["files"] and not (out / "extra.png").exists()
    assert sorted(m2["files"]) == sorted(p.name for p in out.iterdir() if p.name != MANIFEST)


@pytest.mark.parametrize("exc,rc,reason", [(KeyboardInterrupt, 130, "interrupted (KeyboardInterrupt)"),
                                           (RuntimeError, 1, "RuntimeError: section exploded")])
def test_interrupted_or_failed_run_is_marked_incomplete(tiny_demo, monkeypatch, tmp_path, capsys, exc, rc, reason):
    def boom(report, ctx):
        raise exc("section exploded") if exc is RuntimeError else exc()

    tiny_demo[1] = ("extra", boom)
    out = tmp_path / "d"
    assert cli.main(["demo", "--out", str(out)]) == rc
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    md = (out / "report.md").read_text()
    assert md.splitlines()[2].startswith("**INCOMPLETE**") and reason in md and "Wall time so far" in md
    assert "## Section first" in md and (out / "first.png").exists()  # what was finished is kept
    m = _manifest(out)
    assert m["status"] == "incomplete" and m["reason"] == reason
    assert json.loads((out / "summary.json").read_text())["meta"]["status"] == "incomplete"


def test_report_written_while_running_says_incomplete(tmp_path):
    report = Report(tmp_path / "r", title="t")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "**INCOMPLETE**" in md and "had not finished" in md  # a killed run (SIGKILL) leaves this
    report.finish()
    assert "INCOMPLETE" not in (tmp_path / "r" / "report.md").read_text()


def test_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        p = write_text(tmp_path / "a.txt", "x")
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
        os.umask(0o077)
        q = write_text(tmp_path / "b.txt", "x")
        assert stat.S_IMODE(q.stat().st_mode) == 0o600
        os.umask(0o022)
        Report(tmp_path / "r").finish()
        for f in (tmp_path / "r").iterdir():
            assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
    finally:
        os.umask(old)


def test_cushions_never_leaves_its_npz_without_a_report(tmp_path, monkeypatch, capsys):
    import jax

    import proofs_check.lemma3 as lemma3
    from stability.core import checkpoint, nets

    ck = tmp_path / "net.npz"
    checkpoint.save(ck, nets.mlp(jax.random.PRNGKey(0), (64, 8, 10)), {"data": "digits"})

    def boom(*a, **k):
        raise RuntimeError("Lemma 3 exploded")

    monkeypatch.setattr(lemma3, "check_lemma3", boom)
    out = tmp_path / "c"
    rc = cli.main(["cushions", str(ck), "--out", str(out), "--n", "20", "--draws", "1", "--ts", "0,0.5",
                   "--method", "power", "--max-iter", "5", "--lemma3-draws", "1"])
    assert rc == 1 and "failed: RuntimeError: Lemma 3 exploded" in capsys.readouterr().err
    assert (out / "cushions.npz").exists() and "cushions.npz" in _manifest(out)["files"]
    md = (out / "report.md").read_text()
    assert "**INCOMPLETE**" in md and "Lemma 3 exploded" in md


def test_checkpoint_and_side_car_never_share_a_name(tmp_path, capsys):
    out = tmp_path / "net.npz"
    for _ in range(2):  # the second run replaces the first checkpoint (it is one of ours)
        assert cli.main(["train", "--widths", "8", "--steps", "5", "--out", str(out)]) == 0
    side = json.loads(out.with_suffix(".json").read_text())
    assert side["files"] == ["net.npz", "net.json"] and side["data"].startswith("digits")
    before = out.with_suffix(".json").read_bytes()
    capsys.readouterr()
    assert cli.main(["train", "--steps", "5", "--out", str(tmp_path / "net.json")]) == 2  # would clobber the side-car
    assert "must end in .npz" in capsys.readouterr().err and out.with_suffix(".json").read_bytes() == before
