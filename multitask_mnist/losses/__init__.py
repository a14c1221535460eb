"""Losses: the weighted sum of the digit's cross-entropy and the sum's squared error."""

from multitask_mnist.losses.functional import (
    TASKS,
    MultiLossOutput,
    dwa_weights,
    task_losses,
    uncertainty_weighted_loss,
    weighted_multi_loss,
    weighted_sum,
)
from multitask_mnist.losses.weighted import STRATEGIES, WeightedMultiLoss
from multitask_mnist.losses.weighting import (
    DynamicWeightAverage,
    FixedWeighting,
    LossWeighting,
    UncertaintyWeighting,
)

__all__ = [
    "STRATEGIES",
    "TASKS",
    "DynamicWeightAverage",
    "FixedWeighting",
    "LossWeighting",
    "MultiLossOutput",
    "UncertaintyWeighting",
    "WeightedMultiLoss",
    "dwa_weights",
    "task_losses",
    "uncertainty_weighted_loss",
    "weighted_multi_loss",
    "weighted_sum",
]
