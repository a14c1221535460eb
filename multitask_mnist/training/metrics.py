"""Accuracy and error of both tasks, accumulated as tensors so the hot loop never syncs."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from multitask_mnist.data import DigitSample
from multitask_mnist.losses import MultiLossOutput
from multitask_mnist.models import MultiTaskOutput
from multitask_mnist.training import distributed

__all__ = ["METRIC_NAMES", "MetricAccumulator", "batch_statistics"]

#: The metrics :meth:`MetricAccumulator.compute` returns; accuracies are percentages.
METRIC_NAMES = (
    "loss",
    "digit_loss",
    "sum_loss",
    "digit_accuracy",
    "sum_accuracy",
    "joint_accuracy",
    "sum_mae",
    "sum_given_digit_accuracy",
)


def batch_statistics(output: MultiTaskOutput, batch: DigitSample, loss: MultiLossOutput) -> Tensor:
    """Sums over one batch, as a ``(7,)`` float64 tensor on the batch's device.

    In order: loss, digit loss and sum loss (each times the batch size); correct
    digits, correct sums (the rounded prediction equals the true sum), both
    correct; and the summed absolute error of the sum.
    """
    n = batch.digit.numel()
    digit_ok = output.digit_logits.argmax(dim=1) == batch.digit
    sum_ok = output.sum.round() == batch.sum
    return torch.stack(
        [
            loss.total.detach().double() * n,
            loss.parts["digit"].detach().double() * n,
            loss.parts["sum"].detach().double() * n,
            digit_ok.sum().double(),
            sum_ok.sum().double(),
            (digit_ok & sum_ok).sum().double(),
            (output.sum.detach().double() - batch.sum).abs().sum(),
        ]
    )


class MetricAccumulator:
    """Adds up :func:`batch_statistics` on the device; :meth:`compute` syncs once."""

    def __init__(self, device: torch.device) -> None:
        self.totals = torch.zeros(7, dtype=torch.float64, device=device)
        self.count = 0

    def state_dict(self) -> dict[str, Any]:
        """The sums so far, to resume an epoch mid-way."""
        return {"totals": self.totals.clone(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.totals.copy_(state["totals"])
        self.count = int(state["count"])

    def update(self, output: MultiTaskOutput, batch: DigitSample, loss: MultiLossOutput) -> None:
        self.totals += batch_statistics(output, batch, loss)
        self.count += batch.digit.numel()

    def compute(self) -> dict[str, float]:
        """Mean losses, accuracies in percent, and the sum's mean absolute error.

        ``sum_given_digit_accuracy`` is the sum's accuracy over the samples whose
        digit is right (100 when no digit is right: no sample contradicts it).
        Under torchrun the sums of every process are added first, so every rank
        returns the same numbers.
        """
        totals = torch.cat([self.totals, self.totals.new_tensor([self.count])])
        distributed.all_reduce_sum(totals)
        count = totals[-1].item()
        if count == 0:
            return {}
        values = (totals[:-1] / count).tolist()
        scale = (1, 1, 1, 100, 100, 100, 1)
        metrics = {name: v * s for name, v, s in zip(METRIC_NAMES[:-1], values, scale, strict=True)}
        digits_right, both_right = totals[3].item(), totals[5].item()
        metrics["sum_given_digit_accuracy"] = (
            100.0 * both_right / digits_right if digits_right else 100.0
        )
        return metrics
