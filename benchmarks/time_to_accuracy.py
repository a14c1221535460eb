"""Training wall time until the test digit and sum accuracy both reach a target.

Trains the documented network with the Trainer on the full training split and,
after every ``--eval-every`` of an epoch, evaluates the 10,000 test images. The
clock counts training only: evaluation time is measured and reported apart.

Usage::

    python benchmarks/time_to_accuracy.py --data-dir ../shared/data --epochs 2 --batch-size 128
    python benchmarks/time_to_accuracy.py --lr 5e-3 --eval-every 0.125 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import torch

from multitask_mnist import AugmentedDigitDataset, load_mnist, presets
from multitask_mnist.training import Callback, Trainer


class TestWatch(Callback):
    """Evaluates the test split every ``every`` steps; stops the run at the target."""

    def __init__(self, test: AugmentedDigitDataset, every: int, target: float) -> None:
        self.test, self.every, self.target = test, every, target
        self.train_time = 0.0
        self.eval_time = 0.0
        self.reached: dict[str, float] | None = None
        self.log: list[dict[str, float]] = []
        self._tic = 0.0
        self._steps = 0

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._tic = time.perf_counter()

    def on_batch_end(self, trainer: Trainer, epoch: int, step: int, loss: torch.Tensor) -> None:
        self._steps += 1
        if self.reached is None and self._steps % self.every == 0:
            self._check(trainer)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self._clock()  # the steps since the last evaluation count before the next epoch
        if self.reached is None and epoch == trainer.epochs and self._steps % self.every:
            self._check(trainer)  # the end of the schedule is always measured

    def _clock(self) -> None:
        now = time.perf_counter()
        self.train_time += now - self._tic
        self._tic = now

    def _check(self, trainer: Trainer) -> None:
        self._clock()
        tic = time.perf_counter()
        metrics = trainer.evaluate(self.test)
        self.eval_time += time.perf_counter() - tic
        row = {
            "step": self._steps,
            "train_s": round(self.train_time, 2),
            "digit": round(metrics["digit_accuracy"], 2),
            "sum": round(metrics["sum_accuracy"], 2),
        }
        self.log.append(row)
        print(json.dumps(row), flush=True)
        if min(row["digit"], row["sum"]) >= self.target:
            self.reached = row
            trainer.stop(f"reached {self.target}% test digit and sum accuracy")
        self._tic = time.perf_counter()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(os.environ.get("MULTITASK_MNIST_DATA", "data"))
    parser.add_argument("--data-dir", type=Path, default=default_data)
    parser.add_argument("--epochs", type=int, default=2, help="length of the one-cycle schedule")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--target", type=float, default=99.0)
    parser.add_argument("--eval-every", type=float, default=0.25, help="fraction of an epoch")
    parser.add_argument("--precision", default="auto")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0], help="one run per seed; the median is reported"
    )
    args = parser.parse_args()

    test = AugmentedDigitDataset(load_mnist(args.data_dir, train=False), seed=0)
    times: list[float] = []
    for seed in args.seeds:
        reached = run(args, seed, test)
        if reached is not None:
            times.append(reached)
    if len(args.seeds) > 1:
        ordered = sorted(times) + [math.inf] * (len(args.seeds) - len(times))  # misses last
        print(
            f"\n{len(times)} of {len(args.seeds)} seeds reached {args.target}%; median time to "
            f"it {statistics.median(ordered):.1f} s of training "
            f"(each: {', '.join(f'{t:.1f}' for t in times) or 'none'})"
        )


def run(args: argparse.Namespace, seed: int, test: AugmentedDigitDataset) -> float | None:
    """One run from ``seed``; the seconds of training until the target, or ``None``."""
    train = AugmentedDigitDataset(load_mnist(args.data_dir, train=True), seed=seed)
    steps_per_epoch = math.ceil(len(train) / args.batch_size)
    watch = TestWatch(test, max(1, round(args.eval_every * steps_per_epoch)), args.target)
    torch.manual_seed(seed)
    trainer = Trainer(
        presets.mnist_sum(),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        precision=args.precision,
        seed=seed,
        progress=False,
        callbacks=[watch],
    )
    trainer.fit(train)
    last = watch.log[-1] if watch.log else {}
    print(
        f"\nseed {seed}, schedule {args.epochs} epochs, batch {args.batch_size}, lr {args.lr:g}, "
        f"precision {args.precision}: "
        + (
            f"{args.target}% reached after {watch.reached['train_s']:.1f} s of training "
            f"(step {watch.reached['step']:.0f}; digit {watch.reached['digit']:.2f}%, "
            f"sum {watch.reached['sum']:.2f}%)"
            if watch.reached
            else f"{args.target}% not reached; last: {last}"
        )
        + f"; {watch.eval_time:.1f} s spent evaluating, not counted",
        flush=True,
    )
    return None if watch.reached is None else watch.reached["train_s"]


if __name__ == "__main__":
    main()
