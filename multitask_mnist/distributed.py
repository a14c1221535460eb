"""Training on many processes through PyTorch's own engine (``torchrun`` + DDP).

Under ``torchrun --nproc_per_node=N``, the Trainer joins the process group that
torchrun describes in the environment (gloo on the CPU, NCCL on CUDA), starts every
process from rank 0's weights, shards every epoch with a
:class:`~torch.utils.data.DistributedSampler`, has each method average what its step
needs (:func:`average_gradients` after a backward pass, a Jacobian before it is
aggregated, a statistic), reduces metrics across processes so every rank reports the
same numbers, and lets rank 0 alone print and write files. Outside torchrun nothing
here does anything.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import logging
import os
import signal
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist

from multitask_mnist.errors import InvalidValueError

__all__ = [
    "PROCESSES_ENV_VAR",
    "all_gather_object",
    "all_reduce_max",
    "all_reduce_mean",
    "all_reduce_sum",
    "average_gradients",
    "barrier",
    "broadcast_module",
    "cleanup",
    "is_main_process",
    "launch",
    "parse_processes",
    "rank",
    "setup",
    "world_size",
]


#: The number of processes :func:`launch` starts when a program is given no
#: ``--processes`` (``1`` if unset).
PROCESSES_ENV_VAR = "MULTITASK_MNIST_PROCESSES"


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
    """Sum ``tensor`` over all processes in place (a no-op on one process).

    Args:
        tensor: The same shape on every process.

    Returns:
        ``tensor``, summed.

    Example:
        >>> all_reduce_sum(torch.ones(2))
        tensor([1., 1.])
    """
    if is_initialized():
        dist.all_reduce(tensor)
    return tensor


def all_reduce_mean(tensors: Sequence[torch.Tensor]) -> None:
    """Average ``tensors`` over all processes in place, in one all-reduce of their
    concatenation (a no-op on one process).

    Args:
        tensors: The same shapes on every process.

    Example:
        >>> values = [torch.ones(2)]; all_reduce_mean(values); values
        [tensor([1., 1.])]
    """
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


def average_gradients(parameters: Sequence[torch.Tensor]) -> None:
    """Average the parameters' gradients over all processes, in one all-reduce.

    What DDP does after a backward pass, done by a method where its step needs it
    (:meth:`multitask_mnist.methods.Method.backward`). A parameter without a gradient
    on some processes counts as zero there; one without a gradient on every process
    keeps none. A no-op on one process.

    Args:
        parameters: The trainable parameters, in the same order on every process.

    Example:
        >>> w = torch.nn.Parameter(torch.ones(2)); w.grad = torch.full((2,), 3.0)
        >>> average_gradients([w]); w.grad  # one process: as it was
        tensor([3., 3.])
    """
    world = world_size()
    if world == 1 or not parameters:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    present = torch.tensor([float(p.grad is not None) for p in parameters], device=grads[0].device)
    flat = torch.cat([*(g.reshape(-1).float() for g in grads), present])
    all_reduce_sum(flat)
    offset = 0
    for parameter, grad in zip(parameters, grads, strict=True):
        size = grad.numel()
        average = (flat[offset : offset + size] / world).view_as(grad).to(grad.dtype)
        offset += size
        if parameter.grad is None:
            parameter.grad = average
        else:
            parameter.grad.copy_(average)
    for parameter, anywhere in zip(parameters, flat[offset:].tolist(), strict=True):
        if not anywhere:
            parameter.grad = None


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """Take the maximum of ``tensor`` over all processes in place (a no-op on one process).

    Args:
        tensor: The same shape on every process.

    Returns:
        ``tensor``, the elementwise maximum.

    Example:
        >>> all_reduce_max(torch.tensor([3, 1]))
        tensor([3, 1])
    """
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


def _usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parse_processes(value: str | int) -> int:
    """The number of processes that ``value`` asks for: a positive integer, or ``"auto"``
    for one per usable core.

    Args:
        value: What ``--processes`` (or :data:`PROCESSES_ENV_VAR`) says.

    Returns:
        The number of processes, at least 1.

    Raises:
        InvalidValueError: Neither a positive integer nor ``"auto"``.

    Example:
        >>> parse_processes("2"), parse_processes(1)
        (2, 1)
        >>> parse_processes("auto") >= 1
        True
    """
    if isinstance(value, str) and value.strip().lower() == "auto":
        return _usable_cores()
    try:
        processes = int(value)
    except (TypeError, ValueError):
        processes = 0
    if processes < 1 or isinstance(value, bool | float):
        raise InvalidValueError(
            f"Expected `processes` to be a positive integer or 'auto', got {value!r}"
        )
    return processes


#: The signals PyTorch's launcher takes over while it runs, and passes on to the processes.
_LAUNCHER_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")
    if hasattr(signal, name)
)


def _launcher_loggers() -> list[logging.Logger]:
    """The ``torch.distributed`` loggers (the launcher's), as far as they exist yet."""
    names = list(logging.root.manager.loggerDict)
    return [logging.getLogger(name) for name in names if name.startswith("torch.distributed")]


@contextlib.contextmanager
def _as_before(variables: Sequence[str]) -> Iterator[None]:
    """Give back, on the way out, the environment ``variables``, the signal handlers and
    the levels of the ``torch.distributed`` loggers that the launcher changes."""
    environment = {name: os.environ.get(name) for name in variables}
    handlers = {signum: signal.getsignal(signum) for signum in _LAUNCHER_SIGNALS}
    loggers = _launcher_loggers()
    levels = [log.level for log in loggers]
    try:
        yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def launch(
    program: Sequence[str], argv: Sequence[str], processes: int, *, verbose: bool = False
) -> int:
    """Run ``program argv`` as ``processes`` processes of this machine, data-parallel,
    through PyTorch's own launcher (what ``torchrun --standalone`` runs), and wait.

    Each process gets an equal share of the usable cores as its threads
    (``OMP_NUM_THREADS``, unless it is set already; one thread per process with one
    process per core), trains its shard of every epoch with ``batch_size`` samples a
    step, as under torchrun, and rank 0 alone prints and writes. A signal to this
    process (SIGTERM, Ctrl-C) goes on to every process, so the Trainer saves a
    resumable checkpoint as it does on one process; the launcher gives each process 30
    seconds to stop, and a second signal ends the launcher at once while the processes
    finish their save. This process's environment, signal handlers and loggers are as
    before when it returns.

    Args:
        program: How to start the program: a script's path, or ``["-m", "package"]``.
        argv: Its arguments.
        processes: How many processes; at least 2.
        verbose: Show the launcher's own log (each failure and signal it handles);
            off, each process's one line is all that is said.

    Returns:
        0 when every process succeeded, else the first failed process's exit
        status, or ``128 + signal`` when a signal stopped them. When the first to fail
        was not rank 0 (which alone prints), a warning on the ``multitask_mnist``
        logger names it.

    Example:
        >>> import sys
        >>> launch([sys.executable], ["-c", "pass"], 1)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        multitask_mnist.errors.InvalidValueError: Expected `processes` to be >= 2 ...
    """
    if processes < 2:
        raise InvalidValueError(f"Expected `processes` to be >= 2 for a launch, got {processes}")
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args
    from torch.distributed.run import run as run_processes

    with _as_before(["OMP_NUM_THREADS", "TORCHELASTIC_SIGNALS_TO_HANDLE"]):
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, _usable_cores() // processes)))
        for log in () if verbose else _launcher_loggers():  # its exceptions still speak
            log.setLevel(logging.CRITICAL)
        try:
            torchrun = ["--standalone", f"--nproc-per-node={processes}", *program, *argv]
            run_processes(parse_args(torchrun))  # type: ignore[no-untyped-call]
        except ChildFailedError as failed:  # each process has said why: no report on top
            rank, first = failed.get_first_failure()
            status = first.exitcode if first.exitcode >= 0 else 128 - first.exitcode
            if rank != 0:
                logging.getLogger("multitask_mnist").warning(
                    "process %d of %d failed first, with exit status %d; --debug (or "
                    "MULTITASK_MNIST_DEBUG=1) shows every process's error",
                    rank,
                    processes,
                    status,
                )
            return status
        except SignalException as stopped:  # passed on: each process saved and said so
            return 128 + int(stopped.sigval)
    return 0
