"""The preset registry: builders by name, their arguments checked against their
annotations, and networks rebuilt from a checkpoint's record of their preset."""

from __future__ import annotations

import collections.abc
import functools
import inspect
import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import torch

from multitask_mnist.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    read_safetensors,
)
from multitask_mnist.errors import InvalidTypeError, InvalidValueError, MultitaskMnistError
from multitask_mnist.models import (
    MultiTaskNet,
    PresetRecord,
)

__all__ = [
    "Builder",
    "Range",
    "describe",
    "from_checkpoint",
    "from_record",
    "get",
    "names",
    "pin",
    "register",
]

Builder = TypeVar("Builder", bound=Callable[..., MultiTaskNet])
_REGISTRY: dict[str, Callable[..., MultiTaskNet]] = {}


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
        >>> @register("expectation_sum")
        ... def expectation_sum():
        ...     '''The documented network with a differentiable fusion.'''
        ...     return get("mnist_sum", fusion="expectation")
        >>> describe("expectation_sum"), get("expectation_sum").preset["name"]
        ('The documented network with a differentiable fusion.', 'expectation_sum')
        >>> _ = _REGISTRY.pop("expectation_sum")
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


def pin(preset: str, overrides: dict[str, Any], **pinned: Any) -> None:
    """Refuse overrides a builder cannot honour: unknown names, or other values for the
    ones it pins (a builder's ``**pinned`` arguments).

    Raises:
        TypeError: An argument the builder does not take.
        ValueError: Another value for a pinned argument.

    Example:
        >>> pin("mnist_sum", {"hidden": [5, 5]}, hidden=(5, 5))
        >>> pin("mnist_sum", {"hidden": (8,)}, hidden=(5, 5))
        Traceback (most recent call last):
        ...
        multitask_mnist.errors.InvalidValueError: Preset 'mnist_sum' pins hidden=(5, 5); ...
    """
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
