"""stability: mode connectivity theory for ReLU nets, executable.

The house has floors (docs/ARCHITECTURE.md): ``stability.core`` (nets, the hidden-unit view, losses, the
evaluator, training, checkpoints), ``stability.data`` (datasets), ``stability.theory`` (dropout, the paths of
Kuditipudi et al. 2019, noise stability, alignment, certified bounds, the Theorem 4 construction),
``stability.curves`` (learned curves and ensembles of Garipov et al. 2018), ``stability.plots`` and
``stability.app`` (the command line, the demo, reports, reproductions). ``proofs_check`` (a package beside
this one) holds what is proved.

The names below are the public API; submodules load on first use, so ``import stability`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_MODULES = {
    "nets": "stability.core.nets", "units": "stability.core.units", "losses": "stability.core.losses",
    "evaluate": "stability.core.evaluate", "train": "stability.core.train", "checkpoint": "stability.core.checkpoint",
    "polycurve": "stability.core.polycurve", "data": "stability.data", "dropout": "stability.theory.dropout",
    "paths": "stability.theory.paths", "cushions": "stability.theory.cushions", "align": "stability.theory.align",
    "counterexample": "stability.theory.counterexample", "curves": "stability.curves",
    "curve_metrics": "stability.curves.metrics", "batchnorm": "stability.curves.batchnorm",
    "ensembles": "stability.curves.ensembles", "planes": "stability.curves.planes",
    "flax_models": "stability.curves.flax_models",
}
_NAMES = {
    "Arch": "stability.core.nets", "Net": "stability.core.nets", "mlp": "stability.core.nets",
    "conv": "stability.core.nets", "apply": "stability.core.nets", "forward": "stability.core.nets",
    "cross_entropy": "stability.core.losses", "squared_error": "stability.core.losses",
    "accuracy": "stability.core.losses", "TrainConfig": "stability.core.train", "fit": "stability.core.train",
    "EvalResult": "stability.core.evaluate", "evaluate_line": "stability.core.evaluate",
    "evaluate_nets": "stability.core.evaluate", "CheckpointError": "stability.core.checkpoint",
}

__all__ = sorted(_MODULES) + sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        mod = importlib.import_module(_MODULES[name])
    elif name in _NAMES:
        mod = getattr(importlib.import_module(_NAMES[name]), name)
    else:
        raise AttributeError(f"module 'stability' has no attribute {name!r}")
    globals()[name] = mod
    return mod


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
