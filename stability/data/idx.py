"""The IDX file format (MNIST's original distribution)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from stability.data.dataset import DataFormatError, _maybe_gunzip


_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049


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
