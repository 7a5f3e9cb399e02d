"""One process of tests/test_sharding.py's multi-process check (``jax.distributed`` over localhost CPU).

``python _distributed_worker.py OUT.json``: with the STABILITY_COORDINATOR / _NUM_PROCESSES / _PROCESS_ID
environment the process joins the run, loads ITS rows of the evaluation data (rows p, p + P, …) and the whole
training set, evaluates a segment and takes a few data-parallel training steps over a mesh of every process's
device; without them it is the one-process reference (no mesh). Process 0 (or the reference) writes OUT.json."""

from __future__ import annotations

import json
import sys

import jax
import numpy as np

from stability.core import mesh as M  # noqa: E402
from stability.core import nets  # noqa: E402
from stability.core.evaluate import evaluate_line  # noqa: E402
from stability.core.train import TrainConfig, fit  # noqa: E402


def main(out_path: str) -> None:
    distributed = M.distributed_init()
    mesh = M.make_mesh() if distributed else None
    P, p = jax.process_count(), jax.process_index()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 5)).astype(np.float32)
    y = rng.integers(0, 3, 50).astype(np.int32)
    a = nets.mlp(jax.random.PRNGKey(0), [5, 8, 3])
    b = nets.mlp(jax.random.PRNGKey(1), [5, 8, 3])
    xe, ye = x[p::P], y[p::P]                      # this process's shard of the evaluation data
    ev = evaluate_line(a, b, 5, xe, ye, batch_size=8, mesh=mesh)
    cfg = TrainConfig(steps=6, batch_size=8, optimizer="momentum", lr=0.05, log_every=3)
    net, hist = fit(a, x, y, cfg, progress=False, mesh=mesh)
    host = [M.to_host(leaf).tolist() for leaf in jax.tree_util.tree_leaves(net)]
    res = {"processes": P, "devices": jax.device_count(), "mesh": 0 if mesh is None else mesh.size,
           "eval_loss": ev.loss.tolist(), "eval_acc": ev.acc.tolist(), "train_loss": hist.loss, "weights": host,
           "local_loss": evaluate_line(a, b, 5, xe, ye, batch_size=8).loss.tolist() if distributed else None}
    if p == 0:
        with open(out_path, "w") as f:
            json.dump(res, f)
    if distributed:
        jax.distributed.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
