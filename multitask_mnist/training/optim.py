"""Optimizer and learning-rate schedule factories: plain functions, as timm's.

The Trainer calls :func:`create_optimizer` and :func:`create_scheduler` at the start
of :meth:`~multitask_mnist.training.Trainer.fit`; a user may call them too, or pass
their own factories to the Trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from multitask_mnist._validation import check_choice

__all__ = [
    "OPTIMIZERS",
    "SCHEDULERS",
    "OptimizerFactory",
    "SchedulerFactory",
    "create_optimizer",
    "create_scheduler",
    "param_groups",
]

OptimizerFactory = Callable[[list[dict[str, Any]]], Optimizer]
SchedulerFactory = Callable[[Optimizer, int], LRScheduler]

_OPTIMIZER_CLASSES: dict[str, Callable[..., Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}
#: Optimizers that :func:`create_optimizer` accepts by name.
OPTIMIZERS = tuple(_OPTIMIZER_CLASSES)
#: Learning-rate schedules that :func:`create_scheduler` accepts by name; each steps once
#: per batch.
SCHEDULERS = ("onecycle", "cosine", "constant")


def param_groups(
    module: nn.Module,
    *,
    lr: float,
    fast: nn.Module | Sequence[nn.Module] | None = None,
    fast_lr_scale: float = 1.0,
) -> list[dict[str, Any]]:
    """The trainable parameters of ``module`` in groups: those of ``fast`` (submodules)
    at ``lr * fast_lr_scale`` and without weight decay, every other one at ``lr``.
    Empty groups are left out.

    The fast group is the fusion head: it starts as exact addition, and weight decay
    would shrink it away from that with every step, even where its gradient is zero.

    Args:
        module: Everything to train, e.g. a :class:`~multitask_mnist.training.TrainingTask`.
        lr: The learning rate of most parameters.
        fast: Submodules whose parameters get their own rate, e.g. the fusion head
            (the blocks a :class:`~multitask_mnist.models.MultiTaskNet` marks ``fast``).
        fast_lr_scale: Its rate as a multiple of ``lr``.

    Returns:
        Parameter groups, each a dict with ``params`` and ``lr``.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
        >>> [len(g["params"]) for g in param_groups(net, lr=0.1, fast=net[1], fast_lr_scale=10)]
        [2, 2]
    """
    fast_modules = [fast] if isinstance(fast, nn.Module) else list(fast or ())
    fast_params = list({id(p): p for m in fast_modules for p in m.parameters()}.values())
    fast_params = [p for p in fast_params if p.requires_grad]
    ids = {id(p) for p in fast_params}
    rest = [p for p in module.parameters() if p.requires_grad and id(p) not in ids]
    groups = [
        {"params": rest, "lr": lr},
        {"params": fast_params, "lr": lr * fast_lr_scale, "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def create_optimizer(
    groups: list[dict[str, Any]],
    optimizer: str | OptimizerFactory = "adam",
    *,
    lr: float,
    weight_decay: float = 0.0,
) -> Optimizer:
    """Build an optimizer over parameter groups.

    Args:
        groups: From :func:`param_groups`.
        optimizer: A name in :data:`OPTIMIZERS`, or a callable that builds an optimizer
            from the groups.
        lr: Default learning rate of a named optimizer.
        weight_decay: Weight decay of a named optimizer.

    Returns:
        The optimizer.

    Raises:
        ValueError: An unknown optimizer name; the message lists the known ones.

    Example:
        >>> groups = param_groups(nn.Linear(2, 1), lr=0.01)
        >>> type(create_optimizer(groups, "sgd", lr=0.01)).__name__
        'SGD'
    """
    if callable(optimizer):
        return optimizer(groups)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    return _OPTIMIZER_CLASSES[optimizer](groups, lr=lr, weight_decay=weight_decay)


def create_scheduler(
    optimizer: Optimizer, scheduler: str | SchedulerFactory, total_steps: int
) -> LRScheduler:
    """Build a learning-rate schedule that steps once per batch.

    ``"onecycle"`` warms up to each group's learning rate and anneals it over
    ``total_steps`` (a group that a one-cycle schedule ran before keeps its peak,
    ``max_lr``, so a schedule rebuilt on resume does not start from an annealed rate);
    ``"cosine"`` anneals from it; ``"constant"`` keeps it.

    Args:
        optimizer: The optimizer to schedule.
        scheduler: A name in :data:`SCHEDULERS`, or a callable
            ``(optimizer, total_steps) -> LRScheduler``.
        total_steps: Batches the schedule spans.

    Returns:
        The schedule.

    Raises:
        ValueError: An unknown schedule name; the message lists the known ones.

    Example:
        >>> opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1)
        >>> type(create_scheduler(opt, "cosine", 100)).__name__
        'CosineAnnealingLR'
    """
    if callable(scheduler):
        return scheduler(optimizer, total_steps)
    check_choice("scheduler", scheduler, SCHEDULERS)
    steps = max(total_steps, 1)
    if scheduler == "onecycle":
        peaks = [group.get("max_lr", group["lr"]) for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, total_steps=steps)
    if scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
