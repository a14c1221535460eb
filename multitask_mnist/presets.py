"""Named, ready-made networks, and a small registry to find them by name.

``presets.mnist_sum()`` is the documented network, layer for layer. Builders take
keyword arguments only; an argument that contradicts a value the preset pins
raises instead of being silently applied.
"""

from __future__ import annotations

import collections.abc
import functools
import inspect
import math
import os
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import torch
from torch import nn

from multitask_mnist.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    read_safetensors,
)
from multitask_mnist.errors import InvalidTypeError, InvalidValueError, MultitaskMnistError
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
    "MAX_ADDITION_DIGITS",
    "MNIST_SUM_BN_LAYERS",
    "MNIST_SUM_LAYERS",
    "NUMBER_LIMIT",
    "Range",
    "describe",
    "from_checkpoint",
    "from_record",
    "get",
    "mnist_addition",
    "mnist_sum",
    "mnist_sum_bn",
    "multi_mnist_lenet",
    "names",
    "register",
]

#: The largest magnitude of a number the digit + sum presets add (``number_range``).
NUMBER_LIMIT = 10**6
#: The most digits per number ``mnist_addition`` builds: its exact sum head holds a
#: class for every possible sum, ``2 * 10 ** N - 1`` of them.
MAX_ADDITION_DIGITS = 4

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


@dataclass(frozen=True)
class Range:
    """The documented bound of a size-like builder argument, written in its signature:
    ``digits: Annotated[int, Range(1, 4)]``. Every call is checked against it before
    anything is built, a network rebuilt from a file's record included.

    Args:
        low: The smallest value allowed.
        high: The largest value allowed (or the bound it stays below).
        include_high: Whether ``high`` itself is allowed.

    Example:
        >>> Range(0, 1, include_high=False).check("dropout", 1.0)
        Traceback (most recent call last):
        ...
        multitask_mnist.errors.InvalidValueError: Expected argument `dropout` to be in [0, 1), ...
    """

    low: float
    high: float
    include_high: bool = True

    def check(self, name: str, value: float) -> None:
        """Raise naming ``name`` if ``value`` is outside the range."""
        above = value > self.high if self.include_high else value >= self.high
        if value < self.low or above:
            bracket = "]" if self.include_high else ")"
            raise InvalidValueError(
                f"Expected argument `{name}` to be in [{self.low}, {self.high}{bracket}, "
                f"got {value}"
            )


def _check_argument(name: str, value: Any, annotation: Any) -> Any:
    """``value`` checked against its annotation (types, choices, :class:`Range` bounds);
    lists become tuples where a tuple is expected (a record read back from JSON)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        value = _check_argument(name, value, args[0])
        for bound in args[1:]:
            if isinstance(bound, Range):
                bound.check(name, value)
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors: list[MultitaskMnistError] = []
        for option in options:
            try:
                return _check_argument(name, value, option)
            except (InvalidTypeError, InvalidValueError) as error:
                errors.append(error)
        raise errors[0]
    if origin is typing.Literal:
        if value not in args:
            listed = ", ".join(map(repr, args))
            raise InvalidValueError(
                f"Expected argument `{name}` to be one of {listed}, got {value!r}"
            )
        return value
    if origin is tuple and args and args[-1] is not Ellipsis:
        if not isinstance(value, (tuple, list)) or len(value) != len(args):
            raise InvalidTypeError(
                f"Expected argument `{name}` to be a tuple of {len(args)}, got {value!r}"
            )
        return tuple(_check_argument(name, v, a) for v, a in zip(value, args, strict=True))
    if origin is collections.abc.Callable or annotation is Callable:
        if not callable(value):
            raise InvalidTypeError(
                f"Expected argument `{name}` to be callable (a module class such as nn.ReLU), "
                f"got {value!r} ({type(value).__name__}); a file records plain values only"
            )
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise InvalidTypeError(f"Expected argument `{name}` to be a bool, got {value!r}")
    elif annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidTypeError(f"Expected argument `{name}` to be an int, got {value!r}")
    elif annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidTypeError(f"Expected argument `{name}` to be a number, got {value!r}")
        if not math.isfinite(value):
            raise InvalidValueError(f"Expected argument `{name}` to be finite, got {value}")
    elif annotation is str and not isinstance(value, str):
        raise InvalidTypeError(f"Expected argument `{name}` to be a str, got {value!r}")
    return value


@functools.cache
def _annotations(builder: Callable[..., MultiTaskNet]) -> dict[str, Any]:
    """The annotations of ``builder``'s keyword arguments (``**pinned`` left out)."""
    hints = typing.get_type_hints(builder, include_extras=True)
    return {
        name: hints[name]
        for name, parameter in inspect.signature(builder).parameters.items()
        if parameter.kind is parameter.KEYWORD_ONLY and name in hints
    }


def _checked_arguments(
    builder: Callable[..., MultiTaskNet], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """``kwargs`` checked against ``builder``'s signature: each declared argument by its
    annotation; the others (``**pinned``) are left to the builder, which refuses them
    unless they match what it pins."""
    annotations = _annotations(builder)
    return {
        name: _check_argument(name, value, annotations[name]) if name in annotations else value
        for name, value in kwargs.items()
    }


def register(name: str) -> Callable[[Builder], Builder]:
    """Register a builder under ``name``; a name may be registered once.

    Args:
        name: The preset's name, as :func:`get` and the command line's ``--preset`` take it.

    Returns:
        A decorator that registers the builder and returns it, wrapped so that every
        call is checked against the builder's annotations first (types, ``Literal``
        choices, :class:`Range` bounds), and every network it builds records its preset
        (``net.preset``: the name and the keyword arguments, when they are plain
        values), which checkpoints keep so that :func:`from_checkpoint` can build it
        again.

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
            kwargs = _checked_arguments(builder, kwargs)  # before anything is built
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
        CheckpointError: Unreadable, carrying pickled objects beyond plain data, of an
            unknown format, silent about its preset, recording a preset or arguments
            this library does not build (an unknown name or argument, a wrong type, a
            size beyond its documented bound; see :func:`from_record`), or not matching
            its preset's layers. The message names the file.
        MissingExtraError: A ``.safetensors`` file without the ``export`` extra.

    Example:
        >>> from_checkpoint("missing.pt")
        Traceback (most recent call last):
        ...
        FileNotFoundError: Checkpoint not found: missing.pt
    """
    if Path(path).suffix == ".safetensors":
        tensors, found = read_safetensors(path)
        model = from_record(found["name"], found["kwargs"], source=path)
        load_model_state(model, tensors, source=path)
        return model.to(map_location).eval()
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
    model = from_record(record["name"], record.get("kwargs", {}), source=path)
    load_model_state(model, state["model"], source=path)
    return model.to(map_location).eval()


def from_record(name: str, kwargs: object, *, source: object) -> MultiTaskNet:
    """Build a preset from a record read from a file, which anyone may have written.

    The record is data, never a recipe for unbounded work: the name must be a
    registered preset and every argument must pass the builder's checks (types,
    choices, the :class:`Range` of every size-like argument) before anything is
    built. No code from the file ever runs.

    Args:
        name: The recorded preset name.
        kwargs: The recorded keyword arguments, as read (a dict of plain values).
        source: The file, for the message.

    Returns:
        The network, freshly initialized.

    Raises:
        CheckpointError: An unknown preset, or arguments it does not take; the message
            names the file, the argument, the value and what is allowed.

    Example:
        >>> from_record("mnist_addition", {"digits": 10**12}, source="weights.pt")
        Traceback (most recent call last):
        ...
        multitask_mnist.checkpoint.CheckpointError: weights.pt records preset \
'mnist_addition' with arguments it does not build: Expected argument `digits` ...
    """
    if not isinstance(kwargs, dict) or not all(isinstance(key, str) for key in kwargs):
        raise CheckpointError(
            f"{source} records the arguments of preset {name!r} as {kwargs!r}; expected a "
            "mapping of argument names to values"
        )
    try:
        builder = _lookup(name)
    except InvalidValueError as error:
        raise CheckpointError(f"{source} records a preset this library lacks: {error}") from None
    try:
        return builder(**kwargs)
    except (InvalidTypeError, InvalidValueError) as error:
        raise CheckpointError(
            f"{source} records preset {name!r} with arguments it does not build: {error}"
        ) from None


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
        if _as_tuples(value) != pinned[key]:
            raise InvalidValueError(
                f"Preset {preset!r} pins {key}={pinned[key]!r}; got {key}={value!r}. "
                "Build a MultiTaskNet from its blocks (or digit_sum_net) to change it."
            )


def _as_tuples(value: Any) -> Any:
    """``value`` with every list made a tuple (JSON reads tuples back as lists)."""
    return tuple(map(_as_tuples, value)) if isinstance(value, (list, tuple)) else value


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
    _pin("mnist_sum_bn", pinned, num_classes=10, in_channels=1, hidden=(5, 5), global_pool=True)
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
    _pin("multi_mnist_lenet", pinned, num_classes=10)
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
def mnist_addition(
    *, digits: Annotated[int, Range(1, MAX_ADDITION_DIGITS)] = 1, **pinned: Any
) -> MultiTaskNet:
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
        digits: Digits per number, ``N``, from 1 to :data:`MAX_ADDITION_DIGITS`.
        **pinned: ``base=10`` is accepted only with this value.

    Returns:
        The network, freshly initialized.

    Raises:
        ValueError: ``digits`` outside 1..:data:`MAX_ADDITION_DIGITS`, or a pinned
            argument with another value.
        TypeError: ``digits`` not an int, or an argument the preset does not take.

    Example:
        >>> net = mnist_addition(digits=2)
        >>> net.task_names, net.tasks[0].num_classes, net.num_parameters()
        (('sum',), 199, 100410)
    """
    _pin("mnist_addition", pinned, base=10)
    head = SumOfNumbers(operands=2, digits=digits)
    return MultiTaskNet(
        {
            "digits": Block(PerImage(ConvTrunk(MNIST_SUM_LAYERS)), ["images"]),
            "sum": Block(head, ["digits"], Task("sum", "multiclass", head.num_classes)),
        },
        [Input("images", (2 * digits, 1, 28, 28))],
    )
