"""tests/_background.py: a registered run that was not queued runs when read; errors reach the test that reads it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import _background


def _job(name: str, code: str, timeout: float = 60) -> _background.Job:
    return _background.Job(name, [sys.executable, "-c", code], env=dict(os.environ), cwd=Path.cwd(), timeout=timeout)


def test_an_unqueued_run_runs_when_read_and_once():
    j = _job("unqueued", "import time; print(time.time_ns())")
    first = j.result()
    assert first.returncode == 0 and first.stdout.strip().isdigit()
    assert j.result().stdout == first.stdout            # read again: the same run, not a second one


def test_an_unqueued_run_does_not_wait_for_a_run_in_progress(tmp_path):
    release = tmp_path / "release"
    busy = _job("busy", f"import os, time\nt = time.time()\n"          # until released (or 10 s have passed)
                        f"while not os.path.exists({str(release)!r}) and time.time() < t + 10: time.sleep(0.02)")
    queue = _background._Queue()                         # a queue like the session's, running ``busy``
    queue.start([busy])
    try:
        assert _job("quick", "print('done')").result().stdout.strip() == "done"
        assert not busy._done.is_set()                   # read while the other run was still going
    finally:
        release.touch()
        queue.thread.join(timeout=60)
    assert busy.result().returncode == 0


def test_a_failing_run_and_a_timeout_reach_the_reader():
    assert _job("fails", "import sys; sys.exit(3)").result().returncode == 3
    with pytest.raises(subprocess.TimeoutExpired):
        _job("slow", "import time; time.sleep(5)", timeout=0.5).result()


def test_registering_a_name_twice_is_refused():
    _background.job("test-background-once", [sys.executable, "-c", "pass"])
    with pytest.raises(ValueError, match="registered twice"):
        _background.job("test-background-once", [sys.executable, "-c", "pass"])


def test_the_scheduling_tables_name_existing_modules_and_order_them():
    """tests/conftest.py's HEAVY_MODULES and MODULE_SECONDS name test modules that exist (a renamed module would
    silently lose its place), and the collection order is heavy modules first, then the others longest first."""
    from tests import conftest

    here = Path(__file__).parent
    for name in (*conftest.HEAVY_MODULES, *conftest.MODULE_SECONDS):
        assert (here / name).is_file(), name
    ids = ["tests/test_planes.py::a", "tests/test_cushions.py::b", "tests/test_reproduce.py::c",
           "tests/test_cli.py::d", "tests/test_nets.py::e", "tests/test_cushions.py::f"]
    ordered = sorted(ids, key=conftest._schedule_key)
    assert ordered == ["tests/test_cli.py::d", "tests/test_reproduce.py::c", "tests/test_cushions.py::b",
                       "tests/test_cushions.py::f", "tests/test_nets.py::e", "tests/test_planes.py::a"]


def test_xla_flags_replace_flags_of_the_same_name_and_drop_named_ones(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--a=1 --b=2 --force=4 --bc=5")
    assert _background.xla_flags("--b=0") == "--a=1 --force=4 --bc=5 --b=0"   # --bc is another flag, kept
    assert _background.xla_flags(drop=["--force"]) == "--a=1 --b=2 --bc=5"
    assert _background.xla_flags("--c=3", drop=["--a"]) == "--b=2 --force=4 --bc=5 --c=3"
    monkeypatch.delenv("XLA_FLAGS")
    assert _background.xla_flags("--b=0") == "--b=0"
