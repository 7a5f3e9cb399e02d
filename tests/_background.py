"""Subprocess runs the suite checks, started when collection ends so they run beside the in-process tests.

A test module registers a run at import (``job(name, argv, ...)``) and marks the tests that read it with
``@pytest.mark.background(name)``; ``tests/conftest.py`` starts every run whose tests were collected, one at a
time in collection order (one run beside the test process keeps the session's memory within the budget), and a
test's ``job(name).result()`` waits for its run. A run whose tests were not collected never starts; a queued run
read before its turn waits for the queue; a run that was not queued runs at once in the reading thread. The
subprocesses are the same commands the tests ran inline before: only when they run changes, not what they run or
what is asserted about them."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Sequence

__all__ = ["job", "tmpdir", "start", "stop", "Job"]


class Job:
    """One subprocess run: its command, environment and working directory; its result once it has run."""

    def __init__(self, name: str, argv: Sequence[str], *, env: dict[str, str], cwd: Path, timeout: float):
        self.name, self.argv, self.env, self.cwd, self.timeout = name, list(argv), env, cwd, timeout
        self._done = threading.Event()
        self._lock = threading.Lock()   # one run per job, whoever starts it (the queue or a reader)
        self._result: subprocess.CompletedProcess | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        """Run the command unless it already ran (a no-op then)."""
        with self._lock:
            if not self._done.is_set():
                self._run()

    def _run(self) -> None:
        try:
            self._result = subprocess.run(self.argv, cwd=self.cwd, env=self.env, capture_output=True, text=True,
                                          timeout=self.timeout)
        except BaseException as e:  # a timeout or a failed start is re-raised in the test that reads the run
            self._error = e
        finally:
            self._done.set()

    def result(self) -> subprocess.CompletedProcess:
        """The finished run (waits for it; runs it now if it was not queued, e.g. its test module imported outside
        pytest's collection)."""
        if self.name not in _queue.names:
            self.run()      # at once, in this thread: it does not wait for the queue's runs
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


_jobs: dict[str, Job] = {}
_tmp = Path(tempfile.mkdtemp(prefix="stability-bg-"))


class _Queue:
    def __init__(self) -> None:
        self.names: set[str] = set()
        self.thread: threading.Thread | None = None

    def start(self, jobs: list[Job]) -> None:
        self.names = {j.name for j in jobs}

        def work() -> None:
            for j in jobs:
                j.run()

        self.thread = threading.Thread(target=work, name="background-runs", daemon=True)
        self.thread.start()


_queue = _Queue()


def job(name: str, argv: Sequence[str] | None = None, *, env: dict[str, str] | None = None,
        cwd: Path | None = None, timeout: float = 900) -> Job:
    """Register the run ``name`` (with ``argv``), or return the registered one (without)."""
    if argv is None:
        return _jobs[name]
    if name in _jobs:
        raise ValueError(f"background run {name!r} is registered twice")
    _jobs[name] = Job(name, argv, env=dict(os.environ if env is None else env), cwd=cwd or Path.cwd(),
                      timeout=timeout)
    return _jobs[name]


def tmpdir(name: str) -> Path:
    """A fresh directory for a run's outputs (removed when the session ends)."""
    d = _tmp / name
    d.mkdir(parents=True, exist_ok=False)
    return d


def start(names: list[str]) -> None:
    """Start the runs ``names`` (registered ones only, in this order) one after another in a background thread."""
    _queue.start([_jobs[n] for n in names if n in _jobs])


def stop() -> None:
    """Wait for the queue (a test that failed early may leave a run going) and remove the runs' outputs."""
    if _queue.thread is not None:
        _queue.thread.join()
    shutil.rmtree(_tmp, ignore_errors=True)
