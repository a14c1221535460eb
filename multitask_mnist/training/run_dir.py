"""The run's folder and its safety: one run per folder, every process agreeing on a stop.

:class:`RunDir` prepares and locks the output folder (rank 0) and makes every rank
learn if that failed. :func:`agree` raises an error here, or on every other process an
error saying what failed elsewhere, so no process waits for one that stopped.
:class:`StepGuard` looks at the training loss and at received signals in the step
loop, and under torchrun has every process agree on them every ``every`` steps, so
that every rank stops at the same step.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from multitask_mnist import distributed
from multitask_mnist.checkpoint import prepare_output_dir, sweep_temporary_files
from multitask_mnist.errors import MultitaskMnistError, PeerFailedError
from multitask_mnist.training.preemption import SignalCatcher
from multitask_mnist.training.run_lock import OutputDirLockedError, RunLock

__all__ = ["NonFiniteLossError", "RunDir", "StepGuard", "agree"]


class NonFiniteLossError(MultitaskMnistError, RuntimeError):
    """The training loss became NaN or infinite; checkpoints on disk hold the last good state.

    Example:
        >>> raise NonFiniteLossError("The loss became NaN at epoch 1, step 3")
        Traceback (most recent call last):
        ...
        multitask_mnist.training.run_dir.NonFiniteLossError: The loss became NaN at epoch 1, step 3
    """


def agree(failure: BaseException | None, what: str, device: torch.device) -> None:
    """Raise ``failure`` on this process, or on every other one a
    :class:`~multitask_mnist.errors.PeerFailedError` saying ``what`` failed elsewhere.

    Args:
        failure: This process's error, or ``None``.
        what: What failed, for the other processes' message.
        device: Where the agreement's flag lives.

    Raises:
        BaseException: ``failure``, where it happened.
        PeerFailedError: On the other processes.

    Example:
        >>> agree(None, "nothing", torch.device("cpu"))  # one process, nothing failed
    """
    failed = torch.tensor(int(failure is not None), device=device)
    distributed.all_reduce_max(failed)
    if failure is not None:
        raise failure
    if int(failed):
        raise PeerFailedError(f"Stopping: {what}")


class RunDir:
    """The output folder of one run: created, checked, locked and swept on rank 0.

    Args:
        folder: The folder, or ``None`` for a run that writes nothing.
        device: Where the ranks' agreement lives.

    Example:
        >>> import tempfile
        >>> run = RunDir(Path(tempfile.mkdtemp()), torch.device("cpu"))
        >>> run.claim(); run.held
        True
        >>> run.release(); run.held
        False
    """

    def __init__(self, folder: Path | None, device: torch.device) -> None:
        self.folder = folder
        self.device = device
        self._lock: RunLock | None = None

    @property
    def held(self) -> bool:
        """Whether this process holds the folder's lock now."""
        return self._lock is not None and self._lock.held

    def claim(self) -> None:
        """Prepare and lock the folder (rank 0); every rank learns if that failed.

        Raises:
            OutputDirLockedError: Another live run holds the folder, or another Trainer
                of this process took it over.
            CheckpointError: The folder cannot be created or written to.
            PeerFailedError: Rank 0 could not claim it (on the other ranks).
        """
        failure: Exception | None = None
        if self.folder is not None and distributed.is_main_process():
            try:
                if self._lock is not None and self._lock.revoked:
                    raise OutputDirLockedError(
                        f"The output folder {self.folder} was taken over by another "
                        "Trainer in this process"
                    )
                if self._lock is None:  # held already: claimed, checked and swept
                    prepare_output_dir(self.folder, sweep=False)
                    self._lock = RunLock(self.folder)
                    self._lock.acquire()
                    sweep_temporary_files(self.folder)  # locked: no live run's files
            except Exception as error:  # every rank must learn of it, or the others hang
                failure = error
        agree(failure, f"rank 0 could not claim the output folder {self.folder}", self.device)

    def release(self) -> None:
        """Let the folder go (also done when the process exits)."""
        if self._lock is not None:
            self._lock.release()


class StepGuard:
    """Watches the step loop for a non-finite loss and for a stopping signal.

    One process looks at its signal flag every step (free) and at the loss every
    ``every`` steps (a host sync); under torchrun both are agreed on together every
    ``every`` steps, so every rank stops at the same step.

    Args:
        signals: The signals caught during ``fit``.
        device: Where the loss lives.
        every: Steps between two looks at the loss (and agreements).
        hint: What to try, and where the last good state is, for the message of a
            non-finite loss.

    Example:
        >>> from multitask_mnist.training.preemption import SignalCatcher
        >>> guard = StepGuard(SignalCatcher(), torch.device("cpu"), every=16)
        >>> guard.after_step(torch.tensor(1.0), step=0, due=True, where="epoch 1")
    """

    def __init__(
        self,
        signals: SignalCatcher,
        device: torch.device,
        every: int,
        hint: Callable[[], str] = str,
    ) -> None:
        self.signals = signals
        self.every = every
        self.hint = hint
        self._first_bad = torch.full((), -1, dtype=torch.long, device=device)

    def start_epoch(self) -> None:
        """Forget the last epoch's first bad step."""
        self._first_bad.fill_(-1)

    def due(self, step: int, steps_per_epoch: int) -> bool:
        """Whether the loop looks at its flags after ``step`` steps of the epoch."""
        return step == steps_per_epoch or step % self.every == 0

    def after_step(self, total: Tensor, step: int, due: bool, where: str) -> int | None:
        """Note ``total``, the loss of step ``step`` (from 0), and check when ``due``.

        Returns:
            The signal every process stops on, or ``None``.

        Raises:
            NonFiniteLossError: The loss was NaN or infinite at some step of ``where``.
        """
        bad_now = ~torch.isfinite(total.detach()) & (self._first_bad < 0)
        self._first_bad = torch.where(bad_now, step, self._first_bad)
        return self.check(due, where)

    def check(self, due: bool, where: str) -> int | None:
        """The agreement itself (also after the last epoch, where a late signal counts).

        Returns:
            The signal every process stops on, or ``None``.

        Raises:
            NonFiniteLossError: The loss was NaN or infinite.
        """
        received = self.signals.received
        first_bad = self._first_bad
        if distributed.world_size() > 1:
            if not due:
                return None
            flags = torch.stack([first_bad, first_bad.new_tensor(received or 0)])
            first_bad, agreed = distributed.all_reduce_max(flags).unbind()
            received = int(agreed) or None
        elif not due and received is None:
            return None
        step = int(first_bad)
        if step >= 0:
            raise NonFiniteLossError(
                f"The training loss became NaN or infinite at {where}, step {step + 1}; "
                f"{self.hint()}"
            )
        return received
