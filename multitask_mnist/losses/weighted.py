"""The multi-task loss as a module: task losses, weighted by a strategy."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from multitask_mnist._validation import check_choice, check_number
from multitask_mnist.losses.functional import TASKS, MultiLossOutput, task_losses
from multitask_mnist.losses.weighting import (
    DynamicWeightAverage,
    FixedWeighting,
    LossWeighting,
    UncertaintyWeighting,
)
from multitask_mnist.models.net import MultiTaskOutput

__all__ = ["STRATEGIES", "WeightedMultiLoss"]

#: Ways of weighting the task losses, by name.
STRATEGIES: tuple[str, ...] = ("fixed", "uncertainty", "dwa")


class WeightedMultiLoss(nn.Module):
    """Cross-entropy on the digit plus mean squared error on the sum, weighted per task.

    The task losses come from :func:`~multitask_mnist.losses.task_losses`; a
    :class:`~multitask_mnist.losses.LossWeighting` strategy (``weighting``) turns
    them into the total and holds any learned or running state. The Trainer trains
    this module together with the model (one
    :class:`~multitask_mnist.training.TrainingTask`), so learned weights are
    optimized, averaged across processes and checkpointed like any weight.

    Strategies:

    * ``"fixed"`` (default): ``weights`` as given, equal by default
      (:class:`~multitask_mnist.losses.FixedWeighting`).
    * ``"uncertainty"``: one learned log-variance per task
      (:class:`~multitask_mnist.losses.UncertaintyWeighting`); the total stays at
      or above zero.
    * ``"dwa"``: dynamic weight average
      (:class:`~multitask_mnist.losses.DynamicWeightAverage`); each epoch's weights
      follow how fast each task's loss fell, and sum to the number of tasks.

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

    weighting: LossWeighting

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
        if strategy == "uncertainty":
            self.weighting = UncertaintyWeighting(len(TASKS))
        elif strategy == "dwa":
            self.weighting = DynamicWeightAverage(len(TASKS), self.temperature)
        else:
            self.weighting = FixedWeighting(torch.tensor([self.weights[t] for t in TASKS]))

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
        parts = task_losses(output.digit_logits, output.sum, digit, sum_target, output.adder)
        total = self.weighting(torch.stack([parts[task] for task in TASKS]))
        return MultiLossOutput(total, parts)

    def task_weights(self) -> dict[str, float]:
        """The weight each task's loss currently gets, by task name.

        Returns:
            ``{"digit": w, "sum": w}``; for ``"uncertainty"``, ``0.5 * exp(-log_var)``.
        """
        return dict(zip(TASKS, self.weighting.weights().tolist(), strict=True))

    def on_train_epoch_end(self) -> None:
        """Close a training epoch; the strategy may update its weights (``"dwa"`` does).

        The Trainer calls this through
        :meth:`~multitask_mnist.training.TrainingTask.on_train_epoch_end`.
        """
        self.weighting.on_train_epoch_end()

    def extra_repr(self) -> str:
        return f"strategy={self.strategy!r}" + (
            f", weights={self.weights}" if self.strategy == "fixed" else ""
        )
