"""Core floor: ReLU nets as pytrees and the hidden-unit view, losses, the batched evaluator, training,
checkpoints, atomic output and the algebra of polynomial curves. Imports nothing else of the house."""
