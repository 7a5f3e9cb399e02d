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


def _nonfinite(name: str, a: np.ndarray) -> str | None:
    """``"layer0/w holds 3 NaN and 1 inf value(s)"`` or None when ``a`` is finite."""
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating) or np.all(np.isfinite(a)):
        return None
    n_nan, n_inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
    parts = [f"{n_nan} NaN"] * bool(n_nan) + [f"{n_inf} inf"] * bool(n_inf)
    return f"{name} holds {' and '.join(parts)} value(s)"


def save(path: str | os.PathLike, net: Net, meta: dict[str, Any] | None = None) -> Path:
    """Write ``net`` (and JSON-serialisable ``meta``) to ``path``; bit-exact on reload. A net with NaN or inf
    weights is refused (it is not a result anyone can use)."""
    header = {"format": FORMAT, "version": VERSION, "arch": net.arch.to_dict(), "meta": meta or {},
              "dtypes": [str(np.asarray(net.A(i)).dtype) for i in range(1, net.depth + 1)]}
    arrays: dict[str, np.ndarray] = {_HEADER: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    for l in range(net.depth):
        arrays[f"layer{l}/w"] = np.asarray(net.A(l + 1))
        if net.bias(l + 1) is not None:
            arrays[f"layer{l}/b"] = np.asarray(net.bias(l + 1))
    bad = [m for m in (_nonfinite(k, a) for k, a in arrays.items() if k != _HEADER) if m]
    if bad:
        raise ValueError(f"refusing to save a net with non-finite weights to {path}: {'; '.join(bad)}")
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def load(path: str | os.PathLike, with_meta: bool = False) -> Net | tuple[Net, dict[str, Any]]:
    """Read a checkpoint written by :func:`save`; a truncated or foreign file, a malformed header or NaN/inf
    weights raise :class:`CheckpointError` (one line naming the file and what is wrong)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file (.npz)")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise CheckpointError(f"{path} is not a stability checkpoint (not a .npz archive: it starts with "
                              f"{magic!r})")
    try:
        with np.load(path, allow_pickle=False) as z:
            if _HEADER not in z.files:
                raise CheckpointError(f"{path} is not a stability checkpoint (no {_HEADER} header)")
            header = json.loads(bytes(z[_HEADER]).decode())
            arrays = {k: z[k] for k in z.files if k != _HEADER}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, json.JSONDecodeError,
            UnicodeDecodeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "allow_pickle" in msg:
            msg = "it holds pickled objects, which a checkpoint never does"
        raise CheckpointError(f"{path} is truncated or not a stability checkpoint: {msg}") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: the {_HEADER} header is a JSON {type(header).__name__}, a checkpoint's is "
                              f"a JSON object")
    if header.get("format") != FORMAT:
        raise CheckpointError(f"{path} has format {header.get('format')!r}, expected {FORMAT!r}")
    if header.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {header.get('version')}, this library reads {VERSION}")
    if not isinstance(header.get("arch"), dict) or not isinstance(header.get("meta", {}), dict):
        raise CheckpointError(f"{path}: the header's 'arch' and 'meta' must be JSON objects")
    try:
        arch = Arch.from_dict(header["arch"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: the header's architecture is malformed ({type(e).__name__}: {e})") from e
    weights, biases = [], []
    for l, shape in enumerate(arch.weight_shapes()):
        names = [f"layer{l}/w"] + ([f"layer{l}/b"] if arch.bias else [])
        for name in names:
            if name not in arrays:
                raise CheckpointError(f"{path} lacks array {name}")
            bad = _nonfinite(name, arrays[name])
            if bad:
                raise CheckpointError(f"{path}: {bad}; a checkpoint must hold finite weights")
        w = jnp.asarray(arrays[names[0]])
        if tuple(w.shape) != shape:
            raise CheckpointError(f"{path}: layer{l}/w has shape {w.shape}, architecture says {shape}")
        weights.append(w)
        biases.append(jnp.asarray(arrays[names[1]]) if arch.bias else None)
    net = Net.from_arrays(arch, weights, biases)
    return (net, header.get("meta", {})) if with_meta else net
