"""Shared test configuration: hypothesis profiles, JAX's persistent compilation cache and a float64 fixture."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import tempfile

import jax
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
if _cache:
    jax.config.update("jax_compilation_cache_dir", _cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    # the subprocesses tests start (command lines, the benchmark suite, forced-device runs) share the cache
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"


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
    from stability.data import mnist

    jax.clear_caches()
    mnist.clear_cache()
    gc.collect()
    _malloc_trim()


@pytest.fixture
def x64():
    """Run a test in float64 (``jax_enable_x64``), restoring the previous setting afterwards."""
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", prev)
