"""The multi-task loss as a module."""

from __future__ import annotations

import math
from collections.abc import Mapping

from torch import Tensor, nn

from multitask_mnist._validation import check_choice
from multitask_mnist.losses.functional import TASKS, MultiLossOutput, weighted_multi_loss
from multitask_mnist.models.net import MultiTaskOutput

__all__ = ["STRATEGIES", "WeightedMultiLoss"]

#: Ways of weighting the task losses.
STRATEGIES: tuple[str, ...] = ("fixed",)


class WeightedMultiLoss(nn.Module):
    """Cross-entropy on the digit plus mean squared error on the sum, weighted per task.

    A thin wrapper around :func:`~multitask_mnist.losses.weighted_multi_loss`.

    Args:
        weights: Weight of each task, by name (``"digit"``, ``"sum"``); a task left
            out weighs 1. Defaults to equal weights.
        strategy: How the weights are set; ``"fixed"`` uses ``weights`` as given.

    Raises:
        TypeError: A weight is not a real number.
        ValueError: A task name other than ``digit`` and ``sum``, a negative, NaN or
            infinite weight, or an unknown ``strategy``.

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
    """

    def __init__(
        self, weights: Mapping[str, float] | None = None, *, strategy: str = "fixed"
    ) -> None:
        super().__init__()
        self.strategy = check_choice("strategy", strategy, STRATEGIES)
        given = dict(weights or {})
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
        self.weights: dict[str, float] = {task: float(given.get(task, 1.0)) for task in TASKS}

    def forward(
        self, output: MultiTaskOutput, digit: Tensor, sum_target: Tensor
    ) -> MultiLossOutput:
        """Return the weighted total and the per-task losses."""
        return weighted_multi_loss(output.digit_logits, output.sum, digit, sum_target, self.weights)

    def extra_repr(self) -> str:
        return f"strategy={self.strategy!r}, weights={self.weights}"
