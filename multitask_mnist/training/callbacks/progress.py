"""A progress bar per epoch, on a terminal."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from torch import Tensor
from tqdm.auto import tqdm

from multitask_mnist import distributed
from multitask_mnist.training.callbacks.base import Callback

if TYPE_CHECKING:
    from multitask_mnist.training.trainer import Trainer

__all__ = ["ProgressBar"]


class ProgressBar(Callback):
    """A tqdm bar over each epoch's batches: on rank 0, when stderr is a terminal and
    ``CI`` is not ``true``; silent otherwise.

    Example:
        >>> ProgressBar().name
        'progress_bar'
    """

    def __init__(self) -> None:
        self._bar: Any = None

    @staticmethod
    def enabled() -> bool:
        """Whether a bar would be drawn here."""
        return (
            sys.stderr.isatty() and os.environ.get("CI") != "true" and distributed.is_main_process()
        )

    def on_batch_end(self, trainer: Trainer, epoch: int, step: int, loss: Tensor) -> None:
        if self._bar is None and self.enabled():  # also an epoch resumed mid-way
            self._bar = tqdm(
                total=trainer.steps_per_epoch,
                initial=step,
                desc=f"Epoch {epoch}",
                leave=False,
                unit="batch",
            )
        if self._bar is not None:
            self._bar.update(1)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self._close()

    def on_train_interrupted(self, trainer: Trainer, epoch: int, step: int) -> None:
        self._close()

    def on_fit_end(self, trainer: Trainer, history: Any) -> None:
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
