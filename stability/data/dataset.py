"""The :class:`Dataset` every loader returns, its errors, and the argument checks loaders share."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np



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
