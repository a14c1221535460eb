"""``tiny_pairs``: a benchmark of synthetic overlaid pairs that trains in a second, so
that the comparison's machinery (workers, Ray, resume) is tested without MNIST's cost.

Importing this module registers it; worker processes import it through ``imports``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from multitask_mnist.data import MNISTSplit
from multitask_mnist.data.multi_mnist import OverlaidPairs
from multitask_mnist.experiments import BENCHMARKS, Benchmark, DataDirs, register_benchmark

NAME = "tiny_pairs"


def _glyphs(n: int, seed: int) -> MNISTSplit:
    """28x28 images whose label (0-9) is a bright bar at row 2*label, with noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=generator)
    data = torch.randint(0, 40, (n, 28, 28), generator=generator, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        data[i, 2 * label : 2 * label + 2, 1:20] = 255
    return MNISTSplit("synthetic", True, data, labels)


def load(seed: int, dirs: DataDirs) -> tuple[Dataset[Any], Dataset[Any]]:
    train = _glyphs(600, 1000)
    test = _glyphs(200, 2000)
    return (
        OverlaidPairs(train, train, seed=seed),
        OverlaidPairs(test, test, seed=0, train=False),
    )


if NAME not in BENCHMARKS:
    register_benchmark(
        Benchmark(
            name=NAME,
            summary="synthetic overlaid bars (tests only)",
            tasks=("left", "right"),
            preset="multi_mnist_lenet",
            load=load,
            recipe={"epochs": 2, "batch_size": 100},
            validation_size=100,
        )
    )
