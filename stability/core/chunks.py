"""Fixed-size chunks, so one compiled program serves every chunk: the one pad-and-chunk helper of the house."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

__all__ = ["padded_chunks"]


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


def _jnp():
    import jax.numpy as jnp

    return jnp
