"""The multi-task loss as a module: each task's loss over its labelled samples, and
the fixed weight of each."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from multitask_mnist._validation import check_number
from multitask_mnist.errors import InvalidTypeError, InvalidValueError
from multitask_mnist.losses.functional import MultiLossOutput, weighted_sum
from multitask_mnist.tasks import Task, masked_task_losses

__all__ = ["STRATEGIES", "WeightedMultiLoss"]

#: The names ``WeightedMultiLoss(strategy=...)`` took before every multi-task method
#: moved behind ``Trainer(method=...)`` (deprecated; gone in 0.3).
STRATEGIES: tuple[str, ...] = (
    "fixed",
    "uncertainty",
    "dwa",
    "rlw",
    "geometric",
    "famo",
    "gradnorm",
    "mgda_ub",
)


class WeightedMultiLoss(nn.Module):
    """Each task's loss over its labelled samples, and the fixed weight of each.

    The task losses come from :func:`~multitask_mnist.tasks.masked_task_losses`
    (cross-entropy for a multiclass task, binary cross-entropy for a binary one,
    squared error for a regression, or the task's own loss); :meth:`forward` returns
    them with their weighted sum. How a training step combines them is the Trainer's
    ``method`` (:mod:`multitask_mnist.methods`): ``"none"`` trains on this weighted
    sum; every other method starts from the losses times these weights.

    The tasks come from ``tasks`` or, when it is left out, from the model the loss
    is bound to (:meth:`bind`, which the Trainer calls with the model's tasks).

    Args:
        weights: The weight of each task, by name; a task left out weighs 1.
        tasks: The tasks, or ``None`` to take them from the model at :meth:`bind`.
        strategy: Deprecated: the name of a method, as ``Trainer(method=...)`` takes it
            (``"fixed"`` is ``"none"``), or a :class:`~multitask_mnist.methods.Method`;
            the Trainer uses it as its method. Gone in 0.3.
        temperature: Deprecated, with ``strategy="dwa"``: DWA's softmax temperature.

    Raises:
        TypeError: A weight is not a real number.
        ValueError: A weight for a task the model does not have; a negative, NaN or
            infinite weight; ``weights`` with a strategy other than ``"fixed"``; an
            unknown ``strategy``; a temperature that is not positive.

    Shapes:
        ``forward(predictions, targets, masks=None, teachers=None)``: by task name,
        ``(B, C)`` logits or ``(B,)`` values, and ``(B,)`` labels (missing ones marked
        as :func:`~multitask_mnist.tasks.label_mask` says) ->
        :class:`~multitask_mnist.losses.MultiLossOutput` of scalars.

    Example:
        >>> import torch
        >>> from multitask_mnist.tasks import DIGIT_SUM_TASKS
        >>> loss = WeightedMultiLoss({"digit": 1.0, "sum": 0.5}, tasks=DIGIT_SUM_TASKS)
        >>> out = loss({"digit": torch.zeros(2, 10), "sum": torch.tensor([3.0, 6.0])},
        ...            {"digit": torch.tensor([1, 2]), "sum": torch.tensor([3, 6])})
        >>> out.total.shape, loss.task_weights()
        (torch.Size([]), {'digit': 1.0, 'sum': 0.5})
    """

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        *,
        tasks: Sequence[Task] | None = None,
        strategy: Any = "fixed",
        temperature: float = 2.0,
    ) -> None:
        super().__init__()
        if isinstance(strategy, str):
            if strategy not in STRATEGIES:
                listed = ", ".join(map(repr, STRATEGIES))
                raise InvalidValueError(
                    f"Expected argument `strategy` to be one of {listed}, got {strategy!r}"
                )
        elif not isinstance(strategy, nn.Module):
            raise InvalidTypeError(
                "Expected `strategy` to be one of "
                f"{', '.join(map(repr, STRATEGIES))} or a Method, got {type(strategy).__name__}"
            )
        if strategy != "fixed":
            warnings.warn(
                "WeightedMultiLoss(strategy=...) is deprecated and goes in 0.3: give the "
                "method to the Trainer instead, Trainer(method=...)",
                DeprecationWarning,
                stacklevel=2,
            )
        #: The deprecated strategy, for the Trainer to use as its method.
        self.strategy = strategy
        if weights is not None and strategy != "fixed":
            raise InvalidValueError(
                f"Argument `weights` applies to strategy='fixed' only; got strategy={strategy!r}"
            )
        self.temperature = check_number("temperature", temperature)
        if self.temperature <= 0:
            raise InvalidValueError(f"Expected argument `temperature` to be > 0, got {temperature}")
        self.given_weights = self._check_values(dict(weights or {}))
        self.tasks: tuple[Task, ...] = ()
        self.weights: dict[str, float] = {}
        if tasks is not None:
            self.bind(tasks)

    @staticmethod
    def _check_values(given: dict[str, float]) -> dict[str, float]:
        for task, value in given.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidTypeError(
                    f"Expected `weights[{task!r}]` to be a number, got {value!r}"
                )
            if not math.isfinite(value) or value < 0:
                raise InvalidValueError(
                    f"Expected `weights[{task!r}]` to be finite and >= 0, got {value}"
                )
        return {task: float(value) for task, value in given.items()}

    def bind(self, tasks: Sequence[Task]) -> None:
        """Take the tasks (once).

        Binding again to the same tasks does nothing.

        Raises:
            ValueError: Already bound to other tasks, or ``weights`` names a task that
                is not among them.
        """
        tasks = tuple(tasks)
        names = [task.name for task in tasks]
        if self.tasks:
            if self.tasks != tasks:
                raise InvalidValueError(
                    f"This loss is for tasks {', '.join(map(repr, self.tasks))}; the model has "
                    f"{', '.join(map(repr, tasks))}"
                )
            return
        if not tasks:
            raise InvalidValueError("Expected at least one task, got none")
        unknown = sorted(set(self.given_weights) - set(names))
        if unknown:
            raise InvalidValueError(
                f"Unknown task name(s) in `weights`: {', '.join(map(repr, unknown))}; "
                f"the tasks are {', '.join(map(repr, names))}"
            )
        self.tasks = tasks
        self.weights = {name: self.given_weights.get(name, 1.0) for name in names}

    @property
    def task_names(self) -> tuple[str, ...]:
        """The names of the bound tasks, in order."""
        return tuple(task.name for task in self.tasks)

    def _bound(self) -> None:
        if not self.tasks:
            raise RuntimeError(
                "This loss has no tasks yet: pass `tasks=` or let the Trainer bind it to "
                "the model's tasks"
            )

    def forward(
        self,
        predictions: Mapping[str, Tensor],
        targets: Mapping[str, Tensor],
        masks: Mapping[str, Tensor] | None = None,
        teachers: Mapping[str, str] | None = None,
    ) -> MultiLossOutput:
        """Return the weighted total and the per-task losses.

        Raises:
            ValueError: The loss was built with a deprecated ``strategy`` other than
                ``"fixed"``: the Trainer's method applies it, not the loss.
        """
        if self.strategy != "fixed":
            raise InvalidValueError(
                f"Strategy {self._strategy_name()!r} is a method now: the Trainer applies "
                "it (Trainer(method=...)); outside the Trainer, call the method "
                "(multitask_mnist.methods.create_method) on loss.task_losses(...)"
            )
        parts = self.task_losses(predictions, targets, masks, teachers)
        total = weighted_sum(list(parts.values()), list(self.weights.values()))
        return MultiLossOutput(total, parts)

    def _strategy_name(self) -> str:
        strategy = self.strategy
        return strategy if isinstance(strategy, str) else type(strategy).__name__

    def task_losses(
        self,
        predictions: Mapping[str, Tensor],
        targets: Mapping[str, Tensor],
        masks: Mapping[str, Tensor] | None = None,
        teachers: Mapping[str, str] | None = None,
    ) -> dict[str, Tensor]:
        """Each task's loss, unweighted, by task name (the ``parts`` of :meth:`forward`)."""
        self._bound()
        return masked_task_losses(self.tasks, predictions, targets, masks, teachers)

    def task_weights(self) -> dict[str, float]:
        """The fixed weight of each task, by task name.

        Returns:
            ``{task: w}``.
        """
        self._bound()
        return dict(self.weights)

    def extra_repr(self) -> str:
        deprecated = f"strategy={self._strategy_name()!r}, " if self.strategy != "fixed" else ""
        return f"{deprecated}weights={self.weights or self.given_weights}"
