"""Keep freed memory in the process: glibc's malloc thresholds, set at run time.

A training step allocates and frees the same large activation and gradient buffers
every step. With glibc's defaults, a freed block above the mmap threshold goes back
to the kernel at once, and one at the top of the heap once it exceeds the trim
threshold; the next step faults the pages back in, which costs system time in every
step. :func:`keep_freed_memory` raises both thresholds through ``mallopt`` so that
those buffers stay mapped and are reused. The Trainer calls it unless told not to
(``Trainer(keep_freed_memory=False)`` or ``MULTITASK_MNIST_MALLOC=default``); on
other C libraries it does nothing.

The kept memory serves the step loop only. When ``fit``, ``evaluate`` or ``test``
returns, the Trainer gives it back with :func:`release_freed_memory` (glibc's
``malloc_trim``), so a process that goes on to other work, or exits, holds no more
than it uses.
"""

from __future__ import annotations

import ctypes
import functools
import os
import resource
import sys

__all__ = ["MALLOC_ENV_VAR", "keep_freed_memory", "page_faults", "release_freed_memory"]

#: Set to ``default`` to leave malloc's thresholds as the C library sets them.
MALLOC_ENV_VAR = "MULTITASK_MNIST_MALLOC"
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc's largest mmap threshold on 64-bit systems (``DEFAULT_MMAP_THRESHOLD_MAX``),
#: above the largest per-step buffer of a batch of 256 MNIST images.
_MMAP_THRESHOLD = 32 * 1024 * 1024
#: Trim the heap's top only past 1 GiB free.
_TRIM_THRESHOLD = 1 << 30


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library if it is glibc (musl has ``mallopt`` only as a stub)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)  # the symbols already loaded: no ldconfig child process
    if not all(hasattr(libc, name) for name in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return libc


@functools.cache
def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds so freed buffers are reused, not unmapped.

    Applied once per process; later calls return the first result. Set
    ``MULTITASK_MNIST_MALLOC=default`` to opt out for the whole process.

    Returns:
        Whether the thresholds were set (``False`` off glibc, or when opted out).

    Example:
        >>> isinstance(keep_freed_memory(), bool)
        True
    """
    if os.environ.get(MALLOC_ENV_VAR, "").lower() == "default":
        return False
    libc = _glibc()
    if libc is None:
        return False
    mapped = bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))
    trimmed = bool(libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return mapped and trimmed


def release_freed_memory() -> bool:
    """Give the freed memory that malloc keeps back to the kernel (glibc's ``malloc_trim``).

    The thresholds of :func:`keep_freed_memory` stay as they are: the next step loop
    keeps its buffers again after faulting them in once.

    Returns:
        Whether any memory was returned (``False`` off glibc or when none was free).

    Example:
        >>> isinstance(release_freed_memory(), bool)
        True
    """
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))


def page_faults() -> tuple[int, float, float]:
    """This process's minor page faults, user and system CPU seconds so far.

    Returns:
        ``(minor page faults, user seconds, system seconds)`` from ``getrusage``.

    Example:
        >>> faults, user, system = page_faults()
        >>> faults > 0 and user > 0
        True
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt, usage.ru_utime, usage.ru_stime
