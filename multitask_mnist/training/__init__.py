"""Training: the Trainer and what surrounds its loop, one job per module.

``trainer`` the loop; ``config`` the settings, declared once; ``task`` the model, loss
and method as one module; ``step`` one training step; ``batches`` the batches;
``evaluation`` evaluation and prediction; ``resume`` the checkpoint connector;
``run_dir`` the output folder's lock and the ranks' agreement on a stop;
``callbacks`` the events and the default callbacks (checkpoints, run files, log
lines, progress, early stopping); ``optim`` optimizer and schedule factories;
``preemption`` signals; ``run_lock`` one run per output folder; ``history`` what a
run records. The saved state's format is :mod:`multitask_mnist.checkpoint` and
torchrun's processes are joined by :mod:`multitask_mnist.distributed`, both a layer
below.
"""

from multitask_mnist import distributed  # noqa: F401 - the old path, kept for 0.2 (moved up a layer)

# The checkpoint format moved a layer down in 0.2; its names stay importable from here.
from multitask_mnist.checkpoint import CHECKPOINT_FORMAT as CHECKPOINT_FORMAT
from multitask_mnist.checkpoint import CheckpointError as CheckpointError
from multitask_mnist.checkpoint import TrainingState as TrainingState
from multitask_mnist.checkpoint import load_checkpoint as load_checkpoint
from multitask_mnist.checkpoint import load_model_state as load_model_state
from multitask_mnist.checkpoint import prepare_output_dir as prepare_output_dir
from multitask_mnist.checkpoint import save_checkpoint as save_checkpoint
from multitask_mnist.checkpoint import write_text_atomic as write_text_atomic
from multitask_mnist.methods import StepOutput
from multitask_mnist.training._runtime import PRECISIONS, seed_everything
from multitask_mnist.training.callbacks import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    Callback,
    EarlyStopping,
    EpochLog,
    GradientConflict,
    ModelCheckpoint,
    ProgressBar,
    RunFiles,
    TensorBoard,
    default_callbacks,
    run_settings,
    update_metrics_file,
)
from multitask_mnist.training.config import TrainerConfig
from multitask_mnist.training.evaluation import Prediction
from multitask_mnist.training.history import History
from multitask_mnist.training.optim import (
    OPTIMIZERS,
    SCHEDULERS,
    create_optimizer,
    create_scheduler,
    param_groups,
)
from multitask_mnist.training.preemption import TrainingInterrupted
from multitask_mnist.training.run_dir import NonFiniteLossError
from multitask_mnist.training.run_lock import OutputDirLockedError
from multitask_mnist.training.step import train_step
from multitask_mnist.training.task import TrainingTask
from multitask_mnist.training.trainer import Trainer

__all__ = [
    "BEST_CHECKPOINT",
    "LAST_CHECKPOINT",
    "OPTIMIZERS",
    "PRECISIONS",
    "SCHEDULERS",
    "Callback",
    "EarlyStopping",
    "EpochLog",
    "GradientConflict",
    "History",
    "ModelCheckpoint",
    "NonFiniteLossError",
    "OutputDirLockedError",
    "Prediction",
    "ProgressBar",
    "RunFiles",
    "StepOutput",
    "TensorBoard",
    "Trainer",
    "TrainerConfig",
    "TrainingInterrupted",
    "TrainingTask",
    "create_optimizer",
    "create_scheduler",
    "default_callbacks",
    "param_groups",
    "run_settings",
    "seed_everything",
    "train_step",
    "update_metrics_file",
]
