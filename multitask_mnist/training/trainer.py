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

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import Dataset

from multitask_mnist.checkpoint import TrainingState
from multitask_mnist.errors import InvalidTypeError
from multitask_mnist.losses import WeightedMultiLoss
from multitask_mnist.methods import Method
from multitask_mnist.models import MultiTaskNet
from multitask_mnist.tasks import TaskMetrics
from multitask_mnist.training import _runtime, allocator, resume
from multitask_mnist.training.batches import Batches
from multitask_mnist.training.callbacks import Callback, ModelCheckpoint, resolve_callbacks
from multitask_mnist.training.config import TrainerConfig, plain, with_objects
from multitask_mnist.training.evaluation import Prediction, evaluate, predict
from multitask_mnist.training.history import History
from multitask_mnist.training.loop import FitLoop
from multitask_mnist.training.optim import create_scheduler
from multitask_mnist.training.run_dir import NonFiniteLossError, RunDir, agree
from multitask_mnist.training.task import TrainingTask, method_for

__all__ = ["NonFiniteLossError", "Prediction", "Trainer"]

logger = logging.getLogger(__name__)


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
        self.settings, objects = with_objects(config, settings)
        self.run_config = plain(dict(run_config or {}))
        runtime = _runtime.resolve_runtime(self.settings)
        self.device, self.autocast_dtype = runtime.device, runtime.autocast_dtype
        self.autocast, self.channels_last = runtime.autocast, runtime.channels_last
        self.keep_freed_memory = runtime.keep_freed_memory
        self.optimizer_spec = objects.get("optimizer", self.settings.optimizer)
        self.scheduler_spec = objects.get("scheduler", self.settings.scheduler)
        loss = loss if loss is not None else WeightedMultiLoss()
        method = method_for(objects.get("method", self.settings.method), loss, model)
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        task = TrainingTask(model, loss, method)
        task.check_values = False  # the batches' values are checked on the host
        self.task: TrainingTask = task.to(self.device, memory_format=memory_format)  # type: ignore[call-overload]
        self.callbacks = resolve_callbacks(callbacks, self.settings.progress)
        self._batches = Batches(
            model.tasks,
            self.device,
            inputs=model.inputs,
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

    @classmethod
    def get_default_config(cls) -> dict[str, Any]:
        """Deprecated, gone in 0.3: ``TrainerConfig().to_dict()``, the defaults' one place.

        Example:
            >>> import warnings
            >>> with warnings.catch_warnings(record=True) as caught:
            ...     warnings.simplefilter("always")
            ...     epochs = Trainer.get_default_config()["epochs"]
            >>> epochs, caught[0].category.__name__
            (10, 'DeprecationWarning')
        """
        warnings.warn(
            "Trainer.get_default_config() is deprecated and goes in 0.3: use "
            "TrainerConfig().to_dict()",
            DeprecationWarning,
            stacklevel=2,
        )
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
        """The run's record, stored in checkpoints and ``metrics.json``: the settings
        (objects by name), the device and autocast as resolved, the fixed task weights,
        the preset, and ``run_config``."""
        return resume.run_record(self)

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
            TrainingInterrupted: SIGTERM or SIGINT arrived: the current batch finished
                (under torchrun, the batches up to the next point where the processes
                agree, at most 16), ``model_checkpoint`` wrote a mid-epoch ``last.pt``,
                and ``fit(resume=True)`` continues from that very batch.
        """
        try:
            return FitLoop(self).run(train_data, val_data, resume)
        finally:  # also after an error or a signal: a caller may go on to other work
            self._release_memory()

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
