"""benchmarks/machine_probe.py: the machine-speed probe quoted beside suite timings (README "Tests")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = Path(__file__).parents[1] / "benchmarks" / "machine_probe.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(PROBE), *args], capture_output=True, text=True, timeout=60)


def test_probe_prints_each_run_and_the_median():
    r = _run("--repeats", "3", "--scale", "0.01")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    runs = [float(line.split()[1]) for line in lines[:-1]]
    assert len(runs) == 3 and all(v > 0 for v in runs)
    assert lines[-1].startswith("median ") and float(lines[-1].split()[1]) == sorted(runs)[1]


def test_probe_refuses_bad_arguments_in_one_line():
    for args, needle in ((("--repeats", "0"), "--repeats must be ≥ 1, got 0"), (("--scale", "-1"), "--scale must be > 0, got -1.0")):
        r = _run(*args)
        assert r.returncode == 2 and needle in r.stderr and r.stdout == ""
