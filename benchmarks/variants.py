"""Training speed of variants of the Trainer's default path, as fresh processes, alternating.

Each variant trains ``presets.mnist_sum()`` with ``Trainer.fit`` on the first 12,800
MNIST images (after 5 warm-up steps) in its own process; the variants run in
alternating order for ``--rounds`` rounds, and each is reported by its median images
per second and the user CPU seconds of its timed steps (less sensitive to the
machine's drift than wall time).

Variants: ``default``; ``inplace`` (in-place ReLU); ``fused`` and ``foreach`` (Adam's
fused and foreach implementations); ``b256`` and ``b512`` (batch size); ``eval256``,
``eval512``, ``eval1024``, ``eval2048``: ``Trainer.evaluate`` on the 10,000 test images
at that evaluation batch size (after one warm-up pass), the test pass of every run.

Usage::

    python benchmarks/variants.py default fused foreach inplace --rounds 5
    python benchmarks/variants.py b128 b256 b512 --rounds 3
    python benchmarks/variants.py eval256 eval512 eval1024 eval2048 --rounds 5
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TRAIN_IMAGES, WARMUP_STEPS = 12_800, 5
VARIANTS = ("default", "inplace", "fused", "foreach", "b128", "b256", "b512")
EVAL_VARIANTS = ("eval256", "eval512", "eval1024", "eval2048")


def evaluation(variant: str, data_dir: Path) -> dict[str, float]:
    """Images per second of ``Trainer.evaluate`` on the test split at one batch size."""
    import torch

    from multitask_mnist import presets
    from multitask_mnist.cli import mnist_test_split
    from multitask_mnist.training import Trainer

    test = mnist_test_split(data_dir)
    torch.manual_seed(0)
    trainer = Trainer(presets.mnist_sum(), eval_batch_size=int(variant[4:]), progress=False)
    trainer.evaluate(test)  # warm-up
    tic, user = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_utime
    trainer.evaluate(test)
    seconds = time.perf_counter() - tic
    used = resource.getrusage(resource.RUSAGE_SELF).ru_utime - user
    return {"images_per_s": len(test) / seconds, "user_s": used}


def worker(variant: str, data_dir: Path) -> dict[str, float]:
    if variant.startswith("eval"):
        return evaluation(variant, data_dir)
    import torch
    from torch import nn
    from torch.utils.data import Subset

    from multitask_mnist import AugmentedDigitDataset, load_mnist, presets
    from multitask_mnist.training import Callback, Trainer

    batch_size = int(variant[1:]) if variant.startswith("b") else 128

    class Clock(Callback):
        def on_batch_end(self, trainer: Trainer, epoch: int, step: int, loss: Any) -> None:
            now = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_utime
            if step == WARMUP_STEPS - 1:
                self.start = now
            self.end = now

    options: dict[str, Any] = {}
    if variant in ("fused", "foreach"):
        options["optimizer"] = functools.partial(torch.optim.Adam, **{variant: True})
    act = functools.partial(nn.ReLU, inplace=True) if variant == "inplace" else nn.ReLU
    n = TRAIN_IMAGES + WARMUP_STEPS * batch_size
    train = AugmentedDigitDataset(Subset(load_mnist(data_dir, train=True), range(n)))
    clock = Clock()
    torch.manual_seed(0)
    trainer = Trainer(
        presets.mnist_sum(act_layer=act),
        epochs=1,
        batch_size=batch_size,
        progress=False,
        callbacks=[clock],
        **options,
    )
    trainer.fit(train)
    seconds = clock.end[0] - clock.start[0]
    return {"images_per_s": TRAIN_IMAGES / seconds, "user_s": clock.end[1] - clock.start[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", choices=VARIANTS + EVAL_VARIANTS)
    parser.add_argument("--rounds", type=int, default=3)
    default_data = Path(os.environ.get("MULTITASK_MNIST_DATA", "data"))
    parser.add_argument("--data-dir", type=Path, default=default_data)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.variants[0], args.data_dir)))
        return
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
    for round_ in range(args.rounds):
        for variant in args.variants if round_ % 2 == 0 else args.variants[::-1]:
            command = [sys.executable, __file__, variant, "--worker"]
            command += ["--data-dir", str(args.data_dir)]
            out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=3600)
            runs[variant].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{args.rounds} rounds, {TRAIN_IMAGES} training or 10,000 test images each\n")
    print("| variant | median img/s | each | median user s |\n|---|---:|---|---:|")
    for variant, found in runs.items():
        speeds = sorted(r["images_per_s"] for r in found)
        user = statistics.median(r["user_s"] for r in found)
        each = " · ".join(f"{s:,.0f}" for s in speeds)
        print(f"| {variant} | {statistics.median(speeds):,.0f} | {each} | {user:.1f} |")


if __name__ == "__main__":
    main()
