"""Launch options, whole processes: one epoch plus the test, against the conventional loop.

Runs ``examples/train_mnist_sum.py --epochs 1`` (training, the test on 10,000 images,
the plots and checkpoints: everything a user waits for) under each option, and the
conventional loop of ``throughput.py``, each a fresh process, in alternating order for
``--rounds`` rounds; reports the median wall time of each, its ratio to the
conventional loop, and the training time of the epoch the run recorded
(``history.csv``).

Options: ``default`` (one process, every core as a thread, batch 128); ``b256``
(batch 256); ``p2-b64`` (``--processes 2``, one thread each, 64 a process: the same
128 images a step); ``p2-b128`` (``--processes 2`` at 128 a process: 256 a step).

Usage::

    python benchmarks/launch_options.py --rounds 3
    python benchmarks/launch_options.py default b256 --rounds 5 --epochs 10
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from throughput import timed

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = {
    "default": [],
    "b256": ["--batch-size", "256"],
    "p2-b64": ["--processes", "2", "--batch-size", "64"],
    "p2-b128": ["--processes", "2", "--batch-size", "128"],
}


def command(option: str, out: str, epochs: int, data_dir: Path) -> list[str]:
    if option == "conventional":  # one epoch: throughput.py's loop reads each image once
        if epochs != 1:
            raise SystemExit("the conventional loop runs one epoch: drop it or --epochs 1")
        worker = [sys.executable, str(ROOT / "benchmarks" / "throughput.py")]
        loop = ["--worker", "conventional", "--train-images", "60000"]
        return [*worker, "--data-dir", str(data_dir), *loop]
    example = [sys.executable, str(ROOT / "examples" / "train_mnist_sum.py")]
    run = ["--epochs", str(epochs), "--output-dir", out, "--no-progress"]
    return [*example, *run, *OPTIONS[option]]


def train_seconds(out: str) -> float:
    with open(Path(out) / "history.csv", newline="") as file:
        return sum(float(row["time_s"]) for row in csv.DictReader(file))


def test_accuracy(out: str) -> str:
    found = json.loads((Path(out) / "metrics.json").read_text())
    return f"{found['test_digit_accuracy']:.2f} / {found['test_sum_accuracy']:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("options", nargs="*", default=["conventional", *OPTIONS])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1)
    default_data = Path(os.environ.get("MULTITASK_MNIST_DATA", "data"))
    parser.add_argument("--data-dir", type=Path, default=default_data)
    args = parser.parse_args()
    env = {**os.environ, "MULTITASK_MNIST_DATA": str(args.data_dir)}
    walls: dict[str, list[float]] = {option: [] for option in args.options}
    trains: dict[str, list[float]] = {option: [] for option in args.options}
    accuracy: dict[str, list[str]] = {option: [] for option in args.options}
    for round_ in range(args.rounds):
        for option in args.options if round_ % 2 == 0 else args.options[::-1]:
            with tempfile.TemporaryDirectory() as out:
                found = timed(command(option, out, args.epochs, args.data_dir), env)
                walls[option].append(found["wall_s"])
                if option != "conventional":
                    trains[option].append(train_seconds(out))
                    accuracy[option].append(test_accuracy(out))
            print(f"round {round_ + 1} {option}: {found['wall_s']:.1f} s", file=sys.stderr)
    base = statistics.median(walls["conventional"]) if "conventional" in walls else None
    print(
        f"\n{args.epochs} epoch(s) plus the test, whole processes, {args.rounds} alternating "
        f"rounds, {os.cpu_count()} CPUs\n"
    )
    print(
        "| option | wall s (each round) | median s | vs conventional | training s "
        "| test digit / sum % |"
    )
    print("|---|---|---:|---:|---:|---|")
    for option in args.options:
        median = statistics.median(walls[option])
        each = " · ".join(f"{w:.1f}" for w in walls[option])
        ratio = f"{base / median:.2f}x" if base else ""
        train = f"{statistics.median(trains[option]):.1f}" if trains[option] else ""
        print(
            f"| {option} | {each} | {median:.1f} | {ratio} | {train} "
            f"| {' · '.join(accuracy[option])} |"
        )


if __name__ == "__main__":
    main()
