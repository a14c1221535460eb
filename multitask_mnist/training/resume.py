"""The checkpoint connector: a run's state out to a checkpoint and back, as Lightning's.

:func:`dump` writes the parts in one :class:`~multitask_mnist.checkpoint.TrainingState`;
:func:`restore` reads them back in the same order: the model (and its loss and
method), then the training state (optimizer, schedule, position, RNG, history, the
epoch in progress), then the callbacks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from torch import Tensor

from multitask_mnist import distributed
from multitask_mnist.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    TrainingState,
    load_checkpoint,
    load_model_state,
)
from multitask_mnist.methods import method_name
from multitask_mnist.tasks import TaskMetrics
from multitask_mnist.training import _runtime
from multitask_mnist.training.history import History

if TYPE_CHECKING:
    from multitask_mnist.training.trainer import Trainer

__all__ = ["EpochState", "dump", "restore", "run_record", "to_cpu"]

logger = logging.getLogger(__name__)


class EpochState(NamedTuple):
    """The epoch in progress: where it started and what it has summed so far."""

    metrics: dict[str, float]  # epoch, lr and task weights, as the epoch began
    totals: TaskMetrics
    elapsed_s: float  # training time in this epoch before this process's part of it
    # Each process's own sums (metric totals, the method's running state and
    # diagnostics), gathered when a signal stopped the run; None until then.
    per_rank: list[Any] | None = None


def to_cpu(value: Any) -> Any:
    """``value`` with every tensor in it moved to the CPU (dicts and lists walked)."""
    if isinstance(value, Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_cpu(v) for v in value)
    return value


def run_record(trainer: Trainer) -> dict[str, Any]:
    """What a run records of itself (:attr:`Trainer.config
    <multitask_mnist.training.Trainer.config>`): the settings with objects by name, the
    device and autocast as resolved, the fixed task weights, the preset, and the
    program's ``run_config``."""

    def name(spec: object) -> str:
        return spec if isinstance(spec, str) else getattr(spec, "__name__", repr(spec))

    preset = trainer.model.preset
    dtype = trainer.autocast_dtype
    return {
        **trainer.settings.to_dict(),
        "optimizer": name(trainer.optimizer_spec),
        "scheduler": name(trainer.scheduler_spec),
        "method": method_name(trainer.method),
        "device": str(trainer.device),
        "autocast": str(dtype).removeprefix("torch.") if dtype else "float32",
        "channels_last": trainer.channels_last,
        "keep_freed_memory": trainer.keep_freed_memory,
        "loss_weights": dict(trainer.loss.weights),
        "preset": preset["name"] if preset is not None else None,
        **trainer.run_config,
    }


def own_epoch_state(trainer: Trainer, state: EpochState) -> dict[str, Any]:
    """What this process alone has summed in the epoch so far, on the CPU."""
    method = trainer.task.method
    own = {
        "totals": state.totals.state_dict(),
        "method": method.state_dict(),
        "diagnostics": method.diagnostics.state_dict(),
    }
    return cast(dict[str, Any], to_cpu(own))


def dump(trainer: Trainer) -> TrainingState:
    """Everything needed to resume ``trainer`` from where the run stands now."""
    optimizer, scheduler = trainer.optimization()
    epoch_state: dict[str, Any] = {}
    if trainer.epoch_state is not None:
        partial = trainer.epoch_state
        epoch_state = {
            "metrics": dict(partial.metrics),
            "per_rank": partial.per_rank or [own_epoch_state(trainer, partial)],
            "elapsed_s": partial.elapsed_s,
            "steps_per_epoch": trainer.steps_per_epoch,
        }
    return TrainingState(
        format=CHECKPOINT_FORMAT,
        epoch=trainer.epoch,
        step=trainer.step,
        stop_reason=trainer.stop_reason,
        model=trainer.model.state_dict(),
        loss=trainer.task.loss.state_dict(),
        method=trainer.task.method.state_dict(),
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(),
        rng=trainer.rng_states or [to_cpu(_runtime.get_rng_state())],
        callbacks={name: cb.state_dict() for name, cb in trainer.callbacks.items()},
        history=list(trainer.history.epochs),
        epoch_state=epoch_state,
        train_time_s=trainer.train_time,
        config=trainer.config,
        preset=trainer.model.preset,
    )


def restore(trainer: Trainer, path: Path) -> None:
    """Load ``path`` into ``trainer``: the model, then the training state, then the
    callbacks. Without a file there, the run starts afresh.

    Raises:
        CheckpointError: Unreadable, of another format, of another architecture, or
            stopped mid-epoch under other settings than these.
    """
    if not path.exists():
        logger.info("No checkpoint in %s; starting from scratch", path.parent)
        return
    state = cast(TrainingState, load_checkpoint(path, map_location=trainer.device))
    if state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} has checkpoint format {state['format']}, written by an earlier version "
            f"of multitask_mnist; runs resume from format {CHECKPOINT_FORMAT} only (its "
            "weights still load with presets.from_checkpoint)"
        )
    _restore_model(trainer, state, path)
    _restore_training_state(trainer, state)
    _restore_callbacks(trainer, state, path)
    where = f"epoch {trainer.epoch}" + (f", step {trainer.step}" if trainer.step else "")
    logger.info("Resumed from %s after %s", path, where)


def _restore_model(trainer: Trainer, state: TrainingState, path: Path) -> None:
    load_model_state(trainer.model, state["model"], source=path)
    trainer.task.loss.load_state_dict(state["loss"])
    trainer.task.method.load_state_dict(state["method"])


def _restore_training_state(trainer: Trainer, state: TrainingState) -> None:
    optimizer, scheduler = trainer.optimization()
    optimizer.load_state_dict(state["optimizer"])
    trainer.epoch, trainer.step = state["epoch"], state["step"]
    planned = state["config"].get("epochs", trainer.epochs)
    if planned == trainer.epochs:
        scheduler.load_state_dict(state["scheduler"])
    else:
        remaining = max(trainer.epochs - trainer.epoch, 0)
        logger.warning(
            "Resuming a run planned for %d epochs with epochs=%d: the learning-rate "
            "schedule restarts over the remaining %d epoch(s)",
            planned,
            trainer.epochs,
            remaining,
        )
        trainer.scheduler = trainer.new_schedule(max(remaining, 1))
    rng = state["rng"]
    rank = distributed.rank()
    _runtime.set_rng_state(rng[rank] if len(rng) > rank else rng[0])
    trainer.stop(state["stop_reason"])
    trainer.history = History(list(state["history"]))
    trainer.train_time = float(state["train_time_s"])
    if state["epoch_state"]:  # stopped mid-epoch: each process takes back its own sums
        trainer.epoch_state = _restore_epoch(trainer, state)


def _restore_epoch(trainer: Trainer, state: TrainingState) -> EpochState:
    partial = state["epoch_state"]
    then = {
        "processes": len(partial["per_rank"]),
        "steps per epoch": partial["steps_per_epoch"],
        **{key: state["config"][key] for key in ("epochs", "batch_size", "seed")},
    }
    now = {
        "processes": distributed.world_size(),
        "steps per epoch": trainer.steps_per_epoch,
        "epochs": trainer.epochs,
        "batch_size": trainer.batch_size,
        "seed": trainer.seed,
    }
    changed = [f"{key} {then[key]} (now {now[key]})" for key in now if then[key] != now[key]]
    if changed:
        raise CheckpointError(
            "The run was stopped mid-epoch; it resumes only as it was started: "
            + ", ".join(changed)
        )
    own = partial["per_rank"][distributed.rank()]
    totals = trainer.new_metrics()
    totals.load_state_dict(own["totals"])
    method = trainer.task.method
    method.diagnostics.load_state_dict(own["diagnostics"], trainer.device)
    method.load_state_dict(own["method"])
    return EpochState(dict(partial["metrics"]), totals, partial["elapsed_s"])


def _restore_callbacks(trainer: Trainer, state: TrainingState, path: Path) -> None:
    for name, callback in trainer.callbacks.items():
        if name in state["callbacks"]:
            callback.load_state_dict(state["callbacks"][name])
        elif callback.state_dict():
            logger.warning("%s holds no state for callback %r; it starts afresh", path, name)
