"""The multi-task loss as a module."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.distributed as dist
from torch import Tensor, nn

from multitask_mnist._validation import check_choice, check_number
from multitask_mnist.losses.functional import (
    TASKS,
    MultiLossOutput,
    dwa_weights,
    task_losses,
    uncertainty_weighted_loss,
    weighted_multi_loss,
)
from multitask_mnist.models.net import MultiTaskOutput

__all__ = ["STRATEGIES", "WeightedMultiLoss"]

#: Ways of weighting the task losses.
STRATEGIES: tuple[str, ...] = ("fixed", "uncertainty", "dwa")


class WeightedMultiLoss(nn.Module):
    """Cross-entropy on the digit plus mean squared error on the sum, weighted per task.

    The math lives in pure functions of ``multitask_mnist.losses``; this module holds
    the weights and any learned state, which the Trainer puts in the optimizer (the
    ``uncertainty`` parameters) and in every checkpoint (all of it), so a resumed
    run continues exactly.

    Strategies:

    * ``"fixed"`` (default): ``weights`` as given, equal by default;
      :func:`~multitask_mnist.losses.weighted_multi_loss`.
    * ``"uncertainty"``: one learned log-variance per task (2 parameters),
      :func:`~multitask_mnist.losses.uncertainty_weighted_loss`; the total stays at
      or above zero.
    * ``"dwa"``: dynamic weight average; the weights of each epoch come from the
      ratio of each task's mean loss over the two epochs before it,
      :func:`~multitask_mnist.losses.dwa_weights`, and sum to the number of tasks.
      Both are 1 for the first two epochs. The Trainer calls :meth:`end_epoch`.

    Args:
        weights: For ``"fixed"``: the weight of each task, by name (``"digit"``,
            ``"sum"``); a task left out weighs 1. Defaults to equal weights.
        strategy: One of :data:`STRATEGIES`.
        temperature: The ``"dwa"`` softmax temperature.

    Raises:
        TypeError: A weight is not a real number.
        ValueError: A task name other than ``digit`` and ``sum``; a negative, NaN or
            infinite weight; ``weights`` with a strategy other than ``"fixed"``; an
            unknown ``strategy``; a temperature that is not positive.

    Shapes:
        ``forward(output, digit, sum_target)``: ``output.digit_logits`` ``(B, C)``,
        ``output.sum`` ``(B,)``, ``digit`` and ``sum_target`` ``(B,)`` int64 ->
        :class:`~multitask_mnist.losses.MultiLossOutput` of scalars.

    Example:
        >>> import torch
        >>> from multitask_mnist.models import MultiTaskOutput
        >>> loss = WeightedMultiLoss({"digit": 1.0, "sum": 0.5})
        >>> out = MultiTaskOutput(torch.zeros(2, 10), torch.tensor([3.0, 6.0]))
        >>> loss(out, torch.tensor([1, 2]), torch.tensor([3, 6])).total.shape
        torch.Size([])
        >>> WeightedMultiLoss(strategy="uncertainty").task_weights()
        {'digit': 0.5, 'sum': 0.5}
    """

    log_vars: nn.Parameter  # "uncertainty": log(sigma^2) per task
    dwa_current: Tensor  # "dwa": this epoch's weights
    epoch_means: Tensor  # "dwa": mean task losses of the two epochs before, oldest first
    epochs_seen: Tensor  # "dwa": training epochs closed by end_epoch()
    running_sum: Tensor  # "dwa": this epoch's summed batch losses
    running_count: Tensor  # "dwa": this epoch's batches

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        *,
        strategy: str = "fixed",
        temperature: float = 2.0,
    ) -> None:
        super().__init__()
        self.strategy = check_choice("strategy", strategy, STRATEGIES)
        if weights is not None and strategy != "fixed":
            raise ValueError(
                f"Argument `weights` applies to strategy='fixed' only; got strategy={strategy!r}"
            )
        self.temperature = check_number("temperature", temperature)
        if self.temperature <= 0:
            raise ValueError(f"Expected argument `temperature` to be > 0, got {temperature}")
        self.weights: dict[str, float] = self._check_weights(dict(weights or {}))
        k = len(TASKS)
        if strategy == "uncertainty":
            self.log_vars = nn.Parameter(torch.zeros(k))
        if strategy == "dwa":
            self.register_buffer("dwa_current", torch.ones(k))
            self.register_buffer("epoch_means", torch.zeros(2, k))  # [before, last]
            self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))
            self.register_buffer("running_sum", torch.zeros(k, dtype=torch.float64))
            self.register_buffer("running_count", torch.zeros((), dtype=torch.float64))

    @staticmethod
    def _check_weights(given: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(given) - set(TASKS))
        if unknown:
            raise ValueError(
                f"Unknown task name(s) in `weights`: {', '.join(map(repr, unknown))}; "
                f"the tasks are {', '.join(map(repr, TASKS))}"
            )
        for task, value in given.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Expected `weights[{task!r}]` to be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"Expected `weights[{task!r}]` to be finite and >= 0, got {value}")
        return {task: float(given.get(task, 1.0)) for task in TASKS}

    def forward(
        self, output: MultiTaskOutput, digit: Tensor, sum_target: Tensor
    ) -> MultiLossOutput:
        """Return the weighted total and the per-task losses."""
        if self.strategy == "fixed":
            return weighted_multi_loss(
                output.digit_logits, output.sum, digit, sum_target, self.weights, output.adder
            )
        parts = task_losses(output.digit_logits, output.sum, digit, sum_target, output.adder)
        losses = torch.stack([parts[task] for task in TASKS])
        if self.strategy == "uncertainty":
            total, _ = uncertainty_weighted_loss(losses, self.log_vars)
            return MultiLossOutput(total, parts)
        if self.training:
            self.running_sum += losses.detach().double()
            self.running_count += 1
        return MultiLossOutput((self.dwa_current * losses).sum(), parts)

    def task_weights(self) -> dict[str, float]:
        """The weight each task's loss currently gets, by task name.

        Returns:
            ``{"digit": w, "sum": w}``; for ``"uncertainty"``, ``0.5 * exp(-log_var)``.
        """
        if self.strategy == "fixed":
            return dict(self.weights)
        if self.strategy == "uncertainty":
            values = (0.5 * torch.exp(-self.log_vars.detach())).tolist()
        else:
            values = self.dwa_current.tolist()
        return dict(zip(TASKS, values, strict=True))

    def end_epoch(self) -> None:
        """Close a training epoch: for ``"dwa"``, set the next epoch's weights.

        The mean task losses of the epoch (summed over all processes when
        ``torch.distributed`` is initialized) become the newest entry of the
        two-epoch history; from the third epoch on, the weights follow
        :func:`~multitask_mnist.losses.dwa_weights`. Other strategies do nothing.
        """
        if self.strategy != "dwa":
            return
        sums = torch.cat([self.running_sum, self.running_count.reshape(1)])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)
        if sums[-1] > 0:
            means = (sums[:-1] / sums[-1]).to(self.epoch_means.dtype)
            self.epoch_means.copy_(torch.stack([self.epoch_means[1], means]))
            self.epochs_seen += 1
        if int(self.epochs_seen) >= 2:
            self.dwa_current.copy_(
                dwa_weights(self.epoch_means[1], self.epoch_means[0], self.temperature)
            )
        self.running_sum.zero_()
        self.running_count.zero_()

    def extra_repr(self) -> str:
        if self.strategy == "fixed":
            return f"strategy='fixed', weights={self.weights}"
        if self.strategy == "dwa":
            return f"strategy='dwa', temperature={self.temperature}"
        return "strategy='uncertainty'"
