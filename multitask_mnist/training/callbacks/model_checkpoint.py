"""Checkpoints of a run: ``last.pt`` after every epoch and on interruption, ``best.pt``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from multitask_mnist import distributed
from multitask_mnist.checkpoint import save_checkpoint
from multitask_mnist.training.callbacks.base import Callback

if TYPE_CHECKING:
    from multitask_mnist.training.trainer import Trainer

__all__ = ["BEST_CHECKPOINT", "LAST_CHECKPOINT", "ModelCheckpoint"]

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"


class ModelCheckpoint(Callback):
    """Writes ``output_dir/last.pt`` after every epoch and ``best.pt`` when it improves.

    The best epoch has the lowest ``val_loss``, or ``train_loss`` without
    validation data. When a signal interrupts training, ``last.pt`` is written
    mid-epoch, so that ``fit(resume=True)`` continues from that very step. Only
    rank 0 writes; every write is atomic (see
    :func:`~multitask_mnist.training.save_checkpoint`).

    Example:
        >>> ModelCheckpoint().state_dict()
        {'best': {}}
    """

    def __init__(self) -> None:
        self.best: dict[str, Any] = {}

    def state_dict(self) -> dict[str, Any]:
        return {"best": dict(self.best)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = dict(state["best"])

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        key = "val_loss" if "val_loss" in metrics else "train_loss"
        value = metrics[key]
        improved = not self.best or value < self.best["value"]
        if improved:
            self.best = {"metric": key, "value": value, "epoch": epoch}
        folder = trainer.output_dir
        if folder is None or not distributed.is_main_process():
            return
        state = trainer.state_dict()
        save_checkpoint(state, folder / LAST_CHECKPOINT)
        if improved:
            save_checkpoint(state, folder / BEST_CHECKPOINT)

    def on_train_interrupted(self, trainer: Trainer, epoch: int, step: int) -> None:
        if trainer.output_dir is not None and distributed.is_main_process():
            save_checkpoint(trainer.state_dict(), trainer.output_dir / LAST_CHECKPOINT)
