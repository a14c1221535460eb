"""The canonical composition: a trunk reads the digit, a fusion head adds the number."""

from __future__ import annotations

from multitask_mnist.errors import InvalidValueError
from multitask_mnist.models.head import ScalarFusionHead
from multitask_mnist.models.net import Block, Input, MultiTaskNet
from multitask_mnist.models.trunk import ConvTrunk
from multitask_mnist.tasks.task import Task

__all__ = ["digit_sum_net"]


def digit_sum_net(trunk: ConvTrunk, head: ScalarFusionHead) -> MultiTaskNet:
    """Join a trunk and a fusion head into the digit + sum network.

    The inputs are ``image`` (the trunk's input shape) and ``number`` (whole numbers
    in the head's ``side_range``); the tasks are ``digit`` (the trunk's logits, a
    multiclass task) and ``sum`` (the head's output, a regression taught with the
    true digit, see :meth:`ScalarFusionHead.forward`). The blocks are named
    ``trunk`` and ``head``, so the parameters are ``trunk.*`` and ``head.*``.

    Args:
        trunk: Maps ``(B, C, H, W)`` images to ``(B, num_classes)`` logits.
        head: Joins the digit estimate with the number; trained as a ``fast`` block.

    Returns:
        The network.

    Raises:
        ValueError: The trunk's output width differs from the head's ``num_classes``.

    Example:
        >>> import torch
        >>> from multitask_mnist.presets import MNIST_SUM_LAYERS
        >>> net = digit_sum_net(ConvTrunk(MNIST_SUM_LAYERS), ScalarFusionHead())
        >>> out = net({"image": torch.zeros(2, 1, 28, 28), "number": torch.tensor([3, 7])})
        >>> out["digit"].shape, out["sum"].shape
        (torch.Size([2, 10]), torch.Size([2]))
    """
    if trunk.out_features != head.num_classes:
        raise InvalidValueError(
            f"The trunk gives {trunk.out_features} logits but the head expects "
            f"num_classes={head.num_classes}"
        )
    low, high = head.side_range
    number_shape = () if head.num_side == 1 else (head.num_side,)
    digit = Task("digit", "multiclass", num_classes=head.num_classes)
    return MultiTaskNet(
        {
            "trunk": Block(trunk, ["image"], digit),
            "head": Block(
                head, ["trunk", "number"], Task("sum", "regression"), teacher="digit", fast=True
            ),
        },
        [
            Input("image", trunk.input_shape),
            Input("number", number_shape, integer=True, low=low, high=high),
        ],
    )
