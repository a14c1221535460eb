"""The results table of the docs: presets x fusion modes x loss strategies, each a real run.

Each cell is one ``multitask-mnist train`` run, in its own process, on the full
training split, tested on the 10,000 test images. The script writes the table,
with the command of every cell, to ``docs/_generated/results_table.rst`` (included
by ``docs/results.rst``) and prints it as Markdown. Cells already run (their
``metrics.json`` holds test results for the same epochs) are reused, so an
interrupted sweep continues where it stopped.

Usage::

    python benchmarks/results_table.py --data-dir ../shared/data --epochs 2
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Any

from _cells import add_table_arguments, write_table
from _cells import run_cell as run_cells

PRESETS = ("mnist_sum", "mnist_sum_bn")
FUSIONS = ("argmax", "expectation", "straight_through")
STRATEGIES = ("fixed", "uncertainty", "dwa")


def command(preset: str, fusion: str, strategy: str, epochs: int, out: Path) -> list[str]:
    return [
        "multitask-mnist",
        "train",
        "--preset",
        preset,
        "--fusion",
        fusion,
        "--method",
        "none" if strategy == "fixed" else strategy,
        "--epochs",
        str(epochs),
        "--output-dir",
        str(out),
        "--no-progress",
    ]


def run_cell(args: argparse.Namespace, preset: str, fusion: str, strategy: str) -> dict[str, Any]:
    out = args.runs / f"{preset}-{fusion}-{strategy}-{args.epochs}ep"
    cmd = command(preset, fusion, strategy, args.epochs, out)
    return run_cells(cmd, out, args.data_dir, lambda m: m["config"]["epochs"] == args.epochs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    add_table_arguments(parser, "results", "results_table.rst")
    args = parser.parse_args()

    rows = []
    for preset, fusion, strategy in itertools.product(PRESETS, FUSIONS, STRATEGIES):
        metrics = run_cell(args, preset, fusion, strategy)
        cmd = " ".join(command(preset, fusion, strategy, args.epochs, Path("runs/x"))[:-3])
        rows.append(
            (
                preset,
                fusion,
                strategy,
                metrics["test_digit_accuracy"],
                metrics["test_sum_accuracy"],
                metrics["wall_time_s"],
                cmd,
            )
        )
        print(
            f"| {preset} | {fusion} | {strategy} | {rows[-1][3]:.2f}% | {rows[-1][4]:.2f}% "
            f"| {rows[-1][5]:.0f} s |",
            flush=True,
        )

    header = ["preset", "fusion", "loss strategy", "test digit", "test sum", "training time"]
    cells = [
        [
            f"``{preset}``",
            f"``{fusion}``",
            f"``{strategy}``",
            f"{digit:.2f}%",
            f"{total:.2f}%",
            f"{seconds:.0f} s",
            f"``{cmd}``",
        ]
        for preset, fusion, strategy, digit, total, seconds, cmd in rows
    ]
    write_table(args.output, "results_table.py", [*header, "command"], cells)


if __name__ == "__main__":
    main()
