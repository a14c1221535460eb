"""Per-batch cost of the per-task metrics: ``TaskMetrics`` against torchmetrics.

Both keep, for the digit (10 classes) and the sum (a regression), what a training
epoch reports: the digit's accuracy and the sum's mean absolute error, over batches of
128 on the CPU. torchmetrics uses ``MultitaskWrapper`` with ``MulticlassAccuracy``
and ``MeanAbsoluteError``; ``TaskMetrics`` also sums each task's loss, the sum's
rounded accuracy, and counts only labelled samples; as the Trainer uses it, it takes
the task losses from the training loss and adds the joint accuracy and the sum's
accuracy where the digit is right. Each side runs ``--updates``
updates and one compute, alternating A B A B over ``--rounds``; the median
microseconds per update are printed, with their ratio.

Needs torchmetrics (``pip install torchmetrics``), which the library itself does not.

Usage::

    python benchmarks/metrics_overhead.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from multitask_mnist.tasks import DIGIT_SUM_TASKS, TaskMetrics, masked_task_losses


def _batches(n: int) -> list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]:
    generator = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        logits = torch.randn(128, 10, generator=generator)
        digit = torch.randint(0, 10, (128,), generator=generator)
        total = digit + torch.randint(0, 10, (128,), generator=generator)
        predicted_sum = total + torch.randn(128, generator=generator) * 0.3
        out.append(({"digit": logits, "sum": predicted_sum}, {"digit": digit, "sum": total}))
    return out


def ours(batches: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]) -> float:
    metrics = TaskMetrics(DIGIT_SUM_TASKS)
    tic = time.perf_counter()
    for predictions, targets in batches:
        metrics.update(predictions, targets)
    metrics.compute()
    return (time.perf_counter() - tic) / len(batches) * 1e6


def as_trained(batches: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]) -> float:
    """As the Trainer uses it: the losses come from the training loss, computed anyway;
    the sum's accuracy where the digit is right and the joint accuracy are added."""
    metrics = TaskMetrics(DIGIT_SUM_TASKS, given={"sum": "digit"})
    losses = [masked_task_losses(DIGIT_SUM_TASKS, p, t) for p, t in batches]
    tic = time.perf_counter()
    for (predictions, targets), parts in zip(batches, losses, strict=True):
        metrics.update(predictions, targets, losses=parts, total=parts["digit"] + parts["sum"])
    metrics.compute()
    return (time.perf_counter() - tic) / len(batches) * 1e6


def theirs(batches: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]]) -> float:
    from torchmetrics import MeanAbsoluteError, MultitaskWrapper
    from torchmetrics.classification import MulticlassAccuracy

    metrics = MultitaskWrapper(
        {"digit": MulticlassAccuracy(num_classes=10, average="micro"), "sum": MeanAbsoluteError()}
    )
    tic = time.perf_counter()
    for predictions, targets in batches:
        metrics.update(predictions, targets)
    metrics.compute()
    return (time.perf_counter() - tic) / len(batches) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--updates", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    batches = _batches(args.updates)
    sides: dict[str, Callable[..., float]] = {
        "TaskMetrics": ours,
        "TaskMetrics, as the Trainer uses it": as_trained,
        "torchmetrics": theirs,
    }
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, run in sides.items():
            times[name].append(run(batches))
    base = statistics.median(times["TaskMetrics"])
    print("| metrics | median µs per update | ratio |")
    print("|---|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
