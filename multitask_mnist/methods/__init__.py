"""Every multi-task method behind one protocol, in one registry, behind one setting.

A :class:`Method` turns one training step's task losses into gradients (see
:mod:`multitask_mnist.methods.base`): scalarizations (``"none"``: the fixed-weight
sum; ``"uncertainty"``, ``"dwa"``, ``"rlw"``, ``"geometric"``), weightings from
gradients or progress (``"gradnorm"``, ``"famo"``, ``"mgda_ub"``) and Jacobian
aggregators on TorchJD (``"upgrad"``, ``"pcgrad"``, ``"mgda"``, ... or any
``torchjd.aggregation.Aggregator``). :data:`METHODS` names them all;
:func:`create_method` builds one; ``Trainer(method=...)`` and ``--method`` take any.
The helpers that read sharing from the model's graph are in
``multitask_mnist.methods.shared``, the gradient diagnostics in
``multitask_mnist.methods.diagnostics``; both are exported here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from multitask_mnist._extras import MissingExtraError
from multitask_mnist._validation import check_choice
from multitask_mnist.errors import InvalidTypeError, InvalidValueError
from multitask_mnist.methods.aggregate import (
    AGGREGATORS,
    SOLVER_METHODS,
    GradientAggregation,
    make_aggregator,
)
from multitask_mnist.methods.base import Method, Need, Scalarization, StepOutput
from multitask_mnist.methods.diagnostics import GradientDiagnostics, GradientProbe
from multitask_mnist.methods.scalarize import (
    DynamicWeightAverage,
    FixedWeighting,
    GeometricLossWeighting,
    RandomLossWeighting,
    UncertaintyWeighting,
)
from multitask_mnist.methods.shared import (
    capture_outputs,
    gramian,
    last_shared_layer,
    shared_representation,
    split_parameters,
)
from multitask_mnist.methods.weighting import (
    FAMOWeighting,
    GradNormWeighting,
    MGDAUBWeighting,
    min_norm_weights,
)

__all__ = [
    "AGGREGATORS",
    "METHODS",
    "SOLVER_METHODS",
    "DynamicWeightAverage",
    "FAMOWeighting",
    "FixedWeighting",
    "GeometricLossWeighting",
    "GradNormWeighting",
    "GradientAggregation",
    "GradientDiagnostics",
    "GradientProbe",
    "MGDAUBWeighting",
    "Method",
    "MissingExtraError",
    "Need",
    "RandomLossWeighting",
    "Scalarization",
    "StepOutput",
    "UncertaintyWeighting",
    "capture_outputs",
    "create_method",
    "gramian",
    "last_shared_layer",
    "make_aggregator",
    "method_name",
    "min_norm_weights",
    "shared_representation",
    "split_parameters",
]


def _aggregation(name: str) -> Callable[[int], Method]:
    def build(num_tasks: int) -> Method:
        return GradientAggregation(make_aggregator(name, num_tasks), name=name)

    return build


_BUILDERS: dict[str, Callable[[int], Method]] = {
    "none": lambda k: FixedWeighting(),
    "uncertainty": UncertaintyWeighting,
    "dwa": DynamicWeightAverage,
    "rlw": lambda k: RandomLossWeighting(),
    "geometric": lambda k: GeometricLossWeighting(),
    "famo": FAMOWeighting,
    "gradnorm": GradNormWeighting,
    "mgda_ub": MGDAUBWeighting,
    **{name: _aggregation(name) for name in AGGREGATORS},
}

#: The name of every method, as ``Trainer(method=...)`` and ``--method`` take it:
#: ``"none"`` (one backward pass of the fixed-weight sum of the losses), the other
#: scalarizations and weightings, then the gradient methods.
METHODS: tuple[str, ...] = tuple(_BUILDERS)


def create_method(method: Any, num_tasks: int = 1) -> Method:
    """The method ``method`` names, or ``method`` itself.

    Args:
        method: A name in :data:`METHODS`, a :class:`Method` (used as it is), or a
            ``torchjd.aggregation.Aggregator`` (wrapped in :class:`GradientAggregation`).
        num_tasks: The number of tasks, for the methods that keep state per task.

    Returns:
        The method, not yet bound to a model (:meth:`Method.bind`).

    Raises:
        ValueError: An unknown name (the message lists the known ones).
        TypeError: Neither a name, a Method nor an Aggregator.
        MissingExtraError: The method's solver is not installed; the message names the
            extra that provides it.

    Example:
        >>> create_method("uncertainty", 2)
        UncertaintyWeighting()
        >>> create_method("pcgrad", 2).aggregator
        PCGrad()
    """
    if isinstance(method, Method):
        return method
    if isinstance(method, str):
        check_choice("method", method, METHODS)
        if num_tasks < 1:
            raise InvalidValueError(f"Expected argument `num_tasks` to be >= 1, got {num_tasks}")
        return _BUILDERS[method](num_tasks)
    from torchjd.aggregation import Aggregator  # torchjd is imported only for a method

    if isinstance(method, Aggregator):
        return GradientAggregation(method)
    raise InvalidTypeError(
        f"Expected `method` to be one of {', '.join(map(repr, METHODS))}, a Method or a "
        f"torchjd.aggregation.Aggregator, got {type(method).__name__}"
    )


def method_name(method: Method) -> str:
    """The name a run records for ``method``: its registered name, or its class's.

    Args:
        method: A method.

    Returns:
        The name.

    Example:
        >>> method_name(create_method("pcgrad", 2)), method_name(create_method("none"))
        ('pcgrad', 'none')
    """
    if isinstance(method, GradientAggregation):
        return method.method_name
    return method.name if method.name != "custom" else type(method).__name__
