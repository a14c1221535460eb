"""The two-input, two-output network: a trunk reads the image, a head adds the number."""

from __future__ import annotations

from typing import Any, NamedTuple, TypedDict

import torch
from torch import Tensor, nn

from multitask_mnist.models.head import ScalarFusionHead
from multitask_mnist.models.trunk import ConvTrunk

__all__ = ["MultiTaskNet", "MultiTaskOutput", "PresetRecord"]


class PresetRecord(TypedDict):
    """Which preset built a model, so it can be built again from a checkpoint.

    Attributes:
        name: The registered preset name.
        kwargs: The builder's keyword arguments, plain values only.

    Example:
        >>> from multitask_mnist import presets
        >>> presets.mnist_sum(fusion="expectation").preset
        {'name': 'mnist_sum', 'kwargs': {'fusion': 'expectation'}}
    """

    name: str
    kwargs: dict[str, Any]


class MultiTaskOutput(NamedTuple):
    """What :class:`MultiTaskNet` returns.

    Attributes:
        digit_logits: ``(B, num_classes)`` logits of the digit.
        sum: ``(B,)`` float32 prediction of ``digit + number``.
        adder: ``(B,)`` float32 teacher-forced sum: the head applied to the true
            digit, present only when the true digit was passed to
            :meth:`MultiTaskNet.forward` (the Trainer does so in training); its loss
            is what trains the head.

    Example:
        >>> import torch
        >>> out = MultiTaskOutput(torch.zeros(2, 10), torch.tensor([3.0, 7.0]))
        >>> out.sum.tolist()
        [3.0, 7.0]
    """

    digit_logits: Tensor
    sum: Tensor
    adder: Tensor | None = None


class MultiTaskNet(nn.Module):
    """Image and number in; digit logits and their sum out.

    Inputs are checked at the boundary with one batched test each, so a wrong
    tensor gets an error naming it instead of a shape error from inside a layer.

    Args:
        trunk: Maps ``(B, C, H, W)`` images to ``(B, num_classes)`` logits.
        head: Joins the digit estimate with the number.

    Shapes:
        ``forward(image, number, digit=None)``: ``image`` ``(B, 1, 28, 28)`` float,
        ``number`` ``(B,)`` integer-valued, ``digit`` ``(B,)`` int64 true digits or
        ``None`` -> :class:`MultiTaskOutput`.

    Raises:
        ValueError: The trunk's output width differs from the head's ``num_classes``.

    Example:
        >>> import torch
        >>> from multitask_mnist import presets
        >>> net = presets.mnist_sum()
        >>> out = net(torch.zeros(2, 1, 28, 28), torch.tensor([3, 7]))
        >>> out.digit_logits.shape, out.sum.shape
        (torch.Size([2, 10]), torch.Size([2]))
    """

    def __init__(self, trunk: ConvTrunk, head: ScalarFusionHead) -> None:
        super().__init__()
        if trunk.out_features != head.num_classes:
            raise ValueError(
                f"The trunk gives {trunk.out_features} logits but the head expects "
                f"num_classes={head.num_classes}"
            )
        self.trunk = trunk
        self.head = head
        #: Set by the preset builders; ``None`` for a network built by hand.
        self.preset: PresetRecord | None = None

    def forward(
        self, image: Tensor, number: Tensor, digit: Tensor | None = None
    ) -> MultiTaskOutput:
        """Predict the digit and the sum; see the class docstring for shapes.

        Passing the true ``digit`` teacher-forces the adder (see
        :meth:`ScalarFusionHead.forward`): ``adder`` is filled in, and ``sum`` stays
        the prediction from the digit estimate, its loss reaching the trunk only.
        """
        self.check_inputs(image, number)
        logits = self.trunk(image)
        if digit is None:
            return MultiTaskOutput(logits, self.head(logits, number))
        sum_pred, adder = self.head(logits, number, digit)
        return MultiTaskOutput(logits, sum_pred, adder)

    def check_inputs(self, image: Tensor, number: Tensor) -> None:
        """Raise ``TypeError``/``ValueError`` naming ``image`` or ``number`` if either is wrong."""
        shape = self.trunk.input_shape
        if not isinstance(image, Tensor) or not image.is_floating_point():
            got = image.dtype if isinstance(image, Tensor) else type(image).__name__
            raise TypeError(f"Expected `image` to be a floating-point tensor, got {got}")
        if image.ndim != 4 or tuple(image.shape[1:]) != shape:
            raise ValueError(
                f"Expected `image` of shape (B, {', '.join(map(str, shape))}), "
                f"got {tuple(image.shape)}"
            )
        if not isinstance(number, Tensor) or number.dtype == torch.bool or number.is_complex():
            got = number.dtype if isinstance(number, Tensor) else type(number).__name__
            raise TypeError(f"Expected `number` to be an integer or float tensor, got {got}")
        if number.ndim != 1 or number.shape[0] != image.shape[0]:
            raise ValueError(
                f"Expected `number` of shape ({image.shape[0]},) to match the batch of "
                f"`image`, got {tuple(number.shape)}"
            )
        low, high = self.head.side_range
        bad = (number < low) | (number > high)
        if number.is_floating_point():
            bad |= number != number.round()  # NaN fails this too
        if bool(bad.any()):
            value = number[bad.nonzero()[0, 0]].item()
            raise ValueError(
                f"Expected `number` to hold whole numbers in {low}..{high}, got {value}"
            )
        if not bool(torch.isfinite(image).all()):
            raise ValueError("Expected `image` to be finite, got NaN or infinite values")
