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
