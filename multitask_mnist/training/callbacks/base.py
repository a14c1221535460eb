"""The events the Trainer fires, and the base class of every callback."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor

if TYPE_CHECKING:
    from multitask_mnist.training.history import History
    from multitask_mnist.training.trainer import Trainer

__all__ = ["Callback"]


class Callback:
    """Base class of the Trainer's callbacks: every event is a no-op. ``epoch`` counts from 1.

    A callback is known to the Trainer by its :attr:`name` (the class name in
    snake case unless set), which is how a user replaces or removes one of the
    default callbacks (see :class:`~multitask_mnist.training.Trainer`), and the key
    of its state in a checkpoint. A callback that holds state across epochs returns
    it from :meth:`state_dict` and takes it back in :meth:`load_state_dict`; every
    checkpoint saves it and ``fit(resume=True)`` restores it, so a resumed run ends
    exactly as an uninterrupted one.

    Example:
        >>> class CountEpochs(Callback):
        ...     def __init__(self):
        ...         self.seen = 0
        ...     def on_epoch_end(self, trainer, epoch, metrics):
        ...         self.seen += 1
        ...     def state_dict(self):
        ...         return {"seen": self.seen}
        ...     def load_state_dict(self, state):
        ...         self.seen = state["seen"]
        >>> counter = CountEpochs()
        >>> counter.on_epoch_end(None, 1, {})
        >>> counter.name, counter.state_dict()
        ('count_epochs', {'seen': 1})
    """

    @property
    def name(self) -> str:
        """Its class name in snake case (``ModelCheckpoint`` is ``model_checkpoint``),
        unless a subclass sets another."""
        chars = type(self).__name__
        return "".join(
            f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(chars)
        )

    def state_dict(self) -> dict[str, Any]:
        """The state to checkpoint: plain values and tensors only; ``{}`` by default."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; nothing by default."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first epoch of :meth:`Trainer.fit` (also when resuming)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before the first batch of ``epoch`` (not again when resuming inside it)."""

    def wants_gradient_probe(self, trainer: Trainer, epoch: int, step: int) -> bool:
        """Whether the tasks' gradients should be measured in batch ``step`` (from 0) of
        ``epoch``, for a method that does not compute them anyway; ``False`` by default.

        When a callback says yes, the step measures them before its backward pass (one
        extra backward pass per task through the shared blocks) into the method's
        ``diagnostics``, which :meth:`Trainer.gradient_diagnostics` reads.
        """
        return False

    def on_batch_end(self, trainer: Trainer, epoch: int, step: int, loss: Tensor) -> None:
        """After the optimizer step of batch ``step`` (from 0); ``loss`` is a 0-dim tensor.

        Reading ``loss`` with ``.item()`` forces a host synchronisation on an accelerator.
        """

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        """After ``epoch`` is trained and validated; ``metrics`` holds ``train_*`` and ``val_*``.

        ``trainer.state_dict()`` here describes the run after ``epoch``.
        """

    def on_train_interrupted(self, trainer: Trainer, epoch: int, step: int) -> None:
        """A signal stopped training after ``step`` batches of ``epoch``; save what must be kept."""

    def on_fit_end(self, trainer: Trainer, history: History) -> None:
        """After the last epoch, or after a callback stopped training."""

    def on_test_end(
        self, trainer: Trainer, metrics: dict[str, float], confusion: dict[str, Tensor]
    ) -> None:
        """After :meth:`Trainer.test`; ``confusion`` holds a ``(C, C)`` confusion matrix
        (rows true, columns predicted) per multiclass task, by task name."""
