"""The backward step of a gradient method: per-task Jacobian, all-reduce, aggregate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

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
        #: The last step's Gramian of the task gradients ``(K, K)`` and the weights the
        #: aggregator gave the tasks (``None`` for an aggregator without weights).
        self.last_gramian: Tensor | None = None
        self.last_weights: Tensor | None = None
        self._sums: Tensor | None = None  # this epoch's diagnostics, summed on the device
        self._last_step: Tensor | None = None  # the last step's, in the same layout
        if not self.shared:
            raise ValueError(
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
        gramian = self._gramian()
        weights = jac_to_grad(self.shared, self.aggregator)
        self.last_gramian = gramian
        self.last_weights = weights.detach().double() if isinstance(weights, Tensor) else None
        self._accumulate(gramian, self.last_weights)

    def _gramian(self) -> Tensor:
        """``(K, K)`` float64: the task gradients' inner products on the shared parameters."""
        gramian: Tensor | None = None
        for p in self.shared:
            rows = p.jac.reshape(p.jac.shape[0], -1).double()  # type: ignore[attr-defined]
            part = rows @ rows.T
            gramian = part if gramian is None else gramian + part
        if gramian is None:
            raise RuntimeError("No shared parameter received a Jacobian")
        return gramian

    def _accumulate(self, gramian: Tensor, weights: Tensor | None) -> None:
        k = gramian.shape[0]
        norms = gramian.diagonal().clamp(min=0).sqrt()
        first, second = torch.triu_indices(k, k, offset=1, device=gramian.device)
        both = (norms[first] > 0) & (norms[second] > 0)
        cosines = gramian[first, second] / (norms[first] * norms[second]).clamp(min=1e-300)
        pairs = both.sum()
        smallest = norms.min()
        ratio_ok = smallest > 0
        values = [
            torch.ones((), dtype=torch.float64, device=gramian.device),
            torch.where(both, cosines, 0.0).sum() / pairs.clamp(min=1),
            (pairs > 0).double(),
            torch.where(ratio_ok, norms.max() / smallest.clamp(min=1e-300), 0.0),
            ratio_ok.double(),
            *(
                weights
                if weights is not None
                else torch.zeros(k, dtype=torch.float64, device=gramian.device)
            ).unbind(),
        ]
        step = torch.stack(values)
        self._last_step = step
        self._sums = step if self._sums is None else self._sums + step

    def epoch_diagnostics(self, task_names: Sequence[str]) -> dict[str, float]:
        """The means over the steps since the last call, then a fresh start.

        Returns:
            ``grad_cosine`` (the mean cosine between two tasks' gradients on the shared
            parameters, over the pairs where both are non-zero), ``grad_norm_ratio``
            (the largest task gradient's norm over the smallest's, where none is zero),
            and ``effective_weight_{task}`` (the weight the aggregator gave each task,
            for aggregators that weight them); a value with no step to average is left
            out.
        """
        if self._sums is None:
            return {}
        sums, self._sums = self._sums, None
        return self._read(sums, task_names)

    def step_diagnostics(self, task_names: Sequence[str]) -> dict[str, float]:
        """The same values for the last step alone, with each task's gradient norm
        ``grad_norm_{task}``; empty before the first step. Waits for the step to finish.
        """
        if self._last_step is None or self.last_gramian is None:
            return {}
        norms = self.last_gramian.diagonal().clamp(min=0).sqrt().tolist()
        out = {f"grad_norm_{name}": norm for name, norm in zip(task_names, norms, strict=True)}
        return out | self._read(self._last_step, task_names)

    def _read(self, sums: Tensor, task_names: Sequence[str]) -> dict[str, float]:
        """Means from sums laid out as :meth:`_accumulate` lays out one step."""
        values = sums.tolist()
        out: dict[str, float] = {}
        if values[2]:
            out["grad_cosine"] = values[1] / values[2]
        if values[4]:
            out["grad_norm_ratio"] = values[3] / values[4]
        if self.last_weights is not None:
            for name, total in zip(task_names, values[5:], strict=True):
                out[f"effective_weight_{name}"] = total / values[0]
        return out

    def state_dict(self) -> dict[str, Any]:
        """This epoch's diagnostic sums, on this process, to resume an epoch mid-way."""
        return {"sums": None if self._sums is None else self._sums.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` returned."""
        sums = state.get("sums")
        self._sums = None if sums is None else sums.to(self.shared[0].device)

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
        from multitask_mnist.training import distributed  # methods know no Trainer

        world = distributed.world_size()
        if world == 1:
            return
        parts: list[Tensor] = [p.jac for p in self.shared]  # type: ignore[attr-defined]
        for p in self.specific:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            parts.append(p.grad)
        flat = torch.cat([part.reshape(-1) for part in parts])
        distributed.all_reduce_sum(flat)
        flat /= world
        offset = 0
        for part in parts:
            part.copy_(flat[offset : offset + part.numel()].view_as(part))
            offset += part.numel()


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
        raise ValueError("The checkpoint holds Nash-MTL's state, but the method is not Nash-MTL")
    for key in _NASH_MTL_ARRAYS:
        setattr(weighting, key, state[key].numpy().copy())
    weighting.step = state["step"]
    if weighting.step > 0:  # the solver's problem is built at the first step; build it now
        weighting._init_optim_problem()
