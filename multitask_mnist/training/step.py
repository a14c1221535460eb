"""One training step, the same for every method: forward, method's backward, update."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from multitask_mnist import distributed
from multitask_mnist.methods import GradientProbe, StepOutput
from multitask_mnist.training import _runtime
from multitask_mnist.training.task import TrainingTask

__all__ = ["train_step"]


def train_step(
    task: TrainingTask,
    batch: Mapping[str, Tensor],
    optimizer: Optimizer,
    scheduler: LRScheduler,
    *,
    autocast: _runtime.Autocast,
    grad_clip: float | None = None,
    probe: GradientProbe | None = None,
) -> StepOutput:
    """Train ``task`` on one batch and return what the step saw.

    The loop does not know the method's family: the method's
    :meth:`~multitask_mnist.methods.Method.backward` leaves the gradients (and does
    whatever synchronization across processes it needs), and its
    :meth:`~multitask_mnist.methods.Method.after_step` runs after the update.

    Args:
        task: The model, loss and method, in training mode.
        batch: The step's fields, on the device.
        optimizer: Steps once.
        scheduler: Steps once.
        autocast: The precision context of the forward pass (and of a second one).
        grad_clip: Clip the gradient norm to this value, or ``None``.
        probe: Measure the tasks' gradients before the backward pass (a callback asked).

    Returns:
        The step's predictions, targets, masks, task losses and total.

    Example:
        >>> import functools, torch
        >>> from multitask_mnist import presets
        >>> task = TrainingTask(presets.mnist_sum()).train()
        >>> optimizer = torch.optim.Adam(task.parameters())
        >>> scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
        >>> batch = {"image": torch.zeros(2, 1, 28, 28), "number": torch.tensor([1, 2]),
        ...          "digit": torch.tensor([3, 4]), "sum": torch.tensor([4, 6])}
        >>> fp32 = functools.partial(_runtime.autocast, torch.device("cpu"), None)
        >>> step = train_step(task, batch, optimizer, scheduler, autocast=fp32)
        >>> step.total.shape
        torch.Size([])
    """
    distributed.broadcast_module(task, parameters=False)  # rank 0's buffers, as DDP does
    with autocast():
        step: StepOutput = task(batch)
    optimizer.zero_grad(set_to_none=True)
    if probe is not None:
        probe.measure(list(step.losses.values()), step.total)
    task.method.backward(step)
    if grad_clip is not None:
        nn.utils.clip_grad_norm_(task.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    with autocast():
        task.method.after_step(step)
    return step
