"""The Trainer: fits any MultiTaskNet on any dataset of DigitSamples.

It knows nothing about MNIST. It shuffles with a generator seeded from the run's
seed and the epoch, so an interrupted run resumed from its checkpoint replays
exactly what an uninterrupted run would have done.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from multitask_mnist._validation import check_choice, check_int, check_number
from multitask_mnist.data import DigitSample
from multitask_mnist.losses import WeightedMultiLoss
from multitask_mnist.models import MultiTaskNet
from multitask_mnist.training import _runtime, distributed
from multitask_mnist.training.callbacks import Callback
from multitask_mnist.training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    prepare_output_dir,
    save_checkpoint,
    write_text_atomic,
)
from multitask_mnist.training.history import History
from multitask_mnist.training.metrics import MetricAccumulator

__all__ = ["NonFiniteLossError", "Prediction", "Trainer"]

logger = logging.getLogger(__name__)

OptimizerFactory = Callable[[list[dict[str, Any]]], Optimizer]
SchedulerFactory = Callable[[Optimizer, int], LRScheduler]

#: Optimizers that ``optimizer=`` accepts by name.
OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}
#: Learning-rate schedules that ``scheduler=`` accepts by name; each steps once per batch.
SCHEDULERS = ("onecycle", "cosine", "constant")

LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
_CHECKPOINT_FORMAT = 1
_RESUME_KEYS = (
    "model",
    "loss",
    "optimizer",
    "scheduler",
    "epoch",
    "config",
    "rng",
    "history",
    "best",
    "train_time_s",
)
# How often (in steps) the hot loop looks at its non-finite-loss flag: one sync per this many.
_FINITE_CHECK_EVERY = 16


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; checkpoints on disk hold the last good state.

    Example:
        >>> raise NonFiniteLossError("The loss became NaN at epoch 1, step 3")
        Traceback (most recent call last):
        ...
        multitask_mnist.training.trainer.NonFiniteLossError: The loss became NaN at epoch 1, step 3
    """


class Prediction(NamedTuple):
    """What :meth:`Trainer.predict` returns.

    Attributes:
        digit: ``(B,)`` int64 predicted digits.
        sum: ``(B,)`` int64 predicted sums, rounded.
        sum_value: ``(B,)`` float32 predicted sums before rounding.

    Example:
        >>> import torch
        >>> p = Prediction(torch.tensor([3]), torch.tensor([7]), torch.tensor([6.9]))
        >>> int(p.sum[0])
        7
    """

    digit: Tensor
    sum: Tensor
    sum_value: Tensor


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + 17) % 2**63


def _set_epoch(data: Any, epoch: int) -> None:
    """Call ``set_epoch`` on ``data`` or on the dataset a Subset wraps."""
    while data is not None:
        if hasattr(data, "set_epoch"):
            data.set_epoch(epoch)
            return
        data = getattr(data, "dataset", None)


def _progress_enabled(progress: bool) -> bool:
    """A progress bar only when asked for, on a terminal, not under ``CI=true``, on rank 0."""
    return (
        progress
        and sys.stderr.isatty()
        and os.environ.get("CI") != "true"
        and distributed.is_main_process()
    )


def _log(message: str, *args: object) -> None:
    """Log at INFO from rank 0 only, so each line appears once under torchrun."""
    if distributed.is_main_process():
        logger.info(message, *args)


def _prefixed(prefix: str, metrics: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}{name}": value for name, value in metrics.items()}


class Trainer:
    """Trains, evaluates and checkpoints a :class:`~multitask_mnist.models.MultiTaskNet`.

    Args:
        model: The network; moved to ``device``.
        loss: The loss; ``None`` means :class:`~multitask_mnist.losses.WeightedMultiLoss` with
            equal weights.
        optimizer: ``"adam"``, ``"adamw"``, ``"sgd"``, or a callable that builds an
            optimizer from a list of parameter groups (dicts with ``params`` and ``lr``).
        lr: Peak learning rate.
        head_lr_scale: The fusion head's learning rate as a multiple of ``lr``. Its few
            weights must travel far from their initialization to add exactly; at the
            trunk's rate they lag the digit by epochs.
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
        channels_last: Keep images and convolution weights in channels-last memory
            order; ``None`` means on for CPU and CUDA, where it measured faster.
        grad_clip: Clip the gradient norm to this value; ``None`` for no clipping.
        output_dir: Where checkpoints, ``metrics.json``, ``history.csv`` and plots go;
            ``None`` writes nothing.
        callbacks: Receive the events of :class:`~multitask_mnist.training.Callback`.
        progress: Show a progress bar per epoch when stderr is a terminal and
            ``CI`` is not ``true``.
        num_workers: Loader processes for datasets without a batched ``get_batch``;
            with 0, such datasets are read in this process.
        config: Extra plain values stored in every checkpoint (e.g. the preset's
            name, so the command line can rebuild the model).

    Raises:
        TypeError: An argument of the wrong type.
        ValueError: An argument out of range, or an unknown name.

    Example:
        >>> from multitask_mnist import presets
        >>> trainer = Trainer(presets.mnist_sum(), epochs=1, device="cpu", progress=False)
        >>> trainer.epochs, trainer.device.type
        (1, 'cpu')
    """

    def __init__(
        self,
        model: MultiTaskNet,
        *,
        loss: WeightedMultiLoss | None = None,
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
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
        num_workers: int = 0,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(model, MultiTaskNet):
            raise TypeError(f"Expected `model` to be a MultiTaskNet, got {type(model).__name__}")
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
        self.device = distributed.setup(_runtime.resolve_device(device))
        self.precision = check_choice("precision", precision, _runtime.PRECISIONS)
        self.autocast_dtype = _runtime.resolve_precision(precision, self.device)
        if channels_last is None:
            channels_last = self.device.type in ("cpu", "cuda")
        self.channels_last = channels_last
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(self.device, memory_format=memory_format)  # type: ignore[call-overload]
        # Under torchrun, training steps run through DDP, which averages the gradients.
        self._train_model: nn.Module = self.model
        if distributed.world_size() > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self._train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.loss = (loss if loss is not None else WeightedMultiLoss()).to(self.device)
        self.optimizer_spec = optimizer
        self.scheduler_spec = scheduler
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.callbacks = list(callbacks)
        self.progress = progress
        self.extra_config = dict(config or {})
        self.history = History()
        self.optimizer: Optimizer | None = None
        self.scheduler: LRScheduler | None = None
        self._stop_reason: str | None = None

    # -- configuration ----------------------------------------------------------------

    @property
    def config(self) -> dict[str, Any]:
        """The run's configuration as plain values, stored in checkpoints and metrics.json."""

        def name(spec: object) -> str:
            return spec if isinstance(spec, str) else getattr(spec, "__name__", repr(spec))

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
            "autocast": str(self.autocast_dtype).removeprefix("torch.")
            if self.autocast_dtype
            else "float32",
            "channels_last": self.channels_last,
            "grad_clip": self.grad_clip,
            "loss_weights": dict(self.loss.weights),
            "loss_strategy": self.loss.strategy,
            **self.extra_config,
        }

    def _param_groups(self) -> list[dict[str, Any]]:
        """Trainable parameters in groups: trunk and loss at ``lr``, head at its own rate."""
        head = [p for p in self.model.head.parameters() if p.requires_grad]
        ids = {id(p) for p in head}
        rest = [p for p in [*self.model.parameters(), *self.loss.parameters()] if p.requires_grad]
        groups = [
            {"params": [p for p in rest if id(p) not in ids], "lr": self.lr},
            {"params": head, "lr": self.lr * self.head_lr_scale},
        ]
        return [g for g in groups if g["params"]]

    def _build_optimizer(self) -> Optimizer:
        groups = self._param_groups()
        if callable(self.optimizer_spec):
            return self.optimizer_spec(groups)
        return OPTIMIZERS[self.optimizer_spec](groups, lr=self.lr, weight_decay=self.weight_decay)

    def _build_scheduler(self, optimizer: Optimizer, total_steps: int) -> LRScheduler:
        spec = self.scheduler_spec
        if callable(spec):
            return spec(optimizer, total_steps)
        if spec == "onecycle":
            peaks = [group["lr"] for group in optimizer.param_groups]
            return torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=peaks, total_steps=max(total_steps, 1)
            )
        if spec == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))
        return torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)

    # -- batches ------------------------------------------------------------------------

    def _batches(
        self, data: Dataset[Any], batch_size: int, order: Tensor | None = None
    ) -> Iterator[DigitSample]:
        """Yield batches of ``data`` in ``order`` (default: as stored), on the device."""
        n = len(data)  # type: ignore[arg-type]
        chunks = torch.split(order if order is not None else torch.arange(n), batch_size)
        get_batch = getattr(data, "get_batch", None)
        non_blocking = self.device.type == "cuda"
        if get_batch is not None and self.num_workers == 0:
            for idx in chunks:
                yield get_batch(idx).to(self.device, non_blocking=non_blocking)
            return
        loader = DataLoader(
            data,
            batch_sampler=[c.tolist() for c in chunks],
            num_workers=self.num_workers,
            pin_memory=non_blocking,
        )
        for batch in loader:
            yield DigitSample(*batch).to(self.device, non_blocking=non_blocking)

    def _image(self, image: Tensor) -> Tensor:
        return image.contiguous(memory_format=torch.channels_last) if self.channels_last else image

    # -- training -------------------------------------------------------------------------

    @property
    def stop_reason(self) -> str | None:
        """Why :meth:`stop` was called during the current :meth:`fit`, or ``None``."""
        return self._stop_reason

    def stop(self, reason: str) -> None:
        """Ask :meth:`fit` to stop after the current epoch (callbacks call this)."""
        self._stop_reason = reason

    def fit(
        self,
        train_data: Dataset[Any],
        val_data: Dataset[Any] | None = None,
        *,
        resume: bool = False,
    ) -> History:
        """Train for ``epochs`` epochs, validating after each if ``val_data`` is given.

        Args:
            train_data: A map-style dataset of :class:`~multitask_mnist.data.DigitSample`;
                ``set_epoch`` is called on it (or on the dataset a Subset wraps) before
                each epoch.
            val_data: Evaluated after each epoch; its metrics are logged as ``val_*``.
            resume: Continue from ``output_dir/last.pt`` if it exists, restoring
                model, optimizer, schedule, loss state, RNG states and history, so the
                run ends exactly as an uninterrupted one would. Without a checkpoint
                the run starts afresh.

        Returns:
            The history of every epoch, resumed ones included.

        Raises:
            ValueError: ``resume`` without ``output_dir``, or an empty ``train_data``.
            NonFiniteLossError: The loss became NaN or infinite.
            CheckpointError: A checkpoint could not be written or read.
        """
        if resume and self.output_dir is None:
            raise ValueError("`resume=True` needs `output_dir`, where the checkpoints are")
        n = len(train_data)  # type: ignore[arg-type]
        if n == 0:
            raise ValueError("Expected `train_data` to hold at least one sample, got 0")
        if self._write_dir is not None:
            prepare_output_dir(self._write_dir)
        distributed.barrier()
        steps_per_epoch = math.ceil(math.ceil(n / distributed.world_size()) / self.batch_size)
        _runtime.seed_everything(self.seed)
        optimizer = self._build_optimizer()
        scheduler = self._build_scheduler(optimizer, steps_per_epoch * self.epochs)
        self.history, self._stop_reason, self._train_time = History(), None, 0.0
        self._best: dict[str, Any] = {}
        start = 0
        if resume and self.output_dir is not None:
            start, scheduler = self._restore(self.output_dir, optimizer, scheduler, steps_per_epoch)
        self.optimizer, self.scheduler = optimizer, scheduler
        for callback in self.callbacks:
            callback.on_fit_start(self)
        for epoch in range(start + 1, self.epochs + 1):
            tic = time.perf_counter()
            for callback in self.callbacks:
                callback.on_epoch_start(self, epoch)
            metrics: dict[str, float] = {
                "epoch": epoch,
                "lr": float(scheduler.get_last_lr()[0]),
                **{f"weight_{task}": w for task, w in self.loss.task_weights().items()},
            }
            train_metrics = self._train_epoch(
                train_data, epoch, steps_per_epoch, optimizer, scheduler
            )
            self.loss.end_epoch()
            metrics |= _prefixed("train_", train_metrics) | self.adder_metrics()
            if val_data is not None:
                metrics |= _prefixed("val_", self._evaluate(val_data)[0])
            metrics["time_s"] = time.perf_counter() - tic
            self._train_time += metrics["time_s"]
            self.history.epochs.append(metrics)
            _log(
                "Epoch: %d, loss: %.4f, Classification Acc: %.2f, Addition Acc: %.2f",
                epoch,
                metrics["train_loss"],
                metrics["train_digit_accuracy"],
                metrics["train_sum_accuracy"],
            )
            if val_data is not None:
                _log(
                    "Validation: loss: %.4f, Classification Acc: %.2f, Addition Acc: %.2f",
                    metrics["val_loss"],
                    metrics["val_digit_accuracy"],
                    metrics["val_sum_accuracy"],
                )
            for callback in self.callbacks:
                callback.on_epoch_end(self, epoch, metrics)
            self._save_epoch(epoch, metrics)
            if self.stop_reason is not None:
                _log("Stopping early after epoch %d: %s", epoch, self.stop_reason)
                break
        self.history.stop_reason = self.stop_reason
        if self._write_dir is not None:
            from multitask_mnist.training import plots

            plots.save_curves(self.history, self._write_dir)
        for callback in self.callbacks:
            callback.on_fit_end(self, self.history)
        return self.history

    def _train_epoch(
        self,
        data: Dataset[Any],
        epoch: int,
        steps: int,
        optimizer: Optimizer,
        scheduler: LRScheduler,
    ) -> dict[str, float]:
        self.model.train()
        self.loss.train()
        _set_epoch(data, epoch - 1)
        order = self._epoch_order(data, epoch)
        metrics = MetricAccumulator(self.device)
        first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        batches = self._batches(data, self.batch_size, order)
        if _progress_enabled(self.progress):
            batches = tqdm(batches, total=steps, desc=f"Epoch {epoch}", leave=False, unit="batch")
        for step, batch in enumerate(batches):
            with _runtime.autocast(self.device, self.autocast_dtype):
                # The true digit teacher-forces the adder (ScalarFusionHead.forward).
                output = self._train_model(self._image(batch.image), batch.number, batch.digit)
                loss = self.loss(output, batch.digit, batch.sum)
            optimizer.zero_grad(set_to_none=True)
            loss.total.backward()
            self._average_loss_gradients()
            if self.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            optimizer.step()
            scheduler.step()
            metrics.update(output, batch, loss)
            bad_now = ~torch.isfinite(loss.total.detach()) & (first_bad < 0)
            first_bad = torch.where(bad_now, step, first_bad)
            if (step + 1) % _FINITE_CHECK_EVERY == 0 or step + 1 == steps:
                self._raise_if_nonfinite(first_bad, epoch)
            for callback in self.callbacks:
                callback.on_batch_end(self, epoch, step, loss.total.detach())
        return metrics.compute()

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

    def _average_loss_gradients(self) -> None:
        """DDP averages the model's gradients; learned loss weights are averaged here."""
        world = distributed.world_size()
        if world > 1:
            for param in self.loss.parameters():
                if param.grad is not None:
                    distributed.all_reduce_sum(param.grad).div_(world)

    def _raise_if_nonfinite(self, first_bad: Tensor, epoch: int) -> None:
        if distributed.world_size() > 1:  # every process stops at the same check
            first_bad = distributed.all_reduce_max(first_bad.clone())
        step = int(first_bad)
        if step >= 0:
            kept = (
                f"; the last good checkpoint is {self.output_dir / LAST_CHECKPOINT}"
                if self.output_dir is not None and (self.output_dir / LAST_CHECKPOINT).exists()
                else ""
            )
            raise NonFiniteLossError(
                f"The training loss became NaN or infinite at epoch {epoch}, step {step + 1}; "
                f"try a lower learning rate (lr={self.lr:g}) or grad_clip{kept}"
            )

    # -- evaluation --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _eval_mode(self) -> Iterator[None]:
        """Model and loss in eval mode inside, back to their previous mode after."""
        was_training = self.model.training
        self.model.eval()
        self.loss.eval()
        try:
            yield
        finally:
            self.model.train(was_training)
            self.loss.train(was_training)

    def evaluate(self, data: Dataset[Any]) -> dict[str, float]:
        """Metrics of the model on ``data``, without changing any state.

        Returns:
            ``loss``, ``digit_loss``, ``sum_loss``, ``digit_accuracy``, ``sum_accuracy``,
            ``joint_accuracy`` (both right), ``sum_given_digit_accuracy`` (the sum's
            accuracy where the digit is right; accuracies in percent, a sum is right
            when its rounded prediction equals the true sum), ``sum_mae``, and the
            head's :meth:`~multitask_mnist.models.ScalarFusionHead.certificate`:
            ``adder_exact`` (every digit/number pair in range rounds to its sum) and
            ``adder_margin``.

        Raises:
            ValueError: ``data`` is empty.
        """
        return self._evaluate(data)[0] | self.adder_metrics()

    @torch.inference_mode()
    def _evaluate(self, data: Dataset[Any]) -> tuple[dict[str, float], Tensor]:
        if len(data) == 0:  # type: ignore[arg-type]
            raise ValueError("Expected the evaluation data to hold at least one sample, got 0")
        metrics = MetricAccumulator(self.device)
        classes = self.model.head.num_classes
        confusion = torch.zeros(classes * classes, dtype=torch.long, device=self.device)
        with self._eval_mode():
            shard = torch.arange(len(data))[distributed.rank() :: distributed.world_size()]  # type: ignore[arg-type]
            for batch in self._batches(data, self.eval_batch_size, shard):
                with _runtime.autocast(self.device, self.autocast_dtype):
                    output = self.model(self._image(batch.image), batch.number)
                    loss = self.loss(output, batch.digit, batch.sum)
                metrics.update(output, batch, loss)
                cells = batch.digit * classes + output.digit_logits.argmax(dim=1)
                confusion += torch.bincount(cells, minlength=classes * classes)
        distributed.all_reduce_sum(confusion)
        return metrics.compute(), confusion.view(classes, classes).cpu()

    def adder_metrics(self) -> dict[str, float]:
        """``adder_exact`` and ``adder_margin`` of the head's certificate, right now.

        Returns:
            Whether every digit/number pair in range rounds to its exact sum, and
            the margin ``0.5 - max_error`` (see
            :meth:`~multitask_mnist.models.ScalarFusionHead.certificate`).
        """
        certificate = self.model.head.certificate()
        return {"adder_exact": certificate.exact, "adder_margin": certificate.margin}

    @torch.inference_mode()
    def predict(self, image: Tensor, number: Tensor) -> Prediction:
        """Predict digits and sums for a batch.

        Args:
            image: ``(B, 1, 28, 28)`` float, normalized like the training images.
            number: ``(B,)`` integer-valued.

        Returns:
            The digits and the sums (rounded, and before rounding), on the CPU.

        Raises:
            TypeError: As :meth:`multitask_mnist.models.MultiTaskNet.forward` for bad inputs.
            ValueError: As :meth:`multitask_mnist.models.MultiTaskNet.forward` for bad inputs.
        """
        self.model.check_inputs(image, number)
        digits, sums = [], []
        with self._eval_mode():
            chunks = zip(
                torch.split(image, self.eval_batch_size),
                torch.split(number, self.eval_batch_size),
                strict=True,
            )
            for img, num in chunks:
                with _runtime.autocast(self.device, self.autocast_dtype):
                    out = self.model(self._image(img.to(self.device)), num.to(self.device))
                digits.append(out.digit_logits.argmax(dim=1).cpu())
                sums.append(out.sum.float().cpu())
        value = torch.cat(sums)
        return Prediction(torch.cat(digits), value.round().long(), value)

    def test(self, data: Dataset[Any]) -> dict[str, float]:
        """Evaluate on held-out data and record it as the run's test result.

        Adds ``test_*`` keys to ``output_dir/metrics.json`` and, with matplotlib
        installed, writes ``confusion_matrix.png`` of the digits.

        Returns:
            The metrics of :meth:`evaluate`.
        """
        metrics, confusion = self._evaluate(data)
        metrics |= self.adder_metrics()
        if self._write_dir is not None:
            from multitask_mnist.training import plots

            prepare_output_dir(self._write_dir)
            self._update_metrics_file(self._write_dir, _prefixed("test_", metrics))
            plots.save_confusion(confusion, self._write_dir)
        distributed.barrier()
        return metrics

    # -- checkpoints and files ---------------------------------------------------------------

    def state_dict(self, epoch: int) -> dict[str, Any]:
        """Everything needed to resume after ``epoch``: weights, optimizer, schedule, RNGs.

        Args:
            epoch: The number of completed epochs the state follows.

        Returns:
            Plain data and tensors, loadable with ``torch.load(..., weights_only=True)``.

        Raises:
            RuntimeError: Called before :meth:`fit` built the optimizer.
        """
        if self.optimizer is None or self.scheduler is None:
            raise RuntimeError("Trainer.state_dict() needs the optimizer that fit() builds")
        return {
            "format": _CHECKPOINT_FORMAT,
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "loss": self.loss.state_dict(),
            "rng": _runtime.get_rng_state(),
            "config": self.config,
            "history": self.history.epochs,
            "best": self._best,
            "train_time_s": self._train_time,
        }

    def _monitor(self, metrics: Mapping[str, float]) -> tuple[str, float]:
        key = "val_loss" if "val_loss" in metrics else "train_loss"
        return key, metrics[key]

    @property
    def _write_dir(self) -> Path | None:
        """Where this process writes files: ``output_dir`` on rank 0, nowhere elsewhere."""
        return self.output_dir if distributed.is_main_process() else None

    def _save_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        key, value = self._monitor(metrics)
        is_best = not self._best or value < self._best["value"]
        if is_best:
            self._best = {"metric": key, "value": value, "epoch": epoch}
        folder = self._write_dir
        if folder is None:
            distributed.barrier()
            return
        state = self.state_dict(epoch)
        save_checkpoint(state, folder / LAST_CHECKPOINT)
        if is_best:
            save_checkpoint(state, folder / BEST_CHECKPOINT)
        self.history.write_csv(folder / "history.csv")
        self._update_metrics_file(
            folder,
            {
                "config": self.config,
                "epochs": self.history.epochs,
                "best": self._best,
                "wall_time_s": self._train_time,
            },
        )
        distributed.barrier()

    @staticmethod
    def _update_metrics_file(folder: Path, entries: Mapping[str, Any]) -> None:
        path = folder / "metrics.json"
        current = json.loads(path.read_text()) if path.exists() else {}
        current.update(entries)
        write_text_atomic(path, json.dumps(current, indent=2) + "\n")

    def _restore(
        self, folder: Path, optimizer: Optimizer, scheduler: LRScheduler, steps_per_epoch: int
    ) -> tuple[int, LRScheduler]:
        """Load ``last.pt`` into this run; return the epochs it completed and the schedule."""
        path = folder / LAST_CHECKPOINT
        if not path.exists():
            logger.info("No checkpoint in %s; starting from scratch", folder)
            return 0, scheduler
        state = load_checkpoint(path, map_location=self.device)
        missing = [key for key in _RESUME_KEYS if key not in state]
        if missing:
            raise CheckpointError(
                f"{path} cannot be resumed from: it lacks {', '.join(missing)} "
                "(only checkpoints written by Trainer.fit can)"
            )
        load_model_state(self.model, state["model"], source=path)
        self.loss.load_state_dict(state["loss"])
        optimizer.load_state_dict(state["optimizer"])
        done: int = state["epoch"]
        planned = state["config"].get("epochs", self.epochs)
        if planned == self.epochs:
            scheduler.load_state_dict(state["scheduler"])
        else:
            logger.warning(
                "Resuming a run planned for %d epochs with epochs=%d: the learning-rate "
                "schedule restarts over the remaining %d epoch(s)",
                planned,
                self.epochs,
                max(self.epochs - done, 0),
            )
            scheduler = self._build_scheduler(
                optimizer, steps_per_epoch * max(self.epochs - done, 1)
            )
        _runtime.set_rng_state(state["rng"])
        self.history = History(list(state["history"]))
        self._best = dict(state["best"])
        self._train_time = float(state["train_time_s"])
        logger.info("Resumed from %s after epoch %d", path, done)
        return done, scheduler
