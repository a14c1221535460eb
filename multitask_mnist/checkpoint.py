"""Checkpoints: the typed state a run saves, written atomically, read with
``weights_only=True`` only, its format version checked on every load."""

from __future__ import annotations

import json
import os
import pickle
import re
import uuid
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO, TypedDict

import torch
from torch import Tensor, nn

from multitask_mnist._extras import require
from multitask_mnist.errors import MultitaskMnistError
from multitask_mnist.models.net import PresetRecord

__all__ = [
    "CHECKPOINT_FORMAT",
    "SAFETENSORS_FORMAT",
    "CheckpointError",
    "PresetRecord",
    "TrainingState",
    "load_checkpoint",
    "load_model_state",
    "prepare_output_dir",
    "read_safetensors",
    "save_checkpoint",
    "sweep_temporary_files",
    "write_text_atomic",
]

_TMP_SUFFIX = ".tmp"

#: The format this version writes. Formats 1 (no callbacks, no mid-epoch position), 2
#: (metric sums of the fixed digit/sum pair) and 3 (a loss strategy's state under
#: ``loss``) still load for their weights and preset; only format 4 (every method's
#: state under ``method``) can be resumed from.
CHECKPOINT_FORMAT = 4
_READABLE_FORMATS = (1, 2, 3, 4)

#: The ``format`` that :func:`multitask_mnist.export.save_safetensors` writes in the
#: metadata of a ``.safetensors`` file, beside the preset's name and arguments.
SAFETENSORS_FORMAT = "multitask_mnist.weights/1"


class TrainingState(TypedDict):
    """Everything a checkpoint holds: plain data and tensors only.

    The model, the optimizer and the rest are saved as their own ``state_dict()``;
    ``epoch`` and ``step`` say where the run stands: ``step`` batches into the epoch
    after ``epoch`` (0 at an epoch's end, more when a signal stopped the run).

    Example:
        >>> sorted(TrainingState.__required_keys__)[:4]
        ['callbacks', 'config', 'epoch', 'epoch_state']
    """

    format: int  # CHECKPOINT_FORMAT of the writer
    epoch: int  # epochs completed
    step: int  # batches of the next epoch already trained
    stop_reason: str | None  # why a callback stopped the run early, if one did
    model: dict[str, Any]  # MultiTaskNet.state_dict()
    loss: dict[str, Any]  # WeightedMultiLoss.state_dict()
    method: dict[str, Any]  # the method's state_dict(): learned weights, running state
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: list[dict[str, Any]]  # every global RNG state the run draws from, per process
    callbacks: dict[str, dict[str, Any]]  # each callback's state_dict(), by name
    history: list[dict[str, float]]  # History.epochs
    # The epoch in progress, when a signal stopped it: its first metrics, its steps, the
    # time spent, and each process's own sums (metric totals, the method's running state,
    # the gradient diagnostics).
    epoch_state: dict[str, Any]
    train_time_s: float
    config: dict[str, Any]  # the Trainer's configuration, for the record
    preset: PresetRecord | None  # how to rebuild the model, if a preset built it


class CheckpointError(MultitaskMnistError, RuntimeError):
    """A checkpoint could not be written, or read back as a checkpoint of this library.

    Example:
        >>> load_checkpoint(__file__)
        Traceback (most recent call last):
        ...
        multitask_mnist.checkpoint.CheckpointError: ... (not a torch.save archive)
    """


def _write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through ``write`` to a temporary file beside ``path``, flush it, rename it over."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{_TMP_SUFFIX}")
    try:
        with tmp.open("xb") as f:  # created with the umask's permissions, like `path` would be
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as error:  # a full disk, say: name the file, not the temporary one
        tmp.unlink(missing_ok=True)
        raise type(error)(error.errno, error.strerror or str(error), str(path)) from error
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically: readers see the old file or the new one.

    Args:
        path: The file to write.
        text: Its new content, written as UTF-8.

    Raises:
        OSError: The file could not be written (its message names ``path``); ``path``
            is untouched.

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "metrics.json"
        >>> write_text_atomic(path, "{}")
        >>> path.read_text()
        '{}'
    """
    _write_atomic(path, lambda f: f.write(text.encode()))


def save_checkpoint(state: TrainingState | dict[str, Any], path: str | os.PathLike[str]) -> Path:
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
        >>> state = {"format": CHECKPOINT_FORMAT, "model": {"w": torch.ones(2)}}
        >>> path = save_checkpoint(state, f"{folder}/last.pt")
        >>> load_checkpoint(path)["model"]["w"]
        tensor([1., 1.])
    """
    path = Path(path)
    try:
        _write_atomic(path, lambda f: torch.save(state, f))
    except (OSError, RuntimeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise CheckpointError(
            f"Could not write checkpoint {path}: {reason}; the previous file, if any, is intact"
        ) from error
    return path


def prepare_output_dir(folder: str | os.PathLike[str], *, sweep: bool = True) -> Path:
    """Create ``folder`` if needed, check that files can be written there, and sweep the
    temporary files an interrupted write left behind.

    Args:
        folder: A run's output folder.
        sweep: Remove the temporary files of interrupted writes; the Trainer first
            locks the folder, so that it never sweeps a live run's files.

    Returns:
        ``folder`` as a :class:`~pathlib.Path`.

    Raises:
        CheckpointError: The folder cannot be created or written to.

    Example:
        >>> import tempfile
        >>> prepare_output_dir(Path(tempfile.mkdtemp()) / "runs" / "a").is_dir()
        True
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / ".write-test", "")
        (folder / ".write-test").unlink()
    except OSError as error:
        raise CheckpointError(
            f"Cannot write to the output folder {folder}: {error.strerror or error}"
        ) from error
    if sweep:
        sweep_temporary_files(folder)
    return folder


def sweep_temporary_files(folder: Path) -> None:
    """Remove the temporary files that interrupted atomic writes left in ``folder``."""
    for stale in folder.glob(f".*{_TMP_SUFFIX}"):
        stale.unlink(missing_ok=True)


def load_model_state(model: nn.Module, state: Mapping[str, Tensor], *, source: object) -> None:
    """Load ``state`` into ``model``; a mismatch names the layers that differ.

    Args:
        model: The network to fill.
        state: A state dict, e.g. ``load_checkpoint(path)["model"]``.
        source: Where ``state`` came from, for the message (a path, a preset name).

    Raises:
        CheckpointError: Missing, unexpected or differently shaped entries, listed by layer.

    Example:
        >>> from torch import nn
        >>> load_model_state(nn.Linear(2, 3), nn.Linear(2, 4).state_dict(), source="demo")
        Traceback (most recent call last):
        ...
        multitask_mnist.checkpoint.CheckpointError: demo does not fit this network: ...
    """
    own = model.state_dict()
    missing = sorted({_layer(k) for k in own.keys() - state.keys()})
    unexpected = sorted({_layer(k) for k in state.keys() - own.keys()})
    reshaped = [
        f"{key} {tuple(own[key].shape)} here, {tuple(state[key].shape)} there"
        for key in own
        if key in state and own[key].shape != state[key].shape
    ]
    problems = [
        f"{what}: {', '.join(items)}"
        for what, items in (
            ("layers missing from it", missing),
            ("layers this network lacks", unexpected),
            ("layers with other shapes", reshaped),
        )
        if items
    ]
    if problems:
        raise CheckpointError(f"{source} does not fit this network: {'; '.join(problems)}")
    model.load_state_dict(state)


def _layer(key: str) -> str:
    return key.rpartition(".")[0] or key


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
        CheckpointError: The file is not a checkpoint, carries objects that
            ``weights_only`` loading refuses, or has a format this version does not read.

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
    version = state.get("format")
    if version is None:
        raise CheckpointError(
            f"{path} is not a multitask_mnist checkpoint (no 'format' entry; the Trainer "
            "writes one in every checkpoint)"
        )
    if version not in _READABLE_FORMATS:
        raise CheckpointError(
            f"{path} has checkpoint format {version!r}; this version of multitask_mnist reads "
            f"formats {', '.join(map(str, _READABLE_FORMATS))} (was it written by a newer one?)"
        )
    return state


def read_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], PresetRecord]:
    """Read a ``.safetensors`` file written by :func:`multitask_mnist.export.save_safetensors`:
    its tensors and the record of the preset that built them.

    Safetensors holds tensors and a string-to-string metadata map, nothing that runs.
    The record is returned as read; :func:`multitask_mnist.presets.from_record` checks it
    before anything is built.

    Args:
        path: The file.

    Returns:
        The tensors by name, on the CPU, and the preset record (``name``, ``kwargs``).

    Raises:
        FileNotFoundError: No file at ``path``.
        MissingExtraError: ``safetensors`` is not installed (the ``export`` extra).
        CheckpointError: Not a safetensors file, silent about its preset, of another
            weights format, or with unreadable preset arguments.

    Example:
        >>> read_safetensors("missing.safetensors")
        Traceback (most recent call last):
        ...
        FileNotFoundError: Weights not found: missing.safetensors
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Weights not found: {path}")
    safetensors = require("safetensors", "export", "Reading safetensors")
    try:
        with safetensors.safe_open(str(path), framework="pt", device="cpu") as file:
            metadata = file.metadata() or {}
            state = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118
    except (safetensors.SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable safetensors file: {error}") from error
    if "preset" not in metadata:
        raise CheckpointError(
            f"{path} does not say which preset built its network (its metadata has no "
            "'preset'); build the network yourself and load the tensors with "
            "safetensors.torch.load_file"
        )
    found = metadata.get("format")
    if found != SAFETENSORS_FORMAT:
        what = "no weights format" if found is None else f"weights format {found!r}"
        raise CheckpointError(
            f"{path} names preset {metadata['preset']!r} but has {what} in its metadata; "
            f"this version reads format {SAFETENSORS_FORMAT!r}, as "
            "multitask_mnist.export.save_safetensors writes it"
        )
    try:
        kwargs = json.loads(metadata.get("preset_kwargs", "{}"))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} has unreadable preset arguments: {error}") from error
    return state, PresetRecord(name=metadata["preset"], kwargs=kwargs)
