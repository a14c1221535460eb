"""Per-step gradient diagnostics, as a callback."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

import torch

from multitask_mnist import distributed
from multitask_mnist.checkpoint import write_text_atomic
from multitask_mnist.errors import InvalidValueError
from multitask_mnist.training.callbacks.base import Callback

if TYPE_CHECKING:
    from multitask_mnist.training.history import History
    from multitask_mnist.training.trainer import Trainer

__all__ = ["GradientConflict"]


class GradientConflict(Callback):
    """Records, every ``every`` training steps, how the tasks' gradients relate.

    Each row holds the epoch, the step and
    :meth:`~multitask_mnist.training.Trainer.gradient_diagnostics`: the cosine between
    the tasks' gradients on the shared parameters, their norms and norm ratio, and the
    weights the aggregator gave the tasks. The rows are in ``rows``; with an
    ``output_dir`` rank 0 writes them to ``gradient_conflict.csv`` when fit ends. The
    per-epoch means are in every run's history without this callback; it is for users
    who want each step. Reading the values waits for each recorded step to finish.

    With a gradient method (``Trainer(method="upgrad")``...) the values come from the
    Jacobian the method computes anyway. With any other method the step measures the
    task gradients on the recorded steps only (it asks through
    :meth:`~multitask_mnist.training.Callback.wants_gradient_probe`; a
    :class:`~multitask_mnist.methods.GradientProbe`: one extra backward pass per task
    through the shared blocks), and the epoch means in the history are over those
    steps; an effective weight is then the derivative of the total loss with respect
    to the task's loss (its fixed weight, or the step's weight of another method).

    Args:
        every: Record one step in this many.

    Example:
        >>> GradientConflict(every=10).name
        'gradient_conflict'
    """

    name = "gradient_conflict"

    def __init__(self, every: int = 1) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise InvalidValueError(f"Expected argument `every` to be an int >= 1, got {every!r}")
        self.every = every
        self.rows: list[dict[str, float]] = []

    def wants_gradient_probe(self, trainer: Trainer, epoch: int, step: int) -> bool:
        """Yes on every ``every``-th step: the ones this callback records."""
        return step % self.every == 0

    def on_batch_end(self, trainer: Trainer, epoch: int, step: int, loss: torch.Tensor) -> None:
        if step % self.every == 0:
            values = trainer.gradient_diagnostics()
            if values:
                self.rows.append({"epoch": epoch, "step": step + 1, **values})

    def on_fit_end(self, trainer: Trainer, history: History) -> None:
        if trainer.output_dir is None or not self.rows or not distributed.is_main_process():
            return
        fields = list(dict.fromkeys(key for row in self.rows for key in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(trainer.output_dir / "gradient_conflict.csv", text.getvalue())

    def state_dict(self) -> dict[str, object]:
        """The rows so far, so that a resumed run keeps them."""
        return {"rows": list(self.rows)}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Take back what :meth:`state_dict` returned."""
        rows = state.get("rows", [])
        self.rows = list(rows) if isinstance(rows, list) else []
