"""Tasks by name: what each task predicts, its loss and its metrics, with missing labels.

A :class:`Task` declares a name, a kind (``"multiclass"``, ``"binary"``,
``"regression"``), and optionally its own per-sample loss. :func:`masked_task_losses`
turns a mapping of predictions and one of targets into each task's loss, the mean over
the samples that have its label; :class:`TaskMetrics` keeps named sums per task that
reduce across processes. Any sample may lack any task's label: a per-sample mask says
which do (see :func:`label_mask`).

This is the multi-task core that the digit/sum pair is one instance of
(:data:`DIGIT_SUM_TASKS`).
"""

from multitask_mnist.tasks.labels import check_labels, invalid_labels
from multitask_mnist.tasks.losses import label_mask, masked_mean, masked_task_losses, task_masks
from multitask_mnist.tasks.metrics import TaskMetrics
from multitask_mnist.tasks.task import (
    DIGIT_SUM_TASKS,
    MISSING,
    TASK_KINDS,
    Task,
    teacher_forced_key,
)

__all__ = [
    "DIGIT_SUM_TASKS",
    "MISSING",
    "TASK_KINDS",
    "Task",
    "TaskMetrics",
    "check_labels",
    "invalid_labels",
    "label_mask",
    "masked_mean",
    "masked_task_losses",
    "task_masks",
    "teacher_forced_key",
]
