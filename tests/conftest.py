"""Shared test configuration: hypothesis profiles, JAX's persistent compilation cache and a float64 fixture."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys
import tempfile

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", max_examples=25, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
settings.register_profile("dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.register_profile("thorough", max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# XLA programs that several tests build from fresh jit objects (same computation, same shapes) are compiled
# once per session, and once per machine across sessions: JAX's persistent compilation cache, keyed on the
# program, the JAX version and the backend. STABILITY_TEST_JAX_CACHE names another directory ("" turns it off).
_cache = os.environ.get("STABILITY_TEST_JAX_CACHE", os.path.join(tempfile.gettempdir(),
                                                                   f"stability-test-jax-cache-{os.getuid()}"))
# JAX settings of the session and of the subprocesses its tests start, as JAX_* environment variables (read when
# JAX is imported; this file does not import it, so the xdist controller, which runs no test, stays small):
# * the persistent compilation cache above (when ``_cache`` is not ""), for every program, however quick to compile:
#   the suite compiles thousands of small programs (~20 ms each; one per eager operation and shape) again in each
#   worker and after each module's ``jax.clear_caches()``, and reading one back costs less. Measured on the 2-core
#   CPU, eight modules (test_algebra … test_theorems, 78 tests) in one process, empty cache, alternated runs:
#   114.7 and 115.8 CPU-s caching programs that took ≥ 0.05 s, 109.0 and 104.9 caching all (1,260 files, 9.4 MB);
# * no source locations in the lowered programs (``jax_traceback_in_locations_limit`` 0; JAX's default keeps 100
#   frames per operation). They serve XLA's own error messages and profiles, not a test; building them is part of
#   every lowering. Measured on the 2-core CPU, test_cushions.py + test_verdicts.py, one process, empty cache:
#   103 and 103 user CPU-s with the default, 94 and 97 with 0 (alternated runs). Locations are metadata, not
#   operations; the suite passes either way. A limit the caller set wins.
_JAX_SETTINGS = {"jax_traceback_in_locations_limit": int(os.environ.get("JAX_TRACEBACK_IN_LOCATIONS_LIMIT", "0"))}
if _cache:
    _JAX_SETTINGS.update(jax_compilation_cache_dir=_cache, jax_persistent_cache_min_compile_time_secs=0,
                         jax_persistent_cache_min_entry_size_bytes=0)
for _name, _value in _JAX_SETTINGS.items():
    os.environ[_name.upper()] = str(_value)
    if "jax" in sys.modules:   # imported already (by a plugin): set it directly as well
        sys.modules["jax"].config.update(_name, _value)


def _cpu_only() -> bool:
    """True when this session's JAX cannot pick an accelerator: ``JAX_PLATFORMS=cpu``, or no PJRT plug-in
    installed where JAX discovers them (the ``jax_plugins`` namespace package and entry-point group) and no TPU
    library."""
    import importlib.metadata
    import importlib.util

    platforms = os.environ.get("JAX_PLATFORMS", "").strip().lower()
    if platforms:
        return platforms == "cpu"
    return (importlib.util.find_spec("jax_plugins") is None and importlib.util.find_spec("libtpu") is None
            and not importlib.metadata.entry_points(group="jax_plugins"))


# The suite compiles ~10,000 XLA programs (most of them small: one per eager op and shape), and on a CPU compiling
# is most of its time. For this process and the subprocesses it starts, XLA:CPU compiles with LLVM's level-1
# optimisation and the loop emitters instead of the fusion emitters. Measured on the 2-core CPU with an empty
# compilation cache: backend compile time 520 s -> 300 s, the suite 875 s -> 721 s, the conv and float64 programs
# of the quick reproductions no slower (test_reproduce 81 s -> 67 s). Results differ from XLA's defaults by float
# rounding, which long training runs carry on (`stability demo --quick`: -O1 alone moves numbers by <= 2e-7
# relative; the loop emitters alone move the 600-step learned curves' losses by up to 5%; the kuditipudi-thm1 quick
# run with both: net A's epsilon 0.1948 -> 0.1926). The suite passes either way; its tolerances are unchanged.
# (-O0 was rejected: 3-12x slower float64 conv programs, and it changes rounding the solver's exact-equality test
# sees.) The benchmark smoke runs (tests/test_gpu_suite.py) inherit these flags with level 0 in place of 1: their
# timings and numbers are not the point, and at their tiny sizes they are compile-bound.
# STABILITY_TEST_XLA_FLAGS names other flags ("" compiles with XLA's defaults).
TEST_XLA_FLAGS = "--xla_backend_optimization_level=1 --xla_cpu_use_fusion_emitters=false"
_xla = os.environ.get("STABILITY_TEST_XLA_FLAGS", TEST_XLA_FLAGS if _cpu_only() else "")
if _xla:
    _have = os.environ.get("XLA_FLAGS", "")
    _add = [f for f in _xla.split() if f.split("=")[0] not in _have]   # a flag the caller set wins
    os.environ["XLA_FLAGS"] = " ".join([_have, *_add]).strip()


def _malloc_trim() -> None:
    """Hand freed heap pages back to the operating system (glibc keeps them otherwise)."""
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """After each test module: drop JAX's in-memory compiled programs and traces (the persistent cache above
    reloads any a later module needs) and the MNIST pickle cache, so the session's memory stays that of one
    module rather than growing with every program the suite has ever compiled."""
    yield
    import jax

    from stability.data import mnist

    jax.clear_caches()
    mnist.clear_cache()
    gc.collect()
    _malloc_trim()


def _drop_lowered_modules() -> None:
    """Drop the MLIR modules JAX keeps for every program it has lowered (its lowering caches), keeping the compiled
    programs. On this JAX they are three quarters of a compiled program's memory (600 small programs: 1.16 GB,
    0.29 GB after); calling a compiled function again does not lower or compile anything. The caches are JAX
    internals: where they are missing this does nothing."""
    from jax._src import pjit
    from jax._src.interpreters import pxla

    for fn in (getattr(pjit, "_pjit_lower", None), getattr(pxla, "_cached_lowering_to_hlo", None)):
        if fn is not None and hasattr(fn, "cache_clear"):
            fn.cache_clear()


@pytest.fixture(autouse=True)
def _release_lowered_modules():
    """After each test: the lowered modules go; the compiled programs stay for the module's other tests."""
    yield
    _drop_lowered_modules()
    _malloc_trim()


_LOWERED_EVERY = 100   # long tests (a whole demo or reproduction compiles ~800 programs): drop every 100 compiles
_compiles = [0]


def _count_compile(event: str, duration: float, **kwargs) -> None:
    """A compile listener: every ``_LOWERED_EVERY`` backend compiles, drop the lowered modules. It runs after a
    compile has finished, outside the lowering caches it clears."""
    if event == "/jax/core/compile/backend_compile_duration":
        _compiles[0] += 1
        if _compiles[0] % _LOWERED_EVERY == 0:
            _drop_lowered_modules()
            _malloc_trim()



@pytest.fixture
def x64():
    """Run a test in float64 (``jax_enable_x64``), restoring the previous setting afterwards."""
    import jax

    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", prev)


def _xdist_worker(config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config):
    from tests import _background

    config.addinivalue_line("markers", "background(name): the test reads the subprocess run NAME, started beside "
                                       "the in-process tests when collection ends (tests/_background.py)")
    config._stability_bg_owner = _background.configure(worker=_xdist_worker(config))
    if _xdist_worker(config) or not getattr(config.option, "numprocesses", 0):   # a process that runs tests
        import jax

        jax.monitoring.register_event_duration_secs_listener(_count_compile)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (the default, pyproject.toml): two workers at most — the suite's memory budget (3 GB) is
    measured for two; fewer CPUs, fewer workers."""
    return max(1, min(2, os.cpu_count() or 1))


# The modules whose quick runs hold the most memory (one process, measured: test_reproduce 1.64 GB,
# test_reproduce_fig2 1.35 GB, test_reproduce_fig3 1.15 GB, test_cli 1.11 GB; every other module ≤ 1.06 GB) run one
# after another in one xdist worker, first, so two of them never run at once (two at once: 3.2 GB for the tree).
# test_cli goes first: it is the lightest of them and runs while the subprocess runs (tests/_background.py) do.
# test_sharding comes last in the same worker: its two-process run adds 0.7 GB of subprocesses, which then never
# coincide with a heavy module (they did: 2818 MiB).
HEAVY_MODULES = ("test_cli.py", "test_reproduce.py", "test_reproduce_fig2.py", "test_reproduce_fig3.py",
                 "test_sharding.py")


# The other modules go to the workers longest first, so the last ones handed out are short and the two workers
# finish together (a worker takes its next module while its current one still runs; with xdist's own order, by
# number of tests, a 14 s module of two tests came last and the other worker idled 21 s at the end of the session).
# CPU seconds per module, measured on the 2-core CPU (one run, every compilation cache empty, per-test CPU times);
# a module not listed counts as MODULE_SECONDS_DEFAULT. Only the order depends on these numbers.
MODULE_SECONDS = {
    "test_cushions.py": 47, "test_verdicts.py": 43, "test_theorems.py": 30, "test_readme_commands.py": 22,
    "test_algebra.py": 17, "test_nets.py": 17, "test_garipov_recipe.py": 15, "test_readme.py": 14,
    "test_bounds.py": 13, "test_paths.py": 12, "test_ensembles.py": 11, "test_connect.py": 11,
    "test_batchnorm.py": 10, "test_counterexample.py": 8, "test_align.py": 8, "test_curves_core.py": 8,
    "test_hostloop.py": 7, "test_train.py": 6, "test_run_outputs.py": 6, "test_lemma3.py": 6,
    "test_reproduce_ainsworth.py": 6, "test_dropout.py": 5, "test_trivial_curve.py": 5, "test_evaluate.py": 5,
}
MODULE_SECONDS_DEFAULT = 3


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0].rsplit("/", 1)[-1]


def _heavy_rank(nodeid: str) -> int:
    name = _module(nodeid)
    return HEAVY_MODULES.index(name) if name in HEAVY_MODULES else len(HEAVY_MODULES)


def _schedule_key(nodeid: str) -> tuple[int, int]:
    """The heavy modules first, in their order; then the others by their cost, longest first."""
    rank = _heavy_rank(nodeid)
    return rank, 0 if rank < len(HEAVY_MODULES) else -MODULE_SECONDS.get(_module(nodeid), MODULE_SECONDS_DEFAULT)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The heavy modules first, then the others longest first (a stable sort: the order within a module, and
    among modules of equal cost, is kept)."""
    items.sort(key=lambda item: _schedule_key(item.nodeid))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` (pyproject.toml) with the heavy modules as ONE unit of work: each module still runs whole
    in one worker (its module-scoped fixtures — trained nets, quick runs — are built once), and the heavy modules
    all in the same worker, one after another. Units are handed out in the collection order set above (xdist's
    reordering by number of tests is switched off)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class HeavyModulesTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "heavy modules" if _heavy_rank(nodeid) < len(HEAVY_MODULES) else super()._split_scope(nodeid)

        def schedule(self) -> None:
            option = self.config.option
            saved = getattr(option, "loadscopereorder", False)
            option.loadscopereorder = False
            try:
                super().schedule()
            finally:
                option.loadscopereorder = saved

    return HeavyModulesTogether(config, log)


def pytest_collection_finish(session):
    """Start the subprocess runs the collected tests read, one at a time, beside the in-process tests (none when
    only collecting: ``--collect-only`` runs no test)."""
    from tests import _background

    if session.config.option.collectonly:
        return
    names: list[str] = []
    for item in session.items:
        for mark in item.iter_markers("background"):
            if mark.args[0] not in names:
                names.append(mark.args[0])
    _background.start(names)


def pytest_sessionfinish(session):
    from tests import _background

    _background.stop()


def pytest_unconfigure(config):
    from tests import _background

    if getattr(config, "_stability_bg_owner", False):
        _background.cleanup()
