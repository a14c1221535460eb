"""Catch SIGTERM and SIGINT during training, so the Trainer can save and stop cleanly."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from multitask_mnist.errors import MultitaskMnistError

__all__ = ["SIGNALS", "SignalCatcher", "TrainingInterrupted", "catch_signals"]

#: The signals a cloud scheduler or a person sends to stop a run.
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(MultitaskMnistError, RuntimeError):
    """A signal stopped :meth:`~multitask_mnist.training.Trainer.fit`; the message says
    where the run stopped, where its checkpoint is and how to resume.

    Attributes:
        signal_number: The signal received, e.g. ``signal.SIGTERM``.

    Example:
        >>> TrainingInterrupted("stopped", signal.SIGTERM).signal_number == signal.SIGTERM
        True
    """

    def __init__(self, message: str, signal_number: int) -> None:
        super().__init__(message)
        self.signal_number = signal_number


class SignalCatcher:
    """Remembers the first of :data:`SIGNALS` received; a second one ends the process at
    once, the operating system's default (it also drops the output folder's lock).

    Example:
        >>> catcher = SignalCatcher()
        >>> catcher.received is None
        True
    """

    def __init__(self) -> None:
        self.received: int | None = None

    def handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:  # asked twice: stop now, the usual way
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        self.received = signum


@contextlib.contextmanager
def catch_signals() -> Iterator[SignalCatcher]:
    """Within the block, SIGTERM and SIGINT are recorded instead of acted on.

    Outside the main thread (where Python cannot install handlers) nothing is caught.

    Yields:
        The catcher; its ``received`` is the first signal, or ``None``.

    Example:
        >>> import os
        >>> with catch_signals() as catcher:
        ...     os.kill(os.getpid(), signal.SIGTERM)
        >>> catcher.received == signal.SIGTERM
        True
    """
    catcher = SignalCatcher()
    if threading.current_thread() is not threading.main_thread():
        yield catcher
        return
    previous = {signum: signal.signal(signum, catcher.handle) for signum in SIGNALS}
    try:
        yield catcher
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
