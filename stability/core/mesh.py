"""The device mesh: one home for spreading data-heavy work over several devices and processes.

Every data-heavy call of the library (``evaluate``, the BN recompute, ``cushions.measure``, ``fit`` /
``train_curve`` / the ensembles, the certified bound search, ``connect``'s pair loops) takes an optional
``mesh`` (a :class:`jax.sharding.Mesh` with the one axis :data:`AXIS`, from :func:`make_mesh`). With
``mesh=None`` or a one-device mesh the call runs exactly as on one device. With more devices the *data* axis
(samples of a batch) is split over the devices with ``NamedSharding(mesh, P(None, "data"))`` while weights are
replicated; XLA partitions the compiled program, and every sum over samples becomes a cross-device reduction.
Only the order of floating-point additions changes, so results equal the one-device results to rounding
(docs/SCALING.md states the tolerances the tests assert).

**Several processes** (``jax.distributed``): :func:`distributed_init` starts the runtime from the environment
(only the command line calls it). A mesh then spans the devices of every process. Evaluation-type calls
(:func:`batches`) take, in each process, the rows that process holds (its shard of the data); training calls
take the whole training set in every process (the minibatch order is global) and split each minibatch over all
devices. Values the library fetches to the host are replicated (:func:`to_host`).
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from stability.core.chunks import padded_batches

__all__ = ["AXIS", "to_device", "array_module", "make_mesh", "check_devices", "is_sharded", "size", "round_batch",
           "replicate", "shard_rows", "shard_batches", "batches", "agree_min", "constrain_rows", "to_host",
           "row_sharding", "batch_sharding", "distributed_init",
           "ENV_COORDINATOR", "ENV_NUM_PROCESSES", "ENV_PROCESS_ID"]

AXIS = "data"
"""The mesh's one axis: samples are split along it."""

ENV_COORDINATOR = "STABILITY_COORDINATOR"
ENV_NUM_PROCESSES = "STABILITY_NUM_PROCESSES"
ENV_PROCESS_ID = "STABILITY_PROCESS_ID"


def to_device(x: Any, dtype: Any = None) -> jax.Array:
    """``x`` as a JAX array (in ``dtype`` when given). A host value (NumPy array, list, scalar) is copied to the
    default device with ``jax.device_put``, which compiles nothing: ``jnp.asarray``/``jnp.array`` of a NumPy array
    compile one eager program per shape and dtype (JAX 0.10; ~20–40 ms each on a CPU). A JAX array is returned as
    it is (cast when ``dtype`` differs)."""
    if isinstance(x, jax.Array):
        return x if dtype is None or x.dtype == np.dtype(dtype) else x.astype(dtype)
    return jax.device_put(np.asarray(x, dtype=dtype))


def array_module(*xs: Any) -> Any:
    """``numpy`` when array set-up work on ``xs`` (stacking, concatenating, a few elementwise operations) is best
    done on the host: none of them is traced, and they are host values or the backend is the CPU (no transfers).
    Such work then compiles nothing (the same IEEE operations); elsewhere ``jax.numpy``. Callers write the work once
    with the module returned and hand the result to :func:`to_device` (a JAX value passes through unchanged)."""
    leaves = jax.tree_util.tree_leaves(xs)
    if any(isinstance(x, jax.core.Tracer) for x in leaves):
        return jnp
    return np if jax.default_backend() == "cpu" or not any(isinstance(x, jax.Array) for x in leaves) else jnp


def check_devices(devices: Any, name: str = "devices") -> int | None:
    """``devices`` checked without touching any device program: ``None`` (all local devices) or an integer in
    ``1..jax.local_device_count()``; a one-line ``ValueError`` naming ``name`` otherwise."""
    if devices is None:
        return None
    if isinstance(devices, bool) or not isinstance(devices, (int, np.integer)):
        raise ValueError(f"{name} must be a positive integer or None (all local devices), got {devices!r}")
    n_local = jax.local_device_count()
    if not 1 <= int(devices) <= n_local:
        raise ValueError(f"{name} must lie in 1..{n_local} (the local devices of this process), got {devices}")
    return int(devices)


def make_mesh(devices: int | None = None) -> Mesh:
    """A mesh over ``devices`` local devices of every process (``None``: all of them), one axis :data:`AXIS`.

    Under ``jax.distributed`` the mesh spans every process: ``devices`` is the count per process."""
    n = check_devices(devices)
    if n is None:
        devs = jax.devices()
    else:
        devs = [d for p in range(jax.process_count())
                for d in sorted((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)[:n]]
    return Mesh(np.asarray(devs), (AXIS,))


def is_sharded(mesh: Mesh | None) -> bool:
    """True when ``mesh`` spreads work over more than one device (``None`` or one device: today's path)."""
    return mesh is not None and mesh.size > 1


def size(mesh: Mesh | None) -> int:
    """The number of devices of ``mesh`` (1 for ``None``)."""
    return 1 if mesh is None else int(mesh.size)


def round_batch(batch: int, mesh: Mesh | None) -> int:
    """``batch`` rounded up to a multiple of the mesh size (every device gets the same number of rows)."""
    d = size(mesh)
    return int(-(-int(batch) // d) * d)


def row_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (sample) axis split over the mesh."""
    return NamedSharding(mesh, P(AXIS))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """``(n_batches, batch, …)`` stacks: the batch axis split over the mesh."""
    return NamedSharding(mesh, P(None, AXIS))


def _put(a: Any, sharding: NamedSharding, keep: bool = False) -> jax.Array:
    if isinstance(a, jax.Array) and (a.sharding == sharding or keep and isinstance(a.sharding, NamedSharding)
                                     and a.sharding.mesh == sharding.mesh):
        return a
    if jax.process_count() > 1 and isinstance(a, jax.Array) and not a.is_fully_addressable:
        return jax.device_put(a, sharding)
    return jax.device_put(np.asarray(a) if jax.process_count() > 1 else a, sharding)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every array leaf of ``tree`` replicated on every device of ``mesh`` (weights, points, indices); a leaf
    already laid out on ``mesh`` (e.g. the BN recompute's training batches, split by :func:`shard_batches`) is
    kept as it is. Under several processes every process must pass the same values."""
    rep = NamedSharding(mesh, P())
    return jax.tree_util.tree_map(lambda a: _put(a, rep, keep=True), tree)


def shard_rows(a: Any, mesh: Mesh) -> jax.Array:
    """``a`` with its leading axis split over ``mesh`` (its length must be a multiple of the mesh size)."""
    if np.shape(a)[0] % mesh.size:
        raise ValueError(f"the leading axis ({np.shape(a)[0]}) must be a multiple of the {mesh.size} devices")
    return _put(a, row_sharding(mesh))


def shard_batches(*stacks: Any, mesh: Mesh) -> tuple[jax.Array, ...]:
    """Batch stacks ``(n_batches, batch, …)`` (one process: the whole data) with the batch axis split."""
    s = batch_sharding(mesh)
    return tuple(_put(a, s) for a in stacks)


def _process_counts(n_local: int) -> np.ndarray:
    if jax.process_count() == 1:
        return np.asarray([n_local])
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(np.asarray([n_local], np.int64))).reshape(-1)


def batches(x: Any, y: Any, batch_size: int, mesh: Mesh) -> tuple[jax.Array, jax.Array, jax.Array, int]:
    """``(xb, yb, mask, n)``: :func:`~stability.core.evaluate.padded_batches` of the data with the batch axis
    split over ``mesh``; ``n`` is the number of real rows in all processes.

    One process: ``x``, ``y`` are the whole data. Several processes: they are THIS process's rows; each process
    fills its devices' part of every batch (``batch_size / process_count`` rows) and the batch count is the
    largest any process needs (padding masked out)."""
    n_proc = jax.process_count()
    if batch_size % mesh.size:
        raise ValueError(f"batch_size ({batch_size}) must be a multiple of the mesh's {mesh.size} devices")
    if n_proc == 1:
        xb, yb, mb = padded_batches(jnp.asarray(x), jnp.asarray(y), batch_size)
        xb, yb, mb = shard_batches(xb, yb, mb, mesh=mesh)
        return xb, yb, mb, int(np.shape(x)[0])
    counts = _process_counts(int(np.shape(x)[0]))
    local = batch_size // n_proc
    nb = int(max(1, max(-(-int(c) // local) for c in counts)))
    x, y = np.asarray(x), np.asarray(y)
    pad = nb * local - x.shape[0]
    mask = np.concatenate([np.ones(x.shape[0]), np.zeros(pad)])
    xp = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]).reshape((nb, local) + x.shape[1:])
    yp = np.concatenate([y, np.zeros((pad,) + y.shape[1:], y.dtype)]).reshape((nb, local) + y.shape[1:])
    s = batch_sharding(mesh)
    make = jax.make_array_from_process_local_data
    out = tuple(make(s, a, (nb, batch_size) + a.shape[2:]) for a in (xp, yp, mask.reshape(nb, local)))
    return out[0], out[1], out[2], int(counts.sum())


def to_host(a: Any) -> np.ndarray:
    """A device value as a NumPy array: a value spanning other processes' devices must be replicated."""
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
        if not a.is_fully_replicated:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return np.asarray(a.addressable_data(0))
    return np.asarray(a)


def distributed_init(env: Mapping[str, str] | None = None) -> bool:
    """Start ``jax.distributed`` from ``STABILITY_COORDINATOR`` (``host:port``), ``STABILITY_NUM_PROCESSES`` and
    ``STABILITY_PROCESS_ID``; returns whether it started. None set: nothing happens (one process). Some but not all
    set, or a bad value: a one-line ``ValueError`` naming the variable. On CPU the collectives use gloo."""
    env = os.environ if env is None else env
    names = (ENV_COORDINATOR, ENV_NUM_PROCESSES, ENV_PROCESS_ID)
    given = {k: env.get(k, "").strip() for k in names}
    if not any(given.values()):
        return False
    missing = [k for k, v in given.items() if not v]
    if missing:
        raise ValueError(f"{missing[0]} must be set together with {', '.join(k for k in names if k != missing[0])}")
    coord = given[ENV_COORDINATOR]
    host, _, port = coord.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{ENV_COORDINATOR} must be host:port, got {coord!r}")
    try:
        num, pid = int(given[ENV_NUM_PROCESSES]), int(given[ENV_PROCESS_ID])
    except ValueError:
        raise ValueError(f"{ENV_NUM_PROCESSES} and {ENV_PROCESS_ID} must be integers, got "
                         f"{given[ENV_NUM_PROCESSES]!r} and {given[ENV_PROCESS_ID]!r}") from None
    if num < 1:
        raise ValueError(f"{ENV_NUM_PROCESSES} must be >= 1, got {num}")
    if not 0 <= pid < num:
        raise ValueError(f"{ENV_PROCESS_ID} must lie in 0..{num - 1}, got {pid}")
    if jax.config.jax_platforms in ("cpu",) or os.environ.get("JAX_PLATFORMS", "") == "cpu":
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coord, num_processes=num, process_id=pid)
    return True


def agree_min(value: int) -> int:
    """The smallest ``value`` over all processes (one process: ``value``): sizes every process must share."""
    return int(_process_counts(int(value)).min())


def constrain_rows(a: jax.Array, mesh: Mesh) -> jax.Array:
    """Inside a compiled program: lay ``a``'s leading (sample) axis out over ``mesh`` (a data-parallel minibatch)."""
    return jax.lax.with_sharding_constraint(a, row_sharding(mesh))
