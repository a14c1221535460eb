"""Losses: each task's loss over its labelled samples, weighted by a strategy."""

from multitask_mnist.losses.balancing import FAMOWeighting, GradNormWeighting, last_shared_layer
from multitask_mnist.losses.functional import (
    MultiLossOutput,
    dwa_weights,
    uncertainty_weighted_loss,
    weighted_sum,
)
from multitask_mnist.losses.min_norm import MGDAUBWeighting, min_norm_weights, shared_representation
from multitask_mnist.losses.weighted import STRATEGIES, WeightedMultiLoss
from multitask_mnist.losses.weighting import (
    DynamicWeightAverage,
    FixedWeighting,
    GeometricLossWeighting,
    LossWeighting,
    RandomLossWeighting,
    UncertaintyWeighting,
)

__all__ = [
    "STRATEGIES",
    "DynamicWeightAverage",
    "FAMOWeighting",
    "FixedWeighting",
    "GeometricLossWeighting",
    "GradNormWeighting",
    "LossWeighting",
    "MGDAUBWeighting",
    "MultiLossOutput",
    "RandomLossWeighting",
    "UncertaintyWeighting",
    "WeightedMultiLoss",
    "dwa_weights",
    "last_shared_layer",
    "min_norm_weights",
    "shared_representation",
    "uncertainty_weighted_loss",
    "weighted_sum",
]
