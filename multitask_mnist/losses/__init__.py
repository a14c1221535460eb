"""Losses: each task's loss over its labelled samples, and its fixed weight.

How a training step combines the task losses (a learned weighting, a gradient method)
is a :mod:`multitask_mnist.methods` method; this package computes the losses
themselves and the functions the methods share.
"""

from multitask_mnist.losses.functional import (
    MultiLossOutput,
    dwa_weights,
    uncertainty_weighted_loss,
    weighted_sum,
)
from multitask_mnist.losses.weighted import STRATEGIES, WeightedMultiLoss

__all__ = [
    "STRATEGIES",
    "MultiLossOutput",
    "WeightedMultiLoss",
    "dwa_weights",
    "uncertainty_weighted_loss",
    "weighted_sum",
]

#: Names this package had before 0.2, now in :mod:`multitask_mnist.methods`.
_MOVED_TO_METHODS = {
    "LossWeighting": "Scalarization",
    "FixedWeighting": "FixedWeighting",
    "UncertaintyWeighting": "UncertaintyWeighting",
    "DynamicWeightAverage": "DynamicWeightAverage",
    "RandomLossWeighting": "RandomLossWeighting",
    "GeometricLossWeighting": "GeometricLossWeighting",
    "FAMOWeighting": "FAMOWeighting",
    "GradNormWeighting": "GradNormWeighting",
    "MGDAUBWeighting": "MGDAUBWeighting",
    "min_norm_weights": "min_norm_weights",
    "shared_representation": "shared_representation",
    "last_shared_layer": "last_shared_layer",
}


def __getattr__(name: str) -> object:
    """A name that moved in 0.2 fails with its new place, not a bare AttributeError."""
    if name in _MOVED_TO_METHODS:
        raise AttributeError(
            f"multitask_mnist.losses.{name} moved in 0.2: use "
            f"multitask_mnist.methods.{_MOVED_TO_METHODS[name]} (every multi-task method "
            "is a Method now, chosen with Trainer(method=...))"
        )
    raise AttributeError(f"module 'multitask_mnist.losses' has no attribute {name!r}")
