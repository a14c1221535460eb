"""Stop training when a monitored metric stops improving."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from multitask_mnist._validation import check_choice, check_int, check_number
from multitask_mnist.errors import InvalidValueError
from multitask_mnist.training.callbacks.base import Callback

if TYPE_CHECKING:
    from multitask_mnist.training.trainer import Trainer

__all__ = ["EarlyStopping"]


class EarlyStopping(Callback):
    """Stop training when a metric has not improved for ``patience`` epochs.

    Args:
        monitor: A key of the epoch metrics, e.g. ``"val_loss"`` or ``"val_digit_accuracy"``.
        patience: Epochs without improvement before stopping.
        mode: ``"min"`` if lower is better, ``"max"`` if higher is.
        min_delta: The least change that counts as an improvement.

    Raises:
        ValueError: ``patience < 1``, negative ``min_delta`` or unknown ``mode``.

    Example:
        >>> stopper = EarlyStopping("val_loss", patience=2)
        >>> stopper.improved(1.0), stopper.improved(1.5), stopper.improved(0.9)
        (True, False, True)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        *,
        patience: int = 3,
        mode: str = "min",
        min_delta: float = 0.0,
    ) -> None:
        self.monitor = monitor
        self.patience = check_int("patience", patience, minimum=1)
        self.mode = check_choice("mode", mode, ("min", "max"))
        self.min_delta = check_number("min_delta", min_delta, minimum=0.0)
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0

    def improved(self, value: float) -> bool:
        """Record ``value`` and say whether it beats the best so far."""
        better = (
            value < self.best - self.min_delta
            if self.mode == "min"
            else value > self.best + self.min_delta
        )
        if better:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        return better

    def state_dict(self) -> dict[str, Any]:
        """The best value so far and the epochs since it: what a resumed run needs."""
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_epochs = float(state["best"]), int(state["bad_epochs"])

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if self.monitor not in metrics:
            raise InvalidValueError(
                f"EarlyStopping monitors {self.monitor!r}, which is not among the epoch "
                f"metrics: {', '.join(sorted(metrics))}"
            )
        if not self.improved(metrics[self.monitor]) and self.bad_epochs >= self.patience:
            trainer.stop(f"{self.monitor} did not improve for {self.patience} epoch(s)")
