"""Save and load nets (arrays + architecture) in one ``.npz`` file, written atomically."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from stability.core.io import atomic_write
from stability.core.nets import Arch, Net

__all__ = ["save", "load", "CheckpointError", "FORMAT", "VERSION"]

FORMAT = "stability-net"
VERSION = 1
_HEADER = "__stability__"


class CheckpointError(ValueError):
    """A file that is not a complete checkpoint of this library."""


def save(path: str | os.PathLike, net: Net, meta: dict[str, Any] | None = None) -> Path:
    """Write ``net`` (and JSON-serialisable ``meta``) to ``path``; bit-exact on reload."""
    header = {"format": FORMAT, "version": VERSION, "arch": net.arch.to_dict(), "meta": meta or {},
              "dtypes": [str(np.asarray(net.A(i)).dtype) for i in range(1, net.depth + 1)]}
    arrays: dict[str, np.ndarray] = {_HEADER: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    for l in range(net.depth):
        arrays[f"layer{l}/w"] = np.asarray(net.A(l + 1))
        if net.bias(l + 1) is not None:
            arrays[f"layer{l}/b"] = np.asarray(net.bias(l + 1))
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def load(path: str | os.PathLike, with_meta: bool = False) -> Net | tuple[Net, dict[str, Any]]:
    """Read a checkpoint written by :func:`save`; a truncated or foreign file raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            if _HEADER not in z.files:
                raise CheckpointError(f"{path} is not a stability checkpoint (no {_HEADER} header)")
            header = json.loads(bytes(z[_HEADER]).decode())
            arrays = {k: z[k] for k in z.files if k != _HEADER}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path} is truncated or not a stability checkpoint: {e}") from e
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} has format {header.get('format')!r}, expected {FORMAT!r}")
    if header.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {header.get('version')}, this library reads {VERSION}")
    arch = Arch.from_dict(header["arch"])
    weights, biases = [], []
    for l, shape in enumerate(arch.weight_shapes()):
        names = [f"layer{l}/w"] + ([f"layer{l}/b"] if arch.bias else [])
        for name in names:
            if name not in arrays:
                raise CheckpointError(f"{path} lacks array {name}")
        w = jnp.asarray(arrays[names[0]])
        if tuple(w.shape) != shape:
            raise CheckpointError(f"{path}: layer{l}/w has shape {w.shape}, architecture says {shape}")
        weights.append(w)
        biases.append(jnp.asarray(arrays[names[1]]) if arch.bias else None)
    net = Net.from_arrays(arch, weights, biases)
    return (net, header["meta"]) if with_meta else net
