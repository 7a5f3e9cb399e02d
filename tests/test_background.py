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


def test_a_failing_run_and_a_timeout_reach_the_reader():
    assert _job("fails", "import sys; sys.exit(3)").result().returncode == 3
    with pytest.raises(subprocess.TimeoutExpired):
        _job("slow", "import time; time.sleep(5)", timeout=0.5).result()


def test_registering_a_name_twice_is_refused():
    _background.job("test-background-once", [sys.executable, "-c", "pass"])
    with pytest.raises(ValueError, match="registered twice"):
        _background.job("test-background-once", [sys.executable, "-c", "pass"])
