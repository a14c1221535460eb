"""The field's multi-task methods that act on gradients, built on TorchJD.

A gradient method computes each task's gradient on the shared parameters (the rows of
a Jacobian), and an aggregator from :mod:`torchjd.aggregation` combines them into one
update; the task-specific parameters get their usual gradient. :data:`METHODS` names
them; :func:`make_aggregator` builds one; :class:`GradientAggregation` is the backward
step the Trainer runs instead of ``loss.backward()``; :class:`GradientDiagnostics`
reads how the task gradients relate, and :class:`GradientProbe` measures them
without a gradient method.
"""

from multitask_mnist.methods.aggregation import (
    METHODS,
    SOLVER_METHODS,
    MissingExtraError,
    make_aggregator,
)
from multitask_mnist.methods.diagnostics import GradientDiagnostics, GradientProbe
from multitask_mnist.methods.step import GradientAggregation, split_parameters

__all__ = [
    "METHODS",
    "SOLVER_METHODS",
    "GradientAggregation",
    "GradientDiagnostics",
    "GradientProbe",
    "MissingExtraError",
    "make_aggregator",
    "split_parameters",
]
