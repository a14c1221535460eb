"""Gradient methods on TorchJD: a Jacobian on the shared parameters, then an aggregator.

Each task's loss gives one row of the Jacobian on the shared parameters (TorchJD's
``autojac.backward``); under torchrun the rows are averaged over the processes, then
an aggregator from :mod:`torchjd.aggregation` combines them into the shared
parameters' update (``jac_to_grad``); the task-specific parameters get their usual
gradient. :func:`make_aggregator` builds one by name; :class:`GradientAggregation` is
the method.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from multitask_mnist import distributed
from multitask_mnist._extras import MissingExtraError
from multitask_mnist._validation import check_choice, check_int
from multitask_mnist.errors import InvalidTypeError, InvalidValueError
from multitask_mnist.losses import weighted_sum
from multitask_mnist.methods.base import Method, StepOutput
from multitask_mnist.methods.shared import gramian, split_parameters
from multitask_mnist.models import MultiTaskNet

__all__ = ["AGGREGATORS", "SOLVER_METHODS", "GradientAggregation", "make_aggregator"]


def _factories() -> dict[str, Callable[[int], Any]]:
    from torchjd import aggregation as jd  # torchjd is imported only for a gradient method

    return {
        "upgrad": lambda k: jd.UPGrad(),
        "pcgrad": lambda k: jd.PCGrad(),
        "mgda": lambda k: jd.MGDA(),
        "cagrad": lambda k: jd.CAGrad(c=0.4),  # the CAGrad paper's c for multi-task learning
        "imtl_g": lambda k: jd.IMTLG(),
        "aligned_mtl": lambda k: jd.AlignedMTL(),
        "dualproj": lambda k: jd.DualProj(),
        "graddrop": lambda k: jd.GradDrop(),
        "nash_mtl": lambda k: jd.NashMTL(n_tasks=k),
    }


#: The aggregators by name, in :data:`~multitask_mnist.methods.METHODS` order.
AGGREGATORS: tuple[str, ...] = (
    "upgrad",
    "pcgrad",
    "mgda",
    "cagrad",
    "imtl_g",
    "aligned_mtl",
    "dualproj",
    "graddrop",
    "nash_mtl",
)

#: The methods whose solvers need packages of the ``solvers`` extra
#: (``pip install multitask-mnist[solvers]``).
SOLVER_METHODS: tuple[str, ...] = ("upgrad", "dualproj", "cagrad", "nash_mtl")


def make_aggregator(name: Any, num_tasks: int) -> Any:
    """The TorchJD aggregator of a gradient method.

    Args:
        name: One of :data:`AGGREGATORS`, or an aggregator, returned as it is.
        num_tasks: The number of tasks (the Jacobian's rows).

    Returns:
        The aggregator.

    Raises:
        ValueError: An unknown name (the message lists the known ones).
        MissingExtraError: The method's solver is not installed; the message names the
            extra that provides it.

    Example:
        >>> make_aggregator("pcgrad", 2)
        PCGrad()
    """
    if not isinstance(name, str):
        from torchjd.aggregation import Aggregator

        if isinstance(name, Aggregator):
            return name
    check_choice("method", name, AGGREGATORS)
    check_int("num_tasks", num_tasks, minimum=1)
    try:
        return _factories()[name](num_tasks)
    except ImportError as error:
        raise MissingExtraError(
            f"Method {name!r} needs a solver that is not installed ({error}); install it "
            "with: pip install 'multitask-mnist[solvers]'"
        ) from error


class GradientAggregation(Method):
    """A gradient method: the tasks' gradients on the shared parameters, aggregated.

    :meth:`backward` computes the Jacobian of the task losses (times their fixed
    weights) with respect to the shared parameters
    (:func:`~multitask_mnist.methods.split_parameters`; one row per task, TorchJD's
    ``autojac.backward``) and the usual gradient of their sum for every other
    parameter; under torchrun it averages both over the processes, so that every
    process aggregates the same global per-task gradients and holds the same weights;
    finally the aggregator turns the Jacobian into the shared parameters' ``.grad``
    (TorchJD's ``jac_to_grad``). Gradients are float32 whatever the autocast: the
    parameters are. Every step records how the task gradients relate in
    ``diagnostics``. The total it reports is the fixed-weight sum of the losses.

    Args:
        aggregator: A ``torchjd.aggregation.Aggregator``.
        name: The method's name, for messages and the run's record.
        shared: The shared parameters, for use without a model (tests, a hand-made
            step); :meth:`bind` finds them in the model's graph.

    Raises:
        TypeError: ``aggregator`` is not a TorchJD aggregator.

    Example:
        >>> from torchjd.aggregation import PCGrad
        >>> from multitask_mnist import presets
        >>> method = GradientAggregation(PCGrad(), name="pcgrad")
        >>> method.bind(presets.mnist_sum(fusion="expectation"))
        >>> len(method.shared)  # the trunk's weights and biases
        16
    """

    name = "aggregation"

    def __init__(
        self, aggregator: Any, *, name: str | None = None, shared: Sequence[Tensor] = ()
    ) -> None:
        from torchjd.aggregation import Aggregator

        if not isinstance(aggregator, Aggregator):
            raise InvalidTypeError(
                "Expected `aggregator` to be a torchjd.aggregation.Aggregator, got "
                f"{type(aggregator).__name__}"
            )
        super().__init__()
        self.aggregator = aggregator
        self.method_name = name or type(aggregator).__name__
        #: The shared parameters, found by :meth:`bind`.
        self.shared: list[Tensor] = list(shared)

    def bind(self, model: MultiTaskNet, weights: Mapping[str, float] | None = None) -> None:
        """Find ``model``'s shared parameters; refuse a model whose task heads stop a
        task's gradient before them (its row would be zero).

        Raises:
            ValueError: No block is shared, or a head passes no gradient back to it.
        """
        super().bind(model, weights)
        stops = model.gradient_stops()
        if stops:
            block_name, shared_block = stops[0]
            raise InvalidValueError(
                f"Method {self.method_name!r} aggregates each task's gradient on the shared "
                f"blocks, but block {block_name!r} passes none back to {shared_block!r} "
                f"(task {model.block_tasks()[block_name][0]!r} would have a zero row); "
                "use a differentiable fusion ('expectation' or 'straight_through') or "
                "method='none'"
            )
        self.shared = split_parameters(model)[0]
        if not self.shared:
            raise InvalidValueError(
                f"Method {self.method_name!r} needs shared parameters (a block that several "
                "tasks depend on); this model has none"
            )

    def forward(self, losses: Tensor, shared: Sequence[Tensor] = ()) -> Tensor:
        return weighted_sum(list(losses.unbind()), self.fixed)

    def weights(self) -> Tensor:
        return torch.tensor(self.fixed)

    def backward(self, step: StepOutput) -> None:
        """Accumulate the aggregated update into the parameters' ``.grad``."""
        rows = [
            weight * loss for weight, loss in zip(self.fixed, step.losses.values(), strict=True)
        ]
        owned = {id(p) for p in self.shared}
        self.backward_rows(rows, [p for p in step.parameters if id(p) not in owned])

    def backward_rows(self, losses: Sequence[Tensor], specific: Sequence[Tensor]) -> None:
        """The method's step for ``K`` scalar ``losses`` (the Jacobian's rows in order)
        and the ``specific`` parameters that get their plain gradient.

        Args:
            losses: One ``()`` loss per task.
            specific: Every trainable parameter outside the shared blocks.
        """
        from torchjd.autojac import backward, jac_to_grad

        losses = [loss.float() for loss in losses]
        if specific:  # first, keeping the graph for the Jacobian
            total = torch.stack(losses).sum()
            torch.autograd.backward(total, inputs=list(specific), retain_graph=True)
        backward(losses, inputs=self.shared, parallel_chunk_size=1)
        self._average_over_processes(specific)
        jacobians = [p.jac for p in self.shared]  # type: ignore[attr-defined]
        weights = jac_to_grad(self.shared, self.aggregator)
        self.diagnostics.record(
            gramian(jacobians), weights.detach() if isinstance(weights, Tensor) else None
        )

    def _average_over_processes(self, specific: Sequence[Tensor]) -> None:
        if distributed.world_size() == 1:
            return
        parts: list[Tensor] = [p.jac for p in self.shared]  # type: ignore[attr-defined]
        for p in specific:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            parts.append(p.grad)
        distributed.all_reduce_mean(parts)

    def get_extra_state(self) -> dict[str, Any]:
        """The aggregator's own state between steps, the same on every process:
        Nash-MTL's step count and last weights; empty for a stateless aggregator."""
        solver = _nash_mtl_state(self.aggregator)
        return {} if solver is None else {"nash_mtl": solver}

    def set_extra_state(self, state: Any) -> None:
        """Take back what :meth:`get_extra_state` returned.

        Raises:
            ValueError: The state is Nash-MTL's and the aggregator is not.
        """
        if "nash_mtl" in state:
            _load_nash_mtl_state(self.aggregator, state["nash_mtl"])

    def extra_repr(self) -> str:
        return f"aggregator={self.aggregator!r}"


_NASH_MTL_ARRAYS = ("prvs_alpha", "normalization_factor", "init_gtg")


def _nash_mtl_weighting(aggregator: Any) -> Any:
    weighting = getattr(aggregator, "weighting", None)
    return weighting if type(weighting).__name__ == "_NashMTLWeighting" else None


def _nash_mtl_state(aggregator: Any) -> dict[str, Any] | None:
    """TorchJD's Nash-MTL keeps its last weights (numpy arrays) and a step count."""
    weighting = _nash_mtl_weighting(aggregator)
    if weighting is None:
        return None
    state: dict[str, Any] = {"step": float(weighting.step)}
    for key in _NASH_MTL_ARRAYS:
        state[key] = torch.tensor(getattr(weighting, key))
    return state


def _load_nash_mtl_state(aggregator: Any, state: dict[str, Any]) -> None:
    weighting = _nash_mtl_weighting(aggregator)
    if weighting is None:
        raise InvalidValueError(
            "The checkpoint holds Nash-MTL's state, but the method is not Nash-MTL"
        )
    for key in _NASH_MTL_ARRAYS:
        setattr(weighting, key, state[key].numpy().copy())
    weighting.step = state["step"]
    if weighting.step > 0:  # the solver's problem is built at the first step; build it now
        weighting._init_optim_problem()
