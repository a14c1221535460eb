"""Scalarizations: fixed, uncertainty, DWA, RLW and geometric weighting of the task losses.

Each turns the ``(K,)`` task losses into one total that the step backpropagates once
(:meth:`~multitask_mnist.methods.Method.backward`, gradients averaged over processes);
they differ in where the weights come from: given, learned, the epochs before, drawn
at random, or the losses themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from multitask_mnist import distributed
from multitask_mnist.errors import InvalidValueError
from multitask_mnist.losses import dwa_weights, uncertainty_weighted_loss, weighted_sum
from multitask_mnist.methods.base import Scalarization

__all__ = [
    "DynamicWeightAverage",
    "FixedWeighting",
    "GeometricLossWeighting",
    "RandomLossWeighting",
    "UncertaintyWeighting",
]


class FixedWeighting(Scalarization):
    """Method ``"none"``: the weighted sum of the task losses with the loss's fixed
    weights (1 each by default), one backward pass. A task of weight 0 contributes
    nothing, not even a NaN.

    Args:
        weights: ``(K,)`` the weights, when used on its own; the loss's fixed weights
            replace them when it is bound.

    Example:
        >>> FixedWeighting(torch.tensor([1.0, 0.0]))(torch.tensor([2.0, float("nan")]))
        tensor(2.)
    """

    name = "none"

    def __init__(self, weights: Tensor | None = None) -> None:
        super().__init__()
        if weights is not None:
            self.fixed = [float(w) for w in weights.tolist()]
            self.num_tasks = len(self.fixed)

    def forward(self, losses: Tensor, shared: Sequence[Tensor] = ()) -> Tensor:
        return weighted_sum(list(losses.unbind()), self.fixed)

    def weights(self) -> Tensor:
        return torch.tensor(self.fixed)


class UncertaintyWeighting(Scalarization):
    """One learned log-variance per task (Kendall, Gal and Cipolla, 2018).

    The total is :func:`~multitask_mnist.losses.uncertainty_weighted_loss`, at or
    above zero; the weights are ``0.5 * exp(-log_vars)``.

    Args:
        num_tasks: The number of tasks ``K``.

    Example:
        >>> UncertaintyWeighting(2).weights().tolist()
        [0.5, 0.5]
    """

    name = "uncertainty"

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        self.log_vars = nn.Parameter(torch.zeros(num_tasks))

    def forward(self, losses: Tensor, shared: Sequence[Tensor] = ()) -> Tensor:
        return uncertainty_weighted_loss(self.scaled(losses), self.log_vars)[0]

    def weights(self) -> Tensor:
        return 0.5 * torch.exp(-self.log_vars.detach())


class DynamicWeightAverage(Scalarization):
    """Dynamic weight average (Liu, Johns and Davison, 2019).

    Each training epoch's weights come from the ratio of each task's mean loss over
    the two epochs before it (:func:`~multitask_mnist.losses.dwa_weights`); both are
    1 for the first two epochs. The current epoch's running sums are per process:
    they are summed over all processes at the epoch's end, and travel in the state
    dict's extra state.

    Args:
        num_tasks: The number of tasks ``K``.
        temperature: The softmax temperature, > 0.

    Example:
        >>> dwa = DynamicWeightAverage(2)
        >>> _ = dwa(torch.tensor([4.0, 1.0])); dwa.on_train_epoch_end()
        >>> _ = dwa(torch.tensor([2.0, 1.0])); dwa.on_train_epoch_end()
        >>> [round(w, 4) for w in dwa.weights().tolist()]
        [0.8756, 1.1244]
    """

    name = "dwa"
    current: Tensor  # this epoch's weights
    epoch_means: Tensor  # mean task losses of the two epochs before, oldest first
    epochs_seen: Tensor  # training epochs closed so far

    def __init__(self, num_tasks: int, temperature: float = 2.0) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        if not temperature > 0:
            raise InvalidValueError(f"Expected argument `temperature` to be > 0, got {temperature}")
        self.temperature = temperature
        self.register_buffer("current", torch.ones(num_tasks))
        self.register_buffer("epoch_means", torch.zeros(2, num_tasks))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))
        self.running_sum = torch.zeros(num_tasks, dtype=torch.float64)
        self.running_count = torch.zeros((), dtype=torch.float64)

    def forward(self, losses: Tensor, shared: Sequence[Tensor] = ()) -> Tensor:
        losses = self.scaled(losses)
        if self.training:
            self.running_sum = self.running_sum.to(losses.device) + losses.detach().double()
            self.running_count = self.running_count.to(losses.device) + 1
        return (self.current * losses).sum()

    def weights(self) -> Tensor:
        return self.current

    def on_train_epoch_end(self) -> None:
        """Close the epoch: its mean losses (over all processes) set the next weights."""
        sums = torch.cat([self.running_sum, self.running_count.reshape(1)])
        distributed.all_reduce_sum(sums)
        if sums[-1] > 0:
            means = (sums[:-1] / sums[-1]).to(self.epoch_means)
            self.epoch_means.copy_(torch.stack([self.epoch_means[1], means]))
            self.epochs_seen += 1
        if int(self.epochs_seen) >= 2:
            self.current.copy_(
                dwa_weights(self.epoch_means[1], self.epoch_means[0], self.temperature)
            )
        self.running_sum = torch.zeros_like(self.running_sum)
        self.running_count = torch.zeros_like(self.running_count)

    def get_extra_state(self) -> dict[str, Tensor]:
        """This process's running sums of the epoch, saved with the module's state."""
        return {"running_sum": self.running_sum, "running_count": self.running_count}

    def set_extra_state(self, state: Any) -> None:
        """Take back what :meth:`get_extra_state` saved."""
        self.running_sum = state["running_sum"].clone()
        self.running_count = state["running_count"].clone()

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class RandomLossWeighting(Scalarization):
    """Random loss weighting, RLW (Lin et al., 2022): fresh random weights every step.

    In training each step's weights are ``softmax(z)`` with ``z`` standard normal,
    drawn from the global generator (so checkpoints restore the draws exactly) by
    TorchJD's ``scalarization.Random``; they are positive and sum to 1. Out of
    training (evaluation) the total uses their expectation, ``1 / K`` each, which is
    also what :meth:`weights` reports.

    Example:
        >>> from multitask_mnist import presets
        >>> rlw = RandomLossWeighting()
        >>> rlw.bind(presets.mnist_sum())  # (or RandomLossWeighting(2), unbound)
        >>> _ = torch.manual_seed(0)
        >>> total = rlw(torch.tensor([1.0, 3.0]))
        >>> bool(1.0 < total < 3.0), rlw.weights().tolist()
        (True, [0.5, 0.5])
    """

    name = "rlw"

    def __init__(self, num_tasks: int | None = None) -> None:
        super().__init__()
        self.num_tasks = num_tasks or 0
        from torchjd.scalarization import Random  # torchjd is imported only when used

        self.scalarizer = Random()

    def forward(self, losses: Tensor, shared: Sequence[Tensor] = ()) -> Tensor:
        losses = self.scaled(losses)
        if self.training:
            total: Tensor = self.scalarizer(losses)
            return total
        return losses.mean()

    def weights(self) -> Tensor:
        return torch.full((self.num_tasks,), 1.0 / self.num_tasks)


class GeometricLossWeighting(Scalarization):
    """The geometric mean of the task losses (Chennupati et al., 2019, GLS).

    ``exp(mean(log L_i))`` over the tasks whose loss is above zero in the batch: a
    task without labels in a batch (loss exactly zero) is left out instead of making
    the product zero and its gradient NaN. TorchJD's ``scalarization.GeometricMean``
    computes the same for positive losses, but it checks the signs on the host every
    step and has no such exception, so the library keeps its own. The gradient of
    task ``i`` is scaled by ``total / (K L_i)``: a task whose loss is small weighs
    more. That scale changes with every batch (and differs between processes), so
    :meth:`weights` reports 1 for every task: there is no fixed weight to report.

    Example:
        >>> gls = GeometricLossWeighting()
        >>> float(gls(torch.tensor([1.0, 4.0])))
        2.0
        >>> float(gls(torch.tensor([0.0, 4.0])))  # the first task has no label here
        4.0
    """

    name = "geometric"

    def __init__(self, num_tasks: int | None = None) -> None:
        super().__init__()
        self.num_tasks = num_tasks or 0

    def forward(self, losses: Tensor, shared: Sequence[Tensor] = ()) -> Tensor:
        losses = self.scaled(losses)
        present = losses > 0
        logs = torch.where(present, torch.log(torch.where(present, losses, 1.0)), 0.0)
        total = torch.exp(logs.sum() / present.sum().clamp(min=1))
        return torch.where(present.any(), total, losses.sum() * 0.0)

    def weights(self) -> Tensor:
        return torch.ones(self.num_tasks)
