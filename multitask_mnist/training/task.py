"""The model and its loss as one module, as timm's ``TrainingTask``."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from multitask_mnist.errors import InvalidTypeError, MissingFieldError
from multitask_mnist.losses import MultiLossOutput, WeightedMultiLoss
from multitask_mnist.models import MultiTaskNet

__all__ = ["TrainingTask"]


class TrainingTask(nn.Module):
    """A :class:`~multitask_mnist.models.MultiTaskNet` and its loss in one module.

    The Trainer optimizes this module and wraps it in DDP whole: learned loss
    weights are trained and averaged across processes like any other weight, with no
    special case in the loop (checkpoints keep the model's and the loss's states).
    The loss is bound to the model's tasks here.

    In training mode the model receives the targets too, so teacher-forced blocks
    (the sum head) learn from the true labels of their teacher task (see
    :class:`~multitask_mnist.models.Block`); in eval mode it sees the inputs alone.

    Args:
        model: The network.
        loss: The loss and its weighting strategy.

    Raises:
        ValueError: The loss is bound to other tasks than the model's.

    Shapes:
        ``forward(batch)``: ``{name: tensor}`` holding the model's inputs and every
        task's ``(B,)`` labels (other fields are ignored) ->
        (``{task: prediction}``, :class:`~multitask_mnist.losses.MultiLossOutput`).

    Example:
        >>> import torch
        >>> from multitask_mnist import presets
        >>> task = TrainingTask(presets.mnist_sum(), WeightedMultiLoss())
        >>> batch = {"image": torch.zeros(2, 1, 28, 28), "number": torch.tensor([1, 2]),
        ...          "digit": torch.tensor([3, 4]), "sum": torch.tensor([4, 6])}
        >>> predictions, loss = task(batch)
        >>> sorted(predictions), loss.total.shape
        (['digit', 'sum', 'sum/teacher_forced'], torch.Size([]))
    """

    model: MultiTaskNet
    loss: WeightedMultiLoss

    def __init__(self, model: MultiTaskNet, loss: WeightedMultiLoss) -> None:
        super().__init__()
        loss.attach(model)
        self.model = model
        self.loss = loss

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

    def forward(self, batch: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], MultiLossOutput]:
        """Predict and score one batch."""
        inputs, targets = self.split(batch)
        predictions = self.model(inputs, targets=targets if self.training else None)
        return predictions, self.loss(predictions, targets, teachers=self.model.teachers)

    def update_after_step(self, batch: Mapping[str, Tensor]) -> None:
        """After an optimizer step, when the loss's strategy asks for it (FAMO): the
        task losses on the same batch again, without gradients, for its update.

        Runs in training mode, as the step did; buffers such as batch-norm statistics
        are put back as the step left them, so the extra pass changes nothing else.
        """
        if not self.loss.weighting.updates_after_step:
            return
        inputs, targets = self.split(batch)
        buffers = [(b, b.clone()) for b in self.model.buffers()]
        with torch.no_grad():
            predictions = self.model(inputs, targets=targets if self.training else None)
            parts = self.loss.task_losses(predictions, targets, teachers=self.model.teachers)
            for buffer, saved in buffers:
                buffer.copy_(saved)
        self.loss.weighting.update(torch.stack(list(parts.values())))

    def on_train_epoch_end(self) -> None:
        """After every training epoch: the loss's weighting may update itself."""
        self.loss.on_train_epoch_end()
