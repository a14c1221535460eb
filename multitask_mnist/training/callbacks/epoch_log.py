"""One log line per epoch, in the format of the original tutorial."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from multitask_mnist.training import distributed
from multitask_mnist.training.callbacks.base import Callback

if TYPE_CHECKING:
    from multitask_mnist.training.trainer import Trainer

__all__ = ["EpochLog"]

logger = logging.getLogger("multitask_mnist.training")


def _percent(value: float | None) -> str:
    """Two decimals, or ``n/a`` for a metric the epoch has not (no labelled sample)."""
    return "n/a" if value is None else f"{value:.2f}"


class EpochLog(Callback):
    """Logs ``Epoch: N, loss: ..., Classification Acc: ..., Addition Acc: ...`` at INFO.

    With validation data, a ``Validation: ...`` line follows. Only rank 0 logs, so
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

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if not distributed.is_main_process():
            return
        for split, start in (("train", f"Epoch: {epoch},"), ("val", "Validation:")):
            if f"{split}_loss" in metrics:
                digit = _percent(metrics.get(f"{split}_digit_accuracy"))
                total = _percent(metrics.get(f"{split}_sum_accuracy"))
                loss = metrics[f"{split}_loss"]
                logger.info(
                    "%s loss: %.4f, Classification Acc: %s, Addition Acc: %s",
                    start,
                    loss,
                    digit,
                    total,
                )
