"""The Trainer: the loop of fit, evaluate, predict and test, and nothing around it.

Around the loop, each job has its own module: callbacks write checkpoints, run
files, log lines and the progress bar (:mod:`multitask_mnist.training.callbacks`);
:mod:`~multitask_mnist.training.optim` builds optimizers and schedules;
:mod:`~multitask_mnist.checkpoint` defines the saved state;
:mod:`~multitask_mnist.distributed` joins torchrun's processes;
:mod:`~multitask_mnist.training.preemption` catches signals and
:mod:`~multitask_mnist.training.run_lock` guards the output folder.

The Trainer shuffles with a generator seeded from the run's seed and the epoch, so
a run resumed from its checkpoint, at an epoch's end or mid-epoch, replays exactly
what an uninterrupted run would have done.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import os
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from multitask_mnist import distributed
from multitask_mnist._validation import check_bool, check_choice, check_int, check_number
from multitask_mnist.checkpoint import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    TrainingState,
    load_checkpoint,
    load_model_state,
    prepare_output_dir,
    sweep_temporary_files,
)
from multitask_mnist.data.fields import as_fields, to_device
from multitask_mnist.errors import (
    InvalidTypeError,
    InvalidValueError,
    MultitaskMnistError,
    PeerFailedError,
)
from multitask_mnist.losses import WeightedMultiLoss
from multitask_mnist.methods import (
    METHODS,
    GradientAggregation,
    GradientDiagnostics,
    GradientProbe,
    make_aggregator,
    split_parameters,
)
from multitask_mnist.models import MultiTaskNet
from multitask_mnist.tasks import TaskMetrics, check_labels, label_mask
from multitask_mnist.training import _runtime, allocator
from multitask_mnist.training.callbacks import (
    LAST_CHECKPOINT,
    Callback,
    GradientConflict,
    default_callbacks,
)
from multitask_mnist.training.history import History
from multitask_mnist.training.optim import (
    OPTIMIZERS,
    SCHEDULERS,
    OptimizerFactory,
    SchedulerFactory,
    create_optimizer,
    create_scheduler,
    param_groups,
)
from multitask_mnist.training.preemption import SignalCatcher, TrainingInterrupted, catch_signals
from multitask_mnist.training.run_lock import OutputDirLockedError, RunLock
from multitask_mnist.training.task import TrainingTask

__all__ = ["NonFiniteLossError", "Prediction", "Trainer"]

logger = logging.getLogger(__name__)

# How often (in steps) the hot loop looks at its non-finite-loss flag and, under
# torchrun, agrees on a received signal: one sync per this many steps.
_CHECK_EVERY = 16


class NonFiniteLossError(MultitaskMnistError, RuntimeError):
    """The training loss became NaN or infinite; checkpoints on disk hold the last good state.

    Example:
        >>> raise NonFiniteLossError("The loss became NaN at epoch 1, step 3")
        Traceback (most recent call last):
        ...
        multitask_mnist.training.trainer.NonFiniteLossError: The loss became NaN at epoch 1, step 3
    """


class Prediction(NamedTuple):
    """What :meth:`Trainer.predict` returns, on the CPU.

    Attributes:
        labels: By task name, ``(B,)`` the predicted labels: the class of a multiclass
            task, 0/1 of a binary one, the rounded value of a regression.
        outputs: By task name, the model's float32 outputs: ``(B, C)`` logits or
            ``(B,)`` values (a regression's value before rounding).

    Example:
        >>> import torch
        >>> p = Prediction({"sum": torch.tensor([7])}, {"sum": torch.tensor([6.9])})
        >>> int(p.labels["sum"][0])
        7
    """

    labels: dict[str, Tensor]
    outputs: dict[str, Tensor]


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + 17) % 2**63


def _set_epoch(data: Any, epoch: int) -> None:
    """Call ``set_epoch`` on ``data`` or on the dataset a Subset wraps."""
    while data is not None:
        if hasattr(data, "set_epoch"):
            data.set_epoch(epoch)
            return
        data = getattr(data, "dataset", None)


def _to_cpu(value: Any) -> Any:
    """``value`` with every tensor in it moved to the CPU (dicts and lists walked)."""
    if isinstance(value, Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def _prefixed(prefix: str, metrics: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}{name}": value for name, value in metrics.items()}


def _resolve_callbacks(
    given: Sequence[Callback | tuple[str, Callback | None]], progress: bool
) -> dict[str, Callback]:
    """The defaults, with same-named ones replaced or removed, and the rest inserted
    before the defaults that save (so their state is in each epoch's checkpoint)."""
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


class _EpochState(NamedTuple):
    """The epoch in progress: where it started and what it has summed so far."""

    metrics: dict[str, float]  # epoch, lr and task weights, as the epoch began
    totals: TaskMetrics
    elapsed_s: float  # training time in this epoch before this process's part of it
    # Each process's own sums (metric totals, the loss's running state), gathered when a
    # signal stopped the run; None until then.
    per_rank: list[Any] | None = None


class Trainer:
    """Trains, evaluates and checkpoints a :class:`~multitask_mnist.models.MultiTaskNet`.

    The model names its inputs and tasks; the datasets yield samples with fields of
    those names (see :func:`~multitask_mnist.data.as_fields`): every input, and a
    label per task, where a missing label is marked as
    :func:`~multitask_mnist.tasks.label_mask` describes.

    The model and the loss train as one module
    (:class:`~multitask_mnist.training.TrainingTask`). Everything the loop does
    not own is a callback: :func:`~multitask_mnist.training.default_callbacks`
    names them (``progress_bar``, ``epoch_log``, ``model_checkpoint``,
    ``run_files``). Pass a callback with the same name to replace one, the pair
    ``(name, None)`` to remove one; other callbacks run after the reporting ones
    and before the saving ones.

    SIGTERM or SIGINT during :meth:`fit` finishes the current batch (under torchrun,
    the batches up to the next point where the processes agree, at most 16), writes a
    mid-epoch ``last.pt`` (through ``model_checkpoint``) and raises
    :class:`~multitask_mnist.training.TrainingInterrupted`; ``fit(resume=True)``
    continues from that very batch.

    Args:
        model: The network; moved to ``device``.
        loss: The loss; ``None`` means :class:`~multitask_mnist.losses.WeightedMultiLoss` with
            equal weights. It is bound to the model's tasks.
        method: How the tasks' gradients combine. ``"none"``: one backward of the
            weighted loss. A gradient method (:data:`~multitask_mnist.methods.METHODS`:
            ``"upgrad"``, ``"pcgrad"``, ``"mgda"``, ...), or any
            ``torchjd.aggregation.Aggregator``: each task's weighted loss gives one row
            of the Jacobian on the shared blocks, which the aggregator combines; the
            task heads get their usual gradient (see
            :class:`~multitask_mnist.methods.GradientAggregation`). A gradient method
            needs the ``"fixed"`` loss strategy and tasks whose gradients reach the
            shared blocks.
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"``, or a callable that builds an
            optimizer from a list of parameter groups (dicts with ``params`` and ``lr``).
        lr: Peak learning rate.
        head_lr_scale: The learning rate of the model's ``fast`` blocks (the fusion
            head) as a multiple of ``lr``.
        weight_decay: Weight decay of a named optimizer.
        epochs: Epochs to train.
        batch_size: Training batch size.
        eval_batch_size: Batch size of :meth:`evaluate` and :meth:`predict`.
        scheduler: ``"onecycle"`` (warm up, then anneal; the default), ``"cosine"``,
            ``"constant"``, or a callable ``(optimizer, total_steps) -> LRScheduler``;
            every schedule steps once per batch.
        seed: Seeds the shuffling and the global generators at :meth:`fit`.
        device: ``"auto"`` (CUDA, then MPS, then CPU) or a torch device.
        precision: ``"auto"`` (bfloat16 autocast where the hardware runs it natively,
            float32 elsewhere), ``"bf16"`` or ``"fp32"``. The fusion head always runs
            in float32.
        channels_last: Keep images (4-D float inputs) and convolution weights in
            channels-last memory order; ``None`` means on for CPU and CUDA, where it
            measured faster.
        grad_clip: Clip the gradient norm to this value; ``None`` for no clipping.
        output_dir: Where the callbacks write checkpoints, ``metrics.json``,
            ``history.csv`` and plots; ``None`` writes nothing. One run at a time:
            a second Trainer in another process cannot use a folder in use.
        callbacks: Callbacks, or ``(name, callback)`` pairs; see above.
        progress: ``False`` removes the ``progress_bar`` callback.
        num_workers: Loader processes for datasets without a batched ``get_batch``;
            with 0, such datasets are read in this process.
        keep_freed_memory: Raise glibc's malloc thresholds for this process
            (:func:`~multitask_mnist.training.allocator.keep_freed_memory`), so each
            step reuses the buffers the last one freed instead of faulting fresh pages
            in; it measured faster on every CPU tried. ``fit``, ``evaluate`` and
            ``test`` give the kept memory back when they return
            (:func:`~multitask_mnist.training.allocator.release_freed_memory`).
            Nothing happens off glibc, or with ``MULTITASK_MNIST_MALLOC=default`` in
            the environment.
        config: Extra plain values stored in every checkpoint and ``metrics.json``.

    Raises:
        TypeError: An argument of the wrong type.
        ValueError: An argument out of range, or an unknown name.

    Example:
        >>> from multitask_mnist import presets
        >>> trainer = Trainer(presets.mnist_sum(), epochs=1, device="cpu", progress=False)
        >>> trainer.epochs, trainer.device.type, list(trainer.callbacks)
        (1, 'cpu', ['epoch_log', 'model_checkpoint', 'run_files'])
    """

    def __init__(
        self,
        model: MultiTaskNet,
        *,
        loss: WeightedMultiLoss | None = None,
        method: Any = "none",
        optimizer: str | OptimizerFactory = "adam",
        lr: float = 3e-3,
        head_lr_scale: float = 10.0,
        weight_decay: float = 0.0,
        epochs: int = 10,
        batch_size: int = 128,
        eval_batch_size: int = 256,
        scheduler: str | SchedulerFactory = "onecycle",
        seed: int = 0,
        device: str | torch.device = "auto",
        precision: str = "auto",
        channels_last: bool | None = None,
        grad_clip: float | None = None,
        output_dir: str | os.PathLike[str] | None = None,
        callbacks: Sequence[Callback | tuple[str, Callback | None]] = (),
        progress: bool = True,
        num_workers: int = 0,
        keep_freed_memory: bool = True,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(model, MultiTaskNet):
            raise InvalidTypeError(
                f"Expected `model` to be a MultiTaskNet, got {type(model).__name__}"
            )
        if isinstance(optimizer, str):
            check_choice("optimizer", optimizer, OPTIMIZERS)
        if isinstance(scheduler, str):
            check_choice("scheduler", scheduler, SCHEDULERS)
        self.lr = check_number("lr", lr, minimum=0.0)
        self.head_lr_scale = check_number("head_lr_scale", head_lr_scale, minimum=0.0)
        self.weight_decay = check_number("weight_decay", weight_decay, minimum=0.0)
        self.epochs = check_int("epochs", epochs, minimum=1)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.eval_batch_size = check_int("eval_batch_size", eval_batch_size, minimum=1)
        self.seed = check_int("seed", seed)
        self.num_workers = check_int("num_workers", num_workers, minimum=0)
        self.grad_clip = None if grad_clip is None else check_number("grad_clip", grad_clip)
        self.precision = check_choice("precision", precision, _runtime.PRECISIONS)
        keep = check_bool("keep_freed_memory", keep_freed_memory)
        self.keep_freed_memory = keep and allocator.keep_freed_memory()
        self.device = distributed.setup(_runtime.resolve_device(device))
        self.autocast_dtype = _runtime.resolve_precision(precision, self.device)
        if channels_last is None:
            channels_last = self.device.type in ("cpu", "cuda")
        self.channels_last = channels_last
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        task = TrainingTask(model, loss if loss is not None else WeightedMultiLoss())
        self.task: TrainingTask = task.to(self.device, memory_format=memory_format)  # type: ignore[call-overload]
        self.method = (
            method if not isinstance(method, str) else check_choice("method", method, METHODS)
        )
        self._aggregation = self._gradient_method(method)
        self._update_after_step = self.loss.weighting.updates_after_step
        if self._aggregation is not None:  # it averages the task gradients over processes
            distributed.broadcast_module(self.task)
        # What training steps run through: under torchrun, DDP during fit (see _wrap).
        self._train_task: nn.Module = self.task
        self.optimizer_spec = optimizer
        self.scheduler_spec = scheduler
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.callbacks = _resolve_callbacks(callbacks, progress)
        self._probe, self._probe_every = self._gradient_probe()
        self._diagnostics: GradientDiagnostics | None = (
            self._aggregation.diagnostics
            if self._aggregation is not None
            else self._probe.diagnostics
            if self._probe is not None
            else None
        )
        self.extra_config = dict(config or {})
        self.history = History()
        self.optimizer: Optimizer | None = None
        self.scheduler: LRScheduler | None = None
        #: Epochs completed, and batches of the next epoch trained.
        self.epoch, self.step = 0, 0
        self.steps_per_epoch = 0
        self.train_time = 0.0
        self._epoch_state: _EpochState | None = None
        self._stop_reason: str | None = None
        self._rng_states: list[Any] = []  # every process's RNG states at the last save point
        self._lock: RunLock | None = None
        self._claim_output_dir()  # a folder in use stops the run now, not after data loading

    def _gradient_probe(self) -> tuple[GradientProbe | None, int]:
        """Without a gradient method, a :class:`GradientConflict` callback has the task
        gradients measured every ``every`` steps."""
        conflict = self.callbacks.get("gradient_conflict")
        if self._aggregation is not None or not isinstance(conflict, GradientConflict):
            return None, 0
        shared, _ = split_parameters(self.model)
        return (GradientProbe(shared), conflict.every) if shared else (None, 0)

    def _gradient_method(self, method: Any) -> GradientAggregation | None:
        """The backward step of a gradient method, or ``None`` for ``"none"``."""
        aggregator = make_aggregator(method, len(self.model.tasks))
        if aggregator is None:
            return None
        name = method if isinstance(method, str) else type(method).__name__
        if self.loss.strategy != "fixed":
            raise InvalidValueError(
                f"Method {name!r} combines the tasks' gradients itself; use the loss "
                f"strategy 'fixed' with it (got {self.loss.strategy!r})"
            )
        stops = self.model.gradient_stops()
        if stops:
            block_name, shared_block = stops[0]
            raise InvalidValueError(
                f"Method {name!r} aggregates each task's gradient on the shared blocks, "
                f"but block {block_name!r} passes none back to {shared_block!r} "
                f"(task {self.model.block_tasks()[block_name][0]!r} would have a zero row); "
                "use a differentiable fusion ('expectation' or 'straight_through') or "
                "method='none'"
            )
        shared, specific = split_parameters(self.model, self.loss)
        return GradientAggregation(aggregator, shared, specific)

    @classmethod
    def get_default_config(cls) -> dict[str, Any]:
        """The default of every keyword argument, read from the signature: the one place
        the defaults live, which the command line and the examples read.

        Returns:
            ``{name: default}`` for every keyword argument.

        Example:
            >>> defaults = Trainer.get_default_config()
            >>> defaults["epochs"], defaults["lr"], defaults["precision"]
            (10, 0.003, 'auto')
        """
        parameters = inspect.signature(cls.__init__).parameters.values()
        return {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY}

    # -- the model and its loss ---------------------------------------------------------

    @property
    def model(self) -> MultiTaskNet:
        """The network being trained (not wrapped in DDP)."""
        return self.task.model

    @property
    def loss(self) -> WeightedMultiLoss:
        """The loss and its weighting strategy."""
        return self.task.loss

    @property
    def config(self) -> dict[str, Any]:
        """The run's configuration as plain values, stored in checkpoints and metrics.json."""

        def name(spec: object) -> str:
            return spec if isinstance(spec, str) else getattr(spec, "__name__", repr(spec))

        autocast = self.autocast_dtype
        preset = self.model.preset
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "head_lr_scale": self.head_lr_scale,
            "weight_decay": self.weight_decay,
            "optimizer": name(self.optimizer_spec),
            "scheduler": name(self.scheduler_spec),
            "seed": self.seed,
            "device": str(self.device),
            "precision": self.precision,
            "autocast": str(autocast).removeprefix("torch.") if autocast else "float32",
            "channels_last": self.channels_last,
            "grad_clip": self.grad_clip,
            "keep_freed_memory": self.keep_freed_memory,
            "loss_weights": dict(self.loss.weights),
            "loss_strategy": self.loss.strategy,
            "method": name(self.method),
            "preset": preset["name"] if preset is not None else None,
            **self.extra_config,
        }

    # -- batches ------------------------------------------------------------------------

    def _batches(
        self, data: Dataset[Any], batch_size: int, order: Tensor | None = None, seed: int = 0
    ) -> Iterator[dict[str, Tensor]]:
        """Yield batches of ``data`` in ``order`` (default: as stored), on the device, as
        named fields, images in the chosen memory format, their labels checked first
        (:func:`~multitask_mnist.tasks.check_labels`, on the host).

        A loader's own generator is seeded from ``seed``: it leaves the global RNG
        alone, so a resumed epoch draws the same dropout masks as an uninterrupted one.
        """
        n = len(data)  # type: ignore[arg-type]
        if order is not None and order.numel() == 0:
            return  # torch.split would still yield one empty chunk
        chunks = torch.split(order if order is not None else torch.arange(n), batch_size)
        get_batch = getattr(data, "get_batch", None)
        non_blocking = self.device.type == "cuda"
        if get_batch is not None and self.num_workers == 0:
            for idx in chunks:
                yield self._on_device(get_batch(idx), non_blocking, idx)
            return
        loader = DataLoader(
            data,
            batch_sampler=[c.tolist() for c in chunks],
            num_workers=self.num_workers,
            pin_memory=non_blocking,
            generator=torch.Generator().manual_seed(seed),
        )
        for idx, batch in zip(chunks, loader, strict=True):
            yield self._on_device(batch, non_blocking, idx)

    def _on_device(
        self, batch: Any, non_blocking: bool, indices: Tensor | None = None
    ) -> dict[str, Tensor]:
        """``batch`` as named fields on the device; with the samples' ``indices``, its
        labels are checked on the host first."""
        fields = as_fields(batch)
        if indices is not None:
            check_labels(self.model.tasks, fields, indices)
        fields = to_device(fields, self.device, non_blocking)
        if self.channels_last:
            for name, value in fields.items():
                if value.ndim == 4 and value.is_floating_point():
                    fields[name] = value.contiguous(memory_format=torch.channels_last)
        return fields

    def _epoch_order(self, data: Dataset[Any], epoch: int) -> Tensor:
        """This process's sample order for ``epoch``: a seeded shuffle, sharded under torchrun."""
        world = distributed.world_size()
        if world == 1:
            generator = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
            return torch.randperm(len(data), generator=generator)  # type: ignore[arg-type]
        sampler: DistributedSampler[int] = DistributedSampler(
            data, num_replicas=world, rank=distributed.rank(), shuffle=True, seed=self.seed
        )
        sampler.set_epoch(epoch)
        return torch.tensor(list(sampler), dtype=torch.long)

    # -- training -------------------------------------------------------------------------

    def gradient_diagnostics(self) -> dict[str, float]:
        """The last training step's task gradients, with a gradient method.

        Returns:
            ``grad_cosine`` (mean over pairs of tasks), ``grad_norm_ratio`` (largest norm
            over smallest), ``grad_norm_{task}`` and, for aggregators that weight the
            tasks, ``effective_weight_{task}``; empty without a gradient method or
            before the first step. Reading them waits for the step to finish.
        """
        if self._diagnostics is None:
            return {}
        return self._diagnostics.step(self.model.task_names)

    @property
    def stop_reason(self) -> str | None:
        """Why :meth:`stop` was called during the current :meth:`fit`, or ``None``."""
        return self._stop_reason

    def stop(self, reason: str) -> None:
        """Ask :meth:`fit` to stop after the current epoch (callbacks call this)."""
        self._stop_reason = reason

    def _fire(self, event: str, *args: Any) -> None:
        for callback in self.callbacks.values():
            getattr(callback, event)(self, *args)

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
            resume: Continue from ``output_dir/last.pt`` if it exists, restoring the
                model, loss, optimizer, schedule, RNG states, history, callbacks and,
                for a run stopped by a signal, the position inside the epoch, so the
                run ends exactly as an uninterrupted one would. Without a checkpoint
                the run starts afresh.

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
            self._train_task = self.task  # DDP lets go of the process group
            self._release_memory()

    def _fit(
        self, train_data: Dataset[Any], val_data: Dataset[Any] | None, resume: bool
    ) -> History:
        if resume and self.output_dir is None:
            raise InvalidValueError("`resume=True` needs `output_dir`, where the checkpoints are")
        if len(train_data) == 0:  # type: ignore[arg-type]
            raise InvalidValueError("Expected `train_data` to hold at least one sample, got 0")
        self._claim_output_dir()
        shard = math.ceil(len(train_data) / distributed.world_size())  # type: ignore[arg-type]
        self.steps_per_epoch = math.ceil(shard / self.batch_size)
        _runtime.seed_everything(self.seed)
        groups = param_groups(
            self.task, lr=self.lr, fast=self.model.fast_modules(), fast_lr_scale=self.head_lr_scale
        )
        self.optimizer = create_optimizer(
            groups, self.optimizer_spec, lr=self.lr, weight_decay=self.weight_decay
        )
        self.scheduler = self._new_schedule(self.epochs)
        self.history, self._stop_reason, self.train_time = History(), None, 0.0
        if self._diagnostics is not None:
            self._diagnostics.epoch(())  # a fresh fit: no sums of an earlier one
        self.epoch, self.step, self._epoch_state = 0, 0, None
        if resume and self.output_dir is not None:
            self._resume(self.output_dir / LAST_CHECKPOINT)
        self._train_task = self._wrap()
        with catch_signals() as signals:
            self._fire("on_fit_start")
            epochs = range(self.epoch + 1, self.epochs + 1) if self.stop_reason is None else ()
            for epoch in epochs:
                metrics = self._train_epoch(train_data, epoch, signals)
                if val_data is not None:
                    metrics |= _prefixed("val_", self._evaluate(val_data)[0])
                self._end_epoch(epoch, metrics)
                if self.stop_reason is not None:
                    logger.info("Stopping early after epoch %d: %s", epoch, self.stop_reason)
                    break
            # A signal after the last check (in a last validation or the epoch's writes)
            # still stops the run: the checkpoint on disk is complete.
            late = self._check(
                torch.full((), -1, device=self.device), signals, self.epoch, due=True
            )
            if late is not None:
                name = signal.Signals(late).name
                raise TrainingInterrupted(
                    f"Stopped by {name} after epoch {self.epoch}, the last one; "
                    f"{self._resume_hint()}",
                    late,
                )
        self.history.stop_reason = self.stop_reason
        self._fire("on_fit_end", self.history)
        return self.history

    def _wrap(self) -> nn.Module:
        """The module training steps run through during one fit: under torchrun without a
        gradient method, DDP, which averages every gradient (and holds the process group
        until fit returns and lets it go)."""
        if self._aggregation is not None:
            return self.task
        # A task weighted zero leaves its parameters without gradients: tell DDP.
        zero = any(weight == 0 for weight in self.loss.weights.values())
        return distributed.wrap(self.task, self.device, find_unused_parameters=zero)

    def _release_memory(self) -> None:
        """Out of the step loop: give back the freed buffers malloc was told to keep."""
        if self.keep_freed_memory:
            allocator.release_freed_memory()

    def _new_schedule(self, epochs: int) -> LRScheduler:
        if self.optimizer is None:
            raise RuntimeError("The optimizer is built by Trainer.fit()")
        return create_scheduler(self.optimizer, self.scheduler_spec, self.steps_per_epoch * epochs)

    def _claim_output_dir(self) -> None:
        """Prepare and lock ``output_dir`` (rank 0); every rank learns if that failed."""
        failure: Exception | None = None
        if self.output_dir is not None and distributed.is_main_process():
            try:
                if self._lock is not None and self._lock.revoked:
                    raise OutputDirLockedError(
                        f"The output folder {self.output_dir} was taken over by another "
                        "Trainer in this process"
                    )
                if self._lock is None:  # held already: claimed, checked and swept
                    prepare_output_dir(self.output_dir, sweep=False)
                    self._lock = RunLock(self.output_dir)
                    self._lock.acquire()
                    sweep_temporary_files(self.output_dir)  # locked: no live run's files
            except Exception as error:  # every rank must learn of it, or the others hang
                failure = error
        self._agree(failure, f"rank 0 could not claim the output folder {self.output_dir}")

    def _agree(self, failure: BaseException | None, what: str) -> None:
        """Raise ``failure`` here, or on every other process an error saying ``what``
        failed elsewhere: no process is left waiting for one that stopped."""
        failed = torch.tensor(int(failure is not None), device=self.device)
        distributed.all_reduce_max(failed)
        if failure is not None:
            raise failure
        if int(failed):
            raise PeerFailedError(f"Stopping: {what}")

    def _fire_on_all(self, event: str, *args: Any) -> None:
        """Fire an event whose callbacks may fail on one process (rank 0 writes files)."""
        failure: Exception | None = None
        try:
            self._fire(event, *args)
        except Exception as error:
            failure = error
        self._agree(failure, f"a callback failed in {event} on another process")

    def close(self) -> None:
        """Release the output folder's lock (also done when the process exits).

        Example:
            >>> from multitask_mnist import presets
            >>> Trainer(presets.mnist_sum(), device="cpu").close()
        """
        if self._lock is not None:
            self._lock.release()

    def _train_epoch(
        self, data: Dataset[Any], epoch: int, signals: SignalCatcher
    ) -> dict[str, float]:
        tic = time.perf_counter()
        self.task.train()
        _set_epoch(data, epoch - 1)
        self._rng_states = []  # gathered again where the run is saved next
        if self._epoch_state is None:  # a new epoch, not one resumed inside
            self._fire("on_epoch_start", epoch)
            self._epoch_state = _EpochState(
                {
                    "epoch": epoch,
                    "lr": float(self._optimization()[1].get_last_lr()[0]),
                    **{f"weight_{task}": w for task, w in self.loss.task_weights().items()},
                },
                self._new_metrics(),
                0.0,
            )
        state = self._epoch_state
        optimizer, scheduler = self._optimization()
        order = self._epoch_order(data, epoch)[self.step * self.batch_size :]
        first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        batches = self._batches(data, self.batch_size, order, seed=_epoch_seed(self.seed, epoch))
        for step, batch in enumerate(batches, self.step):
            if self._aggregation is not None:  # as DDP does: every rank, rank 0's statistics
                distributed.broadcast_module(self.task, parameters=False)
            with _runtime.autocast(self.device, self.autocast_dtype):
                predictions, loss = self._train_task(batch)
            optimizer.zero_grad(set_to_none=True)
            if self._aggregation is None:
                if self._probe is not None and step % self._probe_every == 0:
                    self._probe.measure(list(loss.parts.values()), loss.total)
                loss.total.backward()
            else:  # one row per task: its loss times its fixed weight
                weights = self.loss.weights
                rows = [weights[name] * part for name, part in loss.parts.items()]
                self._aggregation.backward(rows)
            if self.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.task.parameters(), self.grad_clip)
            optimizer.step()
            scheduler.step()
            if self._update_after_step:  # FAMO: the losses after the step, same batch
                with _runtime.autocast(self.device, self.autocast_dtype):
                    self.task.update_after_step(batch)
            state.totals.update(
                predictions, self.task.split(batch)[1], losses=loss.parts, total=loss.total
            )
            bad_now = ~torch.isfinite(loss.total.detach()) & (first_bad < 0)
            first_bad = torch.where(bad_now, step, first_bad)
            self.step = step + 1
            self._fire("on_batch_end", epoch, step, loss.total.detach())
            due = self.step == self.steps_per_epoch or self.step % _CHECK_EVERY == 0
            received = self._check(first_bad, signals, epoch, due)
            if received is not None:
                self._interrupt(epoch, received, state, tic)
        self.task.on_train_epoch_end()
        self._epoch_state = None
        time_s = state.elapsed_s + time.perf_counter() - tic
        self.train_time += time_s
        train = _prefixed("train_", state.totals.compute())
        gradients = (
            self._diagnostics.epoch(self.model.task_names) if self._diagnostics is not None else {}
        )
        return state.metrics | train | gradients | self.model.diagnostics() | {"time_s": time_s}

    def _optimization(self) -> tuple[Optimizer, LRScheduler]:
        if self.optimizer is None or self.scheduler is None:
            raise RuntimeError("The optimizer and schedule are built by Trainer.fit()")
        return self.optimizer, self.scheduler

    def _check(
        self, first_bad: Tensor, signals: SignalCatcher, epoch: int, due: bool
    ) -> int | None:
        """Raise on a non-finite loss; return a signal that every process stops on.

        One process looks at its signal flag every step (free) and at the loss every
        ``_CHECK_EVERY`` steps (a host sync); under torchrun both are agreed on
        together every ``_CHECK_EVERY`` steps, so every rank stops at the same step.
        """
        received = signals.received
        if distributed.world_size() > 1:
            if not due:
                return None
            flags = torch.stack([first_bad, first_bad.new_tensor(received or 0)])
            first_bad, agreed = distributed.all_reduce_max(flags).unbind()
            received = int(agreed) or None
        elif not due and received is None:
            return None
        step = int(first_bad)
        if step >= 0:
            kept = ""
            if self.output_dir is not None and (self.output_dir / LAST_CHECKPOINT).exists():
                kept = f"; the last good checkpoint is {self.output_dir / LAST_CHECKPOINT}"
            raise NonFiniteLossError(
                f"The training loss became NaN or infinite at epoch {epoch}, step {step + 1}; "
                f"try a lower learning rate (lr={self.lr:g}) or grad_clip{kept}"
            )
        return received

    def _interrupt(self, epoch: int, signal_number: int, state: _EpochState, tic: float) -> None:
        """Save the run mid-epoch through the callbacks, then raise TrainingInterrupted."""
        elapsed = state.elapsed_s + time.perf_counter() - tic
        per_rank = distributed.all_gather_object(self._own_epoch_state(state))
        self._epoch_state = state._replace(elapsed_s=elapsed, per_rank=per_rank)
        self._gather_rng()
        self._fire_on_all("on_train_interrupted", epoch, self.step)
        where = f"epoch {epoch}, step {self.step} of {self.steps_per_epoch}"
        name = signal.Signals(signal_number).name
        raise TrainingInterrupted(
            f"Stopped by {name} at {where}; {self._resume_hint()}", signal_number
        )

    def _resume_hint(self) -> str:
        if self.output_dir is not None and "model_checkpoint" in self.callbacks:
            return (
                f"saved {self.output_dir / LAST_CHECKPOINT}; resume with fit(resume=True) "
                "(on the command line: the same command with --resume)"
            )
        return "nothing was saved (no output_dir or no model_checkpoint callback)"

    def _own_epoch_state(self, state: _EpochState) -> dict[str, Any]:
        """What this process alone has summed in the epoch so far, on the CPU."""
        own = {"totals": state.totals.state_dict(), "loss": self.loss.state_dict()}
        if self._diagnostics is not None:
            own["method"] = self._diagnostics.state_dict()
        return cast(dict[str, Any], _to_cpu(own))

    def _gather_rng(self) -> None:
        """Every process's RNG states, for the checkpoint (each process draws its own)."""
        self._rng_states = distributed.all_gather_object(_to_cpu(_runtime.get_rng_state()))

    def _end_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        self.epoch, self.step = epoch, 0
        self.history.epochs.append(metrics)
        self._gather_rng()
        self._fire_on_all("on_epoch_end", epoch, metrics)
        # A callback may stop the run on one process only: every process stops with it.
        stopped = torch.tensor(int(self._stop_reason is not None), device=self.device)
        if int(distributed.all_reduce_max(stopped)) and self._stop_reason is None:
            self._stop_reason = "a callback on another process stopped the run"

    # -- evaluation --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Model and loss in eval mode inside, back to their previous mode after."""
        was_training = self.task.training
        self.task.eval()
        try:
            yield
        finally:
            self.task.train(was_training)

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

    def _new_metrics(self) -> TaskMetrics:
        return TaskMetrics(self.model.tasks, given=self.model.teachers, device=self.device)

    @torch.inference_mode()
    def _evaluate(
        self, data: Dataset[Any], *, certify: bool = False
    ) -> tuple[dict[str, float], dict[str, Tensor]]:
        """Metrics (with the model's diagnostics if ``certify``) and a confusion matrix
        ``(C, C)`` (rows true, columns predicted) per multiclass task."""
        if len(data) == 0:  # type: ignore[arg-type]
            raise InvalidValueError(
                "Expected the evaluation data to hold at least one sample, got 0"
            )
        totals = self._new_metrics()
        classes = {t.name: t.num_classes for t in self.model.tasks if t.num_classes is not None}
        confusion = {
            name: torch.zeros(c * c, dtype=torch.long, device=self.device)
            for name, c in classes.items()
        }
        with self._eval_mode():
            shard = torch.arange(len(data))[distributed.rank() :: distributed.world_size()]  # type: ignore[arg-type]
            for batch in self._batches(data, self.eval_batch_size, shard):
                with _runtime.autocast(self.device, self.autocast_dtype):
                    predictions, loss = self.task(batch)
                targets = self.task.split(batch)[1]
                totals.update(predictions, targets, losses=loss.parts, total=loss.total)
                for name, c in classes.items():
                    labelled = label_mask(targets[name])  # unlabelled samples have no row
                    cells = targets[name].long() * c + predictions[name].argmax(dim=1)
                    confusion[name] += torch.bincount(cells[labelled], minlength=c * c)
        for counts in confusion.values():
            distributed.all_reduce_sum(counts)
        metrics = totals.compute() | (self.model.diagnostics() if certify else {})
        return metrics, {
            name: counts.view(classes[name], classes[name]).cpu()
            for name, counts in confusion.items()
        }

    @torch.inference_mode()
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
        self.model.check_inputs(inputs)
        names = self.model.input_names
        outputs: dict[str, list[Tensor]] = {task.name: [] for task in self.model.tasks}
        with self._eval_mode():
            chunks = zip(
                *(torch.split(inputs[n], self.eval_batch_size) for n in names), strict=True
            )
            for chunk in chunks:
                batch = self._on_device(dict(zip(names, chunk, strict=True)), False)
                with _runtime.autocast(self.device, self.autocast_dtype):
                    out = self.model(batch)
                for name, values in outputs.items():
                    values.append(out[name].float().cpu())
        raw = {name: torch.cat(values) for name, values in outputs.items()}
        labels = {task.name: task.predicted(raw[task.name]).long() for task in self.model.tasks}
        return Prediction(labels, raw)

    def test(self, data: Dataset[Any]) -> dict[str, float]:
        """Evaluate on held-out data and record it as the run's test result.

        The ``run_files`` callback adds ``test_*`` keys to ``output_dir/metrics.json``
        and, with matplotlib installed, writes ``confusion_matrix.png``.

        Returns:
            The metrics of :meth:`evaluate`.
        """
        metrics, confusion = self._evaluate(data, certify=True)
        self._release_memory()
        self._claim_output_dir()
        self._fire_on_all("on_test_end", metrics, confusion)
        return metrics

    # -- checkpoints ---------------------------------------------------------------------------

    def state_dict(self) -> TrainingState:
        """Everything needed to resume from where the run stands now.

        Returns:
            The typed state, plain data and tensors, loadable with
            ``torch.load(..., weights_only=True)``.

        Raises:
            RuntimeError: Called before :meth:`fit` built the optimizer.
        """
        optimizer, scheduler = self._optimization()
        epoch_state: dict[str, Any] = {}
        if self._epoch_state is not None:
            partial = self._epoch_state
            epoch_state = {
                "metrics": dict(partial.metrics),
                "per_rank": partial.per_rank or [self._own_epoch_state(partial)],
                "elapsed_s": partial.elapsed_s,
                "steps_per_epoch": self.steps_per_epoch,
            }
        return TrainingState(
            format=CHECKPOINT_FORMAT,
            epoch=self.epoch,
            step=self.step,
            stop_reason=self.stop_reason,
            model=self.model.state_dict(),
            loss=self.loss.state_dict(),
            method={} if self._aggregation is None else self._aggregation.aggregator_state(),
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            rng=self._rng_states or [_to_cpu(_runtime.get_rng_state())],
            callbacks={name: cb.state_dict() for name, cb in self.callbacks.items()},
            history=list(self.history.epochs),
            epoch_state=epoch_state,
            train_time_s=self.train_time,
            config=self.config,
            preset=self.model.preset,
        )

    def _resume(self, path: Path) -> None:
        """Load ``path`` into this run, as Lightning's checkpoint connector restores a run:
        the model, then the training state, then the callbacks."""
        if not path.exists():
            logger.info("No checkpoint in %s; starting from scratch", path.parent)
            return
        state = cast(TrainingState, load_checkpoint(path, map_location=self.device))
        if state["format"] != CHECKPOINT_FORMAT:
            raise CheckpointError(
                f"{path} has checkpoint format {state['format']}, written by an earlier version "
                f"of multitask_mnist; runs resume from format {CHECKPOINT_FORMAT} only (its "
                "weights still load with presets.from_checkpoint)"
            )
        self._restore_model(state, path)
        self._restore_training_state(state)
        self._restore_callbacks(state, path)
        where = f"epoch {self.epoch}" + (f", step {self.step}" if self.step else "")
        logger.info("Resumed from %s after %s", path, where)

    def _restore_model(self, state: TrainingState, path: Path) -> None:
        load_model_state(self.model, state["model"], source=path)
        self.loss.load_state_dict(state["loss"])
        if self._aggregation is not None:
            self._aggregation.load_aggregator_state(state.get("method", {}))

    def _restore_training_state(self, state: TrainingState) -> None:
        optimizer, scheduler = self._optimization()
        optimizer.load_state_dict(state["optimizer"])
        self.epoch, self.step = state["epoch"], state["step"]
        planned = state["config"].get("epochs", self.epochs)
        if planned == self.epochs:
            scheduler.load_state_dict(state["scheduler"])
        else:
            logger.warning(
                "Resuming a run planned for %d epochs with epochs=%d: the learning-rate "
                "schedule restarts over the remaining %d epoch(s)",
                planned,
                self.epochs,
                max(self.epochs - self.epoch, 0),
            )
            self.scheduler = self._new_schedule(max(self.epochs - self.epoch, 1))
        rng = state["rng"]
        _runtime.set_rng_state(rng[distributed.rank()] if len(rng) > distributed.rank() else rng[0])
        self._stop_reason = state["stop_reason"]
        self.history = History(list(state["history"]))
        self.train_time = float(state["train_time_s"])
        partial = state["epoch_state"]
        if partial:  # stopped mid-epoch: each process takes back its own sums
            world = distributed.world_size()
            then = {
                "processes": len(partial["per_rank"]),
                "steps per epoch": partial["steps_per_epoch"],
                **{key: state["config"][key] for key in ("epochs", "batch_size", "seed")},
            }
            now = {
                "processes": world,
                "steps per epoch": self.steps_per_epoch,
                "epochs": self.epochs,
                "batch_size": self.batch_size,
                "seed": self.seed,
            }
            changed = [
                f"{key} {then[key]} (now {now[key]})" for key in now if then[key] != now[key]
            ]
            if changed:
                raise CheckpointError(
                    "The run was stopped mid-epoch; it resumes only as it was started: "
                    + ", ".join(changed)
                )
            own = partial["per_rank"][distributed.rank()]
            totals = self._new_metrics()
            totals.load_state_dict(own["totals"])
            if self._diagnostics is not None and "method" in own:
                self._diagnostics.load_state_dict(own["method"], self.device)
            self.loss.load_state_dict(own["loss"])
            self._epoch_state = _EpochState(dict(partial["metrics"]), totals, partial["elapsed_s"])

    def _restore_callbacks(self, state: TrainingState, path: Path) -> None:
        for name, callback in self.callbacks.items():
            if name in state["callbacks"]:
                callback.load_state_dict(state["callbacks"][name])
            elif callback.state_dict():
                logger.warning("%s holds no state for callback %r; it starts afresh", path, name)
