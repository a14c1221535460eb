"""The backward step of a gradient method: per-task Jacobian, all-reduce, aggregate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from multitask_mnist import distributed
from multitask_mnist.errors import InvalidValueError
from multitask_mnist.methods.diagnostics import GradientDiagnostics, gramian
from multitask_mnist.models import MultiTaskNet

__all__ = ["GradientAggregation", "split_parameters"]


def split_parameters(
    model: MultiTaskNet, extra: nn.Module | None = None
) -> tuple[list[Tensor], list[Tensor]]:
    """The shared and the task-specific trainable parameters of ``model``.

    A block is shared when several tasks' predictions depend on it
    (:meth:`~multitask_mnist.models.MultiTaskNet.block_tasks`), task-specific when one
    does. ``extra`` (the loss, with any parameters of its own) counts as task-specific.

    Args:
        model: The network.
        extra: Another module whose parameters train with the model, or ``None``.

    Returns:
        ``(shared, specific)`` lists of parameters.

    Example:
        >>> from multitask_mnist import presets
        >>> shared, specific = split_parameters(presets.mnist_sum())
        >>> len(shared), len(specific)  # the trunk's 8 convolutions, the head's 3 layers
        (16, 6)
    """
    shared: dict[int, Tensor] = {}
    specific: dict[int, Tensor] = {}
    for name, tasks in model.block_tasks().items():
        target = shared if len(tasks) > 1 else specific
        for parameter in model.get_submodule(name).parameters():
            if parameter.requires_grad:
                target[id(parameter)] = parameter
    if extra is not None:
        for parameter in extra.parameters():
            if parameter.requires_grad and id(parameter) not in shared:
                specific[id(parameter)] = parameter
    for key in shared:
        specific.pop(key, None)
    return list(shared.values()), list(specific.values())


class GradientAggregation:
    """Replaces ``loss.backward()`` for a gradient method.

    :meth:`backward` computes the Jacobian of the task losses with respect to the
    shared parameters (one row per task, TorchJD's ``autojac.backward``), the usual
    gradient of their sum for the task-specific parameters, then, under torchrun,
    averages both over the processes, so that every process aggregates the same
    global per-task gradients and holds the same weights; finally the aggregator
    turns the Jacobian into the shared parameters' ``.grad`` (TorchJD's
    ``jac_to_grad``). Gradients are float32 whatever the autocast: the parameters are.

    Args:
        aggregator: A ``torchjd.aggregation.Aggregator``.
        shared: The shared parameters.
        specific: The task-specific parameters.

    Example:
        >>> from torchjd.aggregation import PCGrad
        >>> w = nn.Parameter(torch.tensor([1.0, 0.0]))
        >>> step = GradientAggregation(PCGrad(), [w], [])
        >>> step.backward([w[0] ** 2, -w[0]])  # gradients (2, 0) and (-1, 0): in conflict
        >>> w.grad
        tensor([0., 0.])
    """

    def __init__(
        self, aggregator: Any, shared: Sequence[Tensor], specific: Sequence[Tensor]
    ) -> None:
        self.aggregator = aggregator
        self.shared = list(shared)
        self.specific = list(specific)
        #: How the task gradients of each step relate (cosine, norms, weights).
        self.diagnostics = GradientDiagnostics()
        if not self.shared:
            raise InvalidValueError(
                "A gradient method needs shared parameters (a block that several tasks "
                "depend on); this model has none"
            )

    def backward(self, losses: Sequence[Tensor]) -> None:
        """Accumulate the aggregated update into the parameters' ``.grad``.

        Args:
            losses: One ``()`` loss per task, the Jacobian's rows in order.
        """
        from torchjd.autojac import backward, jac_to_grad

        losses = [loss.float() for loss in losses]
        if self.specific:  # first, keeping the graph for the Jacobian
            total = torch.stack(losses).sum()
            torch.autograd.backward(total, inputs=self.specific, retain_graph=True)
        backward(losses, inputs=self.shared, parallel_chunk_size=1)
        self._average_over_processes()
        jacobians = [p.jac for p in self.shared]  # type: ignore[attr-defined]
        weights = jac_to_grad(self.shared, self.aggregator)
        self.diagnostics.record(
            gramian(jacobians), weights.detach() if isinstance(weights, Tensor) else None
        )

    def state_dict(self) -> dict[str, Any]:
        """This epoch's diagnostic sums, on this process, to resume an epoch mid-way."""
        return self.diagnostics.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` returned."""
        self.diagnostics.load_state_dict(state, self.shared[0].device)

    def aggregator_state(self) -> dict[str, Any]:
        """The aggregator's own state between steps, the same on every process: Nash-MTL's
        step count and last weights; empty for a stateless aggregator."""
        solver = _nash_mtl_state(self.aggregator)
        return {} if solver is None else {"nash_mtl": solver}

    def load_aggregator_state(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`aggregator_state` returned.

        Raises:
            ValueError: The state is Nash-MTL's and the aggregator is not.
        """
        if "nash_mtl" in state:
            _load_nash_mtl_state(self.aggregator, state["nash_mtl"])

    def _average_over_processes(self) -> None:

        if distributed.world_size() == 1:
            return
        parts: list[Tensor] = [p.jac for p in self.shared]  # type: ignore[attr-defined]
        for p in self.specific:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            parts.append(p.grad)
        distributed.all_reduce_mean(parts)


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
