"""The Trainer's settings, declared once: a typed, validated, frozen dataclass.

:class:`TrainerConfig` is the one place the training settings and their defaults
live. The Trainer takes it (or its fields as keyword arguments); the command line and
every example build their flags from its fields (:mod:`multitask_mnist.program`);
every checkpoint, ``metrics.json`` and ``config.yaml`` records it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from multitask_mnist._validation import check_bool, check_choice, check_int, check_number
from multitask_mnist.errors import InvalidTypeError, InvalidValueError
from multitask_mnist.methods import METHODS
from multitask_mnist.training._runtime import PRECISIONS
from multitask_mnist.training.optim import OPTIMIZERS, SCHEDULERS

__all__ = ["TrainerConfig", "plain", "with_objects"]

Precision = Literal["auto", "bf16", "fp32"]
#: What the config says for an object given to the Trainer in place of a name.
CUSTOM = "custom"
#: The settings that may be an object instead of a name.
OBJECT_SETTINGS = ("optimizer", "scheduler", "method")


@dataclass(frozen=True)
class TrainerConfig:
    """How the Trainer trains: every setting of a run that is a plain value.

    Each field is a keyword argument of :class:`~multitask_mnist.training.Trainer` and a
    flag of ``multitask-mnist train`` and of the examples (``batch_size`` is
    ``--batch-size``). Values are checked when the config is made. An object where a
    name is expected (an optimizer factory, a :class:`~multitask_mnist.methods.Method`,
    a TorchJD aggregator) is given to the Trainer directly: its config then says
    ``"custom"``, and the run's record names the object.

    Args:
        epochs: Epochs to train.
        batch_size: Training batch size (per process under torchrun).
        eval_batch_size: Batch size of evaluation and prediction.
        lr: Peak learning rate.
        head_lr_scale: The learning rate of the model's ``fast`` blocks (the fusion
            head) as a multiple of ``lr``.
        weight_decay: Weight decay of a named optimizer.
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"``.
        scheduler: ``"onecycle"`` (warm up, then anneal), ``"cosine"`` or
            ``"constant"``; every schedule steps once per batch.
        method: How the tasks' losses become gradients: a name in
            :data:`~multitask_mnist.methods.METHODS` (``"none"``, the weighted sum;
            ``"uncertainty"``, ``"famo"``, ``"upgrad"``, ...).
        seed: Seeds the shuffling and the global generators at ``fit``.
        device: ``"auto"`` (CUDA, then MPS, then CPU) or a torch device.
        precision: ``"auto"`` (bfloat16 autocast where the hardware runs it natively,
            float32 elsewhere), ``"bf16"`` or ``"fp32"``.
        channels_last: Keep images and convolution weights in channels-last memory
            order; ``None`` means on for CPU and CUDA, where it measured faster.
        grad_clip: Clip the gradient norm to this value; ``None`` for no clipping.
        output_dir: Where checkpoints, ``metrics.json``, ``history.csv``,
            ``config.yaml`` and plots go; ``None`` writes nothing.
        progress: Show a progress bar on a terminal.
        num_workers: Loader processes for datasets without a batched ``get_batch``.
        keep_freed_memory: Keep the buffers each step frees for the next one (glibc's
            malloc thresholds; no page faults per step), given back when the loop ends.

    Raises:
        TypeError: A field of the wrong type.
        ValueError: A field out of range, or an unknown name.

    Example:
        >>> config = TrainerConfig(epochs=3)
        >>> config.epochs, config.batch_size, config.method
        (3, 128, 'none')
        >>> TrainerConfig(batch_size=0)
        Traceback (most recent call last):
        ...
        multitask_mnist.errors.InvalidValueError: Expected argument `batch_size` to be >= 1, got 0
    """

    epochs: int = 10
    batch_size: int = 128
    eval_batch_size: int = 256
    lr: float = 3e-3
    head_lr_scale: float = 10.0
    weight_decay: float = 0.0
    optimizer: str = "adam"
    scheduler: str = "onecycle"
    method: str = "none"
    seed: int = 0
    device: str = "auto"
    precision: Precision = "auto"
    channels_last: bool | None = None
    grad_clip: float | None = None
    output_dir: Path | None = None
    progress: bool = True
    num_workers: int = 0
    keep_freed_memory: bool = True

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_int("eval_batch_size", self.eval_batch_size, minimum=1)
        check_number("lr", self.lr, minimum=0.0)
        check_number("head_lr_scale", self.head_lr_scale, minimum=0.0)
        check_number("weight_decay", self.weight_decay, minimum=0.0)
        for name, known in (
            ("optimizer", OPTIMIZERS),
            ("scheduler", SCHEDULERS),
            ("method", METHODS),
        ):
            if getattr(self, name) != CUSTOM:  # an object given to the Trainer
                check_choice(name, getattr(self, name), known)
        check_int("seed", self.seed)
        object.__setattr__(self, "device", str(self.device))  # a torch.device, as text
        check_choice("precision", self.precision, PRECISIONS)
        if self.channels_last is not None:
            check_bool("channels_last", self.channels_last)
        if self.grad_clip is not None:
            object.__setattr__(self, "grad_clip", check_number("grad_clip", self.grad_clip))
        if self.output_dir is not None:
            if not isinstance(self.output_dir, (str, os.PathLike)):
                raise InvalidTypeError(
                    f"Expected argument `output_dir` to be a path, got {self.output_dir!r}"
                )
            object.__setattr__(self, "output_dir", Path(self.output_dir))
        check_bool("progress", self.progress)
        check_int("num_workers", self.num_workers, minimum=0)
        check_bool("keep_freed_memory", self.keep_freed_memory)
        for name in ("lr", "head_lr_scale", "weight_decay"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The settings, in declaration order.

        Example:
            >>> TrainerConfig.field_names()[:3]
            ('epochs', 'batch_size', 'eval_batch_size')
        """
        return tuple(field.name for field in fields(cls))

    def replace(self, **changes: Any) -> TrainerConfig:
        """A copy with ``changes``, checked as a new config is.

        Raises:
            TypeError: A name that is not a setting (the message lists them), or a
                value of the wrong type.
            ValueError: A value out of range.

        Example:
            >>> TrainerConfig().replace(epochs=2).epochs
            2
        """
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise InvalidTypeError(
                f"Unknown setting(s) {', '.join(unknown)}; the settings are "
                f"{', '.join(self.field_names())}"
            )
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values (paths as strings), for the run's record.

        Example:
            >>> TrainerConfig(output_dir="runs/a").to_dict()["output_dir"]
            'runs/a'
        """
        plain = dataclasses.asdict(self)
        if plain["output_dir"] is not None:
            plain["output_dir"] = str(plain["output_dir"])
        return plain

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainerConfig:
        """The config that :meth:`to_dict` recorded; keys that are not settings are left
        out (a run's record holds more).

        Raises:
            ValueError: A recorded value out of range.

        Example:
            >>> TrainerConfig.from_dict({"epochs": 2, "limit": 100}).epochs
            2
        """
        known = {key: value for key, value in values.items() if key in cls.field_names()}
        try:
            return cls(**known)
        except InvalidTypeError as error:  # a recorded value of another type
            raise InvalidValueError(str(error)) from None


def with_objects(
    config: TrainerConfig | None, settings: Mapping[str, Any]
) -> tuple[TrainerConfig, dict[str, Any]]:
    """``config`` (the defaults if ``None``) with ``settings`` replacing its fields, and
    the objects among ``settings`` given in place of a name (the config says
    ``"custom"`` for each).

    Raises:
        TypeError: A name that is not a setting, or a value of the wrong type.
        ValueError: A value out of range.

    Example:
        >>> config, objects = with_objects(None, {"epochs": 2, "method": object()})
        >>> config.epochs, config.method, list(objects)
        (2, 'custom', ['method'])
    """
    names = dict(settings)
    objects = {k: names.pop(k) for k in OBJECT_SETTINGS if not isinstance(names.get(k, ""), str)}
    return (config or TrainerConfig()).replace(**names, **dict.fromkeys(objects, CUSTOM)), objects


def plain(value: Any) -> Any:
    """``value`` with its paths as text, as a run's JSON and YAML records hold it.

    Example:
        >>> plain({"data_dir": Path("data"), "limit": 5})
        {'data_dir': 'data', 'limit': 5}
    """
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    return value
