"""Accuracy and error of both tasks, accumulated as tensors so the hot loop never syncs."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from multitask_mnist.data import DigitSample
from multitask_mnist.losses import MultiLossOutput
from multitask_mnist.models import MultiTaskOutput
from multitask_mnist.tasks import label_mask
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


# The named sums one batch adds; each metric is one sum over another.
_SUMS = (
    "samples",  # every sample
    "labelled",  # samples with a digit label
    "loss",  # total loss times the batch size
    "digit_loss",  # digit loss times the labelled samples
    "sum_loss",  # sum loss times the batch size
    "digit_right",  # labelled samples whose digit is right
    "sum_right",  # samples whose rounded sum is right
    "both_right",  # labelled samples with both right
    "sum_abs_error",  # summed |predicted sum - sum|
)


def batch_statistics(output: MultiTaskOutput, batch: DigitSample, loss: MultiLossOutput) -> Tensor:
    """The named sums of one batch (see ``_SUMS``), as a float64 tensor on its device.

    A sample whose digit label is missing (:data:`~multitask_mnist.tasks.MISSING`)
    counts for the sum's metrics only.
    """
    n = batch.digit.numel()
    labelled = label_mask(batch.digit)
    digit_ok = (output.digit_logits.argmax(dim=1) == batch.digit) & labelled
    sum_ok = output.sum.round() == batch.sum
    return torch.stack(
        [
            torch.full((), n, dtype=torch.float64, device=batch.digit.device),
            labelled.sum().double(),
            loss.total.detach().double() * n,
            loss.parts["digit"].detach().double() * labelled.sum(),
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
        self.totals = torch.zeros(len(_SUMS), dtype=torch.float64, device=device)

    def state_dict(self) -> dict[str, Any]:
        """The sums so far, by name, to resume an epoch mid-way."""
        return {"sums": dict(zip(_SUMS, self.totals.tolist(), strict=True))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.totals.copy_(
            torch.tensor([state["sums"][name] for name in _SUMS], dtype=torch.float64)
        )

    def update(self, output: MultiTaskOutput, batch: DigitSample, loss: MultiLossOutput) -> None:
        self.totals += batch_statistics(output, batch, loss)

    def compute(self) -> dict[str, float]:
        """Mean losses, accuracies in percent, and the sum's mean absolute error.

        The digit's loss and accuracy, and ``joint_accuracy``, are over the samples
        with a digit label, and left out when no sample has one;
        ``sum_given_digit_accuracy`` is the sum's accuracy over the samples whose
        digit is right (100 when none is: no sample contradicts it). Under torchrun
        the sums of every process are added first, so every rank returns the same
        numbers.
        """
        totals = self.totals.clone()
        distributed.all_reduce_sum(totals)
        sums = dict(zip(_SUMS, totals.tolist(), strict=True))
        n, labelled = sums["samples"], sums["labelled"]
        if n == 0:
            return {}

        def share(part: str, whole: float) -> float:
            return 100.0 * sums[part] / whole if whole else 100.0

        metrics = {
            "loss": sums["loss"] / n,
            "sum_loss": sums["sum_loss"] / n,
            "sum_accuracy": share("sum_right", n),
            "sum_mae": sums["sum_abs_error"] / n,
            "sum_given_digit_accuracy": share("both_right", sums["digit_right"]),
        }
        if labelled:
            metrics["digit_loss"] = sums["digit_loss"] / labelled
            metrics["digit_accuracy"] = share("digit_right", labelled)
            metrics["joint_accuracy"] = share("both_right", labelled)
        return {name: metrics[name] for name in METRIC_NAMES if name in metrics}
