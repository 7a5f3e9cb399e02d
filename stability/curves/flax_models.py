"""flax.linen models with BatchNorm for the learned-curve experiments (Garipov et al. 2018).

Convention (what :mod:`stability.curves.batchnorm` relies on): ``__call__(x, train: bool)`` with
``nn.BatchNorm(use_running_average=not train)``; variables ``{"params", "batch_stats"}``.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax

__all__ = ["MLPBN", "VGG", "VGG11"]

VGG11: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class MLPBN(nn.Module):
    """Dense → BatchNorm → ReLU blocks, then a dense output."""

    widths: Sequence[int]
    classes: int
    momentum: float = 0.9

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = x.reshape(x.shape[0], -1)
        for w in self.widths:
            x = nn.Dense(w)(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=self.momentum)(x)
            x = nn.relu(x)
        return nn.Dense(self.classes)(x)


class VGG(nn.Module):
    """VGG-style conv net (NHWC): ints are 3×3 conv widths, ``"M"`` a 2×2 max-pool; BN after each conv."""

    config: Sequence[int | str] = VGG11
    classes: int = 10
    batchnorm: bool = True
    momentum: float = 0.9

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        for c in self.config:
            if c == "M":
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
                continue
            x = nn.Conv(int(c), (3, 3), padding="SAME", use_bias=not self.batchnorm)(x)
            if self.batchnorm:
                x = nn.BatchNorm(use_running_average=not train, momentum=self.momentum)(x)
            x = nn.relu(x)
        x = x.mean(axis=(1, 2))
        return nn.Dense(self.classes)(x)
