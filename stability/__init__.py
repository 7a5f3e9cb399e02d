"""stability: mode connectivity theory for ReLU nets, executable.

Public API (see README): nets and the hidden-unit view (:mod:`stability.nets`), losses,
data, training and checkpoints, the batched evaluator, reports and plots.
"""

from . import checkpoint, evaluate, losses, nets, train
from .checkpoint import CheckpointError
from .evaluate import EvalResult, evaluate_line, evaluate_nets
from .losses import accuracy, cross_entropy, squared_error
from .nets import Arch, Net, apply, conv, forward, mlp
from .train import TrainConfig, fit

__version__ = "0.1.0"

__all__ = [
    "Arch", "Net", "mlp", "conv", "apply", "forward", "cross_entropy", "squared_error", "accuracy",
    "TrainConfig", "fit", "EvalResult", "evaluate_line", "evaluate_nets", "CheckpointError",
    "checkpoint", "evaluate", "losses", "nets", "train",
]
