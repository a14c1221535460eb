"""Named, ready-made networks, and a small registry to find them by name.

``presets.mnist_sum()`` is the documented network, layer for layer. Builders take
keyword arguments only; an argument that contradicts a value the preset pins
raises instead of being silently applied.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import torch
from torch import nn

from multitask_mnist.errors import InvalidTypeError, InvalidValueError
from multitask_mnist.models import (
    Block,
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
    PresetRecord,
    SumOfNumbers,
    digit_sum_net,
)
from multitask_mnist.models import ScalarFusionHead as _Head
from multitask_mnist.tasks import Task

__all__ = [
    "MNIST_SUM_BN_LAYERS",
    "MNIST_SUM_LAYERS",
    "describe",
    "from_checkpoint",
    "get",
    "mnist_addition",
    "mnist_sum",
    "mnist_sum_bn",
    "multi_mnist_lenet",
    "names",
    "register",
]

Builder = TypeVar("Builder", bound=Callable[..., MultiTaskNet])
_REGISTRY: dict[str, Callable[..., MultiTaskNet]] = {}

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


def register(name: str) -> Callable[[Builder], Builder]:
    """Register a builder under ``name``; a name may be registered once.

    Args:
        name: The preset's name, as :func:`get` and the command line's ``--preset`` take it.

    Returns:
        A decorator that registers the builder and returns it, wrapped so that every
        network it builds records its preset (``net.preset``: the name and the keyword
        arguments, when they are plain values), which checkpoints keep so that
        :func:`from_checkpoint` can build it again.

    Raises:
        ValueError: ``name`` is already registered.

    Example:
        >>> @register("tiny_sum")
        ... def tiny_sum(**kwargs):
        ...     '''Two layers: a quick smoke-test network.'''
        ...     return _multitask_net(
        ...         (Conv("c1", 8, 3), MaxPool("pool", 2), Conv("out", 10, 13)),
        ...         hidden=(5,), fusion="argmax", number_range=(0, 9), act_layer=nn.ReLU)
        >>> describe("tiny_sum")
        'Two layers: a quick smoke-test network.'
        >>> _ = _REGISTRY.pop("tiny_sum")
    """

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise InvalidValueError(f"A preset named {name!r} is already registered")

        @functools.wraps(builder)
        def build(**kwargs: Any) -> MultiTaskNet:
            net = builder(**kwargs)
            if all(_is_plain(value) for value in kwargs.values()):
                net.preset = PresetRecord(name=name, kwargs=dict(kwargs))
            return net

        _REGISTRY[name] = build
        return cast(Builder, build)

    return decorator


def names() -> list[str]:
    """The registered preset names, sorted.

    Returns:
        The names :func:`get` accepts.

    Example:
        >>> "mnist_sum" in names()
        True
    """
    return sorted(_REGISTRY)


def describe(name: str) -> str:
    """The first line of a preset's docstring.

    Args:
        name: A registered preset.

    Returns:
        Its one-line summary.

    Raises:
        ValueError: ``name`` is not registered; the message lists the known names.

    Example:
        >>> describe("mnist_sum")
        'The documented network: nine conv/pool layers and a three-layer linear adder.'
    """
    doc = _lookup(name).__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def get(name: str, **overrides: Any) -> MultiTaskNet:
    """Build the preset ``name`` with keyword ``overrides``.

    Args:
        name: A registered preset (see :func:`names`).
        **overrides: Keyword arguments of the preset's builder.

    Returns:
        The network, freshly initialized.

    Raises:
        ValueError: ``name`` is not registered (the message lists the known names),
            or an override conflicts with a value the preset pins.
        TypeError: An override the preset does not take.

    Example:
        >>> net = get("mnist_sum", fusion="expectation")
        >>> net.get_submodule("head").fusion
        'expectation'
    """
    return _lookup(name)(**overrides)


def _is_plain(value: Any) -> bool:
    """Whether ``value`` survives a weights-only checkpoint: plain data, no classes."""
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    return value is None or isinstance(value, (str, int, float, bool))


def from_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> MultiTaskNet:
    """Build the preset a checkpoint was trained from and load its weights.

    A ``.safetensors`` file written by :func:`multitask_mnist.export.save_safetensors`
    works too (it needs the ``export`` extra).

    Args:
        path: A checkpoint written by the Trainer from a network a preset built, or a
            ``.safetensors`` file.
        map_location: Where to put the weights.

    Returns:
        The network in eval mode, with the checkpoint's weights.

    Raises:
        FileNotFoundError: No file at ``path``.
        CheckpointError: Unreadable, untrusted, of an unknown format, silent about its
            preset, or not matching its preset's layers.

    Example:
        >>> from_checkpoint("missing.pt")
        Traceback (most recent call last):
        ...
        FileNotFoundError: Checkpoint not found: missing.pt
    """
    from multitask_mnist.training.checkpoint import (
        CheckpointError,
        load_checkpoint,
        load_model_state,
    )

    if Path(path).suffix == ".safetensors":
        from multitask_mnist.export import load_safetensors

        return load_safetensors(path, map_location=map_location)
    state = load_checkpoint(path, map_location=map_location)
    record = state.get("preset")
    if record is None and state["format"] == 1:  # format 1 kept it in the config
        config = state.get("config", {})
        record = {"name": config.get("preset"), "kwargs": config.get("preset_kwargs", {})}
    if not isinstance(record, dict) or not isinstance(record.get("name"), str):
        raise CheckpointError(
            f"{path} does not say which preset built its network (a network built by hand, "
            "or from a preset with non-plain arguments); build it yourself and load "
            "state['model'] with load_model_state"
        )
    model = get(record["name"], **record.get("kwargs", {}))
    load_model_state(model, state["model"], source=path)
    return model.to(map_location).eval()


def _lookup(name: str) -> Callable[..., MultiTaskNet]:
    if name not in _REGISTRY:
        raise InvalidValueError(f"Unknown preset {name!r}; known presets: {', '.join(names())}")
    return _REGISTRY[name]


def _pin(preset: str, overrides: dict[str, Any], **pinned: Any) -> None:
    """Refuse overrides the preset cannot honour: unknown names, or other values for pinned ones."""
    unknown = sorted(set(overrides) - set(pinned))
    if unknown:
        raise InvalidTypeError(
            f"{preset}() got unexpected keyword argument(s): {', '.join(unknown)}"
        )
    for key, value in overrides.items():
        if value != pinned[key]:
            raise InvalidValueError(
                f"Preset {preset!r} pins {key}={pinned[key]!r}; got {key}={value!r}. "
                "Build a MultiTaskNet from its blocks (or digit_sum_net) to change it."
            )


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
    number_range: tuple[int, int] = (0, 9),
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
    _pin(
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
    number_range: tuple[int, int] = (0, 9),
    dropout: float = 0.05,
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
    _pin("mnist_sum_bn", pinned, num_classes=10, in_channels=1, hidden=(5, 5), global_pool=True)
    if not 0.0 <= dropout < 1.0:
        raise InvalidValueError(f"Expected argument `dropout` to be in [0, 1), got {dropout}")
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
def multi_mnist_lenet(*, dropout: float = 0.5, **pinned: Any) -> MultiTaskNet:
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
    _pin("multi_mnist_lenet", pinned, num_classes=10)
    if not 0.0 <= dropout < 1.0:
        raise InvalidValueError(f"Expected argument `dropout` to be in [0, 1), got {dropout}")
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


@register("mnist_addition")
def mnist_addition(*, digits: int = 1, **pinned: Any) -> MultiTaskNet:
    """MNIST-addition: the documented trunk reads every digit, an exact head adds them.

    Input ``images`` ``(2 N, 1, 28, 28)``: the digits of two ``N``-digit numbers, as
    :class:`~multitask_mnist.data.MNISTAddition` gives them. Block ``digits`` applies
    the documented trunk (:data:`MNIST_SUM_LAYERS`, the same weights) to each image;
    block ``sum`` (:class:`~multitask_mnist.models.SumOfNumbers`) turns the ``2 N``
    digit distributions into the exact log-distribution of the sum, the logits of the
    multiclass task ``sum`` (``2 (10 ** N - 1) + 1`` classes), whose cross-entropy is
    the sum's negative log-likelihood. There is no digit task: the digits are latent
    and learned from the sums; ``net.get_submodule("digits.classifier")`` is the digit
    classifier, to evaluate on its own.

    Args:
        digits: Digits per number, ``N`` (1 or more).
        **pinned: ``base=10`` is accepted only with this value.

    Returns:
        The network, freshly initialized.

    Raises:
        ValueError: ``digits`` below 1, or a pinned argument with another value.
        TypeError: ``digits`` not an int, or an argument the preset does not take.

    Example:
        >>> net = mnist_addition(digits=2)
        >>> net.task_names, net.tasks[0].num_classes, net.num_parameters()
        (('sum',), 199, 100410)
    """
    _pin("mnist_addition", pinned, base=10)
    if isinstance(digits, bool) or not isinstance(digits, int):
        raise InvalidTypeError(f"Expected argument `digits` to be an int, got {digits!r}")
    if digits < 1:
        raise InvalidValueError(f"Expected argument `digits` to be >= 1, got {digits}")
    head = SumOfNumbers(operands=2, digits=digits)
    return MultiTaskNet(
        {
            "digits": Block(PerImage(ConvTrunk(MNIST_SUM_LAYERS)), ["images"]),
            "sum": Block(head, ["digits"], Task("sum", "multiclass", head.num_classes)),
        },
        [Input("images", (2 * digits, 1, 28, 28))],
    )
