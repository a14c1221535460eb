"""Checkpoints of a run: ``last.pt`` after every epoch and on interruption, ``best.pt``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from multitask_mnist import distributed
from multitask_mnist._validation import check_choice
from multitask_mnist.checkpoint import save_checkpoint
from multitask_mnist.training.callbacks.base import Callback

if TYPE_CHECKING:
    from multitask_mnist.training.trainer import Trainer

__all__ = ["BEST_CHECKPOINT", "LAST_CHECKPOINT", "ModelCheckpoint"]

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


class ModelCheckpoint(Callback):
    """Writes ``last.pt`` after every epoch and ``best.pt`` when the monitored metric
    improves, in ``dirpath``; it owns the files, and :meth:`last_path` and
    :meth:`best_path` name them.

    When a signal interrupts training, ``last.pt`` is written mid-epoch, so that
    ``fit(resume=True)`` continues from that very step; the Trainer resumes from
    :meth:`last_path`. Only rank 0 writes; every write is atomic (see
    :func:`~multitask_mnist.checkpoint.save_checkpoint`).

    Args:
        dirpath: The folder; ``None`` means the Trainer's ``output_dir``.
        monitor: The epoch metric that decides the best epoch; ``None`` means
            ``val_loss`` when there is validation data, ``train_loss`` otherwise.
        mode: ``"min"`` (a lower value is better) or ``"max"``.

    Raises:
        ValueError: An unknown ``mode``.

    Example:
        >>> ModelCheckpoint().state_dict()
        {'best': {}}
        >>> ModelCheckpoint("runs/a", monitor="val_digit_accuracy", mode="max").monitor
        'val_digit_accuracy'
    """

    name = "model_checkpoint"

    def __init__(
        self,
        dirpath: str | os.PathLike[str] | None = None,
        *,
        monitor: str | None = None,
        mode: str = "min",
    ) -> None:
        self.dirpath = Path(dirpath) if dirpath is not None else None
        self.monitor = monitor
        self.mode = check_choice("mode", mode, ("min", "max"))
        self.best: dict[str, Any] = {}

    def folder(self, trainer: Trainer) -> Path | None:
        """Where the files go: ``dirpath``, or the Trainer's ``output_dir``."""
        return self.dirpath if self.dirpath is not None else trainer.output_dir

    def last_path(self, trainer: Trainer) -> Path | None:
        """``last.pt``: the run after its last epoch, or where a signal stopped it."""
        folder = self.folder(trainer)
        return folder / LAST_CHECKPOINT if folder is not None else None

    def best_path(self, trainer: Trainer) -> Path | None:
        """``best.pt``: the run after its best epoch by the monitored metric."""
        folder = self.folder(trainer)
        return folder / BEST_CHECKPOINT if folder is not None else None

    def state_dict(self) -> dict[str, Any]:
        return {"best": dict(self.best)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = dict(state["best"])

    def _improved(self, value: float) -> bool:
        if not self.best:
            return True
        best = float(self.best["value"])
        return value < best if self.mode == "min" else value > best

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        key = self.monitor or ("val_loss" if "val_loss" in metrics else "train_loss")
        value = metrics[key]
        improved = self._improved(value)
        if improved:
            self.best = {"metric": key, "value": value, "epoch": epoch}
        last, best = self.last_path(trainer), self.best_path(trainer)
        if last is None or best is None or not distributed.is_main_process():
            return
        state = trainer.state_dict()
        save_checkpoint(state, last)
        if improved:
            save_checkpoint(state, best)

    def on_train_interrupted(self, trainer: Trainer, epoch: int, step: int) -> None:
        last = self.last_path(trainer)
        if last is not None and distributed.is_main_process():
            save_checkpoint(trainer.state_dict(), last)
