"""The Trainer: the loop of fit, evaluate, predict and test, and nothing around it.

Around the loop, each job has its own module: :mod:`~multitask_mnist.training.config`
declares the settings; :mod:`~multitask_mnist.training.step` is one training step
(the method's :meth:`~multitask_mnist.methods.Method.backward` inside);
:mod:`~multitask_mnist.training.batches` makes batches;
:mod:`~multitask_mnist.training.evaluation` evaluates and predicts;
:mod:`~multitask_mnist.training.resume` saves and restores a run;
:mod:`~multitask_mnist.training.run_dir` locks the output folder and has every process
agree on a stop; callbacks write checkpoints, run files, log lines and the progress
bar (:mod:`multitask_mnist.training.callbacks`).

The Trainer shuffles with a generator seeded from the run's seed and the epoch, so
a run resumed from its checkpoint, at an epoch's end or mid-epoch, replays exactly
what an uninterrupted run would have done.
"""

from __future__ import annotations

import functools
import logging
import math
import signal
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import Dataset

from multitask_mnist import distributed
from multitask_mnist.checkpoint import TrainingState
from multitask_mnist.errors import InvalidTypeError, InvalidValueError
from multitask_mnist.losses import WeightedMultiLoss
from multitask_mnist.methods import (
    DynamicWeightAverage,
    GradientAggregation,
    GradientProbe,
    Method,
    create_method,
    method_name,
    split_parameters,
)
from multitask_mnist.models import MultiTaskNet
from multitask_mnist.tasks import TaskMetrics
from multitask_mnist.training import _runtime, allocator, resume
from multitask_mnist.training.batches import Batches, epoch_seed, set_epoch
from multitask_mnist.training.callbacks import Callback, ModelCheckpoint, resolve_callbacks
from multitask_mnist.training.config import CUSTOM, TrainerConfig
from multitask_mnist.training.evaluation import Prediction, evaluate, predict
from multitask_mnist.training.history import History
from multitask_mnist.training.optim import create_optimizer, create_scheduler, param_groups
from multitask_mnist.training.preemption import TrainingInterrupted, catch_signals
from multitask_mnist.training.run_dir import NonFiniteLossError, RunDir, StepGuard, agree
from multitask_mnist.training.step import train_step
from multitask_mnist.training.task import TrainingTask

__all__ = ["NonFiniteLossError", "Prediction", "Trainer"]

logger = logging.getLogger(__name__)

# How often (in steps) the hot loop looks at its non-finite-loss flag and, under
# torchrun, agrees on a received signal: one sync per this many steps.
_CHECK_EVERY = 16
# Settings that may be an object instead of a name; the config then says "custom".
_OBJECT_SETTINGS = ("optimizer", "scheduler", "method")


def _plain(value: Any) -> Any:
    """``value`` with its paths as text, as the run's JSON and YAML records hold it."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _prefixed(prefix: str, metrics: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}{name}": value for name, value in metrics.items()}


class Trainer:
    """Trains, evaluates and checkpoints a :class:`~multitask_mnist.models.MultiTaskNet`.

    The model names its inputs and tasks; the datasets yield samples with fields of
    those names (see :func:`~multitask_mnist.data.as_fields`): every input, and a
    label per task, where a missing label is marked as
    :func:`~multitask_mnist.tasks.label_mask` describes.

    The settings are a :class:`~multitask_mnist.training.TrainerConfig`, given whole
    (``config``) or as keyword arguments (``epochs=3``), and readable as attributes
    (``trainer.epochs``). ``method``, ``optimizer`` and ``scheduler`` also take an
    object: a :class:`~multitask_mnist.methods.Method` or a TorchJD aggregator, a
    callable that builds an optimizer from parameter groups, a callable
    ``(optimizer, total_steps) -> LRScheduler``.

    The model, the loss and the method train as one module
    (:class:`~multitask_mnist.training.TrainingTask`); every method runs through the
    same step (:func:`~multitask_mnist.training.train_step`), whatever its family.
    Everything the loop does not own is a callback:
    :func:`~multitask_mnist.training.default_callbacks` names them (``progress_bar``,
    ``epoch_log``, ``model_checkpoint``, ``run_files``). Pass a callback with the same
    name to replace one, the pair ``(name, None)`` to remove one; other callbacks run
    after the reporting ones and before the saving ones.

    SIGTERM or SIGINT during :meth:`fit` finishes the current batch (under torchrun,
    the batches up to the next point where the processes agree, at most 16), writes a
    mid-epoch ``last.pt`` (through ``model_checkpoint``) and raises
    :class:`~multitask_mnist.training.TrainingInterrupted`; ``fit(resume=True)``
    continues from that very batch.

    Args:
        model: The network; moved to ``device``.
        config: The settings; :class:`~multitask_mnist.training.TrainerConfig`'s
            defaults when left out.
        loss: The task losses and their fixed weights; ``None`` means
            :class:`~multitask_mnist.losses.WeightedMultiLoss` with equal weights.
        callbacks: Callbacks, or ``(name, callback)`` pairs; see above.
        run_config: The whole run's settings beyond the Trainer's (a program's flags:
            the data, the preset), recorded with them in every checkpoint,
            ``metrics.json`` and ``config.yaml`` (paths as text); what ``--config``
            reads back from ``config.yaml``.
        **settings: Fields of :class:`~multitask_mnist.training.TrainerConfig` that
            replace ``config``'s.

    Raises:
        TypeError: A setting that does not exist or has the wrong type.
        ValueError: A setting out of range, an unknown name, or a method that cannot
            train this model.

    Example:
        >>> from multitask_mnist import presets
        >>> trainer = Trainer(presets.mnist_sum(), epochs=1, device="cpu", progress=False)
        >>> trainer.epochs, trainer.device.type, list(trainer.callbacks)
        (1, 'cpu', ['epoch_log', 'model_checkpoint', 'run_files'])
    """

    def __init__(
        self,
        model: MultiTaskNet,
        config: TrainerConfig | Mapping[str, Any] | None = None,
        *,
        loss: WeightedMultiLoss | None = None,
        callbacks: Sequence[Callback | tuple[str, Callback | None]] = (),
        run_config: Mapping[str, Any] | None = None,
        **settings: Any,
    ) -> None:
        if not isinstance(model, MultiTaskNet):
            raise InvalidTypeError(
                f"Expected `model` to be a MultiTaskNet, got {type(model).__name__}"
            )
        if isinstance(config, Mapping):  # before 0.2: extra values for the record
            warnings.warn(
                "Trainer(config={...}) for extra values to record is deprecated and goes in "
                "0.3: pass them as run_config={...}; config= takes a TrainerConfig",
                DeprecationWarning,
                stacklevel=2,
            )
            run_config, config = {**config, **(run_config or {})}, None
        if config is not None and not isinstance(config, TrainerConfig):
            raise InvalidTypeError(f"Expected `config` to be a TrainerConfig, got {config!r}")
        objects = {
            k: settings.pop(k) for k in _OBJECT_SETTINGS if not isinstance(settings.get(k, ""), str)
        }
        self.settings = (config or TrainerConfig()).replace(
            **settings, **{name: CUSTOM for name in objects}
        )
        self.run_config = {key: _plain(value) for key, value in (run_config or {}).items()}
        self.device = distributed.setup(_runtime.resolve_device(self.settings.device))
        self.autocast_dtype = _runtime.resolve_precision(self.settings.precision, self.device)
        self.autocast: _runtime.Autocast = functools.partial(
            _runtime.autocast, self.device, self.autocast_dtype
        )
        self.channels_last = (
            self.device.type in ("cpu", "cuda")
            if self.settings.channels_last is None
            else self.settings.channels_last
        )
        self.keep_freed_memory = self.settings.keep_freed_memory and allocator.keep_freed_memory()
        self.optimizer_spec = objects.get("optimizer", self.settings.optimizer)
        self.scheduler_spec = objects.get("scheduler", self.settings.scheduler)
        loss = loss if loss is not None else WeightedMultiLoss()
        method = self._method(objects.get("method", self.settings.method), loss, model)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        task = TrainingTask(model, loss, method)
        self.task: TrainingTask = task.to(self.device, memory_format=memory_format)  # type: ignore[call-overload]
        self.callbacks = resolve_callbacks(callbacks, self.settings.progress)
        self._batches = Batches(
            model.tasks,
            self.device,
            channels_last=self.channels_last,
            num_workers=self.settings.num_workers,
        )
        self.history = History()
        self.optimizer: Optimizer | None = None
        self.scheduler: LRScheduler | None = None
        #: Epochs completed, and batches of the next epoch trained.
        self.epoch, self.step = 0, 0
        self.steps_per_epoch = 0
        self.train_time = 0.0
        self.epoch_state: resume.EpochState | None = None
        self._stop_reason: str | None = None
        self.rng_states: list[Any] = []  # every process's RNG states at the last save point
        self._run_dir = RunDir(self.output_dir, self.device)
        self._run_dir.claim()  # a folder in use stops the run now, not after data loading

    def __getattr__(self, name: str) -> Any:
        """The settings as attributes: ``trainer.epochs`` is ``trainer.settings.epochs``."""
        if name != "settings" and name in TrainerConfig.field_names():
            return getattr(self.settings, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @staticmethod
    def _method(spec: Any, loss: WeightedMultiLoss, model: MultiTaskNet) -> Method:
        """The run's method: ``spec``, or the deprecated strategy of the loss."""
        if loss.strategy != "fixed":
            if not (isinstance(spec, str) and spec == "none"):
                raise InvalidValueError(
                    f"Give one method: Trainer(method=...) got {spec!r} and the loss the "
                    f"deprecated WeightedMultiLoss(strategy={loss._strategy_name()!r}); "
                    "drop the strategy"
                )
            strategy = loss.strategy
            spec = strategy
            if strategy == "dwa":
                spec = DynamicWeightAverage(len(model.tasks), loss.temperature)
            loss.strategy = "fixed"  # the method applies it from here on
        return create_method(spec, len(model.tasks))

    @classmethod
    def get_default_config(cls) -> dict[str, Any]:
        """The default of every setting: :class:`~multitask_mnist.training.TrainerConfig`'s,
        the one place the defaults live, which the command line and the examples read.

        Returns:
            ``{name: default}`` for every setting.

        Example:
            >>> defaults = Trainer.get_default_config()
            >>> defaults["epochs"], defaults["lr"], defaults["precision"]
            (10, 0.003, 'auto')
        """
        return TrainerConfig().to_dict()

    @property
    def model(self) -> MultiTaskNet:
        """The network being trained."""
        return self.task.model

    @property
    def loss(self) -> WeightedMultiLoss:
        """The task losses and their fixed weights."""
        return self.task.loss

    @property
    def method(self) -> Method:
        """How the task losses become gradients."""
        return self.task.method

    @property
    def output_dir(self) -> Path | None:
        """Where the run's files go, or ``None``."""
        return self.settings.output_dir

    @property
    def config(self) -> dict[str, Any]:
        """The run's configuration as plain values, stored in checkpoints, ``metrics.json``
        and ``config.yaml``: the settings (objects by name), the device and autocast as
        resolved, the fixed task weights, the preset, and ``run_config``."""

        def name(spec: object) -> str:
            return spec if isinstance(spec, str) else getattr(spec, "__name__", repr(spec))

        preset = self.model.preset
        return {
            **self.settings.to_dict(),
            "optimizer": name(self.optimizer_spec),
            "scheduler": name(self.scheduler_spec),
            "method": method_name(self.method),
            "device": str(self.device),
            "autocast": str(self.autocast_dtype).removeprefix("torch.")
            if self.autocast_dtype
            else "float32",
            "channels_last": self.channels_last,
            "keep_freed_memory": self.keep_freed_memory,
            "loss_weights": dict(self.loss.weights),
            "preset": preset["name"] if preset is not None else None,
            **self.run_config,
        }

    def gradient_diagnostics(self) -> dict[str, float]:
        """The last measured step's task gradients (every step of a gradient method; the
        steps a callback asked for, otherwise).

        Returns:
            ``grad_cosine`` (mean over pairs of tasks), ``grad_norm_ratio`` (largest norm
            over smallest), ``grad_norm_{task}`` and, for aggregators that weight the
            tasks, ``effective_weight_{task}``; empty before any measured step. Reading
            them waits for the step to finish.
        """
        return self.method.diagnostics.step(self.model.task_names)

    @property
    def stop_reason(self) -> str | None:
        """Why :meth:`stop` was called during the current :meth:`fit`, or ``None``."""
        return self._stop_reason

    def stop(self, reason: str | None) -> None:
        """Ask :meth:`fit` to stop after the current epoch (callbacks call this);
        ``None`` withdraws the request (a resumed run takes back its own)."""
        self._stop_reason = reason

    def fire(self, event: str, *args: Any) -> None:
        """Call ``event`` on every callback, in order."""
        for callback in self.callbacks.values():
            getattr(callback, event)(self, *args)

    def fire_on_all(self, event: str, *args: Any) -> None:
        """Fire an event whose callbacks may fail on one process (rank 0 writes files):
        every process learns of the failure."""
        failure: Exception | None = None
        try:
            self.fire(event, *args)
        except Exception as error:
            failure = error
        agree(failure, f"a callback failed in {event} on another process", self.device)

    def checkpoint_path(self) -> Path | None:
        """Where the run's resumable checkpoint is: its
        :class:`~multitask_mnist.training.ModelCheckpoint`'s ``last.pt``, or ``None``."""
        for callback in self.callbacks.values():
            if isinstance(callback, ModelCheckpoint):
                return callback.last_path(self)
        return None

    def fit(
        self,
        train_data: Dataset[Any],
        val_data: Dataset[Any] | None = None,
        *,
        resume: bool = False,
    ) -> History:
        """Train for ``epochs`` epochs, validating after each if ``val_data`` is given.

        Args:
            train_data: A map-style dataset of samples with named fields (see
                :func:`~multitask_mnist.data.as_fields`), such as
                :class:`~multitask_mnist.data.DigitSample`; a ``get_batch(indices)``
                method, when it has one, fetches whole batches. ``set_epoch`` is
                called on it (or on the dataset a Subset wraps) before each epoch.
            val_data: Evaluated after each epoch; its metrics are logged as ``val_*``.
            resume: Continue from the run's ``last.pt`` if it exists, restoring the
                model, loss, method, optimizer, schedule, RNG states, history, callbacks
                and, for a run stopped by a signal, the position inside the epoch, so
                the run ends exactly as an uninterrupted one would. Without a
                checkpoint the run starts afresh.

        Returns:
            The history of every epoch, resumed ones included.

        Raises:
            ValueError: ``resume`` without ``output_dir``, or an empty ``train_data``.
            NonFiniteLossError: The loss became NaN or infinite.
            CheckpointError: A checkpoint could not be written or read.
            OutputDirLockedError: Another live run uses ``output_dir``.
            TrainingInterrupted: SIGTERM or SIGINT arrived; ``last.pt`` holds the run.
        """
        try:
            return self._fit(train_data, val_data, resume)
        finally:  # also after an error or a signal: a caller may go on to other work
            self._release_memory()

    def _fit(
        self, train_data: Dataset[Any], val_data: Dataset[Any] | None, resume_run: bool
    ) -> History:
        if resume_run and self.output_dir is None:
            raise InvalidValueError("`resume=True` needs `output_dir`, where the checkpoints are")
        if len(train_data) == 0:  # type: ignore[arg-type]
            raise InvalidValueError("Expected `train_data` to hold at least one sample, got 0")
        self._run_dir.claim()
        shard = math.ceil(len(train_data) / distributed.world_size())  # type: ignore[arg-type]
        self.steps_per_epoch = math.ceil(shard / self.batch_size)
        _runtime.seed_everything(self.seed)
        groups = param_groups(
            self.task, lr=self.lr, fast=self.model.fast_modules(), fast_lr_scale=self.head_lr_scale
        )
        self.optimizer = create_optimizer(
            groups, self.optimizer_spec, lr=self.lr, weight_decay=self.weight_decay
        )
        self.scheduler = self.new_schedule(self.epochs)
        self.history, self._stop_reason, self.train_time = History(), None, 0.0
        self.method.diagnostics.epoch(())  # a fresh fit: no sums of an earlier one
        self.epoch, self.step, self.epoch_state = 0, 0, None
        last = self.checkpoint_path()
        if resume_run and last is not None:
            resume.restore(self, last)
        distributed.broadcast_module(self.task)  # every process starts from rank 0's state
        with catch_signals() as signals:
            guard = StepGuard(signals, self.device, _CHECK_EVERY, self._divergence_hint)
            self.fire("on_fit_start")
            epochs = range(self.epoch + 1, self.epochs + 1) if self.stop_reason is None else ()
            for epoch in epochs:
                metrics = self._train_epoch(train_data, epoch, guard)
                if val_data is not None:
                    metrics |= _prefixed("val_", self._evaluate(val_data)[0])
                self._end_epoch(epoch, metrics)
                if self.stop_reason is not None:
                    logger.info("Stopping early after epoch %d: %s", epoch, self.stop_reason)
                    break
            # A signal after the last check (in a last validation or the epoch's writes)
            # still stops the run: the checkpoint on disk is complete.
            late = guard.check(due=True, where=f"epoch {self.epoch}")
            if late is not None:
                raise TrainingInterrupted(
                    f"Stopped by {signal.Signals(late).name} after epoch {self.epoch}, the "
                    f"last one; {self._resume_hint()}",
                    late,
                )
        self.history.stop_reason = self.stop_reason
        self.fire("on_fit_end", self.history)
        return self.history

    def _train_epoch(self, data: Dataset[Any], epoch: int, guard: StepGuard) -> dict[str, float]:
        tic = time.perf_counter()
        self.task.train()
        set_epoch(data, epoch - 1)
        self.rng_states = []  # gathered again where the run is saved next
        if self.epoch_state is None:  # a new epoch, not one resumed inside
            self.fire("on_epoch_start", epoch)
            weights = {f"weight_{task}": w for task, w in self.method.task_weights().items()}
            lr = float(self.optimization()[1].get_last_lr()[0])
            self.epoch_state = resume.EpochState(
                {"epoch": epoch, "lr": lr, **weights}, self.new_metrics(), 0.0
            )
        state = self.epoch_state
        optimizer, scheduler = self.optimization()
        order = self._batches.epoch_order(data, self.seed, epoch)[self.step * self.batch_size :]
        probe = self._probe()
        guard.start_epoch()
        batches = self._batches(data, self.batch_size, order, seed=epoch_seed(self.seed, epoch))
        for step, batch in enumerate(batches, self.step):
            wanted = any(
                cb.wants_gradient_probe(self, epoch, step) for cb in self.callbacks.values()
            )
            out = train_step(
                self.task,
                batch,
                optimizer,
                scheduler,
                autocast=self.autocast,
                grad_clip=self.grad_clip,
                probe=probe if wanted else None,
            )
            state.totals.update(
                out.predictions, out.targets, out.masks, losses=out.losses, total=out.total
            )
            self.step = step + 1
            total = out.total.detach()
            self.fire("on_batch_end", epoch, step, total)
            due = guard.due(self.step, self.steps_per_epoch)
            received = guard.after_step(total, step, due, f"epoch {epoch}")
            if received is not None:
                self._interrupt(epoch, received, state, tic)
        self.task.on_train_epoch_end()
        self.epoch_state = None
        time_s = state.elapsed_s + time.perf_counter() - tic
        self.train_time += time_s
        train = _prefixed("train_", state.totals.compute())
        gradients = self.method.diagnostics.epoch(self.model.task_names)
        return state.metrics | train | gradients | self.model.diagnostics() | {"time_s": time_s}

    def _probe(self) -> GradientProbe | None:
        """A probe of the tasks' gradients on the shared parameters, for the steps a
        callback asks for; none where the method measures them itself."""
        if isinstance(self.method, GradientAggregation):
            return None
        shared, _ = split_parameters(self.model)
        return GradientProbe(shared, self.method.diagnostics) if shared else None

    def _divergence_hint(self) -> str:
        last = self.checkpoint_path()
        kept = f"; the last good checkpoint is {last}" if last is not None and last.exists() else ""
        return f"try a lower learning rate (lr={self.lr:g}) or grad_clip{kept}"

    def _interrupt(
        self, epoch: int, signal_number: int, state: resume.EpochState, tic: float
    ) -> None:
        """Save the run mid-epoch through the callbacks, then raise TrainingInterrupted."""
        elapsed = state.elapsed_s + time.perf_counter() - tic
        per_rank = distributed.all_gather_object(resume.own_epoch_state(self, state))
        self.epoch_state = state._replace(elapsed_s=elapsed, per_rank=per_rank)
        self._gather_rng()
        self.fire_on_all("on_train_interrupted", epoch, self.step)
        where = f"epoch {epoch}, step {self.step} of {self.steps_per_epoch}"
        name = signal.Signals(signal_number).name
        raise TrainingInterrupted(
            f"Stopped by {name} at {where}; {self._resume_hint()}", signal_number
        )

    def _resume_hint(self) -> str:
        last = self.checkpoint_path()
        if last is not None:
            return (
                f"saved {last}; resume with fit(resume=True) (on the command line: the same "
                "command with --resume)"
            )
        return "nothing was saved (no output_dir or no model_checkpoint callback)"

    def _gather_rng(self) -> None:
        """Every process's RNG states, for the checkpoint (each process draws its own)."""
        self.rng_states = distributed.all_gather_object(resume.to_cpu(_runtime.get_rng_state()))

    def _end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.epoch, self.step = epoch, 0
        self.history.epochs.append(metrics)
        self._gather_rng()
        self.fire_on_all("on_epoch_end", epoch, metrics)
        # A callback may stop the run on one process only: every process stops with it.
        stopped = torch.tensor(int(self.stop_reason is not None), device=self.device)
        if int(distributed.all_reduce_max(stopped)) and self.stop_reason is None:
            self.stop("a callback on another process stopped the run")

    def optimization(self) -> tuple[Optimizer, LRScheduler]:
        """The optimizer and schedule of the current fit.

        Raises:
            RuntimeError: Called before :meth:`fit` built them.
        """
        if self.optimizer is None or self.scheduler is None:
            raise RuntimeError("The optimizer and schedule are built by Trainer.fit()")
        return self.optimizer, self.scheduler

    def new_schedule(self, epochs: int) -> LRScheduler:
        """A fresh schedule over ``epochs`` epochs of this fit's steps."""
        if self.optimizer is None:
            raise RuntimeError("The optimizer is built by Trainer.fit()")
        return create_scheduler(self.optimizer, self.scheduler_spec, self.steps_per_epoch * epochs)

    def _release_memory(self) -> None:
        """Out of the step loop: give back the freed buffers malloc was told to keep."""
        if self.keep_freed_memory:
            allocator.release_freed_memory()

    def new_metrics(self) -> TaskMetrics:
        """Empty metric sums for the model's tasks, on the device."""
        return TaskMetrics(self.model.tasks, given=self.model.teachers, device=self.device)

    def evaluate(self, data: Dataset[Any]) -> dict[str, float]:
        """Metrics of the model on ``data``, without changing any state.

        Returns:
            The metrics of :class:`~multitask_mnist.tasks.TaskMetrics`: ``loss``, and
            per task ``{task}_loss``, ``{task}_accuracy`` (percent; a regression is
            right when its rounded prediction equals the target) and, for a
            regression, ``{task}_mae``; ``joint_accuracy`` (every task right) and,
            for a teacher-forced task, ``{task}_given_{teacher}_accuracy``
            (``sum_given_digit_accuracy``: the sum's accuracy where the digit is
            right). Then the model's :meth:`~multitask_mnist.models.MultiTaskNet.diagnostics`
            (for the digit + sum network, the adder's certificate: ``adder_exact``,
            every digit/number pair in range rounds to its sum, and ``adder_margin``).

        Each task's metrics count the samples with its label only (and are left out
        when none has one).

        Raises:
            ValueError: ``data`` is empty.
        """
        metrics = self._evaluate(data, certify=True)[0]
        self._release_memory()
        return metrics

    def _evaluate(
        self, data: Dataset[Any], *, certify: bool = False
    ) -> tuple[dict[str, float], dict[str, Tensor]]:
        metrics, confusion = evaluate(
            self.task, data, self._batches, self.eval_batch_size, self.autocast, self.new_metrics()
        )
        return metrics | (self.model.diagnostics() if certify else {}), confusion

    def predict(self, inputs: Mapping[str, Tensor]) -> Prediction:
        """Predict every task for a batch.

        Args:
            inputs: The model's inputs by name, ``(B, ...)`` each, prepared like the
                training data (images normalized).

        Returns:
            Each task's labels and raw outputs, on the CPU.

        Raises:
            TypeError: As :meth:`multitask_mnist.models.MultiTaskNet.forward` for bad inputs.
            ValueError: As :meth:`multitask_mnist.models.MultiTaskNet.forward` for bad inputs.

        Example:
            >>> import torch
            >>> from multitask_mnist import presets
            >>> trainer = Trainer(presets.mnist_sum(), device="cpu", progress=False)
            >>> p = trainer.predict({"image": torch.zeros(2, 1, 28, 28),
            ...                      "number": torch.tensor([3, 4])})
            >>> sorted(p.labels), p.outputs["digit"].shape
            (['digit', 'sum'], torch.Size([2, 10]))
        """
        return predict(self.model, inputs, self._batches, self.eval_batch_size, self.autocast)

    def test(self, data: Dataset[Any]) -> dict[str, float]:
        """Evaluate on held-out data and record it as the run's test result.

        The ``run_files`` callback adds ``test_*`` keys to ``output_dir/metrics.json``
        and, with matplotlib installed, writes ``confusion_matrix.png``.

        Returns:
            The metrics of :meth:`evaluate`.
        """
        metrics, confusion = self._evaluate(data, certify=True)
        self._release_memory()
        self._run_dir.claim()
        self.fire_on_all("on_test_end", metrics, confusion)
        return metrics

    def state_dict(self) -> TrainingState:
        """Everything needed to resume from where the run stands now.

        Returns:
            The typed state, plain data and tensors, loadable with
            ``torch.load(..., weights_only=True)``.

        Raises:
            RuntimeError: Called before :meth:`fit` built the optimizer.
        """
        return resume.dump(self)

    def close(self) -> None:
        """Release the output folder's lock (also done when the process exits).

        Example:
            >>> from multitask_mnist import presets
            >>> Trainer(presets.mnist_sum(), device="cpu").close()
        """
        self._run_dir.release()
