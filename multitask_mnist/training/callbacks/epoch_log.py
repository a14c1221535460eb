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
        logger.info(
            "Epoch: %d, loss: %.4f, Classification Acc: %.2f, Addition Acc: %.2f",
            epoch,
            metrics["train_loss"],
            metrics["train_digit_accuracy"],
            metrics["train_sum_accuracy"],
        )
        if "val_loss" in metrics:
            logger.info(
                "Validation: loss: %.4f, Classification Acc: %.2f, Addition Acc: %.2f",
                metrics["val_loss"],
                metrics["val_digit_accuracy"],
                metrics["val_sum_accuracy"],
            )
