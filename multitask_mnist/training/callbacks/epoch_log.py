"""One log line per epoch, in the format of the original tutorial."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from multitask_mnist import distributed
from multitask_mnist.training.callbacks.base import Callback

if TYPE_CHECKING:
    from multitask_mnist.training.trainer import Trainer

__all__ = ["EpochLog"]

logger = logging.getLogger("multitask_mnist.training")


_LABELS = {"digit": "Classification Acc", "sum": "Addition Acc"}


def _percent(value: float | None) -> str:
    """Two decimals, or ``n/a`` for a metric the epoch has not (no labelled sample)."""
    return "n/a" if value is None else f"{value:.2f}"


class EpochLog(Callback):
    """Logs ``Epoch: N, loss: ..., Classification Acc: ..., Addition Acc: ...`` at INFO.

    Each task's accuracy follows the loss: the digit's as ``Classification Acc`` and
    the sum's as ``Addition Acc`` (the tutorial's words), any other task's as
    ``{task} Acc``. With validation data, a ``Validation: ...`` line follows. Only rank 0 logs, so
    each line appears once under torchrun. The command line shows these lines;
    in Python, configure the ``multitask_mnist`` logger to see them.

    Example:
        >>> import sys
        >>> handler = logging.StreamHandler(sys.stdout)
        >>> logger.addHandler(handler); logger.setLevel(logging.INFO)
        >>> EpochLog().on_epoch_end(None, 1, {"train_loss": 0.5, "train_digit_accuracy": 90.0,
        ...                                   "train_sum_accuracy": 90.0})
        Epoch: 1, loss: 0.5000, Classification Acc: 90.00, Addition Acc: 90.00
        >>> logger.removeHandler(handler); logger.setLevel(logging.NOTSET)
    """

    def on_epoch_end(self, trainer: Trainer | None, epoch: int, metrics: dict[str, float]) -> None:
        if not distributed.is_main_process():
            return
        if trainer is not None:
            tasks = list(trainer.model.task_names)
        else:  # read the task names off the metrics
            suffix = "_accuracy"
            keys = [k for k in metrics if k.startswith("train_") and k.endswith(suffix)]
            tasks = [k[len("train_") : -len(suffix)] for k in keys]
        for split, start in (("train", f"Epoch: {epoch},"), ("val", "Validation:")):
            if f"{split}_loss" in metrics:
                parts = [f"{start} loss: {metrics[f'{split}_loss']:.4f}"]
                for task in tasks:
                    label = _LABELS.get(task, f"{task} Acc")
                    parts.append(f"{label}: {_percent(metrics.get(f'{split}_{task}_accuracy'))}")
                logger.info("%s", ", ".join(parts))
