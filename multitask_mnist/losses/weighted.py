"""The multi-task loss as a module: task losses, weighted by a strategy."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from multitask_mnist._validation import check_choice, check_number
from multitask_mnist.errors import InvalidTypeError, InvalidValueError
from multitask_mnist.losses.balancing import FAMOWeighting, GradNormWeighting
from multitask_mnist.losses.functional import MultiLossOutput
from multitask_mnist.losses.min_norm import MGDAUBWeighting
from multitask_mnist.losses.weighting import (
    DynamicWeightAverage,
    FixedWeighting,
    GeometricLossWeighting,
    LossWeighting,
    RandomLossWeighting,
    UncertaintyWeighting,
)
from multitask_mnist.tasks import Task, masked_task_losses

if TYPE_CHECKING:
    from multitask_mnist.models import MultiTaskNet

__all__ = ["STRATEGIES", "WeightedMultiLoss"]

#: Ways of weighting the task losses, by name.
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

_BUILDERS: dict[str, type[LossWeighting]] = {
    "uncertainty": UncertaintyWeighting,
    "rlw": RandomLossWeighting,
    "geometric": GeometricLossWeighting,
    "famo": FAMOWeighting,
    "gradnorm": GradNormWeighting,
    "mgda_ub": MGDAUBWeighting,
}


class WeightedMultiLoss(nn.Module):
    """Each task's loss over its labelled samples, weighted per task by a strategy.

    The task losses come from :func:`~multitask_mnist.tasks.masked_task_losses`
    (cross-entropy for a multiclass task, binary cross-entropy for a binary one,
    squared error for a regression, or the task's own loss); a
    :class:`~multitask_mnist.losses.LossWeighting` strategy (``weighting``) turns
    them into the total and holds any learned or running state. The Trainer trains
    this module together with the model (one
    :class:`~multitask_mnist.training.TrainingTask`), so learned weights are
    optimized, averaged across processes and checkpointed like any weight.

    The tasks come from ``tasks`` or, when it is left out, from the model the loss
    is bound to (:meth:`bind`, which the Trainer calls with the model's tasks).

    Strategies:

    * ``"fixed"`` (default): ``weights`` as given, equal by default
      (:class:`~multitask_mnist.losses.FixedWeighting`).
    * ``"uncertainty"``: one learned log-variance per task
      (:class:`~multitask_mnist.losses.UncertaintyWeighting`); the total stays at
      or above zero.
    * ``"dwa"``: dynamic weight average
      (:class:`~multitask_mnist.losses.DynamicWeightAverage`); each epoch's weights
      follow how fast each task's loss fell, and sum to the number of tasks.
    * ``"rlw"``: random loss weighting
      (:class:`~multitask_mnist.losses.RandomLossWeighting`); fresh random weights
      summing to 1 at every training step.
    * ``"geometric"``: the geometric mean of the task losses
      (:class:`~multitask_mnist.losses.GeometricLossWeighting`).
    * ``"famo"``: fast adaptive multitask optimization
      (:class:`~multitask_mnist.losses.FAMOWeighting`); after each step, weight moves
      to the tasks whose loss fell least (one extra forward pass per step).
    * ``"gradnorm"``: GradNorm (:class:`~multitask_mnist.losses.GradNormWeighting`);
      learned weights that balance the tasks' gradient norms on the last shared layer
      against their training rates.
    * ``"mgda_ub"``: MGDA-UB (:class:`~multitask_mnist.losses.MGDAUBWeighting`); at
      every step, the weights (summing to 1) of the minimum-norm combination of the
      tasks' gradients on the shared representation.

    A :class:`~multitask_mnist.losses.LossWeighting` instance may be given instead of a
    name, to set a strategy's own options (``FAMOWeighting(2, lr=0.01)``) or to use
    one written for the purpose.

    Args:
        weights: For ``"fixed"``: the weight of each task, by name; a task left out
            weighs 1. Defaults to equal weights.
        tasks: The tasks, or ``None`` to take them from the model at :meth:`bind`.
        strategy: One of :data:`STRATEGIES`, or a ``LossWeighting`` for as many tasks.
        temperature: The ``"dwa"`` softmax temperature.

    Raises:
        TypeError: A weight is not a real number.
        ValueError: A weight for a task the model does not have; a negative, NaN or
            infinite weight; ``weights`` with a strategy other than ``"fixed"``; an
            unknown ``strategy``, or one for another number of tasks; a temperature
            that is not positive.

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

    weighting: LossWeighting

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        *,
        tasks: Sequence[Task] | None = None,
        strategy: str | LossWeighting = "fixed",
        temperature: float = 2.0,
    ) -> None:
        super().__init__()
        self._custom = isinstance(strategy, LossWeighting)
        if isinstance(strategy, LossWeighting):
            self.weighting = strategy
            strategy = getattr(strategy, "name", type(strategy).__name__)
        elif not isinstance(strategy, str):
            raise InvalidTypeError(
                "Expected `strategy` to be one of "
                f"{', '.join(map(repr, STRATEGIES))} or a LossWeighting, got "
                f"{type(strategy).__name__}"
            )
        else:
            check_choice("strategy", strategy, STRATEGIES)
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
        """Take the tasks (once) and build the weighting strategy for them.

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
        if self._custom and self.weighting.num_tasks != len(tasks):
            raise InvalidValueError(
                f"The strategy {self.strategy!r} was built for {self.weighting.num_tasks} "
                f"task(s); the model has {len(tasks)}"
            )
        self.tasks = tasks
        self.weights = {name: self.given_weights.get(name, 1.0) for name in names}
        if self._custom:
            pass  # given ready-made
        elif self.strategy == "dwa":
            self.weighting = DynamicWeightAverage(len(tasks), self.temperature)
        elif self.strategy == "fixed":
            self.weighting = FixedWeighting(torch.tensor(list(self.weights.values())))
        else:
            self.weighting = _BUILDERS[self.strategy](len(tasks))

    def attach(self, model: MultiTaskNet) -> None:
        """Bind to ``model``'s tasks and show the strategy the model (GradNorm reads
        its last shared layer). :class:`~multitask_mnist.training.TrainingTask` calls it.
        """
        self.bind(model.tasks)
        self.weighting.attach(model)

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
        """Return the weighted total and the per-task losses."""
        parts = self.task_losses(predictions, targets, masks, teachers)
        total = self.weighting(torch.stack(list(parts.values())))
        return MultiLossOutput(total, parts)

    def task_losses(
        self,
        predictions: Mapping[str, Tensor],
        targets: Mapping[str, Tensor],
        masks: Mapping[str, Tensor] | None = None,
        teachers: Mapping[str, str] | None = None,
    ) -> dict[str, Tensor]:
        """Each task's loss, unweighted, by task name (the ``parts`` of :meth:`forward`),
        without touching the strategy's state."""
        self._bound()
        return masked_task_losses(self.tasks, predictions, targets, masks, teachers)

    def task_weights(self) -> dict[str, float]:
        """The weight each task's loss currently gets, by task name.

        Returns:
            ``{task: w}``; for ``"uncertainty"``, ``0.5 * exp(-log_var)``.
        """
        self._bound()
        return dict(zip(self.task_names, self.weighting.weights().tolist(), strict=True))

    def on_train_epoch_end(self) -> None:
        """Close a training epoch; the strategy may update its weights (``"dwa"`` does).

        The Trainer calls this through
        :meth:`~multitask_mnist.training.TrainingTask.on_train_epoch_end`.
        """
        self._bound()
        self.weighting.on_train_epoch_end()

    def extra_repr(self) -> str:
        return f"strategy={self.strategy!r}" + (
            f", weights={self.weights or self.given_weights}" if self.strategy == "fixed" else ""
        )
