"""``benchmarks/gpu_suite.sh --smoke`` runs every benchmark part end to end at tiny sizes and writes every table;
a failing part, and an unknown argument, make it exit non-zero."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests import _background

ROOT = Path(__file__).parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"
TABLES = ["bench_evaluate", "bench_cushions", "bench_curves", "bench_bounds", "bench_paths", "bench_vgg_plan"]


SMOKE_OPT_LEVEL = "--xla_backend_optimization_level=0"


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The suite's environment: CPU, the test session's compile settings and compilation cache (tests/conftest.py),
    and XLA:CPU's optimisation level 0 in place of the session's. At the smoke sizes the tables' numbers mean nothing
    — the runs check that every part runs and writes its table — and the parts are compile-bound: measured on the
    2-core CPU, the whole smoke run with an empty cache took 62.5 CPU-s at level 1 and 41.7 CPU-s at level 0 (one
    run each)."""
    return dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH="", XLA_FLAGS=_background.xla_flags(SMOKE_OPT_LEVEL),
                BENCH_JAX_CACHE=os.environ.get("JAX_COMPILATION_CACHE_DIR", ""), **(extra or {}))


def _run(*args: str, env_extra: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SUITE), *args], cwd=cwd, env=_env(env_extra), capture_output=True, text=True,
                          timeout=900)


# the two whole-suite runs (every part, then two parts with one failing) run beside the in-process tests
OK_DIR, BAD_DIR = _background.tmpdir("gpu-suite-ok"), _background.tmpdir("gpu-suite-bad")
_background.job("gpu-suite-smoke", ["bash", str(SUITE), "--smoke", "--out-dir", str(OK_DIR / "ok")], env=_env(),
                cwd=ROOT)
_background.job("gpu-suite-failing-part", ["bash", str(SUITE), "--smoke", "--parts", "evaluate,paths", "--out-dir",
                                           str(BAD_DIR / "bad")], env=_env({"BENCH_SUITE_FAIL": "paths"}), cwd=ROOT)


@pytest.mark.background("gpu-suite-smoke")
@pytest.mark.background("gpu-suite-failing-part")
def test_smoke_suite_runs_every_part_and_a_failing_part_fails_it():
    out = OK_DIR / "ok"
    r = _background.job("gpu-suite-smoke").result()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for name in TABLES:
        text = (out / f"{name}_smoke.md").read_text()
        assert "### " in text and "| " in text, name          # a heading with the command and a table
    summary = (out / "gpu_suite_summary.md").read_text()
    assert summary.count("| ran |") == len(TABLES), summary
    assert not (ROOT / "benchmarks" / "results" / "bench_paths_smoke.md").exists()

    # negative control: a part handed an invalid flag fails, the other one still runs, the suite exits non-zero
    bad = BAD_DIR / "bad"
    r = _background.job("gpu-suite-failing-part").result()
    assert r.returncode == 1, r.stdout[-2000:]
    summary = (bad / "gpu_suite_summary.md").read_text()
    assert "| paths |" in summary and "FAILED (exit 2)" in summary, summary
    assert summary.count("| ran |") == 1 and "| evaluate |" in summary, summary


def test_unknown_argument_part_and_results_dir_are_refused():
    r = _run("--smok")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "unknown argument '--smok'" in r.stderr
    r = _run("--smoke", "--parts", "paths,nope")
    assert r.returncode == 2 and "unknown part 'nope'" in r.stderr
    r = _run("--smoke", "--out-dir", str(ROOT / "benchmarks" / "results"))
    assert r.returncode == 2 and "never writes into benchmarks/results" in r.stderr
