"""TensorBoard logs of a run, as a callback."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from multitask_mnist import distributed
from multitask_mnist._extras import require
from multitask_mnist.training.callbacks.base import Callback

if TYPE_CHECKING:
    from multitask_mnist.training.history import History
    from multitask_mnist.training.trainer import Trainer

__all__ = ["TensorBoard", "confusion_image", "tag"]

#: Screen pixels per cell of the confusion-matrix image.
_CELL = 24


def tag(key: str) -> str:
    """The TensorBoard tag of a history key: ``train_digit_accuracy`` is
    ``train/digit_accuracy``, ``weight_sum`` is ``weights/sum``, ``grad_cosine`` is
    ``gradients/cosine``, ``gate_left_expert0`` (a soft-sharing block's usage) is
    ``gates/left_expert0``; anything else (``lr``, ``time_s``) keeps its name."""
    for prefix, group in (
        ("train_", "train"),
        ("val_", "val"),
        ("test_", "test"),
        ("weight_", "weights"),
        ("grad_", "gradients"),
        ("gate_", "gates"),
    ):
        if key.startswith(prefix):
            return f"{group}/{key.removeprefix(prefix)}"
    return key


def confusion_image(confusion: Tensor) -> Tensor:
    """A confusion matrix as a ``(3, H, W)`` uint8 picture: one square per cell, darker
    blue for more samples (on a log scale), rows true and columns predicted.

    Example:
        >>> confusion_image(torch.eye(10, dtype=torch.long) * 100).shape
        torch.Size([3, 240, 240])
    """
    level = confusion.double().log1p()
    level = level / level.max().clamp(min=1e-12)  # 0 (empty) .. 1 (the fullest cell)
    white, blue = torch.tensor([255.0, 255.0, 255.0]), torch.tensor([8.0, 48.0, 107.0])
    rgb = white + (blue - white) * level.unsqueeze(-1).float()  # (C, C, 3)
    rgb = rgb.repeat_interleave(_CELL, 0).repeat_interleave(_CELL, 1)
    return rgb.round().to(torch.uint8).permute(2, 0, 1).contiguous()


class TensorBoard(Callback):
    """Writes the run to TensorBoard event files, under ``output_dir/tensorboard`` unless
    told otherwise.

    Each epoch: every ``train/*`` and ``val/*`` metric of every task, the learning rate
    (``lr``), the task weights (``weights/<task>``) and, where recorded, the gradient
    diagnostics (``gradients/*``). After :meth:`~multitask_mnist.training.Trainer.test`:
    the ``test/*`` metrics and each multiclass task's confusion matrix as an image
    (``test/confusion_<task>``). The step of every value is the epoch. Rank 0 alone
    writes. Needs the ``tensorboard`` extra (``pip install 'multitask-mnist[tensorboard]'``);
    view the logs with ``tensorboard --logdir OUTPUT_DIR/tensorboard``.

    Args:
        log_dir: Where to write; ``None`` for ``tensorboard`` in the Trainer's
            ``output_dir`` (no logs without one).

    Raises:
        MissingExtraError: At the start of fit, if ``tensorboard`` is not installed.

    Example:
        >>> TensorBoard().name
        'tensorboard'
    """

    name = "tensorboard"

    def __init__(self, log_dir: str | os.PathLike[str] | None = None) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self._writer: Any = None

    def _folder(self, trainer: Trainer) -> Path | None:
        if not distributed.is_main_process():
            return None
        if self.log_dir is not None:
            return self.log_dir
        return trainer.output_dir / "tensorboard" if trainer.output_dir is not None else None

    def _open(self, trainer: Trainer) -> Any:
        if self._writer is None:
            folder = self._folder(trainer)
            if folder is None:
                return None
            require("tensorboard", "tensorboard", "TensorBoard logging")
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(folder))
        return self._writer

    def on_fit_start(self, trainer: Trainer) -> None:
        self._open(trainer)  # a missing extra fails here, not after the first epoch

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        writer = self._open(trainer)
        if writer is None:
            return
        for key, value in metrics.items():  # the history's row: lr, weights, diagnostics too
            if key != "epoch" and isinstance(value, (int, float)):
                writer.add_scalar(tag(key), value, epoch)
        writer.flush()

    def on_fit_end(self, trainer: Trainer, history: History) -> None:
        if self._writer is not None:
            self._writer.flush()

    def on_test_end(
        self, trainer: Trainer, metrics: dict[str, float], confusion: dict[str, Tensor]
    ) -> None:
        writer = self._open(trainer)
        if writer is None:
            return
        for key, value in metrics.items():
            if isinstance(value, (int, float)):
                writer.add_scalar(tag(f"test_{key}"), value, trainer.epoch)
        for task, counts in confusion.items():
            writer.add_image(f"test/confusion_{task}", confusion_image(counts), trainer.epoch)
        writer.flush()

    def close(self) -> None:
        """Close the event file; the next event opens a new one."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
