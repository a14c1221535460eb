"""Labels checked where they enter: each task's labels in its range, or marked missing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from multitask_mnist.errors import LabelError
from multitask_mnist.tasks.losses import label_mask
from multitask_mnist.tasks.task import MISSING, Task

__all__ = ["check_labels", "invalid_labels"]


def invalid_labels(task: Task, target: Tensor) -> Tensor:
    """``(B,)`` bool: the labels ``task`` cannot take (a missing label is never invalid).

    A multiclass label is a whole number in ``0..C-1``, a binary one 0 or 1, a
    regression target a finite number, a digits label a row of whole numbers in
    ``0..C-1``; any of them may be missing instead
    (:func:`~multitask_mnist.tasks.label_mask`; a row of digits with some missing is
    invalid). A target of another shape is invalid in every row.

    Args:
        task: The task.
        target: ``(B,)`` its labels (``(B, L)`` for a digits task).

    Returns:
        True where a present label is out of the task's range.

    Example:
        >>> digit = Task("digit", "multiclass", num_classes=10)
        >>> invalid_labels(digit, torch.tensor([3, -1, 12])).tolist()
        [False, False, True]
    """
    present = label_mask(target)
    if (target.ndim != 2) if task.kind == "digits" else (target.ndim != 1):
        return torch.ones(target.shape[:1], dtype=torch.bool, device=target.device)  # shape
    if task.kind == "regression":
        valid = torch.isfinite(target) if target.is_floating_point() else present
    elif task.kind == "digits":
        valid = (target == target.round()) if target.is_floating_point() else present[:, None]
        valid = (valid & (target >= 0) & (target < (task.num_classes or 10))).all(1)
    else:
        high = task.num_classes if task.kind == "multiclass" else 2
        whole = target == target.round() if target.is_floating_point() else present
        valid = whole & (target >= 0) & (target < (high or 2))
    return present & ~valid


def _allowed(task: Task) -> str:
    missing = f"or {MISSING} (NaN for float labels) where missing"
    if task.kind == "multiclass":
        return f"has {task.num_classes} classes: labels 0..{(task.num_classes or 2) - 1}, {missing}"
    if task.kind == "binary":
        return f"is binary: labels 0 or 1, {missing}"
    if task.kind == "digits":
        return (
            f"is digits in base {task.num_classes}: (B, L) whole-number labels, each "
            f"0..{(task.num_classes or 10) - 1}, or a row of -1 where missing"
        )
    return "is a regression: finite targets, or NaN where missing"


def check_labels(
    tasks: Sequence[Task], targets: Mapping[str, Tensor], indices: Tensor | None = None
) -> None:
    """Raise :class:`~multitask_mnist.errors.LabelError` at the first label out of range.

    The Trainer calls this on every batch on the host, before the batch moves to the
    device: a few comparisons over ``B`` labels per task (microseconds against a
    training step's milliseconds), and no wait for an accelerator. Without it a class
    label of 12 for 10 classes ends in an indexing error deep inside the loss (a
    device-side assert on CUDA), and a binary label of 2 trains silently.

    Args:
        tasks: The tasks; those without a target in ``targets`` are skipped.
        targets: By task name, ``(B,)`` labels.
        indices: ``(B,)`` the samples' indices in their dataset, for the message.

    Raises:
        LabelError: Naming the task, what it allows, the value and the sample.

    Example:
        >>> digit = Task("digit", "multiclass", num_classes=10)
        >>> check_labels([digit], {"digit": torch.tensor([3, 12])}, torch.tensor([40, 41]))
        Traceback (most recent call last):
        ...
        multitask_mnist.errors.LabelError: Task 'digit' has 10 classes: labels 0..9, ...; got 12 \
at sample 41
    """
    for task in tasks:
        target = targets.get(task.name)
        if target is None:
            continue
        bad = invalid_labels(task, target)
        if bool(bad.any()):
            position = int(bad.nonzero()[0, 0])
            row = target[position]
            value = f"{row.item():g}" if row.ndim == 0 else str(row.tolist())
            where = int(indices[position]) if indices is not None else position
            raise LabelError(f"Task {task.name!r} {_allowed(task)}; got {value} at sample {where}")
