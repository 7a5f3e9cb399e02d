"""Fixed-size chunks, so one compiled program serves every chunk: the one pad-and-chunk helper of the house."""

from __future__ import annotations

import functools
from typing import Any, Iterator

import numpy as np

__all__ = ["padded_chunks", "padded_batches"]


def padded_chunks(values: Any, chunk: int, *, balanced: bool = False, fill: Any = None
                  ) -> Iterator[tuple[Any, int]]:
    """Cut ``values`` (an array, chunked along axis 0) into chunks of exactly ``chunk`` rows, the last one padded:
    yields ``(padded chunk, number of real rows)``. Padding repeats the chunk's last row, or ``fill`` (one row)
    when given. ``balanced=True`` first shrinks ``chunk`` to ``⌈n / ⌈n/chunk⌉⌉`` so that at most (number of chunks
    − 1) rows are padding. NumPy inputs give NumPy chunks, JAX inputs JAX chunks."""
    n = int(np.shape(values)[0])
    if n == 0:
        return
    chunk = max(1, min(int(chunk), n))
    if balanced:
        chunk = -(-n // -(-n // chunk))
    xp = np if isinstance(values, np.ndarray) else _jnp()
    for start in range(0, n, chunk):
        part = values[start:start + chunk]
        m = int(np.shape(part)[0])
        if m < chunk:
            row = part[-1:] if fill is None else fill
            part = xp.concatenate([part, xp.repeat(row, chunk - m, axis=0)])
        yield part, m


def padded_batches(x: Any, y: Any, batch_size: int) -> tuple[Any, Any, Any]:
    """``(xb, yb, mask)``: ``x`` and ``y`` cut into ``(n_batches, batch_size, …)``, the last batch zero-padded
    and its padding marked 0 in ``mask`` (JAX arrays; one compiled program per shape, not one eager program per
    operation)."""
    return _pad_batches_jit()(x, y, int(batch_size))


def _pad_batches(x: Any, y: Any, batch_size: int) -> tuple[Any, Any, Any]:
    jnp = _jnp()
    n = x.shape[0]
    nb = -(-n // batch_size)
    pad = nb * batch_size - n
    mask = jnp.concatenate([jnp.ones((n,)), jnp.zeros((pad,))])
    xp = jnp.concatenate([x, jnp.zeros((pad,) + x.shape[1:], x.dtype)])
    yp = jnp.concatenate([y, jnp.zeros((pad,) + y.shape[1:], y.dtype)])
    return (xp.reshape((nb, batch_size) + x.shape[1:]), yp.reshape((nb, batch_size) + y.shape[1:]),
            mask.reshape(nb, batch_size))


@functools.cache
def _pad_batches_jit() -> Any:
    import jax

    return jax.jit(_pad_batches, static_argnums=2)


def _jnp():
    import jax.numpy as jnp

    return jnp
