"""Callbacks: the events the Trainer fires, and the callbacks that ship with the library.

The Trainer runs with :func:`default_callbacks` unless told otherwise; each has a
name, by which a user replaces or removes it (see
:class:`~multitask_mnist.training.Trainer`).
"""

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
from multitask_mnist.training.callbacks.run_files import RunFiles, update_metrics_file
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
