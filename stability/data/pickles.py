"""A restricted unpickler: pickled numpy arrays only, so a tampered file cannot run code."""

from __future__ import annotations

import io
import pickle
from typing import Any, BinaryIO

import numpy as np



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
