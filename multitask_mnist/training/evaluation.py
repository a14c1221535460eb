"""Evaluation and prediction loops: the model in eval mode, no gradients, nothing changed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from multitask_mnist import distributed
from multitask_mnist.errors import InvalidValueError
from multitask_mnist.models import MultiTaskNet
from multitask_mnist.tasks import TaskMetrics
from multitask_mnist.training import _runtime
from multitask_mnist.training.batches import Batches
from multitask_mnist.training.task import TrainingTask

__all__ = ["Prediction", "eval_mode", "evaluate", "predict"]


class Prediction(NamedTuple):
    """What :meth:`Trainer.predict` returns, on the CPU.

    Attributes:
        labels: By task name, ``(B,)`` the predicted labels: the class of a multiclass
            task, 0/1 of a binary one, the rounded value of a regression.
        outputs: By task name, the model's float32 outputs: ``(B, C)`` logits or
            ``(B,)`` values (a regression's value before rounding).

    Example:
        >>> import torch
        >>> p = Prediction({"sum": torch.tensor([7])}, {"sum": torch.tensor([6.9])})
        >>> int(p.labels["sum"][0])
        7
    """

    labels: dict[str, Tensor]
    outputs: dict[str, Tensor]


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """``module`` in eval mode inside, back to its previous mode after."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


@torch.inference_mode()
def evaluate(
    task: TrainingTask,
    data: Dataset[Any],
    batches: Batches,
    batch_size: int,
    autocast: _runtime.Autocast,
    metrics: TaskMetrics,
) -> tuple[dict[str, float], dict[str, Tensor]]:
    """The metrics of ``task``'s model on ``data`` (summed into ``metrics``, over every
    process's shard) and a ``(C, C)`` confusion matrix (rows true, columns predicted)
    per multiclass task.

    Raises:
        ValueError: ``data`` is empty.
    """
    if len(data) == 0:  # type: ignore[arg-type]
        raise InvalidValueError("Expected the evaluation data to hold at least one sample, got 0")
    model = task.model
    classes = {
        t.name: t.num_classes for t in model.tasks if t.kind == "multiclass" and t.num_classes
    }
    confusion = {
        name: torch.zeros(c * c, dtype=torch.long, device=batches.device)
        for name, c in classes.items()
    }
    with eval_mode(task):
        shard = torch.arange(len(data))[distributed.rank() :: distributed.world_size()]  # type: ignore[arg-type]
        for batch in batches(data, batch_size, shard):
            with autocast():
                step = task(batch)
            metrics.update(
                step.predictions, step.targets, step.masks, losses=step.losses, total=step.total
            )
            for name, c in classes.items():
                cells = step.targets[name].long() * c + step.predictions[name].argmax(dim=1)
                confusion[name] += torch.bincount(cells[step.masks[name]], minlength=c * c)
    for counts in confusion.values():
        distributed.all_reduce_sum(counts)
    return metrics.compute(), {
        name: counts.view(classes[name], classes[name]).cpu() for name, counts in confusion.items()
    }


@torch.inference_mode()
def predict(
    model: MultiTaskNet,
    inputs: Mapping[str, Tensor],
    batches: Batches,
    batch_size: int,
    autocast: _runtime.Autocast,
) -> Prediction:
    """Every task's labels and raw outputs for a batch of ``inputs``, on the CPU."""
    model.check_inputs(inputs)
    names = model.input_names
    outputs: dict[str, list[Tensor]] = {task.name: [] for task in model.tasks}
    with eval_mode(model):
        chunks = zip(*(torch.split(inputs[n], batch_size) for n in names), strict=True)
        for chunk in chunks:
            batch = batches.to_device(dict(zip(names, chunk, strict=True)))
            with autocast():
                out = model(batch, check_values=False)  # checked whole, above
            for name, values in outputs.items():
                values.append(out[name].float().cpu())
    raw = {name: torch.cat(values) for name, values in outputs.items()}
    labels = {task.name: task.predicted(raw[task.name]).long() for task in model.tasks}
    return Prediction(labels, raw)
