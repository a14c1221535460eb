"""Task losses over the labelled samples only: means under a per-sample mask."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from multitask_mnist.errors import MissingFieldError
from multitask_mnist.tasks.task import MISSING, Task, teacher_forced_key

__all__ = ["label_mask", "masked_mean", "masked_task_losses", "task_masks"]


def label_mask(target: Tensor) -> Tensor:
    """``(B,)`` bool: which samples have a label.

    Args:
        target: ``(B,)`` labels: integer targets mark a missing one with
            :data:`~multitask_mnist.tasks.MISSING` (-1), float targets with NaN (so a
            real target of -1.0 stays a label); a ``(B, L)`` label (digits) is missing
            where every entry is (a partly missing one is a bad label).

    Returns:
        True where a label is present.

    Example:
        >>> label_mask(torch.tensor([3, -1, 0])).tolist()
        [True, False, True]
    """
    present = ~torch.isnan(target) if target.is_floating_point() else target != MISSING
    return present.flatten(1).any(1) if target.ndim > 1 else present


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """The mean of ``values`` where ``mask`` is true; zero where it is true nowhere.

    Masked-out values never reach the result or its gradient, even when they are NaN.

    Args:
        values: ``(B,)`` per-sample values.
        mask: ``(B,)`` bool.

    Returns:
        ``()`` the mean over the masked-in samples, or 0 (keeping ``values``' graph).

    Example:
        >>> masked_mean(torch.tensor([1.0, float("nan"), 3.0]), torch.tensor([True, False, True]))
        tensor(2.)
        >>> masked_mean(torch.tensor([float("nan")]), torch.tensor([False]))
        tensor(0.)
    """
    kept = torch.where(mask, values, torch.zeros_like(values))
    return kept.sum() / mask.sum().clamp(min=1).to(values.dtype)


def masked_task_losses(
    tasks: Sequence[Task],
    predictions: Mapping[str, Tensor],
    targets: Mapping[str, Tensor],
    masks: Mapping[str, Tensor] | None = None,
    teachers: Mapping[str, str] | None = None,
) -> dict[str, Tensor]:
    """Each task's loss: its mean over the samples that have its label.

    A task's mask is ``masks[name]`` if given, else :func:`label_mask` of its target.
    A batch with no label for a task gives that task a loss of exactly zero, with no
    NaN in it or in any gradient.

    A task taught by another (``teachers[name]``, see
    :class:`~multitask_mnist.models.Block`) whose teacher-forced prediction is in
    ``predictions`` (under ``"{name}/teacher_forced"``) adds that prediction's loss,
    its mean over the samples that have both labels.

    Args:
        tasks: The tasks.
        predictions: By task name: ``(B, C)`` logits or ``(B,)`` values.
        targets: By task name: ``(B,)`` labels.
        masks: By task name: ``(B,)`` bool, true where the label is present.
        teachers: ``{task: teacher task}``.

    Returns:
        ``{name: ()}`` float32 losses, in the order of ``tasks``.

    Raises:
        KeyError: A task without a prediction or a target, named in the message.

    Example:
        >>> from multitask_mnist.tasks import DIGIT_SUM_TASKS
        >>> losses = masked_task_losses(
        ...     DIGIT_SUM_TASKS,
        ...     {"digit": torch.zeros(2, 10), "sum": torch.tensor([3.0, 5.0])},
        ...     {"digit": torch.tensor([-1, -1]), "sum": torch.tensor([3, 6])})
        >>> {name: round(float(v), 3) for name, v in losses.items()}
        {'digit': 0.0, 'sum': 0.5}
    """
    found = task_masks(tasks, targets, masks)
    losses: dict[str, Tensor] = {}
    for task in tasks:
        if task.name not in predictions:
            raise MissingFieldError(
                f"No prediction for task {task.name!r}; got {sorted(predictions)}"
            )
        mask, target = found[task.name], targets[task.name]
        loss = task.masked_mean_loss(predictions[task.name], target, mask)
        teacher = teachers.get(task.name) if teachers is not None else None
        forced = predictions.get(teacher_forced_key(task.name)) if teacher is not None else None
        if teacher is not None and forced is not None:
            loss = loss + task.masked_mean_loss(forced, target, mask & found[teacher])
        losses[task.name] = loss
    return losses


def task_masks(
    tasks: Sequence[Task],
    targets: Mapping[str, Tensor],
    masks: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Each task's mask: ``masks[name]`` where given, else :func:`label_mask` of its target.

    Args:
        tasks: The tasks.
        targets: By task name: ``(B,)`` labels.
        masks: By task name: ``(B,)`` bool, true where the label is present.

    Returns:
        ``{name: (B,) bool}``, true where the sample has the task's label.

    Raises:
        KeyError: A task without a target, named in the message.

    Example:
        >>> from multitask_mnist.tasks import DIGIT_SUM_TASKS
        >>> found = task_masks(DIGIT_SUM_TASKS, {"digit": torch.tensor([-1, 2]),
        ...                                      "sum": torch.tensor([3.0, float("nan")])})
        >>> {name: mask.tolist() for name, mask in found.items()}
        {'digit': [False, True], 'sum': [True, False]}
    """
    found: dict[str, Tensor] = {}
    for task in tasks:
        if task.name not in targets:
            raise MissingFieldError(f"No target for task {task.name!r}; got {sorted(targets)}")
        given = masks.get(task.name) if masks is not None else None
        found[task.name] = given if given is not None else label_mask(targets[task.name])
    return found
