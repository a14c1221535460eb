"""Where a training step of the documented network spends its time.

Runs the Trainer's default path under ``torch.profiler`` for a few dozen steps
after a warm-up and prints the operators that take the most CPU time, grouped
into forward, backward, optimizer and the rest.

Usage::

    python benchmarks/profile_step.py --data-dir ../shared/data --batch-size 128
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule
from torch.utils.data import Subset

from multitask_mnist import AugmentedDigitDataset, load_mnist, presets
from multitask_mnist.training import Callback, Trainer

WARMUP, ACTIVE = 10, 40


class _Stepper(Callback):
    def __init__(self, prof: torch.profiler.profile) -> None:
        self.prof = prof

    def on_batch_end(self, trainer: Trainer, epoch: int, step: int, loss: torch.Tensor) -> None:
        self.prof.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(os.environ.get("MULTITASK_MNIST_DATA", "data"))
    parser.add_argument("--data-dir", type=Path, default=default_data)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--rows", type=int, default=20)
    args = parser.parse_args()

    n = (WARMUP + ACTIVE + 1) * args.batch_size
    train = AugmentedDigitDataset(Subset(load_mnist(args.data_dir, train=True), range(n)))
    torch.manual_seed(0)
    with profile(
        activities=[ProfilerActivity.CPU],
        schedule=schedule(wait=0, warmup=WARMUP, active=ACTIVE, repeat=1),
    ) as prof:
        trainer = Trainer(
            presets.mnist_sum(),
            epochs=1,
            batch_size=args.batch_size,
            precision=args.precision,
            progress=False,
            callbacks=[_Stepper(prof)],
        )
        trainer.fit(train)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(
        f"batch {args.batch_size}, precision {args.precision}, {ACTIVE} profiled steps, "
        f"{total / ACTIVE / 1e3:.1f} ms of CPU time per step ({torch.get_num_threads()} threads)\n"
    )
    print("| operator | self CPU ms/step | share |\n|---|---:|---:|")
    for event in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.rows]:
        share = event.self_cpu_time_total / total
        print(f"| `{event.key}` | {event.self_cpu_time_total / ACTIVE / 1e3:.2f} | {share:.1%} |")


if __name__ == "__main__":
    main()
