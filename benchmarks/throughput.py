"""Training and evaluation throughput: a conventional loop against the library's Trainer.

Both paths train the same network (``presets.mnist_sum()``) on the same machine,
in the same run, each in a fresh subprocess so that its peak resident memory is
its own:

- ``conventional``: torchvision MNIST with per-sample ``ToTensor``/``Normalize``,
  a dataset that draws the number per item, a shuffling ``DataLoader`` and a
  plain float32 loop that reads the loss with ``.item()`` every batch, as most
  tutorials write it.
- ``bare``: the Trainer's operations written out, nothing else: the same model,
  batch size, bfloat16 autocast, channels-last and Adam over preloaded tensors.
- ``library``: ``AugmentedDigitDataset`` and ``Trainer`` with their defaults (and once
  more with ``keep_freed_memory=False``, to show what the allocator setting buys).
- ``lightning``: the same model and tensors in Lightning's ``bf16-mixed`` loop, when
  ``lightning`` is installed.

Each row reports images/s, minor page faults per step and the system and user CPU
seconds of its training steps. ``--whole-process N`` times, as whole processes in
alternating order, N rounds of one full epoch plus the test
(``examples/train_mnist_sum.py --epochs 1`` against the conventional loop) with each
one's peak resident memory, and ``multitask-mnist predict`` on one PNG against
``python -c "import torch"``.

Usage::

    python benchmarks/throughput.py --data-dir ../shared/data --whole-process 3
    python benchmarks/throughput.py --rounds 5

prints Markdown tables with the ratios, plus the achieved training GFLOP/s against
this machine's bfloat16 matrix-product rate.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import resource
import shutil
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
from multitask_mnist.training.allocator import keep_freed_memory

WARMUP_STEPS = 5


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StepCost:
    """Page faults and CPU seconds between ``start()`` and ``stop()``."""

    def start(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        self.faults, self.user, self.system = usage.ru_minflt, usage.ru_utime, usage.ru_stime
        self.tic = time.perf_counter()

    def stop(self, steps: int, images: int) -> dict[str, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "train_ips": images / (time.perf_counter() - self.tic),
            "faults_per_step": (usage.ru_minflt - self.faults) / max(steps, 1),
            "user_s": usage.ru_utime - self.user,
            "system_s": usage.ru_stime - self.system,
        }


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
    running, seen, cost = 0.0, 0, StepCost()
    for step, (image, number, digit) in enumerate(loader):
        if step == WARMUP_STEPS:
            cost.start()
            seen = 0
        out = model(image, number)
        target = (digit + number).float()
        loss = F.cross_entropy(out["digit"], digit) + F.mse_loss(out["sum"], target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running += loss.item()
        seen += len(digit)
    result = cost.stop(step + 1 - WARMUP_STEPS, seen)

    model.eval()
    tic = time.perf_counter()
    correct = 0
    with torch.no_grad():
        for image, number, digit in DataLoader(ConventionalPairs(test), batch_size=batch_size):
            out = model(image, number)
            correct += int((out["digit"].argmax(1) == digit).sum())
    eval_ips = len(test) / (time.perf_counter() - tic)
    return {**result, "eval_ips": eval_ips, "peak_rss_mb": peak_rss_mb()}


def _tensors(root: str, train_images: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalized images, numbers and digits, preloaded: what the Trainer's batches hold."""
    data = AugmentedDigitDataset(Subset(load_mnist(root, train=True), range(train_images)))
    batch = data.get_batch(torch.arange(train_images))
    return batch.image, batch.number, batch.digit


def bare(root: str, train_images: int, batch_size: int) -> dict[str, float]:
    """The Trainer's operations and nothing else (its allocator setting included)."""
    keep_freed_memory()
    images, numbers, digits = _tensors(root, train_images)
    torch.manual_seed(0)
    model = presets.mnist_sum().to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    cost, seen = StepCost(), 0
    order = torch.randperm(train_images)
    for step, idx in enumerate(torch.split(order, batch_size)):
        if step == WARMUP_STEPS:
            cost.start()
            seen = 0
        image = images[idx].contiguous(memory_format=torch.channels_last)
        number, digit = numbers[idx], digits[idx]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(image, number)
            target = (digit + number).float()
            loss = F.cross_entropy(out["digit"], digit) + F.mse_loss(out["sum"].float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(idx)
    return {**cost.stop(step + 1 - WARMUP_STEPS, seen), "peak_rss_mb": peak_rss_mb()}


def lightning_loop(root: str, train_images: int, batch_size: int) -> dict[str, float]:
    """The same model and tensors in Lightning's bf16-mixed loop (with the Trainer's
    allocator setting, so the two loops are compared, not the allocators)."""
    import lightning as L
    from torch.utils.data import TensorDataset

    keep_freed_memory()

    images, numbers, digits = _tensors(root, train_images)
    cost = StepCost()

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = presets.mnist_sum()
            self.steps = 0

        def training_step(self, batch: Any, index: int) -> torch.Tensor:
            image, number, digit = batch
            out = self.model(image, number)
            target = (digit + number).float()
            return F.cross_entropy(out["digit"], digit) + F.mse_loss(out["sum"].float(), target)

        def on_train_batch_start(self, batch: Any, index: int) -> None:
            if index == WARMUP_STEPS:
                cost.start()
            self.steps = index + 1

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    torch.manual_seed(0)
    module = Module()
    trainer = L.Trainer(
        max_epochs=1,
        precision="bf16-mixed",
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    loader = DataLoader(TensorDataset(images, numbers, digits), batch_size=batch_size, shuffle=True)
    trainer.fit(module, loader)
    steps = module.steps - WARMUP_STEPS
    return {**cost.stop(steps, steps * batch_size), "peak_rss_mb": peak_rss_mb()}


# -- the library path ----------------------------------------------------------------------------


class _StepClock(Callback):
    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.cost = StepCost()
        self.steps = 0
        self.result: dict[str, float] = {}

    def on_batch_end(self, trainer: Trainer, epoch: int, step: int, loss: torch.Tensor) -> None:
        if step == WARMUP_STEPS - 1:
            self.cost.start()
        elif step >= WARMUP_STEPS:
            self.steps += 1
            self.result = self.cost.stop(self.steps, self.steps * self.batch_size)


def library(
    root: str, train_images: int, batch_size: int, precision: str, keep_freed_memory: bool = True
) -> dict[str, float]:
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
        keep_freed_memory=keep_freed_memory,
    )
    trainer.fit(train)
    trainer.evaluate(test)  # warm-up
    tic = time.perf_counter()
    trainer.evaluate(test)
    eval_ips = len(test) / (time.perf_counter() - tic)
    return {**clock.result, "eval_ips": eval_ips, "peak_rss_mb": peak_rss_mb()}


# -- driver ----------------------------------------------------------------------------------


def run_worker(args: argparse.Namespace) -> None:
    root = str(args.data_dir)
    if args.worker == "conventional":
        result = conventional(root, args.train_images, args.batch_size)
    elif args.worker == "bare":
        result = bare(root, args.train_images, args.batch_size)
    elif args.worker == "lightning":
        result = lightning_loop(root, args.train_images, args.batch_size)
    else:
        keep = args.worker == "library"
        result = library(root, args.train_images, args.batch_size, args.precision, keep)
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
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=3600)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def timed(command: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall seconds, peak resident MB, CPU seconds and page faults of one process."""
    tic = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - tic
    if status != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read()[-2000:]}")  # type: ignore[union-attr]
    return {
        "wall_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "user_s": usage.ru_utime,
        "system_s": usage.ru_stime,
        "faults": usage.ru_minflt,
    }


def median_run(found: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median training speed (the lower middle one of an even count)."""
    return sorted(found, key=lambda run: run["train_ips"])[(len(found) - 1) // 2]


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def whole_process(args: argparse.Namespace) -> None:
    """One full epoch plus the test, each path a whole process, in alternating rounds;
    then ``predict`` on one PNG against ``import torch``."""
    env = {**os.environ, "MULTITASK_MNIST_DATA": str(args.data_dir)}
    root = Path(__file__).parents[1]
    worker = [sys.executable, __file__, "--data-dir", str(args.data_dir)]
    conventional_cmd = [*worker, "--worker", "conventional", "--train-images", "60000"]
    with tempfile.TemporaryDirectory() as out:
        example_cmd = [
            sys.executable,
            str(root / "examples" / "train_mnist_sum.py"),
            "--epochs",
            "1",
            "--output-dir",
            out,
            "--no-progress",
        ]
        runs: dict[str, list[dict[str, float]]] = {"conventional": [], "example": []}
        for round_ in range(args.whole_process):
            order = ["conventional", "example"] if round_ % 2 == 0 else ["example", "conventional"]
            for name in order:
                command = conventional_cmd if name == "conventional" else example_cmd
                shutil.rmtree(out, ignore_errors=True)
                runs[name].append(timed(command, env))
        png = Path(out) / "digit.png"
        png.parent.mkdir(exist_ok=True)
        from PIL import Image

        Image.fromarray(load_mnist(args.data_dir, train=False).data[0].numpy()).save(png)
        checkpoint = Path(out) / "last.pt"
        torch.manual_seed(0)
        Trainer(presets.mnist_sum(), epochs=1, output_dir=out, progress=False).fit(
            AugmentedDigitDataset(Subset(load_mnist(args.data_dir, train=True), range(256)))
        )
        predict_cmd = [sys.executable, "-m", "multitask_mnist", "predict"]
        predict_cmd += ["--checkpoint", str(checkpoint), str(png), "3"]
        torch_cmd = [sys.executable, "-c", "import torch"]
        starts: dict[str, list[float]] = {"import torch": [], "predict": []}
        for _ in range(5):
            starts["import torch"].append(timed(torch_cmd, env)["wall_s"])
            starts["predict"].append(timed(predict_cmd, env)["wall_s"])

    print(f"\nOne epoch plus the test, whole processes, {args.whole_process} alternating rounds:\n")
    print("| process | wall s (each round) | median s | user s | system s | peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|")
    for name, label in (("conventional", "conventional loop"), ("example", "train_mnist_sum.py")):
        rows = runs[name]
        walls = " · ".join(f"{r['wall_s']:.1f}" for r in rows)
        print(
            f"| {label} | {walls} | {median([r['wall_s'] for r in rows]):.1f} "
            f"| {median([r['user_s'] for r in rows]):.1f} "
            f"| {median([r['system_s'] for r in rows]):.1f} "
            f"| {max(r['peak_rss_mb'] for r in rows):,.0f} |"
        )
    ratio = median([r["wall_s"] for r in runs["conventional"]]) / median(
        [r["wall_s"] for r in runs["example"]]
    )
    rounds = zip(runs["conventional"], runs["example"], strict=True)
    pairs = [conventional["wall_s"] / example["wall_s"] for conventional, example in rounds]
    print(
        f"\nexample {ratio:.2f}x faster by median ({min(pairs):.2f}-{max(pairs):.2f}x over "
        "the rounds)"
    )
    torch_s, predict_s = median(starts["import torch"]), median(starts["predict"])
    print(
        f"predict on one PNG: {predict_s:.2f} s against {torch_s:.2f} s for `import torch` "
        f"(medians of 5, alternating): {predict_s / torch_s:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(os.environ.get("MULTITASK_MNIST_DATA", "data"))
    parser.add_argument("--data-dir", type=Path, default=default_data)
    parser.add_argument("--train-images", type=int, default=12_800)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--precision", default="auto")
    workers = ["conventional", "bare", "library", "library-default-malloc", "lightning"]
    parser.add_argument("--worker", choices=workers)
    parser.add_argument(
        "--whole-process",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="also time one full epoch plus the test as whole processes, alternating, and "
        "predict against import torch",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run every path this many times, in alternating order; each row is the run "
        "with the median training speed",
    )
    args = parser.parse_args()
    if args.worker:
        run_worker(args)
        return

    workers = [
        ("conventional loop (float32)", "conventional", "auto"),
        ("bare loop (bf16, channels-last, Adam)", "bare", "auto"),
        ("Trainer, defaults", "library", "auto"),
        ("Trainer, keep_freed_memory=False", "library-default-malloc", "auto"),
        ("Trainer, precision=fp32", "library", "fp32"),
    ]
    if importlib.util.find_spec("lightning") is not None:
        workers.append(("Lightning 2, bf16-mixed", "lightning", "auto"))
    runs: dict[str, list[dict[str, float]]] = {label: [] for label, _, _ in workers}
    for round_ in range(args.rounds):
        for label, worker, precision in workers if round_ % 2 == 0 else workers[::-1]:
            runs[label].append(spawn(args, worker, precision))
    rows = {label: median_run(found) for label, found in runs.items()}
    base = rows["conventional loop (float32)"]
    macs = forward_macs(presets.mnist_sum())
    flop_per_trained_image = 3 * 2 * macs  # forward, and backward at twice the forward
    bf16 = matmul_gflops(torch.bfloat16)
    fp32 = matmul_gflops(torch.float32)
    print(
        f"batch size {args.batch_size}, {args.train_images} training images, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}\n"
    )
    print(
        "| path | train img/s | ratio | page faults/step | system s | user s | eval img/s "
        "| ratio | peak RSS MB | train GFLOP/s | of bf16 matmul |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        gflops = row["train_ips"] * flop_per_trained_image / 1e9
        evaluation = (
            f"{row['eval_ips']:,.0f} | {row['eval_ips'] / base['eval_ips']:.2f}"
            if "eval_ips" in row
            else "|"
        )
        print(
            f"| {name} | {row['train_ips']:,.0f} | {row['train_ips'] / base['train_ips']:.2f} "
            f"| {row['faults_per_step']:,.0f} | {row['system_s']:.1f} | {row['user_s']:.1f} "
            f"| {evaluation} | {row['peak_rss_mb']:,.0f} | {gflops:,.0f} | {gflops / bf16:.0%} |"
        )
    trainer_ips = rows["Trainer, defaults"]["train_ips"]
    bare_ips = rows["bare loop (bf16, channels-last, Adam)"]["train_ips"]
    print(
        f"\nforward: {macs / 1e6:.2f} M multiply-adds per image; "
        f"{flop_per_trained_image / 1e6:.0f} MFLOP per trained image"
    )
    print(
        f"2048x2048 matmul: {fp32:,.0f} GFLOP/s float32, {bf16:,.0f} GFLOP/s bfloat16; "
        f"the Trainer runs at {trainer_ips / bare_ips:.1%} of the bare loop"
    )
    if args.rounds > 1:
        trainer_runs = runs["Trainer, defaults"]
        pairs = zip(trainer_runs, runs["bare loop (bf16, channels-last, Adam)"], strict=True)
        ratios = [trainer["train_ips"] / bare["train_ips"] for trainer, bare in pairs]
        print(
            f"{args.rounds} rounds; Trainer / bare loop, round by round: "
            + ", ".join(f"{r:.1%}" for r in ratios)
        )
    if args.whole_process:
        whole_process(args)


if __name__ == "__main__":
    main()
