"""The presets: the documented network, layer for layer, and the others.

Builders take keyword arguments only; an argument that contradicts a value the preset
pins raises instead of being silently applied.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal

from torch import nn

from multitask_mnist.errors import InvalidValueError
from multitask_mnist.models import (
    Block,
    CarryChainSum,
    Conv,
    ConvTrunk,
    Fusion,
    Input,
    LayerSpec,
    MaxPool,
    MultiLeNetEncoder,
    MultiLeNetHead,
    MultiTaskNet,
    PerImage,
    SumOfNumbers,
    digit_sum_net,
)
from multitask_mnist.models import ScalarFusionHead as _Head
from multitask_mnist.presets.registry import Range, pin, register
from multitask_mnist.tasks import Task

__all__ = [
    "MAX_ADDITION_DIGITS",
    "MAX_CONVOLUTION_DIGITS",
    "MNIST_SUM_BN_LAYERS",
    "MNIST_SUM_LAYERS",
    "NUMBER_LIMIT",
    "AdditionHead",
    "mnist_addition",
    "mnist_addition_lenet",
    "mnist_sum",
    "mnist_sum_bn",
    "multi_mnist_lenet",
]

#: The largest magnitude of a number the digit + sum presets add (``number_range``).
NUMBER_LIMIT = 10**6
#: The most digits per number the MNIST-addition presets build (with the carry-chain
#: head, whose cost is linear in ``N``).
MAX_ADDITION_DIGITS = 1000
#: The most digits per number of the convolution head (``head="convolution"``), which
#: holds a class for every possible sum, ``2 * 10 ** N - 1`` of them.
MAX_CONVOLUTION_DIGITS = 2

#: The exact sum heads of MNIST-addition: the whole distribution of the sum
#: (:class:`~multitask_mnist.models.SumOfNumbers`) or the probability of its digits
#: (:class:`~multitask_mnist.models.CarryChainSum`).
AdditionHead = Literal["convolution", "carry_chain"]

#: The documented trunk, nine layers from 28x28 down to 10 channels at 1x1.
MNIST_SUM_LAYERS: tuple[LayerSpec, ...] = (
    Conv("input1", 16, 3),
    Conv("conv1", 32, 3),
    Conv("conv2", 64, 3),
    MaxPool("pool", 2, 2),
    Conv("oneconv1", 16, 1),
    Conv("conv3", 32, 3),
    Conv("conv4", 64, 3),
    Conv("conv5", 64, 3),
    Conv("conv6", 10, 5),
)

#: The stronger trunk, the documented layers with a 3x3 ``conv6`` leaving 3x3 maps,
#: which global average pooling reduces to the logits.
MNIST_SUM_BN_LAYERS: tuple[LayerSpec, ...] = (*MNIST_SUM_LAYERS[:-1], Conv("conv6", 10, 3))


def _multitask_net(
    layers: Sequence[LayerSpec],
    *,
    hidden: Sequence[int],
    fusion: Fusion,
    number_range: tuple[int, int],
    act_layer: Callable[[], nn.Module],
    norm_layer: Callable[[int], nn.Module] | None = None,
    drop_layer: Callable[[], nn.Module] | None = None,
    global_pool: bool = False,
) -> MultiTaskNet:
    trunk = ConvTrunk(
        layers,
        act_layer=act_layer,
        norm_layer=norm_layer,
        drop_layer=drop_layer,
        global_pool=global_pool,
    )
    head = _Head(trunk.out_features, hidden=hidden, fusion=fusion, side_range=number_range)
    return digit_sum_net(trunk, head)


@register("mnist_sum")
def mnist_sum(
    *,
    fusion: Fusion = "argmax",
    act_layer: Callable[[], nn.Module] = nn.ReLU,
    number_range: tuple[
        Annotated[int, Range(-NUMBER_LIMIT, NUMBER_LIMIT)],
        Annotated[int, Range(-NUMBER_LIMIT, NUMBER_LIMIT)],
    ] = (0, 9),
    **pinned: Any,
) -> MultiTaskNet:
    """The documented network: nine conv/pool layers and a three-layer linear adder.

    Trunk: ``input1`` Conv2d(1, 16, 3), ``conv1`` Conv2d(16, 32, 3), ``conv2``
    Conv2d(32, 64, 3), ``pool`` MaxPool2d(2, 2), ``oneconv1`` Conv2d(64, 16, 1),
    ``conv3`` Conv2d(16, 32, 3), ``conv4`` Conv2d(32, 64, 3), ``conv5``
    Conv2d(64, 64, 3), ``conv6`` Conv2d(64, 10, 5), ReLU after each but the last.
    Head: ``input2`` Linear(2, 5), ``layer1`` Linear(5, 5), ``out2`` Linear(5, 1),
    no activation. 100,461 parameters.

    The default fusion is ``"argmax"``: its trunk learns from the digit loss alone,
    and it measured best of the three modes in two epochs (see the docs' Concepts
    page); with the exact adder the differentiable modes come within half a point.

    Args:
        fusion: How the digit logits become the digit estimate the head adds
            (see :class:`~multitask_mnist.models.ScalarFusionHead`).
        act_layer: Activation after each convolution but the last.
        number_range: ``(low, high)`` of the second input.
        **pinned: ``num_classes=10``, ``in_channels=1``, ``hidden=(5, 5)``,
            ``norm_layer=None``, ``drop_layer=None``, ``global_pool=False`` are
            accepted only with these values.

    Returns:
        The network, freshly initialized.

    Raises:
        ValueError: A pinned argument with another value, or an unknown ``fusion``.
        TypeError: An argument the preset does not take.

    Example:
        >>> net = mnist_sum()
        >>> sum(p.numel() for p in net.parameters())
        100461
    """
    pin(
        "mnist_sum",
        pinned,
        num_classes=10,
        in_channels=1,
        hidden=(5, 5),
        norm_layer=None,
        drop_layer=None,
        global_pool=False,
    )
    return _multitask_net(
        MNIST_SUM_LAYERS,
        hidden=(5, 5),
        fusion=fusion,
        number_range=number_range,
        act_layer=act_layer,
    )


@register("mnist_sum_bn")
def mnist_sum_bn(
    *,
    fusion: Fusion = "argmax",
    act_layer: Callable[[], nn.Module] = nn.ReLU,
    number_range: tuple[
        Annotated[int, Range(-NUMBER_LIMIT, NUMBER_LIMIT)],
        Annotated[int, Range(-NUMBER_LIMIT, NUMBER_LIMIT)],
    ] = (0, 9),
    dropout: Annotated[float, Range(0, 1, include_high=False)] = 0.05,
    **pinned: Any,
) -> MultiTaskNet:
    """A stronger network: batch normalization, dropout and global average pooling.

    The documented trunk with batch normalization after every convolution but the
    last, channel dropout after every activation, and a 3x3 ``conv6`` whose maps
    are averaged into the logits; the same fusion head. 90,509 parameters, about
    the documented network's budget.

    Args:
        fusion: How the digit logits become the digit estimate the head adds.
        act_layer: Activation after each convolution but the last.
        number_range: ``(low, high)`` of the second input.
        dropout: Probability of :class:`~torch.nn.Dropout2d` after each activation.
        **pinned: ``num_classes=10``, ``in_channels=1``, ``hidden=(5, 5)``,
            ``global_pool=True`` are accepted only with these values.

    Returns:
        The network, freshly initialized.

    Raises:
        ValueError: A pinned argument with another value, an unknown ``fusion``, or
            ``dropout`` outside [0, 1).
        TypeError: An argument the preset does not take.

    Example:
        >>> net = mnist_sum_bn()
        >>> sum(p.numel() for p in net.parameters())
        90509
    """
    pin("mnist_sum_bn", pinned, num_classes=10, in_channels=1, hidden=(5, 5), global_pool=True)
    return _multitask_net(
        MNIST_SUM_BN_LAYERS,
        hidden=(5, 5),
        fusion=fusion,
        number_range=number_range,
        act_layer=act_layer,
        norm_layer=nn.BatchNorm2d,
        drop_layer=functools.partial(nn.Dropout2d, dropout) if dropout else None,
        global_pool=True,
    )


@register("multi_mnist_lenet")
def multi_mnist_lenet(
    *, dropout: Annotated[float, Range(0, 1, include_high=False)] = 0.5, **pinned: Any
) -> MultiTaskNet:
    """MultiLeNet for MultiMNIST (Sener and Koltun, 2018): a shared encoder, two heads.

    Input ``image`` ``(1, 28, 28)``; tasks ``left`` and ``right``, the two overlaid
    digits (10 classes each). Encoder (``encoder``, shared): Conv2d(1, 10, 5), max-pool,
    ReLU, Conv2d(10, 20, 5), Dropout2d, max-pool, ReLU, Linear(320, 50), ReLU. Each
    head (``left``, ``right``): Linear(50, 50), ReLU, Dropout, Linear(50, 10). 27,450
    parameters.

    Args:
        dropout: The dropout probability of the encoder and the heads.
        **pinned: ``num_classes=10`` is accepted only with this value.

    Returns:
        The network, freshly initialized.

    Raises:
        ValueError: ``dropout`` outside [0, 1), or a pinned argument with another value.
        TypeError: An argument the preset does not take.

    Example:
        >>> net = multi_mnist_lenet()
        >>> net.task_names, net.num_parameters()
        (('left', 'right'), 27450)
    """
    pin("multi_mnist_lenet", pinned, num_classes=10)
    return MultiTaskNet(
        {
            "encoder": Block(MultiLeNetEncoder(dropout), ["image"]),
            **{
                side: Block(
                    MultiLeNetHead(10, dropout),
                    ["encoder"],
                    Task(side, "multiclass", num_classes=10),
                )
                for side in ("left", "right")
            },
        },
        [Input("image", MultiLeNetEncoder.input_shape)],
    )


def _addition_head(digits: int, head: AdditionHead | None) -> tuple[nn.Module, Task]:
    """The sum head and its task; ``None`` picks the convolution for one digit (faster
    there, by measurement) and the carry chain above."""
    chosen = head if head is not None else ("convolution" if digits == 1 else "carry_chain")
    if chosen == "convolution":
        if digits > MAX_CONVOLUTION_DIGITS:
            raise InvalidValueError(
                f"Expected `digits` of at most {MAX_CONVOLUTION_DIGITS} with "
                f"head='convolution' (it holds 2 * 10 ** N - 1 classes), got {digits}; "
                f"use head='carry_chain'"
            )
        convolution = SumOfNumbers(operands=2, digits=digits)
        return convolution, Task("sum", "multiclass", convolution.num_classes)
    if chosen != "carry_chain":
        raise InvalidValueError(
            f"Expected `head` to be 'convolution' or 'carry_chain', got {head!r}"
        )
    chain = CarryChainSum(digits)
    return chain, chain.task("sum")


def _addition_net(classifier: nn.Module, digits: int, head: AdditionHead | None) -> MultiTaskNet:
    module, task = _addition_head(digits, head)
    return MultiTaskNet(
        {
            "digits": Block(PerImage(classifier), ["images"]),
            "sum": Block(module, ["digits"], task),
        },
        [Input("images", (2 * digits, 1, 28, 28))],
    )


@register("mnist_addition")
def mnist_addition(
    *,
    digits: Annotated[int, Range(1, MAX_ADDITION_DIGITS)] = 1,
    head: AdditionHead | None = None,
    **pinned: Any,
) -> MultiTaskNet:
    """MNIST-addition: the documented trunk reads every digit, an exact head adds them.

    Input ``images`` ``(2 N, 1, 28, 28)``: the digits of two ``N``-digit numbers, as
    :class:`~multitask_mnist.data.MNISTAddition` gives them. Block ``digits`` applies
    the documented trunk (:data:`MNIST_SUM_LAYERS`, the same weights) to each image.
    Block ``sum`` is exact either way:

    * ``head="convolution"`` (:class:`~multitask_mnist.models.SumOfNumbers`): the sum's
      whole log-distribution, the logits of a multiclass task ``sum`` (``2 (10 ** N -
      1) + 1`` classes) whose cross-entropy is the sum's negative log-likelihood;
      labels are whole sums; up to :data:`MAX_CONVOLUTION_DIGITS` digits.
    * ``head="carry_chain"`` (:class:`~multitask_mnist.models.CarryChainSum`): the
      digits' log-probabilities, the prediction of a ``"digits"`` task ``sum`` whose
      loss is the negative log-likelihood of the sum's ``N + 1`` digits; labels are
      those digits (``MNISTAddition(sum_digits=True)``); any ``N``.

    The default is the convolution for ``N = 1``, where it measured faster, and the
    carry chain above (see the docs' "Learning from sums"). There is no digit task: the
    digits are latent and learned from the sums; ``net.get_submodule("digits.classifier")``
    is the digit classifier, to evaluate on its own.

    Args:
        digits: Digits per number, ``N``, from 1 to :data:`MAX_ADDITION_DIGITS`.
        head: ``"convolution"``, ``"carry_chain"``, or ``None`` for the default above.
        **pinned: ``base=10`` is accepted only with this value.

    Returns:
        The network, freshly initialized.

    Raises:
        ValueError: ``digits`` outside 1..:data:`MAX_ADDITION_DIGITS`, a convolution
            head above :data:`MAX_CONVOLUTION_DIGITS` digits, an unknown head, or a
            pinned argument with another value.
        TypeError: ``digits`` not an int, or an argument the preset does not take.

    Example:
        >>> net = mnist_addition(digits=2, head="convolution")
        >>> net.task_names, net.tasks[0].num_classes, net.num_parameters()
        (('sum',), 199, 100410)
        >>> mnist_addition(digits=15).tasks[0].kind
        'digits'
    """
    pin("mnist_addition", pinned, base=10)
    return _addition_net(ConvTrunk(MNIST_SUM_LAYERS), digits, head)


class _DigitLeNet(nn.Sequential):
    """DeepProbLog's MNIST digit classifier: ``(N, 1, 28, 28)`` -> ``(N, 10)`` logits."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(1, 6, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(6, 16, 5),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, 10),
        )


@register("mnist_addition_lenet")
def mnist_addition_lenet(
    *,
    digits: Annotated[int, Range(1, MAX_ADDITION_DIGITS)] = 1,
    head: AdditionHead | None = None,
    **pinned: Any,
) -> MultiTaskNet:
    """MNIST-addition with the benchmark's own network: DeepProbLog's LeNet per image.

    As :func:`mnist_addition`, with the digit classifier of DeepProbLog, DeepStochLog
    and A-NeSI instead of the documented trunk, so that rows compare like for like:
    Conv2d(1, 6, 5), max-pool, ReLU, Conv2d(6, 16, 5), max-pool, ReLU, Linear(256,
    120), ReLU, Linear(120, 84), ReLU, Linear(84, 10). 44,426 parameters.

    Args:
        digits: Digits per number, ``N``, from 1 to :data:`MAX_ADDITION_DIGITS`.
        head: ``"convolution"``, ``"carry_chain"``, or ``None`` (the convolution for
            ``N = 1``, the carry chain above).
        **pinned: ``base=10`` is accepted only with this value.

    Returns:
        The network, freshly initialized.

    Raises:
        ValueError: ``digits`` outside 1..:data:`MAX_ADDITION_DIGITS`, a convolution
            head above :data:`MAX_CONVOLUTION_DIGITS` digits, an unknown head, or a
            pinned argument with another value.

    Example:
        >>> net = mnist_addition_lenet()
        >>> net.tasks[0].num_classes, net.num_parameters()
        (19, 44426)
        >>> mnist_addition_lenet(digits=100).num_parameters()
        44426
    """
    pin("mnist_addition_lenet", pinned, base=10)
    return _addition_net(_DigitLeNet(), digits, head)
