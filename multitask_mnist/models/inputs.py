"""A model's named input: its shape, its kind, its bounds, and the check of a batch of it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from multitask_mnist._validation import check_int
from multitask_mnist.errors import InvalidTypeError, InvalidValueError

__all__ = ["Input"]


@dataclass(frozen=True)
class Input:
    """One named input of a :class:`MultiTaskNet`, checked at the model's boundary.

    Args:
        name: The input's name: its key in the model's input mapping and in a batch.
        shape: The shape of one sample, without the batch dimension: ``(1, 28, 28)``
            for an MNIST image, ``()`` for a scalar, ``(3,)`` for a vector.
        integer: Whether the values must be whole numbers (in an integer or a float
            tensor); otherwise a floating-point tensor is required.
        low: The smallest value allowed, or ``None``.
        high: The largest value allowed, or ``None``.

    Raises:
        ValueError: An empty name, a negative dimension, or ``low > high``.

    Example:
        >>> number = Input("number", (), integer=True, low=0, high=9)
        >>> number.check(torch.tensor([3, 12]))
        Traceback (most recent call last):
        ...
        multitask_mnist.errors.InvalidValueError: Expected `number` to hold ..., got 12
    """

    name: str
    shape: tuple[int, ...] = ()
    integer: bool = False
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise InvalidValueError(
                f"Expected argument `name` to be an identifier such as 'image', got {self.name!r}"
            )
        object.__setattr__(self, "shape", tuple(self.shape))
        for size in self.shape:
            check_int("shape", size, minimum=1)
        if self.low is not None and self.high is not None and self.low > self.high:
            raise InvalidValueError(
                f"Expected `low <= high` for input {self.name!r}, got {self.low} > {self.high}"
            )

    def check(self, value: object, batch: int | None = None, *, values: bool = True) -> None:
        """Raise ``TypeError``/``ValueError`` naming this input if ``value`` is wrong.

        Args:
            value: ``(B, *shape)`` tensor.
            batch: The batch size ``B`` the other inputs have, or ``None``.
            values: Also check the values (finite, whole, in bounds): one reduction
                over the tensor, read on the host. ``False`` checks the type and shape
                alone, without waiting for the device.
        """
        name = self.name
        if not isinstance(value, Tensor) or value.dtype == torch.bool or value.is_complex():
            got = value.dtype if isinstance(value, Tensor) else type(value).__name__
            kind = "an integer or float" if self.integer else "a floating-point"
            raise InvalidTypeError(f"Expected `{name}` to be {kind} tensor, got {got}")
        if not self.integer and not value.is_floating_point():
            raise InvalidTypeError(
                f"Expected `{name}` to be a floating-point tensor, got {value.dtype}"
            )
        if value.ndim != 1 + len(self.shape) or tuple(value.shape[1:]) != self.shape:
            want = ", ".join(["B", *map(str, self.shape)])
            raise InvalidValueError(
                f"Expected `{name}` of shape ({want}{',' if not self.shape else ''}), "
                f"got {tuple(value.shape)}"
            )
        if batch is not None and value.shape[0] != batch:
            raise InvalidValueError(
                f"Expected `{name}` to hold a batch of {batch} like the first input, "
                f"got {value.shape[0]}"
            )
        if not values or torch.compiler.is_compiling():  # export and compile trace shapes
            return
        bounded = self.low is not None or self.high is not None
        if value.is_floating_point() and not self.integer and not bounded:
            if not bool(torch.isfinite(value).all()):  # one reduction: images are large
                raise InvalidValueError(
                    f"Expected `{name}` to be finite, got NaN or infinite values"
                )
            return
        bad = ~torch.isfinite(value) if value.is_floating_point() else None
        if self.integer and value.is_floating_point():
            bad = bad | (value != value.round()) if bad is not None else value != value.round()
        for limit, outside in ((self.low, torch.lt), (self.high, torch.gt)):
            if limit is not None:
                out = outside(value, limit)
                bad = out if bad is None else bad | out
        if bad is not None and bool(bad.any()):
            culprit = value[bad][0].item()
            raise InvalidValueError(f"Expected `{name}` to hold {self._allowed()}, got {culprit}")

    def _allowed(self) -> str:
        def show(bound: float) -> str:
            return str(int(bound)) if float(bound).is_integer() else str(bound)

        what = "whole numbers" if self.integer else "finite values"
        if self.low is not None and self.high is not None:
            return f"{what} in {show(self.low)}..{show(self.high)}"
        if self.low is not None:
            return f"{what} >= {show(self.low)}"
        if self.high is not None:
            return f"{what} <= {show(self.high)}"
        return what
