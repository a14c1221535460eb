"""Device, precision and seeding choices the Trainer makes on the user's behalf."""

from __future__ import annotations

import contextlib
import functools
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

from multitask_mnist import distributed
from multitask_mnist._validation import check_choice
from multitask_mnist.errors import InvalidValueError
from multitask_mnist.training import allocator

if TYPE_CHECKING:
    from multitask_mnist.training.config import TrainerConfig

__all__ = [
    "PRECISIONS",
    "Autocast",
    "Runtime",
    "autocast",
    "cpu_supports_bf16",
    "get_rng_state",
    "resolve_device",
    "resolve_precision",
    "resolve_runtime",
    "seed_everything",
    "set_rng_state",
]

#: The accepted ``precision`` values.
PRECISIONS = ("auto", "bf16", "fp32")
#: A run's precision context: called anew for each forward pass.
Autocast = Callable[[], contextlib.AbstractContextManager[Any]]


@functools.cache
def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bfloat16 arithmetic (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in ("avx512_bf16", "amx_bf16"))


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` picks CUDA, then MPS, then the CPU; anything else is passed to torch.

    Raises:
        ValueError: An unknown device string, or a device that is not available.
    """
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InvalidValueError(
            f"Expected argument `device` to be 'auto' or a torch device, got {device!r}"
        ) from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvalidValueError(f"Argument `device` is {device!r} but CUDA is not available")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidValueError(f"Argument `device` is {device!r} but MPS is not available")
    return resolved


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``, or ``None`` for float32.

    ``"auto"`` chooses bfloat16 on CUDA devices that support it and on CPUs with
    native bfloat16 arithmetic, float32 elsewhere.
    """
    check_choice("precision", precision, PRECISIONS)
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        return torch.bfloat16 if cpu_supports_bf16() else None
    return None


def autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[Any]:
    """Autocast to ``dtype`` on ``device``, or a no-op for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    """Seed Python's and torch's global generators (all CUDA devices included).

    Args:
        seed: Any int.

    Example:
        >>> seed_everything(0); a = torch.rand(1)
        >>> seed_everything(0); bool(torch.rand(1) == a)
        True
    """
    random.seed(seed)
    torch.manual_seed(seed)


def get_rng_state() -> dict[str, Any]:
    """Every global RNG state the library touches, as checkpointable plain data."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned (its tensors may have been loaded onto
    another device: generator states are set from CPU byte tensors)."""
    torch.set_rng_state(state["torch"].cpu())
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


class Runtime(NamedTuple):
    """What a run's settings resolve to on this machine."""

    #: Where the model and the batches are (``"auto"`` resolved; under torchrun, the
    #: process group joined).
    device: torch.device
    #: The autocast dtype, or ``None`` for float32.
    autocast_dtype: torch.dtype | None
    #: A fresh precision context for each forward pass.
    autocast: Autocast
    #: Images and convolution weights in channels-last order.
    channels_last: bool
    #: Freed buffers kept for the next step (glibc's malloc thresholds set).
    keep_freed_memory: bool


def resolve_runtime(settings: TrainerConfig) -> Runtime:
    """Resolve ``settings``' device, precision, memory order and allocator choice.

    Raises:
        ValueError: A device that does not exist or is not available.
    """
    device = distributed.setup(resolve_device(settings.device))
    dtype = resolve_precision(settings.precision, device)
    channels_last = settings.channels_last
    return Runtime(
        device,
        dtype,
        functools.partial(autocast, device, dtype),
        device.type in ("cpu", "cuda") if channels_last is None else channels_last,
        settings.keep_freed_memory and allocator.keep_freed_memory(),
    )
