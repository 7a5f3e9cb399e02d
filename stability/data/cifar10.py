"""CIFAR-10 from a directory of the standard python batches the user downloaded."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from stability.data.dataset import (DataFormatError, DataNotFoundError, Dataset, _LAYOUTS, _as_path, _check_bool,
                                    _check_choice, _check_count, _maybe_gunzip, _prefix, _sha256)
from stability.data.pickles import restricted_pickle_load


#: The usual CIFAR-10 per-channel (R, G, B) normalisation constants.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


_CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_TEST_FILE = "test_batch"
_CIFAR10_DIRNAME = "cifar-10-batches-py"
_CIFAR10_HINT = (
    "download the CIFAR-10 python version yourself "
    "(https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz), extract it and pass "
    f"its `{_CIFAR10_DIRNAME}` directory as `source=`"
)


# --------------------------------------------------------------------------
# CIFAR-10
# --------------------------------------------------------------------------


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: (uint8 (N, 3072), int labels (N,))."""
    obj = restricted_pickle_load(_maybe_gunzip(path.read_bytes()), encoding="bytes")
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: expected a pickled dict, got {type(obj).__name__}")

    def get(key: str) -> Any:
        for k in (key.encode(), key):
            if k in obj:
                return obj[k]
        raise DataFormatError(f"{path}: batch dict has no {key!r} entry")

    data, labels = get("data"), get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        raise DataFormatError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {shape}")
    if not isinstance(labels, (list, tuple, np.ndarray)):
        raise DataFormatError(f"{path}: 'labels' must be a list of ints")
    try:
        y = np.asarray(labels)
    except (TypeError, ValueError) as err:
        raise DataFormatError(f"{path}: 'labels' is not a list of ints") from err
    if y.shape != (data.shape[0],) or (y.size and y.dtype.kind not in "iu"):
        raise DataFormatError(f"{path}: expected {data.shape[0]} integer labels, got shape {y.shape}")
    if y.size and (int(y.min()) < 0 or int(y.max()) > 9):
        raise DataFormatError(f"{path}: labels must lie in 0..9")
    return data, y.astype(np.int32)


def _load_cifar10(
    *,
    source: str | os.PathLike[str] | None = None,
    normalize: bool = False,
    layout: str = "image",
    n_train: int | None = None,
    n_test: int | None = None,
) -> Dataset:
    """CIFAR-10 from a local ``cifar-10-batches-py`` directory; NHWC float32 /255."""
    normalize = _check_bool("normalize", normalize)
    _check_choice("layout", layout, _LAYOUTS)
    n_train = _check_count("n_train", n_train, allow_none=True)
    n_test = _check_count("n_test", n_test, allow_none=True)
    if source is None:
        raise DataNotFoundError(f"CIFAR-10 needs source=DIR (there is no bundled copy): {_CIFAR10_HINT}")
    directory = _as_path(source)
    if not directory.is_dir():
        raise DataNotFoundError(f"CIFAR-10 source directory {directory} does not exist; {_CIFAR10_HINT}")
    names = (*_CIFAR10_TRAIN_FILES, _CIFAR10_TEST_FILE)
    if not any((directory / n).is_file() for n in names) and (directory / _CIFAR10_DIRNAME).is_dir():
        directory = directory / _CIFAR10_DIRNAME
    missing = [str(directory / n) for n in names if not (directory / n).is_file()]
    if missing:
        raise DataNotFoundError(f"CIFAR-10 file(s) missing: {', '.join(missing)}; {_CIFAR10_HINT}")

    digests = {n: _sha256((directory / n).read_bytes()) for n in names}
    train = [_read_cifar_batch(directory / n) for n in _CIFAR10_TRAIN_FILES]
    x_tr = np.concatenate([d for d, _ in train])
    y_tr = np.concatenate([y for _, y in train])
    x_te, y_te = _read_cifar_batch(directory / _CIFAR10_TEST_FILE)
    x_tr, y_tr = _prefix(x_tr, n_train, "n_train"), _prefix(y_tr, n_train, "n_train")
    x_te, y_te = _prefix(x_te, n_test, "n_test"), _prefix(y_te, n_test, "n_test")

    mean = np.asarray(CIFAR10_MEAN, dtype=np.float32)
    std = np.asarray(CIFAR10_STD, dtype=np.float32)

    def prep(data: np.ndarray) -> np.ndarray:
        # rows are 1024 R, then 1024 G, then 1024 B values, each 32×32 row-major
        x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / np.float32(255.0)
        if normalize:
            x = (x - mean) / std
        x = x if layout == "image" else x.reshape(x.shape[0], -1)
        return np.ascontiguousarray(x, dtype=np.float32)

    image_shape = (32, 32, 3)
    return Dataset(
        prep(x_tr),
        np.array(y_tr, dtype=np.int32),
        prep(x_te),
        np.array(y_te, dtype=np.int32),
        name="cifar10",
        task="classification",
        num_classes=10,
        input_shape=image_shape if layout == "image" else (math.prod(image_shape),),
        meta={
            "source": str(directory),
            "format": "cifar-10 python batches",
            "sha256": digests,
            "verified": False,
            "scale": "pixel / 255",
            "normalization": {"mean": CIFAR10_MEAN, "std": CIFAR10_STD, "per_channel": "RGB"} if normalize else None,
            "layout": layout,
            "image_shape": image_shape,
            "seed": None,
        },
    )
