"""The model, its loss and its method as one module, as timm's ``TrainingTask``."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn

from multitask_mnist.errors import InvalidTypeError, InvalidValueError, MissingFieldError
from multitask_mnist.losses import WeightedMultiLoss
from multitask_mnist.methods import (
    DynamicWeightAverage,
    FixedWeighting,
    Method,
    StepOutput,
    capture_outputs,
    create_method,
)
from multitask_mnist.models import MultiTaskNet
from multitask_mnist.tasks import task_masks

__all__ = ["TrainingTask", "method_for"]


def method_for(spec: Any, loss: WeightedMultiLoss, model: MultiTaskNet) -> Method:
    """The run's method: ``spec`` (a name, a :class:`~multitask_mnist.methods.Method`
    or a TorchJD aggregator), or the deprecated ``strategy`` of ``loss``, which then
    leaves the weighting to the method.

    Raises:
        ValueError: Both a method and a deprecated strategy, or an unknown name.

    Example:
        >>> from multitask_mnist import presets
        >>> method_for("uncertainty", WeightedMultiLoss(), presets.mnist_sum()).name
        'uncertainty'
    """
    if loss.strategy != "fixed":
        if not (isinstance(spec, str) and spec == "none"):
            raise InvalidValueError(
                f"Give one method: Trainer(method=...) got {spec!r} and the loss the "
                f"deprecated WeightedMultiLoss(strategy={loss._strategy_name()!r}); "
                "drop the strategy"
            )
        spec = loss.strategy
        if spec == "dwa":
            spec = DynamicWeightAverage(len(model.tasks), loss.temperature)
        loss.strategy = "fixed"  # the method applies it from here on
    return create_method(spec, len(model.tasks))


class TrainingTask(nn.Module):
    """A :class:`~multitask_mnist.models.MultiTaskNet`, its loss and its method in one
    module: what the optimizer trains (learned task weights included), what a
    checkpoint saves, what moves to the device. The loss is bound to the model's tasks
    and the method to the model here.

    Its forward pass is the first half of a training step: the batch split into inputs
    and targets once, the masks computed once, the predictions, each task's loss and
    the method's total, in one :class:`~multitask_mnist.methods.StepOutput`. In
    training mode the model receives the targets too, so teacher-forced blocks (the sum
    head) learn from the true labels of their teacher task (see
    :class:`~multitask_mnist.models.Block`); in eval mode it sees the inputs alone.

    Args:
        model: The network.
        loss: The task losses and their fixed weights; equal weights by default.
        method: How the losses become gradients; ``"none"`` (the weighted sum) by default.

    Raises:
        ValueError: The loss is bound to other tasks than the model's, or the method
            cannot train this model.

    Shapes:
        ``forward(batch)``: ``{name: tensor}`` holding the model's inputs and every
        task's ``(B,)`` labels (other fields are ignored) ->
        :class:`~multitask_mnist.methods.StepOutput`.

    Example:
        >>> import torch
        >>> from multitask_mnist import presets
        >>> task = TrainingTask(presets.mnist_sum())
        >>> batch = {"image": torch.zeros(2, 1, 28, 28), "number": torch.tensor([1, 2]),
        ...          "digit": torch.tensor([3, 4]), "sum": torch.tensor([4, 6])}
        >>> step = task(batch)
        >>> sorted(step.predictions), sorted(step.losses), step.total.shape
        (['digit', 'sum', 'sum/teacher_forced'], ['digit', 'sum'], torch.Size([]))
    """

    model: MultiTaskNet
    loss: WeightedMultiLoss
    method: Method

    def __init__(
        self,
        model: MultiTaskNet,
        loss: WeightedMultiLoss | None = None,
        method: Method | None = None,
    ) -> None:
        super().__init__()
        loss = loss if loss is not None else WeightedMultiLoss()
        method = method if method is not None else FixedWeighting()
        loss.bind(model.tasks)
        method.bind(model, loss.weights)
        self.model = model
        self.loss = loss
        self.method = method
        #: Whether the forward pass checks the inputs' values (reading the result on
        #: the host); the Trainer checks them on the host before a batch moves, and
        #: turns this off.
        self.check_values = True
        self._parameters_read: list[nn.Parameter] = list(self.parameters())

    def train(self, mode: bool = True) -> TrainingTask:
        """Set training mode, and read the parameters again (a step's
        :class:`~multitask_mnist.methods.StepOutput` lists the trainable ones without
        walking the modules at every step)."""
        self._parameters_read = list(self.parameters())
        return super().train(mode)

    def split(self, batch: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """The model's inputs and the tasks' targets of ``batch``.

        Raises:
            TypeError: ``batch`` is not a mapping (a NamedTuple batch needs
                :func:`~multitask_mnist.data.as_fields` first).
            KeyError: A field the model needs is missing, named with those present.
        """
        if not isinstance(batch, Mapping):
            raise InvalidTypeError(
                f"Expected the batch as a mapping of named tensors, got {type(batch).__name__}; "
                "multitask_mnist.data.as_fields turns a NamedTuple batch into one"
            )
        missing = [n for n in (*self.model.input_names, *self.model.task_names) if n not in batch]
        if missing:
            raise MissingFieldError(
                f"The batch has no field {', '.join(map(repr, missing))}; it has "
                f"{', '.join(map(repr, batch))}. Each sample needs the model's inputs "
                f"({', '.join(self.model.input_names)}) and a label per task "
                f"({', '.join(self.model.task_names)}; mark a missing label as "
                "multitask_mnist.tasks.label_mask describes)"
            )
        inputs = {name: batch[name] for name in self.model.input_names}
        targets = {name: batch[name] for name in self.model.task_names}
        return inputs, targets

    def forward(self, batch: Mapping[str, Tensor]) -> StepOutput:
        """Predict and score one batch (the step's forward half)."""
        inputs, targets = self.split(batch)
        masks = task_masks(self.model.tasks, targets)
        needs = self.method.needs if self.training else frozenset()
        watched: list[str] = getattr(self.method, "representation", [])
        keep: contextlib.AbstractContextManager[dict[str, Tensor]] = (
            capture_outputs(self.model, watched)
            if "shared_representation" in needs
            else contextlib.nullcontext({})
        )
        with keep as kept:
            predictions = self.model(
                inputs,
                targets=targets if self.training else None,
                check_values=self.check_values,
            )
        losses = self.loss.task_losses(predictions, targets, masks, self.model.teachers)
        stacked = torch.stack(list(losses.values()))
        shared = (
            [part for name in watched for part in _tensors(kept[name])]
            if "shared_representation" in needs
            else []
        )
        total = self.method(stacked, shared) if shared else self.method(stacked)
        return StepOutput(
            predictions,
            targets,
            masks,
            losses,
            total,
            [p for p in self._parameters_read if p.requires_grad],
            shared,
            partial(self.recompute, inputs, targets) if "second_forward" in needs else None,
        )

    def recompute(self, inputs: Mapping[str, Tensor], targets: Mapping[str, Tensor]) -> Tensor:
        """``(K,)`` the task losses on the same batch again, without gradients, after an
        optimizer step (for a method that needs a second forward pass: FAMO).

        Runs in training mode, as the step did; buffers such as batch-norm statistics
        are put back as the step left them, so the extra pass changes nothing else.
        """
        buffers = [(b, b.clone()) for b in self.model.buffers()]
        with torch.no_grad():
            predictions = self.model(
                inputs, targets=targets if self.training else None, check_values=False
            )
            parts = self.loss.task_losses(predictions, targets, teachers=self.model.teachers)
            for buffer, saved in buffers:
                buffer.copy_(saved)
        return torch.stack(list(parts.values()))

    def on_train_epoch_end(self) -> None:
        """After every training epoch: the method may update itself (DWA does)."""
        self.method.on_train_epoch_end()


def _tensors(output: Tensor | Mapping[str, Tensor]) -> list[Tensor]:
    """A block's output as tensors: itself, or the values of the mapping a soft-sharing
    block returns (one representation per task)."""
    return list(output.values()) if isinstance(output, Mapping) else [output]
