"""Callbacks: the events the Trainer fires, and the callbacks that ship with the library.

The Trainer runs with :func:`default_callbacks` unless told otherwise; each has a
name, by which a user replaces or removes it (see
:class:`~multitask_mnist.training.Trainer`).
"""

from collections.abc import Sequence

from multitask_mnist.errors import InvalidTypeError, InvalidValueError
from multitask_mnist.training.callbacks.base import Callback
from multitask_mnist.training.callbacks.early_stopping import EarlyStopping
from multitask_mnist.training.callbacks.epoch_log import EpochLog
from multitask_mnist.training.callbacks.gradient_conflict import GradientConflict
from multitask_mnist.training.callbacks.model_checkpoint import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    ModelCheckpoint,
)
from multitask_mnist.training.callbacks.progress import ProgressBar
from multitask_mnist.training.callbacks.run_files import (
    RunFiles,
    run_settings,
    update_metrics_file,
)
from multitask_mnist.training.callbacks.tensorboard import TensorBoard

__all__ = [
    "BEST_CHECKPOINT",
    "LAST_CHECKPOINT",
    "Callback",
    "EarlyStopping",
    "EpochLog",
    "GradientConflict",
    "ModelCheckpoint",
    "ProgressBar",
    "RunFiles",
    "TensorBoard",
    "default_callbacks",
    "resolve_callbacks",
    "run_settings",
    "update_metrics_file",
]


def default_callbacks() -> list[Callback]:
    """The callbacks every Trainer starts with, in the order they run.

    ``progress_bar`` and ``epoch_log`` report; ``model_checkpoint`` and ``run_files``
    come last, so that what other callbacks did in an epoch (an
    :class:`EarlyStopping` count, a user's state) is in the checkpoint of that epoch.

    Returns:
        New instances of :class:`ProgressBar`, :class:`EpochLog`,
        :class:`ModelCheckpoint` and :class:`RunFiles`.

    Example:
        >>> [callback.name for callback in default_callbacks()]
        ['progress_bar', 'epoch_log', 'model_checkpoint', 'run_files']
    """
    return [ProgressBar(), EpochLog(), ModelCheckpoint(), RunFiles()]


def resolve_callbacks(
    given: Sequence[Callback | tuple[str, Callback | None]], progress: bool
) -> dict[str, Callback]:
    """The callbacks of a Trainer: the defaults, with same-named ones replaced or
    removed, and the rest inserted before the defaults that save (so their state is in
    each epoch's checkpoint).

    Args:
        given: Callbacks, or ``(name, callback)`` pairs (``None`` removes a default).
        progress: ``False`` removes the ``progress_bar`` callback.

    Returns:
        The callbacks by name, in the order they run.

    Raises:
        TypeError: Something that is not a callback.
        ValueError: Removing a callback that is not a default, or two callbacks of one name.

    Example:
        >>> list(resolve_callbacks([EarlyStopping("train_loss")], progress=False))
        ['epoch_log', 'early_stopping', 'model_checkpoint', 'run_files']
    """
    defaults: dict[str, Callback | None] = {c.name: c for c in default_callbacks()}
    if not progress:
        defaults["progress_bar"] = None
    extra: dict[str, Callback] = {}
    for item in given:
        name, callback = item if isinstance(item, tuple) else (item.name, item)
        if callback is not None and not isinstance(callback, Callback):
            raise InvalidTypeError(
                f"Expected each callback to be a Callback or a (name, Callback | None) pair, "
                f"got {callback!r}"
            )
        if name in defaults:
            defaults[name] = callback
        elif callback is None:
            raise InvalidValueError(
                f"Cannot remove callback {name!r}: the default callbacks are "
                f"{', '.join(map(repr, defaults))}"
            )
        elif name in extra:
            raise InvalidValueError(f"Two callbacks are named {name!r}; give one another name")
        else:
            extra[name] = callback
    names = list(defaults)
    cut = names.index("model_checkpoint")
    ordered = [*names[:cut], *extra, *names[cut:]]
    merged = {**defaults, **extra}
    return {name: cb for name in ordered if (cb := merged[name]) is not None}
