"""Per-task metrics as named sums that add up across batches and processes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from multitask_mnist import distributed
from multitask_mnist.errors import InvalidValueError, MissingFieldError
from multitask_mnist.tasks.losses import task_masks
from multitask_mnist.tasks.task import Task

__all__ = ["TaskMetrics"]


class TaskMetrics:
    """Named sums per task, reduced by summing across processes (torchmetrics'
    ``dist_reduce_fx="sum"``), read out as means over the labelled samples.

    Sums, by name: ``samples`` and ``loss`` (the weighted total times the batch size);
    for every task ``{name}_labelled`` (samples with a label), ``{name}_loss``,
    ``{name}_correct`` and, for regression tasks, ``{name}_abs_error``; with several
    tasks, ``joint_labelled`` and ``joint_correct`` (samples with every label, and
    with every task right); for every pair in ``given``, the samples where the
    second task is right and the first labelled, and of those, where the first is
    right too.

    :meth:`compute` reports ``loss``, ``{name}_loss``, ``{name}_accuracy`` (percent)
    and ``{name}_mae`` (regression), each over the samples that have the task's
    label (a task with none reports nothing), ``joint_accuracy``, and
    ``{task}_given_{other}_accuracy``: the task's accuracy where the other task is
    right (100 when it is right nowhere: no sample contradicts it).

    The sums live in one float64 tensor on the device, so an update never waits for
    the host and :meth:`compute` needs one all-reduce for every task together. A
    task's loss sum comes from the loss the training computed (``losses`` in
    :meth:`update`) when given, so nothing is computed twice.

    Args:
        tasks: The tasks.
        given: ``{task: other task}`` pairs for ``{task}_given_{other}_accuracy``.
        device: Where the sums live.

    Example:
        >>> from multitask_mnist.tasks import DIGIT_SUM_TASKS
        >>> metrics = TaskMetrics(DIGIT_SUM_TASKS, given={"sum": "digit"})
        >>> logits = torch.nn.functional.one_hot(torch.tensor([3, 5]), 10).float()
        >>> metrics.update({"digit": logits, "sum": torch.tensor([7.2, 9.0])},
        ...                {"digit": torch.tensor([3, -1]), "sum": torch.tensor([7, 8])})
        >>> {k: round(v, 2) for k, v in metrics.compute().items() if "accuracy" in k}
        {'digit_accuracy': 100.0, 'sum_accuracy': 50.0, 'joint_accuracy': 100.0, \
'sum_given_digit_accuracy': 100.0}
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        *,
        given: Mapping[str, str] | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.tasks = tuple(tasks)
        known = [task.name for task in self.tasks]
        if "joint" in known:
            raise InvalidValueError("A task may not be named 'joint': the metrics use the name")
        self.given = dict(given or {})
        for taught, other in self.given.items():
            for name in (taught, other):
                if name not in known:
                    raise InvalidValueError(
                        f"Unknown task {name!r} in `given`; the tasks are "
                        f"{', '.join(map(repr, known))}"
                    )
        self.names: list[str] = ["samples", "loss"]
        for task in self.tasks:
            fields = ["labelled", "loss", "correct"]
            if task.kind == "regression":
                fields.append("abs_error")
            self.names += [f"{task.name}_{field}" for field in fields]
        if len(self.tasks) > 1:
            self.names += ["joint_labelled", "joint_correct"]
        for taught, other in self.given.items():
            self.names += [f"{taught}_given_{other}_total", f"{taught}_given_{other}_correct"]
        self.sums = torch.zeros(len(self.names), dtype=torch.float64, device=device)

    def update(
        self,
        predictions: Mapping[str, Tensor],
        targets: Mapping[str, Tensor],
        masks: Mapping[str, Tensor] | None = None,
        *,
        losses: Mapping[str, Tensor] | None = None,
        total: Tensor | None = None,
    ) -> None:
        """Add one batch.

        Args:
            predictions: By task name, as the model returns them.
            targets: By task name: ``(B,)`` labels.
            masks: By task name: ``(B,)`` bool, where the label is present; by default
                :func:`~multitask_mnist.tasks.label_mask` of each target.
            losses: Each task's loss over its labelled samples, as training computed
                it; recomputed from the predictions when not given.
            total: The weighted total loss of the batch, for ``loss``.
        """
        with torch.no_grad():
            found = task_masks(self.tasks, targets, masks)
            batch = next(iter(targets.values())).shape[0]
            device = self.sums.device
            values: list[Tensor] = [
                torch.full((), batch, dtype=torch.float64, device=device),
                (total.detach().double() * batch) if total is not None else self.sums.new_zeros(()),
            ]
            right: dict[str, Tensor] = {}
            all_labelled: Tensor | None = None
            all_right: Tensor | None = None
            for task in self.tasks:
                mask, target = found[task.name], targets[task.name]
                prediction = predictions[task.name].detach()
                safe = task.fill_missing(target, mask)
                count = mask.sum().double()
                if losses is not None:
                    loss = losses[task.name].detach().double() * count
                else:
                    per_sample = task.loss_per_sample(prediction, safe).double()
                    loss = torch.where(
                        mask, per_sample, 0.0
                    ).sum()  # NaN where no label never counts
                right[task.name] = task.correct(prediction, safe)
                values += [count, loss, (right[task.name] & mask).sum().double()]
                if task.kind == "regression":
                    error = (prediction.double() - safe.double()).abs()
                    values.append(torch.where(mask, error, 0.0).sum())
                all_labelled = mask if all_labelled is None else all_labelled & mask
                all_right = right[task.name] if all_right is None else all_right & right[task.name]
            if len(self.tasks) > 1 and all_labelled is not None and all_right is not None:
                values += [all_labelled.sum().double(), (all_labelled & all_right).sum().double()]
            for taught, other in self.given.items():
                base = found[taught] & found[other] & right[other]
                values += [base.sum().double(), (base & right[taught]).sum().double()]
        self.sums += torch.stack(values)

    def compute(self) -> dict[str, float]:
        """Means over the labelled samples, summed over every process first.

        Returns:
            The metrics named in the class docstring; empty before any update.
        """

        sums = self.sums.clone()
        distributed.all_reduce_sum(sums)
        total = dict(zip(self.names, sums.tolist(), strict=True))
        if total["samples"] == 0:
            return {}
        out: dict[str, float] = {"loss": total["loss"] / total["samples"]}
        for task in self.tasks:
            n = total[f"{task.name}_labelled"]
            if n == 0:
                continue
            out[f"{task.name}_loss"] = total[f"{task.name}_loss"] / n
            out[f"{task.name}_accuracy"] = 100.0 * total[f"{task.name}_correct"] / n
            if task.kind == "regression":
                out[f"{task.name}_mae"] = total[f"{task.name}_abs_error"] / n
        if len(self.tasks) > 1 and total["joint_labelled"]:
            out["joint_accuracy"] = 100.0 * total["joint_correct"] / total["joint_labelled"]
        for taught, other in self.given.items():
            base = total[f"{taught}_given_{other}_total"]
            right = total[f"{taught}_given_{other}_correct"]
            out[f"{taught}_given_{other}_accuracy"] = 100.0 * right / base if base else 100.0
        return out

    def state_dict(self) -> dict[str, Any]:
        """The named sums, to resume an epoch mid-way."""
        return {
            name: float(value) for name, value in zip(self.names, self.sums.tolist(), strict=True)
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` returned."""
        missing = [name for name in self.names if name not in state]
        if missing:
            raise MissingFieldError(f"The saved metric sums lack {', '.join(missing)}")
        values = [state[name] for name in self.names]
        self.sums.copy_(torch.tensor(values, dtype=torch.float64))
