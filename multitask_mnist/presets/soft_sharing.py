"""Soft-sharing presets.

For the MultiMNIST family (MultiMNIST, MultiFashion, Multi-(Fashion+MNIST)):
MultiLeNet-sized experts and columns in MMoE, CGC/PLE, cross-stitch and task-attention
blocks, with MultiLeNet's heads. Each reads ``image`` ``(1, 28, 28)`` and predicts
``left`` and ``right`` (10 classes), as :func:`~multitask_mnist.presets.multi_mnist_lenet`
does, so every benchmark and method that trains that preset trains these.

For the digit and the sum: :func:`mnist_sum_mmoe`, the documented trunk as experts.
"""

from __future__ import annotations

from typing import Annotated, Any

from torch import nn

from multitask_mnist.models import (
    Block,
    ConvTrunk,
    CrossStitch,
    ExtractionLayer,
    Fusion,
    Input,
    MixtureOfExperts,
    MultiLeNetEncoder,
    MultiLeNetHead,
    MultiTaskNet,
    ProgressiveExtraction,
    ScalarFusionHead,
    TaskAttention,
)
from multitask_mnist.presets.networks import MNIST_SUM_LAYERS
from multitask_mnist.presets.registry import Range, pin, register
from multitask_mnist.tasks import Task

__all__ = [
    "mnist_sum_mmoe",
    "multi_mnist_cgc",
    "multi_mnist_cross_stitch",
    "multi_mnist_mmoe",
    "multi_mnist_mtan",
]

_SIDES = ("left", "right")
_PIXELS = 28 * 28  # the gates read the flattened image


def _net(block: nn.Module, dropout: float) -> MultiTaskNet:
    return MultiTaskNet(
        {
            "sharing": Block(block, ["image"]),
            **{
                side: Block(
                    MultiLeNetHead(10, dropout),
                    [f"sharing.{side}"],
                    Task(side, "multiclass", num_classes=10),
                )
                for side in _SIDES
            },
        },
        [Input("image", MultiLeNetEncoder.input_shape)],
    )


@register("multi_mnist_mmoe")
def multi_mnist_mmoe(
    *,
    experts: Annotated[int, Range(1, 16)] = 2,
    dropout: Annotated[float, Range(0, 1, include_high=False)] = 0.5,
    **pinned: Any,
) -> MultiTaskNet:
    """MMoE for MultiMNIST: MultiLeNet encoders as experts, a softmax gate per digit.

    ``experts`` encoders, a gate per digit over them (reading the flattened image),
    MultiLeNet's head per digit. 51,920
    parameters with 2 experts (two single-task networks, an encoder and a head each:
    2 x 24,390 = 48,780).

    Args:
        experts: The number of experts (MultiLeNet encoders, 21,330 parameters each).
        dropout: The dropout probability of the encoders and the heads.
        **pinned: ``num_classes=10`` is accepted only with this value.

    Returns:
        The network, freshly initialized.

    Raises:
        ValueError: An argument outside its range, or a pinned argument with another
            value.

    Example:
        >>> net = multi_mnist_mmoe()
        >>> net.task_names, net.num_parameters()
        (('left', 'right'), 51920)
    """
    pin("multi_mnist_mmoe", pinned, num_classes=10)
    encoders = [MultiLeNetEncoder(dropout) for _ in range(experts)]
    return _net(MixtureOfExperts(encoders, _SIDES, _PIXELS), dropout)


@register("multi_mnist_cgc")
def multi_mnist_cgc(
    *,
    task_experts: Annotated[int, Range(1, 8)] = 1,
    shared_experts: Annotated[int, Range(0, 8)] = 1,
    levels: Annotated[int, Range(1, 4)] = 1,
    dropout: Annotated[float, Range(0, 1, include_high=False)] = 0.5,
    **pinned: Any,
) -> MultiTaskNet:
    """CGC or PLE for MultiMNIST: MultiLeNet encoders per digit and shared ones.

    CGC with ``levels=1``, PLE with more: ``task_experts`` encoders per digit and
    ``shared_experts`` shared ones at the first level; inner levels mix 50-wide
    features with 50-to-50 linear experts.

    Args:
        task_experts: Experts of each digit's own, per level.
        shared_experts: Shared experts, per level.
        levels: 1 for CGC, more for PLE.
        dropout: The dropout probability of the encoders and the heads.
        **pinned: ``num_classes=10`` is accepted only with this value.

    Returns:
        The network, freshly initialized.

    Raises:
        ValueError: An argument outside its range, or a pinned argument with another
            value.

    Example:
        >>> multi_mnist_cgc().num_parameters()
        73250
    """
    pin("multi_mnist_cgc", pinned, num_classes=10)

    def expert(level: int) -> nn.Module:
        if level == 0:
            return MultiLeNetEncoder(dropout)
        return nn.Sequential(nn.Linear(50, 50), nn.ReLU())

    layers = [
        ExtractionLayer(
            {side: [expert(level) for _ in range(task_experts)] for side in _SIDES},
            [expert(level) for _ in range(shared_experts)],
            _PIXELS if level == 0 else 50,
            shared_gate=level < levels - 1,
        )
        for level in range(levels)
    ]
    block: nn.Module = layers[0] if levels == 1 else ProgressiveExtraction(layers)
    return _net(block, dropout)


def _lenet_column(dropout: float) -> list[nn.Module]:
    """MultiLeNet's encoder as three stages, for cross-stitch units between them."""
    return [
        nn.Sequential(nn.Conv2d(1, 10, 5), nn.MaxPool2d(2), nn.ReLU()),
        nn.Sequential(nn.Conv2d(10, 20, 5), nn.Dropout2d(dropout), nn.MaxPool2d(2), nn.ReLU()),
        nn.Sequential(nn.Flatten(), nn.Linear(320, 50), nn.ReLU()),
    ]


@register("multi_mnist_cross_stitch")
def multi_mnist_cross_stitch(
    *,
    per_channel: bool = True,
    dropout: Annotated[float, Range(0, 1, include_high=False)] = 0.5,
    **pinned: Any,
) -> MultiTaskNet:
    """Cross-stitch networks for MultiMNIST: two MultiLeNet columns, mixed as they go.

    Cross-stitch units after the two convolution stages (per channel by default, as in
    the paper), MultiLeNet's heads.
    48,900 parameters: those of the two single-task networks (2 x 24,390) and 120
    mixing weights.

    Args:
        per_channel: One 2x2 mix per channel, else one per stage.
        dropout: The dropout probability of the columns and the heads.
        **pinned: ``num_classes=10`` is accepted only with this value.

    Returns:
        The network, freshly initialized.

    Raises:
        ValueError: An argument outside its range, or a pinned argument with another
            value.

    Example:
        >>> multi_mnist_cross_stitch().num_parameters()
        48900
    """
    pin("multi_mnist_cross_stitch", pinned, num_classes=10)
    columns = {side: _lenet_column(dropout) for side in _SIDES}
    stitch = CrossStitch(columns, per_channel=per_channel, channels=[10, 20])
    return _net(stitch, dropout)


@register("multi_mnist_mtan")
def multi_mnist_mtan(
    *,
    dropout: Annotated[float, Range(0, 1, include_high=False)] = 0.5,
    **pinned: Any,
) -> MultiTaskNet:
    """Task attention (after MTAN) for MultiMNIST: one MultiLeNet encoder, a mask per
    digit at each of its three stages.

    The masks are a 1x1 convolution after each convolution stage (10 and 20 channels)
    and a linear layer after the 50-wide feature layer, each followed by a sigmoid;
    MultiLeNet's head per digit. 39,410 parameters: one encoder (21,330), the masks
    (2 x 5,980) and two heads (2 x 3,060).

    Args:
        dropout: The dropout probability of the encoder and the heads.
        **pinned: ``num_classes=10`` is accepted only with this value.

    Returns:
        The network, freshly initialized.

    Raises:
        ValueError: An argument outside its range, or a pinned argument with another
            value.

    Example:
        >>> multi_mnist_mtan().num_parameters()
        39410
    """
    pin("multi_mnist_mtan", pinned, num_classes=10)

    def masks() -> list[nn.Module]:
        return [nn.Conv2d(10, 10, 1), nn.Conv2d(2 * 20, 20, 1), nn.Linear(2 * 50, 50)]

    attention = TaskAttention(_lenet_column(dropout), {side: masks() for side in _SIDES})
    return _net(attention, dropout)


@register("mnist_sum_mmoe")
def mnist_sum_mmoe(
    *,
    experts: Annotated[int, Range(1, 8)] = 2,
    fusion: Fusion = "expectation",
    **pinned: Any,
) -> MultiTaskNet:
    """MMoE for the digit and the sum: documented trunks as experts, a gate per task.

    ``experts`` copies of the documented trunk (each ending in 10 logits) read the
    image; each task's gate (reading the flattened image) mixes their logits. The digit
    task reads its mix as its logits; the sum task's mix goes, with the number, into
    the documented adder head (teacher-forced by the true digit, as in
    :func:`~multitask_mnist.presets.mnist_sum`). The default fusion is
    ``"expectation"``, so the sum's loss reaches its gate and the experts; with
    ``"argmax"`` it would reach neither. 204,011 parameters with 2 experts.

    Args:
        experts: The number of experts (documented trunks, 100,410 parameters each).
        fusion: How the sum's logits become the digit estimate the head adds (see
            :class:`~multitask_mnist.models.ScalarFusionHead`).
        **pinned: ``num_classes=10`` and ``in_channels=1`` are accepted only with
            these values.

    Returns:
        The network, freshly initialized.

    Raises:
        ValueError: An argument outside its range, an unknown ``fusion``, or a pinned
            argument with another value.

    Example:
        >>> import torch
        >>> net = mnist_sum_mmoe()
        >>> out = net({"image": torch.zeros(2, 1, 28, 28), "number": torch.tensor([3, 7])})
        >>> net.num_parameters(), out["digit"].shape, out["sum"].shape
        (204011, torch.Size([2, 10]), torch.Size([2]))
    """
    pin("mnist_sum_mmoe", pinned, num_classes=10, in_channels=1)
    trunks = [ConvTrunk(MNIST_SUM_LAYERS) for _ in range(experts)]
    head = ScalarFusionHead(10, hidden=(5, 5), fusion=fusion, side_range=(0, 9))
    return MultiTaskNet(
        {
            "sharing": Block(MixtureOfExperts(trunks, ("digit", "sum"), _PIXELS), ["image"]),
            "digit": Block(
                nn.Identity(), ["sharing.digit"], Task("digit", "multiclass", num_classes=10)
            ),
            "head": Block(
                head,
                ["sharing.sum", "number"],
                Task("sum", "regression"),
                teacher="digit",
                fast=True,
            ),
        },
        [
            Input("image", trunks[0].input_shape),
            Input("number", (), integer=True, low=0, high=9),
        ],
    )
