"""Checkpoints: written atomically, read with ``weights_only=True`` only."""

from __future__ import annotations

import os
import pickle
import re
import uuid
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint"]


class CheckpointError(RuntimeError):
    """A checkpoint could not be written, or read back as a checkpoint of this library.

    Example:
        >>> load_checkpoint(__file__)
        Traceback (most recent call last):
        ...
        multitask_mnist.training.checkpoint.CheckpointError: ... (not a torch.save archive)
    """


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` to ``path`` atomically.

    The state goes to a temporary file in the same folder, is flushed to disk,
    then renamed over ``path``: a crash or a full disk at any moment leaves
    either the old checkpoint or the new one, never a partial file.

    Args:
        state: Tensors, numbers, strings and containers of them.
        path: Destination, usually ``*.pt``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        CheckpointError: The file could not be written; ``path`` is untouched.

    Example:
        >>> import tempfile, torch
        >>> folder = tempfile.mkdtemp()
        >>> path = save_checkpoint({"model": {"w": torch.ones(2)}}, f"{folder}/last.pt")
        >>> load_checkpoint(path)["model"]["w"]
        tensor([1., 1.])
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with tmp.open("xb") as f:  # created with the umask's permissions, like `path` would be
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as error:
        tmp.unlink(missing_ok=True)
        raise CheckpointError(
            f"Could not write checkpoint {path}: {error}; the previous file, if any, is intact"
        ) from error
    return path


def load_checkpoint(
    path: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(..., weights_only=True)``.

    Only tensors, numbers, strings and containers are accepted; a file that
    carries any other pickled object is refused without running it.

    Args:
        path: The checkpoint.
        map_location: Where to put its tensors.

    Returns:
        The saved state.

    Raises:
        FileNotFoundError: No file at ``path``.
        CheckpointError: The file is not a checkpoint, or carries objects that
            ``weights_only`` loading refuses.

    Example:
        >>> load_checkpoint("no/such/file.pt")
        Traceback (most recent call last):
        ...
        FileNotFoundError: Checkpoint not found: no/such/file.pt
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not a readable checkpoint (not a torch.save archive)")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"(?i)unsupported(?: global:)? GLOBAL ([\w.]+)", str(error))
        detail = f" (it asks for {found.group(1)})" if found else ""
        raise CheckpointError(
            f"Refused to load {path}: it carries pickled objects beyond tensors and plain "
            f"data{detail}, which could run code; weights-only loading does not run them"
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        raise CheckpointError(f"{path} is not a readable checkpoint: {error}") from error
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a multitask_mnist checkpoint (no 'model' entry)")
    return state
