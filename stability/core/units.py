"""A mutable NumPy copy of a :class:`~stability.nets.Net` for exact block edits on the hidden-unit view.

Path builders (docs/THEORY.md §2–§4) write blocks ``A_i[R, C]`` with index sets. With the storage
convention of :mod:`stability.nets` (checked against :func:`~stability.nets.unit_spec` here)
the rows of hidden unit ``u`` of layer ``i`` are axis 0 of ``layers[i-1]`` (``w`` and ``b``) and
its column is axis 1 of ``layers[i]["w"]``, for dense, conv (OIHW), ``flatten`` (out, C, H, W)
and ``gap`` layers alike, so ``A_i[R, C]`` is ``w[np.ix_(R, C)]`` (trailing kernel / position
axes carried along) and no code here branches on the layer kind.
"""

from __future__ import annotations

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from stability.core import nets as _nets

Index = np.ndarray | Sequence[int]


def _ix(a: Index) -> np.ndarray:
    return np.asarray(a, dtype=np.int64).reshape(-1)


def check_unit_axes(arch: _nets.Arch) -> None:
    """The block notation needs rows on axis 0 and columns on axis 1 (the library's unit spec)."""
    for i, ax in _nets.unit_spec(arch).items():
        if any(a != 0 for _, _, a in ax.rows) or any(a != 1 for _, _, a in ax.cols):
            raise NotImplementedError(f"hidden layer {i}: path code needs rows on axis 0 and columns on axis 1, "
                                      f"got {ax}")


class EditNet:
    """NumPy weights ``w[l]`` / biases ``b[l]`` (``None`` without bias); paper index ``A_i = w[i-1]``."""

    __slots__ = ("arch", "w", "b")

    def __init__(self, arch: _nets.Arch, w: list[np.ndarray], b: list[np.ndarray | None]) -> None:
        self.arch, self.w, self.b = arch, w, b

    @classmethod
    def of(cls, net: _nets.Net) -> "EditNet":
        check_unit_axes(net.arch)
        w = [np.array(layer["w"], copy=True) for layer in net.layers]
        b = [np.array(layer["b"], copy=True) if "b" in layer else None for layer in net.layers]
        return cls(net.arch, w, b)

    def copy(self) -> "EditNet":
        return EditNet(self.arch, [a.copy() for a in self.w], [None if a is None else a.copy() for a in self.b])

    def to_net(self) -> _nets.Net:
        layers = []
        for w, b in zip(self.w, self.b):
            layer = {"w": jnp.asarray(w)}
            if b is not None:
                layer["b"] = jnp.asarray(b)
            layers.append(layer)
        return _nets.Net(self.arch, tuple(layers))

    @property
    def depth(self) -> int:
        return len(self.w)

    @property
    def dtype(self):
        return self.w[0].dtype

    def width(self, i: int) -> int:
        """``h_i`` for hidden layer ``i`` (rows of ``A_i``)."""
        return self.w[i - 1].shape[0]

    def scalar(self, v: float) -> np.ndarray:
        return np.asarray(v, dtype=self.dtype)

    # ---- blocks of A_i (paper index i = 1..d); cols=None means every column
    def block(self, i: int, rows: Index, cols: Index | None = None) -> np.ndarray:
        w = self.w[i - 1]
        r = _ix(rows)
        return w[r].copy() if cols is None else w[np.ix_(r, _ix(cols))]

    def set_block(self, i: int, rows: Index, cols: Index | None, values: np.ndarray | float) -> None:
        w = self.w[i - 1]
        r = _ix(rows)
        if cols is None:
            w[r] = values
        else:
            w[np.ix_(r, _ix(cols))] = values

    def bias(self, i: int, rows: Index) -> np.ndarray | None:
        return None if self.b[i - 1] is None else self.b[i - 1][_ix(rows)].copy()

    def set_bias(self, i: int, rows: Index, values: np.ndarray | float | None) -> None:
        if self.b[i - 1] is not None and values is not None:
            self.b[i - 1][_ix(rows)] = values

    # ---- hidden units (rows = A_i rows + b_i, columns = A_{i+1}[:, u])
    def zero_rows(self, i: int, units: Index) -> None:
        """Zero the rows (weights and bias) of ``units`` in ``A_i``."""
        u = _ix(units)
        self.w[i - 1][u] = 0
        if self.b[i - 1] is not None:
            self.b[i - 1][u] = 0

    def copy_rows(self, i: int, src: Index, dst: Index) -> None:
        """Row ``dst[j] := row src[j]`` of ``A_i`` (with bias), all at once."""
        s, t = _ix(src), _ix(dst)
        self.w[i - 1][t] = self.w[i - 1][s].copy()
        if self.b[i - 1] is not None:
            self.b[i - 1][t] = self.b[i - 1][s].copy()

    def set_rows_from(self, i: int, dst: Index, other: "EditNet", src: Index) -> None:
        """Rows ``dst`` of ``A_i`` (with bias) := rows ``src`` of ``other``'s ``A_i``."""
        s, t = _ix(src), _ix(dst)
        self.w[i - 1][t] = other.w[i - 1][s]
        if self.b[i - 1] is not None:
            self.b[i - 1][t] = other.b[i - 1][s]

    def move_cols(self, i: int, src: Index, dst: Index) -> None:
        """Hidden layer ``i``: column ``dst[j] :=`` column ``src[j]``, then the sources not also
        destinations become 0 (simultaneous moves; ``src`` and ``dst`` may not overlap)."""
        s, t = _ix(src), _ix(dst)
        if np.intersect1d(s, t).size:
            raise ValueError("move_cols needs disjoint source and destination columns")
        w = self.w[i]
        cols = w[:, s].copy()
        w[:, s] = 0
        w[:, t] = cols

    def col_nonzero(self, i: int) -> np.ndarray:
        """Boolean mask over the units of hidden layer ``i``: column (in ``A_{i+1}``) not all zero."""
        w = self.w[i]
        return np.moveaxis(w != 0, 1, 0).reshape(w.shape[1], -1).any(axis=1)

    def row_nonzero(self, i: int) -> np.ndarray:
        w = self.w[i - 1]
        nz = (w != 0).reshape(w.shape[0], -1).any(axis=1)
        if self.b[i - 1] is not None:
            nz |= self.b[i - 1] != 0
        return nz

    def equal(self, other: "EditNet") -> bool:
        return all(np.array_equal(a, c) for a, c in zip(self.w, other.w)) and all(
            (a is None and c is None) or np.array_equal(a, c) for a, c in zip(self.b, other.b))
