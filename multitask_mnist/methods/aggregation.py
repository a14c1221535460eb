"""Gradient aggregation methods by name, each one of TorchJD's aggregators."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from multitask_mnist._extras import MissingExtraError
from multitask_mnist._validation import check_choice, check_int
from multitask_mnist.errors import InvalidTypeError

__all__ = ["METHODS", "SOLVER_METHODS", "MissingExtraError", "make_aggregator"]

#: The gradient methods by name; ``"none"`` is one backward of the weighted loss.
METHODS: tuple[str, ...] = (
    "none",
    "upgrad",
    "pcgrad",
    "mgda",
    "cagrad",
    "imtl_g",
    "aligned_mtl",
    "dualproj",
    "graddrop",
    "nash_mtl",
)

#: The methods whose solvers need packages of the ``solvers`` extra
#: (``pip install multitask-mnist[solvers]``).
SOLVER_METHODS: tuple[str, ...] = ("upgrad", "dualproj", "cagrad", "nash_mtl")


def _factories() -> dict[str, Callable[[int], Any]]:
    from torchjd import aggregation as jd

    return {
        "upgrad": lambda k: jd.UPGrad(),
        "pcgrad": lambda k: jd.PCGrad(),
        "mgda": lambda k: jd.MGDA(),
        "cagrad": lambda k: jd.CAGrad(c=0.4),  # the CAGrad paper's c for multi-task learning
        "imtl_g": lambda k: jd.IMTLG(),
        "aligned_mtl": lambda k: jd.AlignedMTL(),
        "dualproj": lambda k: jd.DualProj(),
        "graddrop": lambda k: jd.GradDrop(),
        "nash_mtl": lambda k: jd.NashMTL(n_tasks=k),
    }


def make_aggregator(method: Any, num_tasks: int) -> Any:
    """The TorchJD aggregator of a method, or ``None`` for ``"none"``.

    Args:
        method: A name in :data:`METHODS`, or a ``torchjd.aggregation.Aggregator``
            instance, used as it is.
        num_tasks: The number of tasks (the Jacobian's rows).

    Returns:
        The aggregator, or ``None``.

    Raises:
        ValueError: An unknown name (the message lists the known ones).
        TypeError: Neither a name nor an ``Aggregator``.
        MissingExtraError: The method's solver is not installed; the message names the
            extra that provides it.

    Example:
        >>> make_aggregator("pcgrad", 2)
        PCGrad()
        >>> make_aggregator("none", 2) is None
        True
    """
    if not isinstance(method, str):  # torchjd is imported only for a method
        from torchjd.aggregation import Aggregator

        if isinstance(method, Aggregator):
            return method
        raise InvalidTypeError(
            f"Expected `method` to be one of {', '.join(map(repr, METHODS))} or a "
            f"torchjd.aggregation.Aggregator, got {type(method).__name__}"
        )
    check_choice("method", method, METHODS)
    check_int("num_tasks", num_tasks, minimum=1)
    if method == "none":
        return None
    try:
        return _factories()[method](num_tasks)
    except ImportError as error:
        raise MissingExtraError(
            f"Method {method!r} needs a solver that is not installed ({error}); install it "
            "with: pip install 'multitask-mnist[solvers]'"
        ) from error
