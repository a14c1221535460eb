"""The files a person reads after a run: ``config.yaml``, ``metrics.json``,
``history.csv`` and plots."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from torch import Tensor

from multitask_mnist import distributed
from multitask_mnist.checkpoint import write_text_atomic
from multitask_mnist.training.callbacks.base import Callback

if TYPE_CHECKING:
    from multitask_mnist.training.history import History
    from multitask_mnist.training.trainer import Trainer

__all__ = ["RunFiles", "run_settings", "update_metrics_file"]

logger = logging.getLogger(__name__)


def update_metrics_file(folder: Path, entries: Mapping[str, Any]) -> None:
    """Merge ``entries`` into ``folder/metrics.json``, written atomically.

    For numbers a run measures beyond the Trainer's (a latent classifier's accuracy,
    say); under torchrun, call it from one process.

    A ``metrics.json`` that is not valid JSON (a hand edit, a disk that failed) is
    replaced rather than trusted: everything the Trainer writes there comes back from
    the run's checkpoint at the next epoch's end.

    Args:
        folder: The run's output folder.
        entries: JSON-serializable values by key; they replace keys of the same name.

    Raises:
        OSError: The file could not be written; the message names it.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> update_metrics_file(folder, {"a": 1}); update_metrics_file(folder, {"b": True})
        >>> json.loads((folder / "metrics.json").read_text())
        {'a': 1, 'b': True}
    """
    path = folder / "metrics.json"
    current = _read_metrics(path)
    current.update(entries)
    write_text_atomic(path, json.dumps(current, indent=2) + "\n")


def _read_metrics(path: Path) -> dict[str, Any]:
    """What ``path`` holds, or nothing if it is missing or damaged (a report the run
    writes again from its checkpoint; a damaged one is replaced, with a warning)."""
    if not path.exists():
        return {}
    try:
        current = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        logger.warning("%s is damaged (%s); writing it afresh", path, error)
        return {}
    if not isinstance(current, dict):
        logger.warning("%s holds no JSON object; writing it afresh", path)
        return {}
    return current


def run_settings(trainer: Trainer) -> dict[str, Any]:
    """What ``config.yaml`` holds: the Trainer's settings and its ``run_config`` (a
    program's own settings), the values a program's ``--config`` reads back.

    Args:
        trainer: The run's Trainer.

    Returns:
        Plain values by setting name, the Trainer's first.

    Example:
        >>> from multitask_mnist import presets
        >>> from multitask_mnist.training import Trainer
        >>> trainer = Trainer(presets.mnist_sum(), epochs=2, run_config={"limit": 100})
        >>> settings = run_settings(trainer)
        >>> settings["epochs"], settings["limit"]
        (2, 100)
    """
    return {**trainer.settings.to_dict(), **trainer.run_config}


class RunFiles(Callback):
    """Writes ``config.yaml`` when fit starts (the settings that repeat the run:
    ``--config OUTPUT_DIR/config.yaml``; an object given in place of a name reads
    ``custom`` there), ``metrics.json`` and ``history.csv`` every epoch, plots at the end of fit
    (the loss of every step, smoothed, and each epoch's accuracy), and the ``test_*``
    metrics with the confusion matrix after :meth:`Trainer.test`.

    Rank 0 alone writes, into the Trainer's ``output_dir``; without one, nothing.
    Plots need matplotlib (the ``plot`` extra).

    Example:
        >>> RunFiles().name
        'run_files'
    """

    def __init__(self) -> None:
        #: Each training step's loss, and where it falls in epochs (``1.0`` ends epoch 1).
        self.step_losses: list[float] = []
        self.step_positions: list[float] = []
        self._pending: list[Tensor] = []  # this epoch's losses, read once it ends

    @staticmethod
    def _folder(trainer: Trainer) -> Path | None:
        return trainer.output_dir if distributed.is_main_process() else None

    def on_fit_start(self, trainer: Trainer) -> None:
        folder = self._folder(trainer)
        if folder is not None:
            text = yaml.safe_dump(run_settings(trainer), sort_keys=False)
            write_text_atomic(folder / "config.yaml", text)

    def on_batch_end(self, trainer: Trainer, epoch: int, step: int, loss: Tensor) -> None:
        if self._folder(trainer) is not None:  # kept as a tensor: no wait for the step here
            self._pending.append(loss.detach().float().clone())
            self.step_positions.append(epoch - 1 + (step + 1) / max(trainer.steps_per_epoch, 1))

    def _settle(self) -> None:
        if self._pending:
            self.step_losses += torch.stack(self._pending).cpu().tolist()
            self._pending.clear()

    def state_dict(self) -> dict[str, Any]:
        """The per-step losses so far, so that a resumed run's loss curve is whole."""
        self._settle()
        return {"step_losses": list(self.step_losses), "step_positions": list(self.step_positions)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` returned."""
        self._pending.clear()
        self.step_losses = [float(v) for v in state.get("step_losses", [])]
        self.step_positions = [float(v) for v in state.get("step_positions", [])]

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self._settle()
        folder = self._folder(trainer)
        if folder is None:
            return
        trainer.history.write_csv(folder / "history.csv")
        checkpoint = trainer.callbacks.get("model_checkpoint")
        best = checkpoint.state_dict()["best"] if checkpoint is not None else {}
        update_metrics_file(
            folder,
            {
                "config": trainer.config,
                "epochs": trainer.history.epochs,
                "best": best,
                "wall_time_s": trainer.train_time,
            },
        )

    def on_fit_end(self, trainer: Trainer, history: History) -> None:
        folder = self._folder(trainer)
        if folder is not None:
            from multitask_mnist.training import plots

            self._settle()
            plots.save_curves(history, folder, (self.step_positions, self.step_losses))

    def on_test_end(
        self, trainer: Trainer, metrics: dict[str, float], confusion: dict[str, Tensor]
    ) -> None:
        folder = self._folder(trainer)
        if folder is None:
            return
        from multitask_mnist.training import plots

        update_metrics_file(folder, {f"test_{name}": value for name, value in metrics.items()})
        for i, (task, counts) in enumerate(confusion.items()):
            name = "confusion_matrix.png" if i == 0 else f"confusion_matrix_{task}.png"
            plots.save_confusion(counts, folder / name, task)
