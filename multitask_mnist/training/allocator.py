"""Keep freed memory in the process: glibc's malloc thresholds, set at run time.

A training step allocates and frees the same large activation and gradient buffers
every step. With glibc's defaults, a freed block above the mmap threshold goes back
to the kernel at once, and one at the top of the heap once it exceeds the trim
threshold; the next step faults the pages back in, which costs system time in every
step. :func:`keep_freed_memory` raises both thresholds through ``mallopt`` so that
those buffers stay mapped and are reused. The Trainer calls it unless told not to
(``Trainer(keep_freed_memory=False)`` or ``MULTITASK_MNIST_MALLOC=default``); on
other C libraries it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import resource
import sys

__all__ = ["MALLOC_ENV_VAR", "keep_freed_memory", "page_faults"]

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
def _mallopt() -> ctypes._CFuncPtr | None:  # type: ignore[name-defined]
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        function = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018  (glibc only: musl has mallopt as a stub)
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


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
    mallopt = _mallopt()
    if mallopt is None:
        return False
    mapped = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))
    trimmed = bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return mapped and trimmed


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
