"""One run per output folder: an exclusive lock the operating system releases with its
process, and a record of who holds it."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import weakref
from pathlib import Path
from typing import IO, ClassVar

from multitask_mnist.errors import MultitaskMnistError

__all__ = ["LOCK_FILE", "OutputDirLockedError", "RunLock"]

#: The lock's file name inside an output folder.
LOCK_FILE = ".lock"

try:  # POSIX
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


class OutputDirLockedError(MultitaskMnistError, RuntimeError):
    """Another live run holds the output folder.

    Example:
        >>> raise OutputDirLockedError("runs/a is in use")
        Traceback (most recent call last):
        ...
        multitask_mnist.training.run_lock.OutputDirLockedError: runs/a is in use
    """


class RunLock:
    """Holds ``folder/.lock`` for this process, from :meth:`acquire` to :meth:`release`.

    The lock is an exclusive ``flock`` on the file, which the operating system drops
    when the process ends in any way (``kill -9`` included): a crashed run leaves no
    lock behind, so ``--resume`` is never blocked, and two live processes can never
    both hold it. The file records the holder's process id and host for the message
    of the run that is refused. A second lock taken by the same process (a new
    Trainer in a notebook) takes the folder over from the first, which is then
    ``revoked``. Where ``fcntl`` is missing (Windows) no lock is taken.

    Args:
        folder: The output folder; it must exist.

    Example:
        >>> import tempfile
        >>> lock = RunLock(Path(tempfile.mkdtemp()))
        >>> lock.acquire(); lock.held
        True
        >>> lock.release(); lock.held
        False
    """

    # This process's locks, by folder; a lock no one references lets its folder go.
    _held_here: ClassVar[weakref.WeakValueDictionary[Path, RunLock]] = weakref.WeakValueDictionary()

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._file: IO[str] | None = None
        #: Whether another lock of this process took the folder over.
        self.revoked = False

    @property
    def path(self) -> Path:
        return self.folder / LOCK_FILE

    @property
    def held(self) -> bool:
        """Whether this lock holds its folder now."""
        return self._file is not None

    def acquire(self) -> None:
        """Take the lock, or raise naming the folder and the run that holds it.

        Raises:
            OutputDirLockedError: Another live process holds the folder.
        """
        key = self.folder.resolve()
        previous = self._held_here.get(key)
        if previous is not None and previous is not self:
            previous.release()  # this process takes its own folder over
            previous.revoked = True
        file = self.path.open("a+")
        try:
            if fcntl is not None:
                fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = _parse(file.read())
            file.close()
            raise OutputDirLockedError(
                f"The output folder {self.folder} is in use by another run (process "
                f"{holder.get('pid', '?')} on {holder.get('host', '?')}); wait for it to end "
                "or choose another output folder"
            ) from None
        file.seek(0)
        file.truncate()
        file.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        file.flush()
        self._file = file
        self._held_here[key] = self
        weakref.finalize(self, file.close)  # a lock collected unreleased lets go too

    def release(self) -> None:
        """Let the folder go (the file stays; the lock is what counts)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.truncate(0)
            self._file.close()  # closing drops the flock
            self._file = None
            self._held_here.pop(self.folder.resolve(), None)


def _parse(text: str) -> dict[str, object]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
