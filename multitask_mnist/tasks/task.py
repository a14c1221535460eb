"""What a task is: a name, a kind, its per-sample loss and when a prediction is right."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor

from multitask_mnist._validation import check_choice, check_int
from multitask_mnist.errors import InvalidValueError

__all__ = ["DIGIT_SUM_TASKS", "MISSING", "TASK_KINDS", "Task", "TaskKind", "teacher_forced_key"]

TaskKind = Literal["multiclass", "binary", "regression", "digits"]
#: The kinds of task the library knows.
TASK_KINDS: tuple[str, ...] = get_args(TaskKind)
#: The label that marks a sample without a label for a task in integer targets (float
#: targets use NaN); see :func:`~multitask_mnist.tasks.label_mask`.
MISSING = -1

PerSampleLoss = Callable[[Tensor, Tensor], Tensor]
Decoder = Callable[[Tensor], Tensor]


def teacher_forced_key(task: str) -> str:
    """The key of a task's teacher-forced prediction in a training output mapping
    (see :class:`~multitask_mnist.models.Block`).

    Args:
        task: The task's name.

    Returns:
        ``"{task}/teacher_forced"``.

    Example:
        >>> teacher_forced_key("sum")
        'sum/teacher_forced'
    """
    return f"{task}/teacher_forced"


def _multiclass_loss(prediction: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(prediction.float(), target.long(), reduction="none")


def _binary_loss(prediction: Tensor, target: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(prediction.float(), target.float(), reduction="none")


def _regression_loss(prediction: Tensor, target: Tensor) -> Tensor:
    return F.mse_loss(prediction.float(), target.float(), reduction="none")


_DEFAULT_LOSSES: dict[str, PerSampleLoss] = {
    "multiclass": _multiclass_loss,
    "binary": _binary_loss,
    "regression": _regression_loss,
}


@dataclass(frozen=True)
class Task:
    """One task of a multi-task problem.

    Args:
        name: The task's name: the key of its prediction, its target and its metrics
            (``digit_accuracy``).
        kind: ``"multiclass"`` (logits ``(B, C)``, integer targets ``0..C-1``),
            ``"binary"`` (one logit ``(B,)``, targets 0 or 1), ``"regression"``
            (values ``(B,)``, real targets; right when the rounded value equals the
            target, as for a sum) or ``"digits"`` (a number written as ``L`` digits,
            most significant first: targets ``(B, L)`` whole numbers in ``0..C-1``,
            any prediction that ``decode`` reads; right when every digit is, and
            missing where every digit is :data:`MISSING`).
        num_classes: ``C``: the classes of ``"multiclass"``, the base of ``"digits"``.
        loss: A per-sample loss ``(prediction, target) -> (B,)``; defaults by kind to
            cross-entropy, binary cross-entropy on logits, or squared error;
            ``"digits"`` has no default.
        decode: ``"digits"`` only: ``prediction -> (B, L)`` the predicted digits.

    Raises:
        ValueError: An empty name, an unknown kind, ``num_classes`` missing for a
            multiclass or digits task, given for another kind, or below 2, or a
            digits task without ``loss`` and ``decode`` (or ``decode`` on another
            kind).

    Example:
        >>> digit = Task("digit", "multiclass", num_classes=10)
        >>> digit.loss_per_sample(torch.zeros(2, 10), torch.tensor([3, 7])).shape
        torch.Size([2])
        >>> Task("sum", "regression").correct(torch.tensor([6.6, 7.4]), torch.tensor([7, 7]))
        tensor([True, True])
    """

    name: str
    kind: TaskKind
    num_classes: int | None = None
    loss: PerSampleLoss | None = None
    decode: Decoder | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidValueError(
                f"Expected argument `name` to be a non-empty str, got {self.name!r}"
            )
        check_choice("kind", self.kind, TASK_KINDS)
        if self.kind in ("multiclass", "digits"):
            if self.num_classes is None:
                raise InvalidValueError(
                    f"Task {self.name!r} is {self.kind}: give its `num_classes`"
                )
            check_int("num_classes", self.num_classes, minimum=2)
        elif self.num_classes is not None:
            raise InvalidValueError(
                f"Argument `num_classes` applies to multiclass and digits tasks only; task "
                f"{self.name!r} is {self.kind}"
            )
        if self.kind == "digits" and (self.loss is None or self.decode is None):
            raise InvalidValueError(
                f"Task {self.name!r} is digits: give its `loss` and `decode`, got "
                f"loss={self.loss!r}, decode={self.decode!r}"
            )
        if self.kind != "digits" and self.decode is not None:
            raise InvalidValueError(
                f"Argument `decode` applies to digits tasks only; task {self.name!r} is {self.kind}"
            )

    def loss_per_sample(self, prediction: Tensor, target: Tensor) -> Tensor:
        """``(B,)`` float32 loss of each sample (every target must be a valid label)."""
        function = self.loss if self.loss is not None else _DEFAULT_LOSSES[self.kind]
        return function(prediction, target)

    def predicted(self, prediction: Tensor) -> Tensor:
        """``(B,)`` the predicted label: the class, 0/1, or the rounded value; ``(B, L)``
        the decoded digits."""
        if self.decode is not None:
            return self.decode(prediction)
        if self.kind == "multiclass":
            return prediction.argmax(dim=-1)
        if self.kind == "binary":
            return (prediction > 0).long()
        return prediction.float().round()

    def correct(self, prediction: Tensor, target: Tensor) -> Tensor:
        """``(B,)`` bool: whether each prediction is right."""
        predicted = self.predicted(prediction)
        right = predicted == target.to(predicted.dtype)
        return right.all(-1) if self.kind == "digits" else right

    def masked_mean_loss(self, prediction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
        """``()`` the mean loss over the samples where ``mask`` is true; zero (no NaN,
        no gradient) where it is true nowhere. Missing targets, and the predictions of
        samples without a label, may hold any value, NaN included: neither reaches the
        loss or its gradient."""
        count = mask.sum().clamp(min=1).to(torch.float32)
        rows = mask.view(-1, *([1] * (prediction.ndim - 1)))
        prediction = torch.where(rows, prediction.float(), 0.0)  # a NaN there has no gradient
        if self.kind == "multiclass" and self.loss is None:  # one kernel skips the missing
            ignored = torch.where(mask, target.long(), -100)
            total = F.cross_entropy(prediction, ignored, ignore_index=-100, reduction="sum")
            return total / count
        safe = self.fill_missing(target, mask)
        per_sample = self.loss_per_sample(prediction, safe)
        return torch.where(mask, per_sample, torch.zeros_like(per_sample)).sum() / count

    def dummy_target(self, target: Tensor) -> Tensor:
        """A valid label of ``target``'s shape and dtype, to stand in for missing ones."""
        return torch.zeros_like(target)

    def fill_missing(self, target: Tensor, mask: Tensor) -> Tensor:
        """``target`` with :meth:`dummy_target` where the ``(B,)`` ``mask`` is false (every
        digit of a digits label)."""
        rows = mask.view(-1, *([1] * (target.ndim - 1)))
        return torch.where(rows, target, self.dummy_target(target))


#: The canonical pair: the digit (10 classes) and the sum (a regression), by name.
DIGIT_SUM_TASKS = (Task("digit", "multiclass", num_classes=10), Task("sum", "regression"))
