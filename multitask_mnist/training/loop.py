"""The fit loop: epochs of training steps, validation, a callback's stop, a signal's stop.

:class:`FitLoop` is what :meth:`Trainer.fit <multitask_mnist.training.Trainer.fit>`
runs. It owns the order of events and nothing else: the step is
:func:`~multitask_mnist.training.train_step`, batches come from
:class:`~multitask_mnist.training.batches.Batches`, saving and restoring is
:mod:`~multitask_mnist.training.resume` (through the callbacks), and the agreement
between processes on a stop is :class:`~multitask_mnist.training.run_dir.StepGuard`.
The position (epoch, step, the partial epoch's sums) lives on the Trainer, where a
checkpoint reads it.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset

from multitask_mnist import distributed
from multitask_mnist.errors import InvalidValueError
from multitask_mnist.methods import GradientAggregation, GradientProbe, split_parameters
from multitask_mnist.training import _runtime, resume
from multitask_mnist.training.batches import epoch_seed, set_epoch
from multitask_mnist.training.history import History
from multitask_mnist.training.optim import create_optimizer, param_groups
from multitask_mnist.training.preemption import TrainingInterrupted, catch_signals
from multitask_mnist.training.run_dir import StepGuard
from multitask_mnist.training.step import train_step

if TYPE_CHECKING:
    from multitask_mnist.training.trainer import Trainer

__all__ = ["FitLoop", "prefixed"]

logger = logging.getLogger(__name__)

# How often (in steps) the hot loop looks at its non-finite-loss flag and, under
# torchrun, agrees on a received signal: one sync per this many steps.
CHECK_EVERY = 16


def prefixed(prefix: str, metrics: Mapping[str, float]) -> dict[str, float]:
    """``metrics`` with every name prefixed (``val_``, ``train_``, ``test_``)."""
    return {f"{prefix}{name}": value for name, value in metrics.items()}


class FitLoop:
    """One :meth:`~multitask_mnist.training.Trainer.fit` of ``trainer``.

    Args:
        trainer: The Trainer whose model, method, callbacks and position it drives.
    """

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    def run(
        self, train_data: Dataset[Any], val_data: Dataset[Any] | None, resume_run: bool
    ) -> History:
        """Train the remaining epochs; see :meth:`Trainer.fit`."""
        trainer = self.trainer
        if resume_run and trainer.output_dir is None:
            raise InvalidValueError("`resume=True` needs `output_dir`, where the checkpoints are")
        if len(train_data) == 0:  # type: ignore[arg-type]
            raise InvalidValueError("Expected `train_data` to hold at least one sample, got 0")
        trainer._run_dir.claim()
        self._start(len(train_data))  # type: ignore[arg-type]
        last = trainer.checkpoint_path()
        if resume_run and last is not None:
            resume.restore(trainer, last)
        distributed.broadcast_module(trainer.task)  # every process starts from rank 0's state
        with catch_signals() as signals:
            guard = StepGuard(signals, trainer.device, CHECK_EVERY, self._divergence_hint)
            trainer.fire("on_fit_start")
            first, last_epoch = trainer.epoch + 1, trainer.epochs
            for epoch in range(first, last_epoch + 1) if trainer.stop_reason is None else ():
                metrics = self._train_epoch(train_data, epoch, guard)
                if val_data is not None:
                    metrics |= prefixed("val_", trainer._evaluate(val_data)[0])
                self._end_epoch(epoch, metrics)
                if trainer.stop_reason is not None:
                    logger.info("Stopping early after epoch %d: %s", epoch, trainer.stop_reason)
                    break
            # A signal after the last check (in a last validation or the epoch's writes)
            # still stops the run: the checkpoint on disk is complete.
            late = guard.check(due=True, where=f"epoch {trainer.epoch}")
            if late is not None:
                raise TrainingInterrupted(
                    f"Stopped by {signal.Signals(late).name} after epoch {trainer.epoch}, the "
                    f"last one; {self._resume_hint()}",
                    late,
                )
        trainer.history.stop_reason = trainer.stop_reason
        trainer.fire("on_fit_end", trainer.history)
        return trainer.history

    def _start(self, n: int) -> None:
        """A fresh fit: the optimizer, the schedule, an empty history, epoch 0."""
        trainer = self.trainer
        shard = math.ceil(n / distributed.world_size())
        trainer.steps_per_epoch = math.ceil(shard / trainer.batch_size)
        _runtime.seed_everything(trainer.seed)
        groups = param_groups(
            trainer.task,
            lr=trainer.lr,
            fast=trainer.model.fast_modules(),
            fast_lr_scale=trainer.head_lr_scale,
        )
        trainer.optimizer = create_optimizer(
            groups, trainer.optimizer_spec, lr=trainer.lr, weight_decay=trainer.weight_decay
        )
        trainer.scheduler = trainer.new_schedule(trainer.epochs)
        trainer.history, trainer.train_time = History(), 0.0
        trainer.stop(None)
        trainer.method.diagnostics.epoch(())  # a fresh fit: no sums of an earlier one
        trainer.epoch, trainer.step, trainer.epoch_state = 0, 0, None

    def _train_epoch(self, data: Dataset[Any], epoch: int, guard: StepGuard) -> dict[str, float]:
        trainer = self.trainer
        tic = time.perf_counter()
        trainer.task.train()
        set_epoch(data, epoch - 1)
        trainer.rng_states = []  # gathered again where the run is saved next
        if trainer.epoch_state is None:  # a new epoch, not one resumed inside
            trainer.fire("on_epoch_start", epoch)
            weights = {f"weight_{task}": w for task, w in trainer.method.task_weights().items()}
            lr = float(trainer.optimization()[1].get_last_lr()[0])
            trainer.epoch_state = resume.EpochState(
                {"epoch": epoch, "lr": lr, **weights}, trainer.new_metrics(), 0.0
            )
        state = trainer.epoch_state
        optimizer, scheduler = trainer.optimization()
        size = trainer.batch_size
        order = trainer._batches.epoch_order(data, trainer.seed, epoch)[trainer.step * size :]
        probe = self._probe()
        callbacks = trainer.callbacks.values()
        guard.start_epoch()
        batches = trainer._batches(data, size, order, seed=epoch_seed(trainer.seed, epoch))
        for step, batch in enumerate(batches, trainer.step):
            wanted = any(cb.wants_gradient_probe(trainer, epoch, step) for cb in callbacks)
            out = train_step(
                trainer.task,
                batch,
                optimizer,
                scheduler,
                autocast=trainer.autocast,
                grad_clip=trainer.grad_clip,
                probe=probe if wanted else None,
            )
            state.totals.update(
                out.predictions, out.targets, out.masks, losses=out.losses, total=out.total
            )
            trainer.step = step + 1
            total = out.total.detach()
            trainer.fire("on_batch_end", epoch, step, total)
            due = guard.due(trainer.step, trainer.steps_per_epoch)
            received = guard.after_step(total, step, due, f"epoch {epoch}")
            if received is not None:
                self._interrupt(epoch, received, state, tic)
        trainer.task.on_train_epoch_end()
        trainer.epoch_state = None
        time_s = state.elapsed_s + time.perf_counter() - tic
        trainer.train_time += time_s
        train = prefixed("train_", state.totals.compute())
        gradients = trainer.method.diagnostics.epoch(trainer.model.task_names)
        diagnostics = trainer.model.diagnostics()
        return state.metrics | train | gradients | diagnostics | {"time_s": time_s}

    def _probe(self) -> GradientProbe | None:
        """A probe of the tasks' gradients on the shared parameters, for the steps a
        callback asks for; none where the method measures them itself."""
        method = self.trainer.method
        if isinstance(method, GradientAggregation):
            return None
        shared, _ = split_parameters(self.trainer.model)
        return GradientProbe(shared, method.diagnostics) if shared else None

    def _divergence_hint(self) -> str:
        last = self.trainer.checkpoint_path()
        kept = f"; the last good checkpoint is {last}" if last is not None and last.exists() else ""
        return f"try a lower learning rate (lr={self.trainer.lr:g}) or grad_clip{kept}"

    def _interrupt(
        self, epoch: int, signal_number: int, state: resume.EpochState, tic: float
    ) -> None:
        """Save the run mid-epoch through the callbacks, then raise TrainingInterrupted."""
        trainer = self.trainer
        elapsed = state.elapsed_s + time.perf_counter() - tic
        per_rank = distributed.all_gather_object(resume.own_epoch_state(trainer, state))
        trainer.epoch_state = state._replace(elapsed_s=elapsed, per_rank=per_rank)
        self._gather_rng()
        trainer.fire_on_all("on_train_interrupted", epoch, trainer.step)
        where = f"epoch {epoch}, step {trainer.step} of {trainer.steps_per_epoch}"
        name = signal.Signals(signal_number).name
        raise TrainingInterrupted(
            f"Stopped by {name} at {where}; {self._resume_hint()}", signal_number
        )

    def _resume_hint(self) -> str:
        last = self.trainer.checkpoint_path()
        if last is not None:
            return (
                f"saved {last}; resume with fit(resume=True) (on the command line: the same "
                "command with --resume)"
            )
        return "nothing was saved (no output_dir or no model_checkpoint callback)"

    def _gather_rng(self) -> None:
        """Every process's RNG states, for the checkpoint (each process draws its own)."""
        states = resume.to_cpu(_runtime.get_rng_state())
        self.trainer.rng_states = distributed.all_gather_object(states)

    def _end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        trainer = self.trainer
        trainer.epoch, trainer.step = epoch, 0
        trainer.history.epochs.append(metrics)
        self._gather_rng()
        trainer.fire_on_all("on_epoch_end", epoch, metrics)
        # A callback may stop the run on one process only: every process stops with it.
        stopped = torch.tensor(int(trainer.stop_reason is not None), device=trainer.device)
        if int(distributed.all_reduce_max(stopped)) and trainer.stop_reason is None:
            trainer.stop("a callback on another process stopped the run")
