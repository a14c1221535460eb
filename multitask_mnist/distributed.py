"""Training on many processes through PyTorch's own engine (``torchrun`` + DDP).

Under ``torchrun --nproc_per_node=N``, the Trainer joins the process group that
torchrun describes in the environment (gloo on the CPU, NCCL on CUDA), wraps the
model in :class:`~torch.nn.parallel.DistributedDataParallel`, shards every epoch
with a :class:`~torch.utils.data.DistributedSampler`, reduces metrics across
processes so every rank reports the same numbers, and lets rank 0 alone print and
write files. Outside torchrun nothing here does anything.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import os
from collections.abc import Sequence

import torch
import torch.distributed as dist

__all__ = [
    "all_gather_object",
    "barrier",
    "broadcast_module",
    "cleanup",
    "is_main_process",
    "rank",
    "setup",
    "world_size",
    "wrap",
]


def _launched() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> torch.device:
    """Join torchrun's process group if launched by it; return this process's device.

    Args:
        device: The device the Trainer resolved; under torchrun on CUDA each process
            takes ``cuda:LOCAL_RANK``.

    Returns:
        The device this process trains on.

    Example:
        >>> setup(torch.device("cpu"))  # not under torchrun: nothing to join
        device(type='cpu')
    """
    if not _launched() or not dist.is_available():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # torch.distributed.nn.functional binds ``group.WORLD`` as a default argument when
        # it is first imported, and DDP imports it: imported after the group exists, it
        # would hold the group for the life of the interpreter, and gloo's worker threads
        # with it. A worker that frees a finished collective's tensors during interpreter
        # shutdown needs the GIL, cannot have it, and the process aborts ("terminate called
        # without an active exception"). Imported first, it binds None.
        importlib.import_module("torch.distributed.nn.functional")
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(cleanup)  # a script that never calls cleanup() leaves the group too
    return device


def wrap(
    module: torch.nn.Module, device: torch.device, *, find_unused_parameters: bool = False
) -> torch.nn.Module:
    """Wrap ``module`` in DistributedDataParallel under torchrun; return it as is otherwise.

    Args:
        module: What trains, e.g. a :class:`~multitask_mnist.training.TrainingTask`.
        device: The device :func:`setup` returned.
        find_unused_parameters: Some parameters may get no gradient in a step (a task
            weighted zero); DDP then looks for them every step, which costs time.

    Returns:
        The module to run training steps through; DDP averages every gradient of it.

    Example:
        >>> layer = torch.nn.Linear(2, 1)
        >>> wrap(layer, torch.device("cpu")) is layer
        True
    """
    if world_size() == 1:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(
        module, device_ids=ids, find_unused_parameters=find_unused_parameters
    )


def broadcast_module(module: torch.nn.Module, *, parameters: bool = True) -> None:
    """Copy rank 0's parameters and buffers to every process (what DDP does when it wraps,
    and, for the buffers such as batch-norm statistics, before every forward).

    For training that reduces its own gradients (a gradient method) instead of DDP's.

    Args:
        module: The module to align across processes; nothing happens in one process.
        parameters: Copy the parameters too, not only the buffers.

    Example:
        >>> broadcast_module(torch.nn.Linear(2, 1))  # one process: nothing to do
    """
    if world_size() == 1:
        return
    with torch.no_grad():
        for tensor in [*(module.parameters() if parameters else ()), *module.buffers()]:
            torch.distributed.broadcast(tensor, src=0)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank, 0 outside torchrun.

    Returns:
        The global rank.

    Example:
        >>> rank()
        0
    """
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """The number of processes, 1 outside torchrun.

    Returns:
        The world size.

    Example:
        >>> world_size()
        1
    """
    return dist.get_world_size() if is_initialized() else 1


def is_main_process() -> bool:
    """Whether this process prints and writes files (rank 0).

    Returns:
        True on rank 0 and outside torchrun.

    Example:
        >>> is_main_process()
        True
    """
    return rank() == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes in place (a no-op on one process)."""
    if is_initialized():
        dist.all_reduce(tensor)
    return tensor


def all_reduce_mean(tensors: Sequence[torch.Tensor]) -> None:
    """Average ``tensors`` over all processes in place, in one all-reduce of their
    concatenation (a no-op on one process)."""
    world = world_size()
    if world == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    all_reduce_sum(flat)
    flat /= world
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """Take the maximum of ``tensor`` over all processes in place (a no-op on one process)."""
    if is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def all_gather_object(obj: object) -> list[object]:
    """Every process's ``obj``, in rank order (``[obj]`` on one process).

    Args:
        obj: Any picklable object; it travels between this run's own processes only.

    Returns:
        One object per process.

    Example:
        >>> all_gather_object({"step": 3})
        [{'step': 3}]
    """
    if not is_initialized():
        return [obj]
    gathered: list[object] = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    """Wait for every process (a no-op on one process).

    Example:
        >>> barrier()
    """
    if is_initialized():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group, if this process joined one, and stop its threads.

    Wrappers no longer referenced (a DDP model in a reference cycle) are collected
    first, so that nothing but the group's registry holds it: destroying the group then
    joins the backend's worker threads while the interpreter is fully alive. Called at
    exit too, when :func:`setup` joined a group; a second call does nothing.

    Example:
        >>> cleanup()
    """
    if is_initialized():
        gc.collect()
        dist.destroy_process_group()
