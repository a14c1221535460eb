"""Per-task metrics as named sums that add up across batches and processes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from multitask_mnist.tasks.losses import label_mask
from multitask_mnist.tasks.task import Task

__all__ = ["TaskMetrics"]


class TaskMetrics:
    """Named sums per task, reduced by summing across processes (torchmetrics'
    ``dist_reduce_fx="sum"``), read out as means over the labelled samples.

    For every task: ``{name}_labelled`` (samples with a label), ``{name}_loss``
    (summed per-sample loss), ``{name}_correct``; for regression tasks also
    ``{name}_abs_error``. :meth:`compute` reports ``{name}_loss``,
    ``{name}_accuracy`` (percent) and, for regression, ``{name}_mae``, each over the
    samples that have the task's label; a task with none reports nothing.

    The sums live in one float64 tensor on the device, so an update never waits for
    the host and :meth:`compute` needs one all-reduce for every task together.

    Args:
        tasks: The tasks.
        device: Where the sums live.

    Example:
        >>> from multitask_mnist.tasks import DIGIT_SUM_TASKS
        >>> metrics = TaskMetrics(DIGIT_SUM_TASKS)
        >>> logits = torch.nn.functional.one_hot(torch.tensor([3, 5]), 10).float()
        >>> metrics.update({"digit": logits, "sum": torch.tensor([7.2, 9.0])},
        ...                {"digit": torch.tensor([3, -1]), "sum": torch.tensor([7, 8])})
        >>> {k: round(v, 2) for k, v in metrics.compute().items() if "accuracy" in k}
        {'digit_accuracy': 100.0, 'sum_accuracy': 50.0}
    """

    def __init__(self, tasks: Sequence[Task], device: torch.device | str = "cpu") -> None:
        self.tasks = tuple(tasks)
        self.names: list[str] = []
        for task in self.tasks:
            fields = ["labelled", "loss", "correct"]
            if task.kind == "regression":
                fields.append("abs_error")
            self.names += [f"{task.name}_{field}" for field in fields]
        self._index = {name: i for i, name in enumerate(self.names)}
        self.sums = torch.zeros(len(self.names), dtype=torch.float64, device=device)

    def update(
        self,
        predictions: Mapping[str, Tensor],
        targets: Mapping[str, Tensor],
        masks: Mapping[str, Tensor] | None = None,
    ) -> None:
        """Add one batch; predictions and targets by task name, masks as for the losses."""
        values: list[Tensor] = []
        with torch.no_grad():
            for task in self.tasks:
                target = targets[task.name]
                mask = (
                    masks[task.name]
                    if masks is not None and task.name in masks
                    else label_mask(target)
                )
                prediction = predictions[task.name].detach()
                safe = torch.where(mask, target, task.dummy_target(target))
                loss = task.loss_per_sample(prediction, safe).double()
                right = task.correct(prediction, safe) & mask
                zero = torch.zeros((), dtype=torch.float64, device=loss.device)
                kept = torch.where(mask, loss, zero)  # a NaN where no label never counts
                values += [mask.sum().double(), kept.sum(), right.sum().double()]
                if task.kind == "regression":
                    error = (prediction.double() - safe.double()).abs()
                    values.append(torch.where(mask, error, zero).sum())
        self.sums += torch.stack(values)

    def compute(self) -> dict[str, float]:
        """Means over the labelled samples, summed over every process first.

        Returns:
            ``{task}_loss``, ``{task}_accuracy`` (percent), ``{task}_mae`` (regression).
        """
        from multitask_mnist.training import distributed  # tasks know no Trainer

        sums = self.sums.clone()
        distributed.all_reduce_sum(sums)
        total = dict(zip(self.names, sums.tolist(), strict=True))
        out: dict[str, float] = {}
        for task in self.tasks:
            n = total[f"{task.name}_labelled"]
            if n == 0:
                continue
            out[f"{task.name}_loss"] = total[f"{task.name}_loss"] / n
            out[f"{task.name}_accuracy"] = 100.0 * total[f"{task.name}_correct"] / n
            if task.kind == "regression":
                out[f"{task.name}_mae"] = total[f"{task.name}_abs_error"] / n
        return out

    def state_dict(self) -> dict[str, Any]:
        """The named sums, to resume an epoch mid-way."""
        return {
            name: float(value) for name, value in zip(self.names, self.sums.tolist(), strict=True)
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` returned."""
        self.sums.copy_(torch.tensor([state[name] for name in self.names], dtype=torch.float64))
