"""Sharded calls equal the one-device calls (docs/SCALING.md): 4 forced host devices and 2 `jax.distributed`
processes, each in subprocesses so this process keeps its one device. Tolerances (asserted below):

- float64 evaluation, BN recompute and noise-stability quantities: |Δ| ≤ 1e-12 · max(1, |value|) — only the
  order of the sums over samples changes;
- float32 training (fit with momentum and dropout, train_curve): |Δweights| ≤ 1e-5 · max|weights| and
  |Δloss| ≤ 1e-5 after a few steps (the reduced gradients are rounded differently);
- the certified bound: both intervals are sound, so each lower bound lies below the other's upper bound, and
  they agree to 1e-9 relative.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import _background

ROOT = Path(__file__).resolve().parents[1]
F64_RTOL = 1e-12
F32_RTOL = 1e-5


def _env(*xla_flags: str, **extra: str) -> dict[str, str]:
    """The subprocesses' environment: this session's (its JAX settings and compile flags, tests/conftest.py: each
    comparison below is within one set of flags) less the project's own variables and any forced device count,
    plus ``xla_flags``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STABILITY_")}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT), **extra,
               XLA_FLAGS=_background.xla_flags(*xla_flags, drop=["--xla_force_host_platform_device_count"]))
    return env


# the 4-device run, beside the in-process tests
_background.job("sharding-four-devices", [sys.executable, str(ROOT / "tests" / "_sharding_worker.py")], timeout=300,
                cwd=ROOT, env=_env("--xla_force_host_platform_device_count=4"))


FOUR = pytest.mark.background("sharding-four-devices")


@pytest.fixture(scope="module")
def four() -> dict:
    proc = _background.job("sharding-four-devices").result()
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def close(a, b, rtol: float) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return bool(np.all(np.abs(a - b) <= rtol * np.maximum(1.0, np.abs(a))))


def test_comparison_rejects_a_tampered_result():
    loss = np.array([1.17, 1.34, 1.52])
    assert close(loss, loss * (1 + 1e-14), F64_RTOL)
    assert not close(loss, loss + np.array([0, 1e-9, 0]), F64_RTOL)
    assert not close(loss, loss * (1 + 1e-4), F32_RTOL)


@FOUR
def test_four_forced_devices_and_the_bad_count(four):
    assert four["devices"] == four["mesh_size"] == 4
    assert four["bad_devices"] == "devices must lie in 1..4 (the local devices of this process), got 5"


@FOUR
def test_evaluate_is_the_one_device_evaluation(four):
    e = four["evaluate"]
    assert e["alg"] <= F64_RTOL * max(1.0, max(e["loss"])) and e["off"] <= F64_RTOL * max(1.0, max(e["loss"]))
    assert e["one_device_mesh_bitwise"]                # a one-device mesh is today's program, bit for bit
    assert e["n_devices_data"] == 4 and e["shard_shape"] == [5, 4, 6]   # 70 rows: 5 batches of 16, 4 per device
    assert e["mask_sum"] == 70.0
    # negative control: counting the padded rows (a wrong mask) changes the loss far beyond the tolerance
    assert e["wrong_mask_diff"] > 1e3 * F64_RTOL
    assert four["evaluate_conv"] <= F64_RTOL * 10


@FOUR
def test_bn_recompute_is_the_one_device_recompute(four):
    assert four["bn_split"] == 4
    assert four["bn"] <= F64_RTOL * 10


@FOUR
def test_cushions_are_the_one_device_cushions(four):
    assert four["cushions_nan_same"]
    assert four["cushions_rel"] <= F64_RTOL, four["cushions"]


@FOUR
def test_fit_and_train_curve_data_parallel(four):
    f, c = four["fit"], four["train_curve"]
    assert f["moved"] > 1e-2 and c["moved"] > 1e-3                     # the runs did train
    assert f["weights_rel"] <= F32_RTOL and f["loss"] <= F32_RTOL
    assert f["out_devices"] == 4
    assert f["bad_batch"] == "cfg.batch_size (10) must be a multiple of the mesh's 4 devices"
    assert c["bends"] <= F32_RTOL and c["loss"] <= F32_RTOL


@FOUR
def test_bound_search_stays_certified(four):
    (l1, l4), (u1, u4) = four["bound"]["lower"], four["bound"]["upper"]
    assert l1 <= u1 and l4 <= u4 and l4 <= u1 and l1 <= u4
    assert close(l1, l4, 1e-9) and close(u1, u4, 1e-9)


@FOUR
def test_connect_pairs_on_the_mesh_are_the_one_device_pairs(four):
    one, fourd = np.asarray(four["connect"]["one"]), np.asarray(four["connect"]["four"])
    assert one.shape == fourd.shape == (3, 3)  # 3 pairs × (sampled max, certified upper, certified lower)
    assert close(one[:, 0], fourd[:, 0], F64_RTOL)
    assert np.all(one[:, 2] <= fourd[:, 1]) and np.all(fourd[:, 2] <= one[:, 1]) and close(one, fourd, 1e-9)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_processes_equal_one(tmp_path):
    worker = str(ROOT / "tests" / "_distributed_worker.py")
    port = _free_port()
    multi, single = tmp_path / "multi.json", tmp_path / "single.json"
    procs = [subprocess.Popen([sys.executable, worker, str(multi)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env=_env(STABILITY_COORDINATOR=f"127.0.0.1:{port}", STABILITY_NUM_PROCESSES="2",
                                       STABILITY_PROCESS_ID=str(i)))
             for i in range(2)]
    ref = subprocess.run([sys.executable, worker, str(single)], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env=_env())
    errs = [p.communicate(timeout=180)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(e[-2000:] for e in errs)
    assert ref.returncode == 0, ref.stderr[-2000:]
    m, s = json.loads(multi.read_text()), json.loads(single.read_text())
    assert (m["processes"], m["devices"], m["mesh"]) == (2, 2, 2) and (s["processes"], s["mesh"]) == (1, 0)
    # each process held half the evaluation rows; the result is over all of them
    assert close(m["eval_loss"], s["eval_loss"], 1e-6) and m["eval_acc"] == s["eval_acc"]
    assert close(m["train_loss"], s["train_loss"], F32_RTOL)
    scale = max(np.max(np.abs(w)) for w in s["weights"])
    assert max(np.max(np.abs(np.asarray(a) - np.asarray(b))) for a, b in zip(m["weights"], s["weights"])) \
        <= F32_RTOL * scale
    # negative control: process 0's rows alone (no mesh: the other process's rows dropped) give another loss
    assert not close(m["local_loss"], s["eval_loss"], 1e-3)
