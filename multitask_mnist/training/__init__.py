"""Training: the Trainer, its callbacks, metrics and checkpoints."""

from multitask_mnist.training import distributed
from multitask_mnist.training._runtime import PRECISIONS, seed_everything
from multitask_mnist.training.callbacks import Callback, EarlyStopping
from multitask_mnist.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    prepare_output_dir,
    save_checkpoint,
    write_text_atomic,
)
from multitask_mnist.training.history import History
from multitask_mnist.training.metrics import METRIC_NAMES
from multitask_mnist.training.trainer import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    NonFiniteLossError,
    Prediction,
    Trainer,
)

__all__ = [
    "BEST_CHECKPOINT",
    "LAST_CHECKPOINT",
    "METRIC_NAMES",
    "PRECISIONS",
    "Callback",
    "CheckpointError",
    "EarlyStopping",
    "History",
    "NonFiniteLossError",
    "Prediction",
    "Trainer",
    "distributed",
    "load_checkpoint",
    "load_model_state",
    "prepare_output_dir",
    "save_checkpoint",
    "seed_everything",
    "write_text_atomic",
]
