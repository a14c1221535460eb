"""Training and evaluation throughput: a conventional loop against the library's Trainer.

Both paths train the same network (``presets.mnist_sum()``) on the same machine,
in the same run, each in a fresh subprocess so that its peak resident memory is
its own:

- ``conventional``: torchvision MNIST with per-sample ``ToTensor``/``Normalize``,
  a dataset that draws the number per item, a shuffling ``DataLoader`` and a
  plain float32 loop that reads the loss with ``.item()`` every batch, as most
  tutorials write it.
- ``library``: ``AugmentedDigitDataset`` and ``Trainer`` with their defaults.

Usage::

    python benchmarks/throughput.py --data-dir ../shared/data

prints a Markdown table with images/s, ratios and peak memory, plus the
achieved training GFLOP/s against this machine's bfloat16 matrix-product rate.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from multitask_mnist import AugmentedDigitDataset, load_mnist, presets
from multitask_mnist.training import Callback, Trainer

WARMUP_STEPS = 5


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def forward_macs(model: nn.Module) -> int:
    """Multiply-adds of one image's forward pass, counted from the conv and linear layers."""
    total = 0

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kernel = module.weight[0].numel()  # in_channels/groups * kh * kw
            total += output[0].numel() * kernel
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28), torch.zeros(1, dtype=torch.long))
    for handle in handles:
        handle.remove()
    return total


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    tic = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - tic) / 1e9


# -- the conventional path ---------------------------------------------------------------------


class ConventionalPairs(Dataset[tuple[torch.Tensor, int, int]]):
    """Per-sample: a transformed image, a number drawn on the spot, the digit."""

    def __init__(self, base: Dataset[Any]) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        image, digit = self.base[index]
        return image, random.randint(0, 9), digit


def conventional(root: str, train_images: int, batch_size: int) -> dict[str, float]:
    from torchvision import datasets, transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train = datasets.MNIST(root, train=True, transform=tf)
    test = datasets.MNIST(root, train=False, transform=tf)
    torch.manual_seed(0)
    model = presets.mnist_sum()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(
        ConventionalPairs(Subset(train, range(train_images))), batch_size=batch_size, shuffle=True
    )
    running, seen, tic = 0.0, 0, 0.0
    for step, (image, number, digit) in enumerate(loader):
        if step == WARMUP_STEPS:
            tic, seen = time.perf_counter(), 0
        out = model(image, number)
        target = (digit + number).float()
        loss = F.cross_entropy(out["digit"], digit) + F.mse_loss(out["sum"], target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running += loss.item()
        seen += len(digit)
    train_ips = seen / (time.perf_counter() - tic)

    model.eval()
    tic = time.perf_counter()
    correct = 0
    with torch.no_grad():
        for image, number, digit in DataLoader(ConventionalPairs(test), batch_size=batch_size):
            out = model(image, number)
            correct += int((out["digit"].argmax(1) == digit).sum())
    eval_ips = len(test) / (time.perf_counter() - tic)
    return {"train_ips": train_ips, "eval_ips": eval_ips, "peak_rss_mb": peak_rss_mb()}


# -- the library path ----------------------------------------------------------------------------


class _StepClock(Callback):
    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.tic = 0.0
        self.toc = 0.0
        self.steps = 0

    def on_batch_end(self, trainer: Trainer, epoch: int, step: int, loss: torch.Tensor) -> None:
        if step == WARMUP_STEPS - 1:
            self.tic = time.perf_counter()
        elif step >= WARMUP_STEPS:
            self.toc, self.steps = time.perf_counter(), self.steps + 1


def library(root: str, train_images: int, batch_size: int, precision: str) -> dict[str, float]:
    train = AugmentedDigitDataset(Subset(load_mnist(root, train=True), range(train_images)))
    test = AugmentedDigitDataset(load_mnist(root, train=False))
    torch.manual_seed(0)
    clock = _StepClock(batch_size)
    trainer = Trainer(
        presets.mnist_sum(),
        epochs=1,
        batch_size=batch_size,
        precision=precision,
        progress=False,
        callbacks=[clock],
    )
    trainer.fit(train)
    train_ips = clock.steps * batch_size / (clock.toc - clock.tic)
    trainer.evaluate(test)  # warm-up
    tic = time.perf_counter()
    trainer.evaluate(test)
    eval_ips = len(test) / (time.perf_counter() - tic)
    return {"train_ips": train_ips, "eval_ips": eval_ips, "peak_rss_mb": peak_rss_mb()}


# -- driver ----------------------------------------------------------------------------------


def run_worker(args: argparse.Namespace) -> None:
    root = str(args.data_dir)
    if args.worker == "conventional":
        result = conventional(root, args.train_images, args.batch_size)
    else:
        result = library(root, args.train_images, args.batch_size, args.precision)
    print(json.dumps(result))


def spawn(args: argparse.Namespace, worker: str, precision: str = "auto") -> dict[str, float]:
    command = [
        sys.executable,
        __file__,
        "--worker",
        worker,
        "--data-dir",
        str(args.data_dir),
        "--train-images",
        str(args.train_images),
        "--batch-size",
        str(args.batch_size),
        "--precision",
        precision,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def whole_process(args: argparse.Namespace) -> dict[str, float]:
    """Wall time of one full epoch plus the test evaluation, each path a whole process."""
    times = {}
    env = {**os.environ, "MULTITASK_MNIST_DATA": str(args.data_dir)}
    conventional_cmd = [
        sys.executable,
        __file__,
        "--worker",
        "conventional",
        "--data-dir",
        str(args.data_dir),
        "--train-images",
        "60000",
        "--batch-size",
        str(args.batch_size),
    ]
    with tempfile.TemporaryDirectory() as out:
        example_cmd = [
            sys.executable,
            str(Path(__file__).parents[1] / "examples" / "train_mnist_sum.py"),
            "--epochs",
            "1",
            "--batch-size",
            str(args.batch_size),
            "--output-dir",
            out,
            "--no-progress",
        ]
        for name, command in (("conventional", conventional_cmd), ("example", example_cmd)):
            tic = time.perf_counter()
            subprocess.run(command, capture_output=True, check=True, env=env)
            times[name] = time.perf_counter() - tic
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(os.environ.get("MULTITASK_MNIST_DATA", "data"))
    parser.add_argument("--data-dir", type=Path, default=default_data)
    parser.add_argument("--train-images", type=int, default=12_800)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--worker", choices=["conventional", "library"])
    parser.add_argument(
        "--full-epoch",
        action="store_true",
        help="also time one full epoch plus the test, as whole processes (about 2 minutes)",
    )
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return

    rows = {
        "conventional loop (float32)": spawn(args, "conventional"),
        "Trainer, precision=fp32": spawn(args, "library", "fp32"),
        "Trainer, defaults": spawn(args, "library", "auto"),
    }
    base = rows["conventional loop (float32)"]
    macs = forward_macs(presets.mnist_sum())
    flop_per_trained_image = 3 * 2 * macs  # forward, and backward at twice the forward
    bf16 = matmul_gflops(torch.bfloat16)
    fp32 = matmul_gflops(torch.float32)
    print(
        f"batch size {args.batch_size}, {args.train_images} training images, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}\n"
    )
    print("| path | train img/s | ratio | eval img/s | ratio | peak RSS MB | train GFLOP/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        gflops = row["train_ips"] * flop_per_trained_image / 1e9
        print(
            f"| {name} | {row['train_ips']:,.0f} | {row['train_ips'] / base['train_ips']:.2f} "
            f"| {row['eval_ips']:,.0f} | {row['eval_ips'] / base['eval_ips']:.2f} "
            f"| {row['peak_rss_mb']:,.0f} | {gflops:,.0f} |"
        )
    best = rows["Trainer, defaults"]["train_ips"] * flop_per_trained_image / 1e9
    print(
        f"\nforward: {macs / 1e6:.2f} M multiply-adds per image; "
        f"{flop_per_trained_image / 1e6:.0f} MFLOP per trained image"
    )
    print(
        f"2048x2048 matmul: {fp32:,.0f} GFLOP/s float32, {bf16:,.0f} GFLOP/s bfloat16; "
        f"the Trainer's default path reaches {best / bf16:.1%} of the bfloat16 rate"
    )


if __name__ == "__main__":
    main()
