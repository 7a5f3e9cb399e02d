"""THE hidden-unit view (docs/THEORY.md §0): one description of where a hidden unit lives, and every operation
on units — for dense and channel-wise conv nets alike.

A unit ``u`` of hidden layer ``i`` (paper numbering, 1..d−1) owns its **row** (what it reads: axis 0 of layer
``i``'s weight and its bias entry) and its **column** (what it writes: axis 1 of layer ``i+1``'s weight). With
this library's storage convention (:mod:`stability.core.nets`) that holds for dense, conv (OIHW), ``flatten``
``(out, C, H, W)`` and ``gap`` layers alike, so no code here or in its callers branches on the layer kind.
:func:`unit_spec` states it declaratively, in the spirit of a permutation spec.

Two ways to use the view:

* functions on :class:`~stability.core.nets.Net` (``get_rows`` … ``permute_units``, ``scale_cols``): pure,
  usable under ``jax.jit`` / ``vmap`` / ``grad`` (traced arrays are edited with ``jnp``; concrete ones with
  NumPy, so building many paths does not compile a scatter kernel per shape);
* :class:`EditNet`: a host-side NumPy edit buffer for exact block edits ``A_i[R, C]`` (the path builders of
  Lemmas 1, 2, 4 and Theorems 1–3). Its nets stay on the host (:meth:`EditNet.to_net` gives NumPy leaves) until
  a path stacks its way points for evaluation, which moves them to the device once.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from stability.core.nets import Arch, Net

Array = jax.Array
Index = np.ndarray | Sequence[int]

__all__ = [
    "UnitAxes", "unit_spec", "num_units", "widths", "depth",
    "get_row", "set_row", "get_col", "set_col", "get_rows", "set_rows", "get_cols", "set_cols",
    "zero_unit", "copy_unit", "permute_units", "scale_cols", "col_norms", "zero_units", "dead_units",
    "live_units", "nonzero_units", "EditNet",
]


class UnitAxes(NamedTuple):
    """Where the units of one hidden layer live: ``(layer, param, axis)`` triples (0-based parameter layers)."""

    rows: tuple[tuple[int, str, int], ...]
    cols: tuple[tuple[int, str, int], ...]


def unit_spec(arch: Arch) -> dict[int, UnitAxes]:
    """Declarative unit spec: hidden layer ``i`` (1..d-1) → where its rows and columns are.

    The same for every layer kind: rows are axis 0 of layer ``i``'s weight (and its bias), columns axis 1 of
    layer ``i+1``'s weight."""
    spec = {}
    for i in range(1, arch.depth):
        rows = ((i - 1, "w", 0),) + (((i - 1, "b", 0),) if arch.bias else ())
        spec[i] = UnitAxes(rows=rows, cols=((i, "w", 1),))
    return spec


def depth(net: Net) -> int:
    return net.arch.depth


def widths(net: Net) -> tuple[int, ...]:
    """Hidden widths ``(h_1, …, h_{d-1})``."""
    return net.arch.widths[:-1]


def num_units(net: Net, i: int) -> int:
    _check_hidden(net, i)
    return net.arch.widths[i - 1]


def _check_hidden(net: Net, i: int) -> None:
    if not 1 <= i < net.arch.depth:
        raise IndexError(f"hidden layer index must be in 1..{net.arch.depth - 1} (paper numbering), got {i}")


# Unit-view edits on concrete arrays run in NumPy (path construction edits many units of nets of ever-new
# shapes; eager jnp scatters would compile a kernel per shape). Under tracing (jit/vmap/grad) the same
# operations use jnp, so the view stays usable inside compiled code.


def _traced(*arrays) -> bool:
    return any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(arrays))


def _idx(units):
    if _traced(units):
        return jnp.atleast_1d(jnp.asarray(units, dtype=jnp.int32))
    return np.atleast_1d(np.asarray(units, dtype=np.int64))


def _take(a: Array, axis: int, idx) -> Array:
    if _traced(a, idx):
        return jnp.take(a, idx, axis=axis)
    return np.take(np.asarray(a), idx, axis=axis)


def _put(a: Array, axis: int, idx, vals: Array) -> Array:
    if _traced(a, idx, vals):
        moved = jnp.moveaxis(jnp.asarray(a), axis, 0)
        moved = moved.at[idx].set(jnp.moveaxis(jnp.asarray(vals, moved.dtype), axis, 0))
        return jnp.moveaxis(moved, 0, axis)
    out = np.array(a)
    vals = np.asarray(vals, dtype=out.dtype)
    np.moveaxis(out, axis, 0)[idx] = np.moveaxis(vals, axis, 0)
    return out


def _param(net: Net, l: int, p: str) -> Array:
    return net.A(l + 1) if p == "w" else net.bias(l + 1)


def _gather(net: Net, where, idx) -> dict[str, Array]:
    return {p: _take(_param(net, l, p), ax, idx) for l, p, ax in where}


def _scatter(net: Net, where, idx, vals: dict[str, Array]) -> Net:
    for l, p, ax in where:
        if p not in vals:
            raise KeyError(f"missing {p!r} in values for layer {l}")
        new = _put(_param(net, l, p), ax, idx, vals[p])
        net = net.with_layer(l + 1, **({"A": new} if p == "w" else {"b": new}))
    return net


def _squeeze(v: Array, axis: int) -> Array:
    return jnp.squeeze(v, axis) if _traced(v) else np.squeeze(np.asarray(v), axis)


def _expand(v: Array, axis: int) -> Array:
    return jnp.expand_dims(v, axis) if _traced(v) else np.expand_dims(np.asarray(v), axis)


def get_rows(net: Net, i: int, units) -> dict[str, Array]:
    """Rows (what the units read) of hidden layer ``i``: ``{"w": …, "b": …}``, unit axis first/kept."""
    _check_hidden(net, i)
    return _gather(net, unit_spec(net.arch)[i].rows, _idx(units))


def set_rows(net: Net, i: int, units, rows: dict[str, Array]) -> Net:
    _check_hidden(net, i)
    return _scatter(net, unit_spec(net.arch)[i].rows, _idx(units), rows)


def get_cols(net: Net, i: int, units) -> dict[str, Array]:
    """Columns (what the units write into layer ``i+1``): ``{"w": …}`` with the unit axis at axis 1."""
    _check_hidden(net, i)
    return _gather(net, unit_spec(net.arch)[i].cols, _idx(units))


def set_cols(net: Net, i: int, units, cols: dict[str, Array]) -> Net:
    _check_hidden(net, i)
    return _scatter(net, unit_spec(net.arch)[i].cols, _idx(units), cols)


def get_row(net: Net, i: int, u: int) -> dict[str, Array]:
    return {k: _squeeze(v, 0) for k, v in get_rows(net, i, [u]).items()}


def set_row(net: Net, i: int, u: int, row: dict[str, Array]) -> Net:
    return set_rows(net, i, [u], {k: _expand(v, 0) for k, v in row.items()})


def get_col(net: Net, i: int, u: int) -> dict[str, Array]:
    return {k: _squeeze(v, 1) for k, v in get_cols(net, i, [u]).items()}


def set_col(net: Net, i: int, u: int, col: dict[str, Array]) -> Net:
    return set_cols(net, i, [u], {k: _expand(v, 1) for k, v in col.items()})


def _zeros_like(vals: dict[str, Array], axis: int, n) -> dict[str, Array]:
    out = {}
    for k, v in vals.items():
        shape = list(np.shape(v))
        shape[axis] = n
        out[k] = jnp.zeros(tuple(shape), v.dtype) if _traced(v) else np.zeros(tuple(shape), np.asarray(v).dtype)
    return out


def zero_unit(net: Net, i: int, units) -> Net:
    """Make units zero: row and column both 0 (the function changes unless they were already dead)."""
    idx = _idx(units)
    n = idx.shape[0]
    net = set_rows(net, i, idx, _zeros_like(get_rows(net, i, idx[:1]), 0, n))
    return set_cols(net, i, idx, _zeros_like(get_cols(net, i, idx[:1]), 1, n))


def copy_unit(net: Net, i: int, src: int, dst: int, split: float = 0.5) -> Net:
    """Copy unit ``src`` onto ``dst``: ``row[dst] := row[src]``, then split src's column,
    ``col[dst] := split·col[src]``, ``col[src] := (1−split)·col[src]``. The function is preserved exactly
    when ``dst`` was dead (its old column, which is overwritten, was 0). ``src``, ``dst`` and ``split`` may be
    traced (the function works under ``jax.jit``); with concrete indices ``src == dst`` is refused."""
    if not _traced(src, dst) and int(src) == int(dst):
        raise ValueError("copy_unit needs two different units")
    net = set_row(net, i, dst, get_row(net, i, src))
    col = get_col(net, i, src)
    net = set_col(net, i, dst, {k: v * split for k, v in col.items()})
    return set_col(net, i, src, {k: v * (1 - split) for k, v in col.items()})


def permute_units(net: Net, i: int, perm) -> Net:
    """Reorder hidden layer ``i``: new unit ``k`` is old unit ``perm[k]`` (rows and columns). A traced ``perm``
    is not checked to be a permutation (a concrete one is)."""
    h = num_units(net, i)
    if not _traced(perm):
        perm = np.asarray(perm)
        if sorted(perm.tolist()) != list(range(h)):
            raise ValueError(f"perm must be a permutation of range({h}), got {perm.tolist()}")
    spec = unit_spec(net.arch)[i]
    for l, p, ax in spec.rows + spec.cols:
        new = _take(_param(net, l, p), ax, perm)
        net = net.with_layer(l + 1, **({"A": new} if p == "w" else {"b": new}))
    return net


def scale_cols(net: Net, scales: Sequence[Array | np.ndarray | None]) -> Net:
    """Multiply the column of every hidden unit by its scale: ``scales[i-1]`` has shape ``(h_i,)`` (``None``
    leaves layer ``i`` unchanged). Dropout's ``θ^i`` and Algorithm 1 are exactly this (whole input channels for
    conv layers, Remark 1). Pure ``jnp``: usable under ``jit``/``vmap``."""
    if len(scales) != net.depth - 1:
        raise ValueError(f"scale_cols needs one scale vector per hidden layer ({net.depth - 1}), got {len(scales)}")
    for i, s in enumerate(scales, start=1):
        if s is None:
            continue
        w = net.A(i + 1)
        s = jnp.asarray(s, w.dtype).reshape((1, -1) + (1,) * (w.ndim - 2))
        net = net.with_layer(i + 1, A=w * s)
    return net


def col_norms(net: Net, i: int) -> np.ndarray:
    """Frobenius norm of every unit's column of hidden layer ``i`` (its whole kernel slice for conv layers;
    concrete weights only: a host array)."""
    _concrete(net, "col_norms")
    w = np.asarray(net.A(i + 1), np.float64)
    return np.sqrt(np.sum(np.moveaxis(w, 1, 0).reshape(w.shape[1], -1) ** 2, axis=1))


def _concrete(net: Net, what: str) -> None:
    if _traced(net):
        raise TypeError(f"{what} returns index sets, so it needs concrete weights; it cannot run under jax.jit / vmap "
                        f"(call it outside the traced function)")


def dead_units(net: Net) -> dict[int, np.ndarray]:
    """Hidden layer → indices of units whose column is exactly 0 (they cannot affect the output). Needs concrete
    weights (not under ``jit``: it returns index sets)."""
    _concrete(net, "dead_units")
    e = EditNet.of(net)
    return {i: np.flatnonzero(~e.col_nonzero(i)) for i in range(1, net.depth)}


def zero_units(net: Net) -> dict[int, np.ndarray]:
    """Hidden layer → indices of units whose row and column are both exactly 0 (concrete weights only)."""
    _concrete(net, "zero_units")
    e = EditNet.of(net)
    return {i: np.flatnonzero(~e.col_nonzero(i) & ~e.row_nonzero(i)) for i in range(1, net.depth)}


def live_units(e: "EditNet", i: int) -> np.ndarray:
    """Units of hidden layer ``i`` whose column is nonzero (not dead)."""
    return np.flatnonzero(e.col_nonzero(i))


def nonzero_units(e: "EditNet", i: int) -> np.ndarray:
    """Units of hidden layer ``i`` that are not zero (row or column nonzero)."""
    return np.flatnonzero(e.col_nonzero(i) | e.row_nonzero(i))


# --------------------------------------------------------------------------- the host-side edit buffer


def _ix(a: Index) -> np.ndarray:
    return np.asarray(a, dtype=np.int64).reshape(-1)


class EditNet:
    """A mutable NumPy copy of a :class:`~stability.core.nets.Net` for exact block edits on the unit view:
    weights ``w[l]`` and biases ``b[l]`` (``None`` without bias), paper index ``A_i = w[i-1]``. Blocks
    ``A_i[R, C]`` are ``w[np.ix_(R, C)]`` with trailing kernel / position axes carried along (rows on axis 0,
    columns on axis 1, as :func:`unit_spec` states for every layer kind)."""

    __slots__ = ("arch", "w", "b")

    def __init__(self, arch: Arch, w: list[np.ndarray], b: list[np.ndarray | None]) -> None:
        self.arch, self.w, self.b = arch, w, b

    @classmethod
    def of(cls, net: Net, copy: bool = True) -> "EditNet":
        """A host copy of ``net`` (``copy=False`` views host arrays without copying: read-only use). Needs concrete
        weights: the buffer lives on the host."""
        _concrete(net, "EditNet.of")
        conv = (lambda a: np.array(a, copy=True)) if copy else np.asarray
        w = [conv(net.A(i)) for i in range(1, net.depth + 1)]
        b = [None if net.bias(i) is None else conv(net.bias(i)) for i in range(1, net.depth + 1)]
        return cls(net.arch, w, b)

    def copy(self) -> "EditNet":
        return EditNet(self.arch, [a.copy() for a in self.w], [None if a is None else a.copy() for a in self.b])

    def to_net(self) -> Net:
        """The edited net with HOST (NumPy) leaves: way points stay on the host until a path stacks them."""
        return Net.from_arrays(self.arch, [a.copy() for a in self.w], [None if a is None else a.copy() for a in self.b])

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

    def params(self) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """``[(w, b), …]`` per layer (the certificates' read-only view)."""
        return list(zip(self.w, self.b))

    def equal(self, other: "EditNet") -> bool:
        return all(np.array_equal(a, c) for a, c in zip(self.w, other.w)) and all(
            (a is None and c is None) or np.array_equal(a, c) for a, c in zip(self.b, other.b))
