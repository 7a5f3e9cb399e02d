"""Subprocess runs the suite checks, started when collection ends so they run beside the in-process tests.

A test module registers a run at import (``job(name, argv, ...)``) and marks the tests that read it with
``@pytest.mark.background(name)``; ``tests/conftest.py`` starts every run whose tests were collected, one at a
time in collection order (one run beside the test processes keeps the session's memory within the budget), and a
test's ``job(name).result()`` waits for its run. A run whose tests were not collected never starts; a queued run
read before its turn waits for the queue; a run that was not queued runs at once in the reading thread. The
subprocesses are the same commands the tests ran inline before: only when they run changes, not what they run or
what is asserted about them.

With pytest-xdist every worker collects every test, but the queue runs once: the first worker to claim it
(an exclusive file in the session's shared directory, :data:`ENV_DIR`) runs it and writes each run's result
there; a reader in another worker waits for that file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Sequence

__all__ = ["job", "tmpdir", "start", "stop", "Job", "ENV_DIR", "session_dir", "xla_flags"]

ENV_DIR = "STABILITY_TEST_BACKGROUND_DIR"
"""The session's shared directory: set by the first pytest process (the xdist controller, or the one process)
and inherited by the workers."""


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

    def _publish(self) -> None:
        """Write the result where readers in other processes find it (atomically: they never see half a file)."""
        r, e = self._result, self._error
        rec = ({"returncode": r.returncode, "stdout": r.stdout, "stderr": r.stderr} if r is not None else
               {"timeout": e.timeout} if isinstance(e, subprocess.TimeoutExpired) else {"error": repr(e)})
        tmp = _result_path(self.name).with_suffix(".tmp")
        tmp.write_text(json.dumps(rec))
        os.replace(tmp, _result_path(self.name))

    def _read_published(self) -> None:
        path = _result_path(self.name)
        deadline = time.monotonic() + self.timeout + 1800   # the queue's earlier runs may take their time first
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"background run {self.name!r}: no result from the worker running the queue")
            time.sleep(0.2)
        rec = json.loads(path.read_text())
        if "returncode" in rec:
            self._result = subprocess.CompletedProcess(self.argv, rec["returncode"], rec["stdout"], rec["stderr"])
        elif "timeout" in rec:
            self._error = subprocess.TimeoutExpired(self.argv, rec["timeout"])
        else:
            self._error = RuntimeError(f"background run {self.name!r} failed to run: {rec['error']}")
        self._done.set()

    def result(self) -> subprocess.CompletedProcess:
        """The finished run (waits for it; runs it now if it was not queued, e.g. its test module imported outside
        pytest's collection; reads it from the shared directory if another worker runs the queue)."""
        if self.name not in _queue.names:
            self.run()      # at once, in this thread: it does not wait for the queue's runs
        elif not _queue.local:
            with self._lock:
                if not self._done.is_set():
                    self._read_published()
        self._done.wait()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


def session_dir() -> Path:
    """The session's shared directory (created by :func:`configure` in the first pytest process, or here)."""
    d = os.environ.get(ENV_DIR)
    if not d:
        d = tempfile.mkdtemp(prefix="stability-bg-")
        os.environ[ENV_DIR] = d
    return Path(d)


def _result_path(name: str) -> Path:
    return session_dir() / f"{name}.result.json"


_jobs: dict[str, Job] = {}


class _Queue:
    def __init__(self) -> None:
        self.names: set[str] = set()
        self.local = True
        self.thread: threading.Thread | None = None

    def start(self, jobs: list[Job], publish: bool = False) -> None:
        self.names = {j.name for j in jobs}

        def work() -> None:
            for j in jobs:
                j.run()
                if publish:
                    j._publish()

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


def xla_flags(*flags: str, drop: Sequence[str] = ()) -> str:
    """``XLA_FLAGS`` for a subprocess: this session's flags (tests/conftest.py) less those named in ``drop`` and
    those ``flags`` set again, then ``flags`` (each ``--name=value``)."""
    names = {f.split("=", 1)[0] for f in (*flags, *drop)}
    kept = [f for f in os.environ.get("XLA_FLAGS", "").split() if f.split("=", 1)[0] not in names]
    return " ".join([*kept, *flags])


def tmpdir(name: str) -> Path:
    """The directory for a run's outputs, the same in every worker of the session (removed when it ends)."""
    d = session_dir() / name
    d.mkdir(parents=True, exist_ok=True)
    return d


def start(names: list[str]) -> None:
    """Start the runs ``names`` (registered ones only, in this order) one after another in a background thread
    of this process, unless another worker of the session has claimed the queue (its readers here then wait for
    the results it writes)."""
    jobs = [_jobs[n] for n in names if n in _jobs]
    if not jobs:
        return
    try:
        os.close(os.open(session_dir() / "queue.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        _queue.names, _queue.local = {j.name for j in jobs}, False
        return
    _queue.start(jobs, publish=True)


def stop() -> None:
    """Wait for this process's queue (a test that failed early may leave a run going; other workers may still
    read its results)."""
    if _queue.thread is not None:
        _queue.thread.join()


def configure(worker: bool) -> bool:
    """Called by every pytest process of the session when it starts: the first one (not an xdist ``worker``)
    creates a fresh shared directory, which the workers it starts inherit. True where it was created (that process
    removes it with :func:`cleanup`)."""
    if worker:
        return False
    os.environ[ENV_DIR] = tempfile.mkdtemp(prefix="stability-bg-")
    return True


def cleanup() -> None:
    shutil.rmtree(session_dir(), ignore_errors=True)
