"""The MultiMNIST table of the docs: single-task baselines and methods, real runs.

Each cell is one ``python examples/train_multi_mnist.py`` run of
``presets.multi_mnist_lenet()`` in its own process, on the 60,000 generated training
images, tested on the 10,000 test images (paired with the same seed in every run).
The single-task baselines train one network per digit (``--loss-weights left=1
right=0`` and the reverse) and report each network's own digit. Rows are written,
with their commands, to ``docs/_generated/multi_mnist_table.rst`` beside the
published numbers, and printed as Markdown. Cells already run (same epochs and
learning rate) are reused; run them one after another, never two at once.

With ``--recipe sener`` every cell trains as Sener and Koltun's code does (SGD with
momentum, the rate times 0.85 every 10 epochs, the test split scored each epoch) and the
table adds their way of reporting: the epoch with the best test accuracy.

Usage::

    python benchmarks/multi_mnist_table.py --epochs 10 --methods none upgrad
    python benchmarks/multi_mnist_table.py --recipe sener --epochs 100 --batch-size 256 \
        --lr 0.05 --output docs/_generated/multi_mnist_sener.rst
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from _cells import add_table_arguments, write_table
from _cells import run_cell as run_cells

SENER = "Sener and Koltun 2018, MultiMNIST table (as transcribed; not checked against the PDF)"

#: (row, left, right, source) as published; MultiMNIST test accuracy in percent.
PUBLISHED = [
    ("single task", 97.23, 95.90, SENER),
    ("uniform scaling", 96.46, 94.99, SENER),
    ("uncertainty", 96.47, 95.29, SENER),
    ("GradNorm", 96.27, 94.84, SENER),
    ("MGDA-UB", 97.26, 95.90, SENER),
    ("PCGrad", 96.58, 95.50, "Yu et al. 2020 (PCGrad), as its authors report"),
]


def command(args: argparse.Namespace, extra: list[str], out: Path) -> list[str]:
    cmd = ["python", "examples/train_multi_mnist.py", "--epochs", str(args.epochs)]
    if args.recipe != "ours":
        cmd += ["--recipe", args.recipe]
    if args.batch_size is not None:
        cmd += ["--batch-size", str(args.batch_size)]
    if args.lr is not None:
        cmd += ["--lr", str(args.lr)]
    return [*cmd, *extra, "--output-dir", str(out), "--no-progress"]


def run_cell(args: argparse.Namespace, name: str, extra: list[str]) -> tuple[dict[str, Any], str]:
    recipe = "" if args.recipe == "ours" else f"-{args.recipe}-b{args.batch_size}"
    out = args.runs / f"{name}-{args.epochs}ep-lr{args.lr}{recipe}"

    def finished(metrics: dict[str, Any]) -> bool:
        config = metrics["config"]
        return bool(
            config["epochs"] == args.epochs
            and (args.lr is None or config["lr"] == args.lr)
            and config.get("recipe", "ours") == args.recipe
        )

    cmd = command(args, extra, out)
    metrics = run_cells(cmd, out, args.data_dir, finished, result="test_left_accuracy")
    return metrics, " ".join(cmd[:-3])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=None, help="default: the Trainer's")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the Trainer's")
    parser.add_argument("--recipe", choices=("ours", "sener"), default="ours")
    parser.add_argument("--methods", nargs="+", default=["none"], help="gradient methods")
    parser.add_argument("--strategies", nargs="+", default=[], help="loss strategies")
    parser.add_argument("--no-single-task", action="store_true", help="skip the baselines")
    add_table_arguments(parser, "multi_mnist", "multi_mnist_table.rst")
    args = parser.parse_args()

    rows: list[list[str]] = []

    sener = args.recipe == "sener"

    def add(
        label: str,
        scores: tuple[float, float] | None,
        time_s: float | None,
        source: str,
        best: tuple[float, float] | None = None,
    ) -> None:
        time = "" if time_s is None else f"{time_s:.0f} s"
        cells = [label, *(f"{score:.2f}%" for score in scores)] if scores else [label, "", ""]
        if sener:  # the best epoch on the test split, as their tables report
            cells += [f"{score:.2f}%" for score in best] if best else ["", ""]
        rows.append([*cells, time, source])
        print("| " + " | ".join(rows[-1]) + " |", flush=True)

    def best_of(left: dict[str, Any], right: dict[str, Any]) -> tuple[float, float] | None:
        """The best epoch on the test split: one epoch for both digits of a shared
        network, each network's own best epoch for the single-task pair."""
        if not sener:
            return None
        if left is right:
            return left["best_epoch_left_accuracy"], left["best_epoch_right_accuracy"]
        return (
            max(epoch["val_left_accuracy"] for epoch in left["epochs"]),
            max(epoch["val_right_accuracy"] for epoch in right["epochs"]),
        )

    if not args.no_single_task:
        left, left_cmd = run_cell(args, "single-left", ["--loss-weights", "left=1", "right=0"])
        right, right_cmd = run_cell(args, "single-right", ["--loss-weights", "left=0", "right=1"])
        add(
            "single task (ours)",
            (left["test_left_accuracy"], right["test_right_accuracy"]),
            left["wall_time_s"] + right["wall_time_s"],
            f"``{left_cmd}``; ``{right_cmd}``",
            best_of(left, right),
        )
    cells = [(f"``--method {m}``", ["--method", m]) for m in args.methods]
    cells += [(f"``--method {s}``", ["--method", s]) for s in args.strategies]
    for label, extra in cells:
        name = "-".join(extra).lstrip("-").replace("--", "")
        metrics, cmd = run_cell(args, name, extra)
        add(
            f"{label} (ours)",
            (metrics["test_left_accuracy"], metrics["test_right_accuracy"]),
            metrics["wall_time_s"],
            f"``{cmd}``",
            best_of(metrics, metrics),
        )
    for label, left_pub, right_pub, source in PUBLISHED:
        # Published figures are the best epoch on the test split (Sener's protocol).
        published = (left_pub, right_pub)
        add(label, None if sener else published, None, source, published)
    header = ["run", "left", "right"]
    header += ["left, best epoch", "right, best epoch"] if sener else []
    header += ["time", "command or source"]
    write_table(args.output, "multi_mnist_table.py", header, rows)


if __name__ == "__main__":
    main()
