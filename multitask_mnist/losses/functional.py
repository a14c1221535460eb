"""The math of the multi-task loss, as pure functions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor

__all__ = ["TASKS", "MultiLossOutput", "task_losses", "weighted_multi_loss"]

#: The task names, in the order losses are reported.
TASKS: tuple[str, ...] = ("digit", "sum")


class MultiLossOutput(NamedTuple):
    """A weighted total and the unweighted loss of each task.

    Attributes:
        total: ``()`` the weighted sum that is minimized.
        parts: ``{"digit": (), "sum": ()}`` each task's own loss, for logging.

    Example:
        >>> import torch
        >>> parts = {"digit": torch.tensor(1.0), "sum": torch.tensor(0.5)}
        >>> out = MultiLossOutput(torch.tensor(1.5), parts)
        >>> float(out.total)
        1.5
    """

    total: Tensor
    parts: dict[str, Tensor]


def task_losses(
    digit_logits: Tensor, sum_pred: Tensor, digit: Tensor, sum_target: Tensor
) -> dict[str, Tensor]:
    """Cross-entropy of the digit and mean squared error of the sum, in float32.

    Args:
        digit_logits: ``(B, C)`` logits.
        sum_pred: ``(B,)`` predicted sums.
        digit: ``(B,)`` int64 true digits.
        sum_target: ``(B,)`` true sums, any real dtype.

    Returns:
        ``{"digit": (), "sum": ()}``.

    Example:
        >>> import torch
        >>> parts = task_losses(torch.zeros(1, 10), torch.tensor([5.0]), torch.tensor([2]),
        ...                     torch.tensor([7]))
        >>> round(float(parts["digit"]), 4), float(parts["sum"])
        (2.3026, 4.0)
    """
    return {
        "digit": F.cross_entropy(digit_logits.float(), digit),
        "sum": F.mse_loss(sum_pred.float(), sum_target.float()),
    }


def weighted_multi_loss(
    digit_logits: Tensor,
    sum_pred: Tensor,
    digit: Tensor,
    sum_target: Tensor,
    weights: Mapping[str, float | Tensor],
) -> MultiLossOutput:
    """Weight and add the task losses; a task of weight zero contributes nothing.

    Args:
        digit_logits: ``(B, C)`` logits.
        sum_pred: ``(B,)`` predicted sums.
        digit: ``(B,)`` int64 true digits.
        sum_target: ``(B,)`` true sums.
        weights: One weight per task name in :data:`TASKS`.

    Returns:
        The total and the unweighted per-task losses.

    Example:
        >>> import torch
        >>> out = weighted_multi_loss(
        ...     torch.zeros(2, 10), torch.tensor([3.0, 5.0]), torch.tensor([1, 2]),
        ...     torch.tensor([3, 6]), {"digit": 0.0, "sum": 1.0})
        >>> float(out.total), float(out.parts["sum"])
        (0.5, 0.5)
    """
    parts = task_losses(digit_logits, sum_pred, digit, sum_target)
    terms = [
        weights[task] * loss
        for task, loss in parts.items()
        if isinstance(weights[task], Tensor) or weights[task] != 0
    ]
    total = sum(terms[1:], terms[0]) if terms else parts["digit"] * 0.0
    return MultiLossOutput(total, parts)
