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
              "dtypes": [str(np.asarray(layer["w"]).dtype) for layer in net.layers]}
    arrays: dict[str, np.ndarray] = {_HEADER: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    for l, layer in enumerate(net.layers):
        for k, v in layer.items():
            arrays[f"layer{l}/{k}"] = np.asarray(v)
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
    layers = []
    for l, shape in enumerate(arch.weight_shapes()):
        keys = ["w"] + (["b"] if arch.bias else [])
        layer = {}
        for k in keys:
            name = f"layer{l}/{k}"
            if name not in arrays:
                raise CheckpointError(f"{path} lacks array {name}")
            layer[k] = jnp.asarray(arrays[name])
        if tuple(layer["w"].shape) != shape:
            raise CheckpointError(f"{path}: layer{l}/w has shape {layer['w'].shape}, architecture says {shape}")
        layers.append(layer)
    net = Net(arch, tuple(layers))
    return (net, header["meta"]) if with_meta else net
