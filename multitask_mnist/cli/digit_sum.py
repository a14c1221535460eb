"""The digit + sum program behind ``multitask-mnist train``: its settings beside the
Trainer's (:class:`DigitSumRun`), its data, its callbacks and its report."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from multitask_mnist import distributed, presets
from multitask_mnist.data import (
    DATA_ENV_VAR,
    AugmentedDigitDataset,
    default_root,
    load_mnist,
)
from multitask_mnist.errors import InvalidValueError
from multitask_mnist.losses import WeightedMultiLoss
from multitask_mnist.models import Fusion, MultiTaskNet
from multitask_mnist.training import (
    Callback,
    GradientConflict,
    TensorBoard,
    Trainer,
    TrainerConfig,
)

__all__ = [
    "TEST_SEED",
    "DigitSumRun",
    "digit_sum_data",
    "digit_sum_model",
    "mnist_test_split",
    "print_test_result",
    "train",
    "train_callbacks",
]

logger = logging.getLogger("multitask_mnist")

#: Seed of the test split's numbers: every run is scored on the same image/number pairs.
TEST_SEED = 0


@dataclass(frozen=True)
class DigitSumRun:
    """What a digit + sum run needs beside the Trainer's settings: the network, the data
    and what to record. ``multitask-mnist train`` and ``examples/train_mnist_sum.py``
    take these flags (``--data-dir``, ``--limit``, ...).

    Args:
        preset: The network: a registered digit + sum preset (``mnist_sum``,
            ``mnist_sum_bn``).
        fusion: How the digit estimate joins the number; the preset's own by default.
        data_dir: The folder holding ``MNIST/raw/``; by default ``$MULTITASK_MNIST_DATA``,
            else ``./data``, downloading.
        limit: Train on the first N training images; the test still uses all 10,000.
        digit_labels: Keep the digit label on this fraction of the training images, chosen
            by the seed; the others train the sum only.
        loss_weights: Fixed weights by task, e.g. ``sum=0`` to train the digit alone;
            1 each by default.
        resume: Continue from the last checkpoint in the output folder, also one written
            mid-epoch.
        gradient_conflict: Record the tasks' gradient cosine, norms and weights every
            this many steps (``gradient_conflict.csv``; the epoch means go to
            ``history.csv`` either way). Without a gradient method each recorded step
            costs one extra backward pass per task.
        tensorboard: Log metrics, learning rate, task weights and the test confusion
            matrix for TensorBoard under ``OUTPUT_DIR/tensorboard`` (the ``tensorboard``
            extra).

    Raises:
        ValueError: ``limit`` below 1.

    Example:
        >>> DigitSumRun(limit=100).digit_labels
        1.0
    """

    preset: str = "mnist_sum"
    fusion: Fusion | None = None
    data_dir: Path | None = None
    limit: int | None = None
    digit_labels: float = 1.0
    loss_weights: dict[str, float] | None = None
    resume: bool = False
    gradient_conflict: int | None = None
    tensorboard: bool = False

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit < 1:
            raise InvalidValueError(f"Expected argument `limit` to be >= 1, got {self.limit}")


def data_root(data_dir: Path | None) -> tuple[Path, bool]:
    """The data folder and whether to download into it (only for the ./data default)."""
    if data_dir is not None:
        return data_dir, False
    return default_root(), not os.environ.get(DATA_ENV_VAR)


def mnist_test_split(
    root: str | os.PathLike[str] | None = None, download: bool = False
) -> AugmentedDigitDataset:
    """The 10,000 test images, paired with the same numbers in every run (``TEST_SEED``).

    Args:
        root: The folder holding ``MNIST/raw/``; ``None`` for
            :func:`~multitask_mnist.data.default_root`.
        download: Download MNIST into ``root`` if it is missing.

    Returns:
        The test split every run of the command line and the examples is scored on.

    Raises:
        FileNotFoundError: MNIST is missing and may not be downloaded.

    Example:
        >>> test = mnist_test_split(os.environ["MULTITASK_MNIST_DATA"])  # doctest: +SKIP
        >>> len(test), test.numbers[:5].tolist()  # doctest: +SKIP
        (10000, [4, 9, 3, 0, 3])
    """
    return AugmentedDigitDataset(load_mnist(root, train=False, download=download), seed=TEST_SEED)


def digit_sum_data(
    seed: int,
    *,
    data_dir: Path | None = None,
    limit: int | None = None,
    digit_labels: float = 1.0,
) -> tuple[AugmentedDigitDataset, AugmentedDigitDataset]:
    """The training images paired with numbers drawn from ``seed``, and the 10,000 test
    images paired as in every run (:func:`mnist_test_split`).

    Args:
        seed: The run's seed.
        data_dir: The folder holding ``MNIST/raw/``; by default ``$MULTITASK_MNIST_DATA``,
            else ``./data``, downloading.
        limit: Train on the first ``limit`` images only.
        digit_labels: Keep the digit label on this fraction of the training images.

    Returns:
        The training and the test split.

    Raises:
        FileNotFoundError: MNIST is missing and may not be downloaded.

    Example:
        >>> train, test = digit_sum_data(0, limit=100)  # doctest: +SKIP
        >>> len(train), len(test)  # doctest: +SKIP
        (100, 10000)
    """
    root, download = data_root(data_dir)
    images: Any = load_mnist(root, train=True, download=download)
    if limit is not None:
        images = Subset(images, range(min(limit, len(images))))
    train_data = AugmentedDigitDataset(images, seed=seed, digit_labels=digit_labels)
    return train_data, mnist_test_split(root, download)


def train_callbacks(run: DigitSumRun) -> list[Callback]:
    """The callbacks ``run`` asks for beside the defaults:
    :class:`~multitask_mnist.training.GradientConflict` for ``--gradient-conflict`` and
    :class:`~multitask_mnist.training.TensorBoard` for ``--tensorboard``.

    Args:
        run: The run's settings.

    Returns:
        The extra callbacks, possibly none.

    Example:
        >>> [c.name for c in train_callbacks(DigitSumRun(tensorboard=True))]
        ['tensorboard']
    """
    callbacks: list[Callback] = []
    if run.gradient_conflict is not None:
        callbacks.append(GradientConflict(run.gradient_conflict))
    if run.tensorboard:
        callbacks.append(TensorBoard())
    return callbacks


def train(config: TrainerConfig, run: DigitSumRun) -> int:
    """``multitask-mnist train``: train ``run.preset`` as the settings say, then test it
    on the 10,000 test images.

    Prints the epoch lines (through logging), ``Finished Training`` and the test
    result (:func:`print_test_result`).

    Args:
        config: The Trainer's settings.
        run: The network, the data and what to record.

    Returns:
        The exit status, 0.

    Raises:
        ValueError: A setting out of range, or an unknown preset.
        FileNotFoundError: MNIST is missing and may not be downloaded.
        TrainingInterrupted: SIGTERM or SIGINT stopped training; ``last.pt`` holds it.

    Example:
        >>> train(TrainerConfig(), DigitSumRun(preset="vgg"))
        Traceback (most recent call last):
        ...
        multitask_mnist.errors.InvalidValueError: Unknown preset 'vgg'; known presets: ...
    """
    torch.manual_seed(config.seed)
    net = presets.get(run.preset, **({} if run.fusion is None else {"fusion": run.fusion}))
    model = digit_sum_model(net, run.preset)
    loss = WeightedMultiLoss(run.loss_weights)
    trainer = Trainer(
        model, config, loss=loss, callbacks=train_callbacks(run), run_config=asdict(run)
    )
    train_data, test_data = digit_sum_data(
        config.seed, data_dir=run.data_dir, limit=run.limit, digit_labels=run.digit_labels
    )
    trainer.fit(train_data, resume=run.resume)
    metrics = trainer.test(test_data)
    if distributed.is_main_process():  # under torchrun, rank 0 alone prints
        print("Finished Training")
        print_test_result(metrics, len(test_data))
    return 0


def digit_sum_model(model: MultiTaskNet, preset: str) -> MultiTaskNet:
    """``model``, if it reads an image and a number and predicts the digit and the sum."""
    if model.task_names != ("digit", "sum") or model.input_names != ("image", "number"):
        raise InvalidValueError(
            f"Preset {preset!r} predicts {', '.join(model.task_names)} from "
            f"{', '.join(model.input_names)}; the command line trains and runs digit + sum "
            "networks (see examples/ for others, such as examples/train_multi_mnist.py)"
        )
    return model


def print_test_result(metrics: dict[str, float], n: int) -> None:
    """Print the test line of the original tutorial and the adder's line.

    Args:
        metrics: From :meth:`~multitask_mnist.training.Trainer.test` or
            :meth:`~multitask_mnist.training.Trainer.evaluate`.
        n: The number of test images.

    Example:
        >>> print_test_result({"digit_accuracy": 99.0, "sum_accuracy": 99.0, "adder_exact": True,
        ...                    "adder_margin": 0.5, "sum_given_digit_accuracy": 100.0}, 10_000)
        Accuracy of the network on the 10,000 test images: digit 99.00%, sum 99.00%
        Adder: exact on every digit/number pair (margin 0.500); the sum is right on 100.00% ...
    """
    print(
        f"Accuracy of the network on the {n:,} test images: "
        f"digit {metrics['digit_accuracy']:.2f}%, sum {metrics['sum_accuracy']:.2f}%"
    )
    exact = "exact" if metrics["adder_exact"] else "NOT exact"
    print(
        f"Adder: {exact} on every digit/number pair (margin {metrics['adder_margin']:.3f}); "
        f"the sum is right on {metrics['sum_given_digit_accuracy']:.2f}% of the images "
        "whose digit is right"
    )
