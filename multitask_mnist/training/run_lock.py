"""One run per output folder: a lock file naming the process that holds it."""

from __future__ import annotations

import json
import os
import socket
import uuid
import weakref
from pathlib import Path

__all__ = ["LOCK_FILE", "OutputDirLockedError", "RunLock"]

#: The lock's file name inside an output folder.
LOCK_FILE = ".lock"


class OutputDirLockedError(RuntimeError):
    """Another live run holds the output folder.

    Example:
        >>> raise OutputDirLockedError("runs/a is in use")
        Traceback (most recent call last):
        ...
        multitask_mnist.training.run_lock.OutputDirLockedError: runs/a is in use
    """


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def _read(path: Path) -> dict[str, object] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _remove_if_ours(path: Path, token: str) -> None:
    holder = _read(path)
    if holder is not None and holder.get("token") == token:
        path.unlink(missing_ok=True)


class RunLock:
    """Holds ``folder/.lock`` for this process, from :meth:`acquire` to :meth:`release`.

    The file records the holder's process id, host and a token. A lock whose
    process is gone (a run killed with ``kill -9``, a machine rebooted) is stale:
    the next run takes it over, so ``--resume`` after a crash is never blocked. A
    lock held by this same process (an earlier Trainer in a notebook) is taken over
    too. A lock held by another live process on this host, or by any process on
    another host, is refused.

    Args:
        folder: The output folder.

    Example:
        >>> import tempfile
        >>> lock = RunLock(Path(tempfile.mkdtemp()))
        >>> lock.acquire(); (lock.folder / LOCK_FILE).exists()
        True
        >>> lock.release(); (lock.folder / LOCK_FILE).exists()
        False
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.token = uuid.uuid4().hex
        self.held = False

    @property
    def path(self) -> Path:
        return self.folder / LOCK_FILE

    def acquire(self) -> None:
        """Take the lock, or raise naming the folder and the run that holds it.

        Raises:
            OutputDirLockedError: A live run elsewhere holds the folder.
        """
        record = {"pid": os.getpid(), "host": socket.gethostname(), "token": self.token}
        for _ in range(2):
            try:
                with self.path.open("x") as f:
                    json.dump(record, f)
                self.held = True
                # Released when this lock is collected or the interpreter exits.
                self._finalizer = weakref.finalize(self, _remove_if_ours, self.path, self.token)
                return
            except FileExistsError:
                holder = self._holder()
                if holder is not None and self._live_elsewhere(holder):
                    raise OutputDirLockedError(
                        f"The output folder {self.folder} is in use by another run (process "
                        f"{holder.get('pid')} on {holder.get('host')}); wait for it to end or "
                        f"choose another output folder (if that run is gone, delete {self.path})"
                    ) from None
                self.path.unlink(missing_ok=True)  # stale or our own: take it over
        raise OutputDirLockedError(f"Could not lock the output folder {self.folder}")

    def release(self) -> None:
        """Remove the lock file if this lock still holds it."""
        if self.held:
            self._finalizer()
            self.held = False

    def _holder(self) -> dict[str, object] | None:
        return _read(self.path)

    @staticmethod
    def _live_elsewhere(holder: dict[str, object]) -> bool:
        pid = holder.get("pid")
        if holder.get("host") != socket.gethostname():
            return True  # another machine's process: cannot tell, so do not break it
        return isinstance(pid, int) and pid != os.getpid() and _alive(pid)
