"""Benchmarks: a dataset, a network, a training recipe and the metrics a comparison
reads, under one name.

Every benchmark splits its training data into a training part and a validation part by
the run's seed (:func:`~multitask_mnist.data.holdout`; 10,000 images' worth for the
MNIST family, as Kurin et al., 2022, hold out for MultiMNIST); the test split is the
dataset's own, paired with the same seed in every run, and is evaluated once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from multitask_mnist import presets
from multitask_mnist.data import (
    AugmentedDigitDataset,
    MNISTAddition,
    MultiFashion,
    MultiFashionMNIST,
    MultiMNIST,
    load_mnist,
    normalize,
)
from multitask_mnist.errors import InvalidValueError
from multitask_mnist.models import MultiTaskNet

__all__ = [
    "ADDITION_DIGITS",
    "BENCHMARKS",
    "TEST_SEED",
    "Benchmark",
    "DataDirs",
    "get_benchmark",
    "register_benchmark",
]

#: The seed of every test split's pairing: every run is scored on the same test set.
TEST_SEED = 0


@dataclass(frozen=True)
class DataDirs:
    """Where the raw data is.

    Attributes:
        mnist: The folder holding ``MNIST/raw/``; ``None`` for ``$MULTITASK_MNIST_DATA``,
            else ``./data``.
        fashion: The folder of Fashion-MNIST's gzipped files; ``None`` for
            ``$MULTITASK_MNIST_FASHION``, else Debian's ``/usr/share/datasets/fashion-mnist``.
    """

    mnist: Path | None = None
    fashion: Path | None = None


#: ``(seed, data folders) -> (training data, test data)``.
Loader = Callable[[int, DataDirs], tuple[Dataset[Any], Dataset[Any]]]
#: ``(network, data folders) -> {metric: value}``: test metrics beyond the tasks'.
Probe = Callable[[MultiTaskNet, DataDirs], dict[str, float]]


@dataclass(frozen=True)
class Benchmark:
    """A benchmark a comparison runs: how to load it, what network and recipe train on
    it, and which metric of each task is compared.

    Attributes:
        name: Its name on the command line (``--benchmark``).
        summary: One line for tables and ``--help``.
        tasks: The tasks compared; each task's metric is ``{task}_accuracy`` (in
            percent, higher is better).
        preset: The network: a registered preset, built with ``preset_kwargs``.
        preset_kwargs: Its keyword arguments.
        recipe: :class:`~multitask_mnist.training.TrainerConfig` values of the
            benchmark's training recipe (``epochs``, ``batch_size``, ...); a
            comparison may override them.
        validation_size: Samples of the training data held out to select the
            checkpoint.
        load: ``(seed, DataDirs) -> (train, test)``: the training data (its pairing
            drawn from the seed) and the test data (paired with ``TEST_SEED``).
        single_task: Whether the comparison also trains one network per task (the
            baseline of Δm): the same network with the other tasks' weights at 0.
        source: Where the benchmark comes from.
        probe: ``(network, DataDirs) -> {metric: value}``: more test metrics of the
            selected network (in percent), reported beside the tasks' (MNIST-addition:
            the latent digit classifier's accuracy on the MNIST test images); under
            held-out selection only.

    Example:
        >>> get_benchmark("multi_mnist").tasks
        ('left', 'right')
    """

    name: str
    summary: str
    tasks: tuple[str, ...]
    preset: str
    load: Loader
    preset_kwargs: Mapping[str, Any] = field(default_factory=dict)
    recipe: Mapping[str, Any] = field(default_factory=dict)
    validation_size: int = 10_000
    single_task: bool = True
    source: str = ""
    probe: Probe | None = None

    def metric(self, task: str) -> str:
        """The metric compared for ``task``: ``{task}_accuracy``."""
        return f"{task}_accuracy"


#: The registered benchmarks, by name.
BENCHMARKS: dict[str, Benchmark] = {}


def register_benchmark(benchmark: Benchmark) -> Benchmark:
    """Register ``benchmark`` under its name.

    Raises:
        ValueError: The name is taken.

    Example:
        >>> "digit_sum" in BENCHMARKS
        True
    """
    if benchmark.name in BENCHMARKS:
        raise InvalidValueError(f"A benchmark named {benchmark.name!r} is already registered")
    BENCHMARKS[benchmark.name] = benchmark
    return benchmark


def get_benchmark(name: str) -> Benchmark:
    """The benchmark registered as ``name``.

    Raises:
        ValueError: An unknown name; the message lists the known ones.

    Example:
        >>> get_benchmark("multi_fashion").preset
        'multi_mnist_lenet'
    """
    if name not in BENCHMARKS:
        known = ", ".join(map(repr, sorted(BENCHMARKS)))
        raise InvalidValueError(f"Expected argument `benchmark` to be one of {known}, got {name!r}")
    return BENCHMARKS[name]


def _path(folder: Path | None) -> str | os.PathLike[str] | None:
    return folder


def _digit_sum(seed: int, dirs: DataDirs) -> tuple[Dataset[Any], Dataset[Any]]:
    train = AugmentedDigitDataset(load_mnist(_path(dirs.mnist), train=True), seed=seed)
    test = AugmentedDigitDataset(load_mnist(_path(dirs.mnist), train=False), seed=TEST_SEED)
    return train, test


def _multi_mnist(seed: int, dirs: DataDirs) -> tuple[Dataset[Any], Dataset[Any]]:
    train = MultiMNIST(_path(dirs.mnist), train=True, seed=seed)
    return train, MultiMNIST(_path(dirs.mnist), train=False, seed=TEST_SEED)


def _multi_fashion(seed: int, dirs: DataDirs) -> tuple[Dataset[Any], Dataset[Any]]:
    train = MultiFashion(_path(dirs.fashion), train=True, seed=seed)
    return train, MultiFashion(_path(dirs.fashion), train=False, seed=TEST_SEED)


def _multi_fashion_mnist(seed: int, dirs: DataDirs) -> tuple[Dataset[Any], Dataset[Any]]:
    mnist, fashion = _path(dirs.mnist), _path(dirs.fashion)
    train = MultiFashionMNIST(mnist, fashion, train=True, seed=seed)
    return train, MultiFashionMNIST(mnist, fashion, train=False, seed=TEST_SEED)


def _addition(digits: int, preset: str) -> Loader:
    # The labels its head scores: the sum's digits for the carry chain, else the sum.
    as_digits = presets.get(preset, digits=digits).tasks[0].kind == "digits"

    def load(seed: int, dirs: DataDirs) -> tuple[Dataset[Any], Dataset[Any]]:
        root = _path(dirs.mnist)
        train = MNISTAddition(root, train=True, digits=digits, seed=seed, sum_digits=as_digits)
        test = MNISTAddition(root, train=False, digits=digits, seed=TEST_SEED, sum_digits=as_digits)
        return train, test

    return load


def _latent_digit_accuracy(net: MultiTaskNet, dirs: DataDirs) -> dict[str, float]:
    """The accuracy of an MNIST-addition network's digit classifier on the 10,000 MNIST
    test images: what it learned of the digits from the sums alone."""
    classifier = net.get_submodule("digits.classifier")
    device = next(classifier.parameters()).device
    mnist = load_mnist(_path(dirs.mnist), train=False)
    was_training = classifier.training
    classifier.eval()
    right = 0
    with torch.inference_mode():
        for start in range(0, len(mnist.targets), 1000):
            images = normalize(mnist.data[start : start + 1000].unsqueeze(1))
            predicted = classifier(images.to(device)).argmax(-1).cpu()
            right += int((predicted == mnist.targets[start : start + 1000]).sum())
    classifier.train(was_training)
    return {"digit_accuracy": 100.0 * right / len(mnist.targets)}


_LENET = "Sener and Koltun's MultiLeNet (presets.multi_mnist_lenet)"

register_benchmark(
    Benchmark(
        name="digit_sum",
        summary="the documented task: read the digit, add the number (mnist_sum, straight-through)",
        tasks=("digit", "sum"),
        preset="mnist_sum",
        preset_kwargs={"fusion": "straight_through"},
        load=_digit_sum,
        source="this library's canonical task",
    )
)
register_benchmark(
    Benchmark(
        name="multi_mnist",
        summary=f"MultiMNIST, two overlapping digits; {_LENET}",
        tasks=("left", "right"),
        preset="multi_mnist_lenet",
        load=_multi_mnist,
        source="Sener and Koltun, NeurIPS 2018",
    )
)
register_benchmark(
    Benchmark(
        name="multi_fashion",
        summary=f"MultiFashion, two overlapping garments; {_LENET}",
        tasks=("left", "right"),
        preset="multi_mnist_lenet",
        load=_multi_fashion,
        source="Lin et al., NeurIPS 2019 (Pareto MTL)",
    )
)
register_benchmark(
    Benchmark(
        name="multi_fashion_mnist",
        summary=f"Multi-(Fashion+MNIST), a digit (left) over a garment (right); {_LENET}",
        tasks=("left", "right"),
        preset="multi_mnist_lenet",
        load=_multi_fashion_mnist,
        source="Lin et al., NeurIPS 2019 (Pareto MTL)",
    )
)
#: The lengths of the MNIST-addition benchmarks: the papers' N.
ADDITION_DIGITS = (1, 2, 4, 15, 100)

for _digits in ADDITION_DIGITS:
    for _preset, _suffix, _network in (
        ("mnist_addition_lenet", "", "DeepProbLog's LeNet (the papers' network)"),
        ("mnist_addition", "_trunk", "the documented trunk"),
    ):
        register_benchmark(
            Benchmark(
                name=f"mnist_addition_{_digits}{_suffix}",
                summary=(
                    f"MNIST-addition, numbers of {_digits} digit(s), the sum's label only; "
                    f"{_network}"
                ),
                tasks=("sum",),
                preset=_preset,
                preset_kwargs={"digits": _digits},
                # About 128 images a step at every N: 64 sums of one digit, 1 of 100.
                recipe={"batch_size": max(1, 64 // _digits)},
                validation_size=10_000 // (2 * _digits),  # 10,000 images' worth of sums
                load=_addition(_digits, _preset),
                single_task=False,
                source="Manhaeve et al., NeurIPS 2018 (DeepProbLog)",
                probe=_latent_digit_accuracy,
            )
        )
