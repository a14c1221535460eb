"""The methods table of the docs: gradient methods x fusion modes on MNIST sum, real runs.

Each cell is one ``multitask-mnist train --method M --fusion F`` run of the documented
network (or ``--method S`` for each loss-weighting method of ``--strategies``), in its
own process, on the full training split (or with the digit label on a fraction of
it, ``--digit-labels``), tested on the 10,000 test images. The script
writes the table, with every cell's command, to ``docs/_generated/methods_table.rst``
and prints it as Markdown. Cells already run (same epochs and digit labels) are
reused, so an interrupted sweep continues where it stopped. Run the cells one after
another: two at once on two cores would distort the training times.

Usage::

    python benchmarks/methods_table.py --epochs 5 --fusions straight_through expectation \\
        --methods none upgrad
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Any

from _cells import add_table_arguments, write_table
from _cells import run_cell as run_cells


def command(
    method: str, strategy: str, fusion: str, args: argparse.Namespace, out: Path
) -> list[str]:
    chosen = method if strategy == "fixed" else strategy  # a weighting is a method too
    cmd = ["multitask-mnist", "train", "--method", chosen, "--fusion", fusion]
    cmd += ["--epochs", str(args.epochs)]
    if args.digit_labels != 1.0:
        cmd += ["--digit-labels", str(args.digit_labels)]
    if args.loss_weights:
        cmd += ["--loss-weights", *args.loss_weights]
    return [*cmd, "--output-dir", str(out), "--no-progress"]


def run_cell(args: argparse.Namespace, method: str, strategy: str, fusion: str) -> dict[str, Any]:
    weights = "-" + "-".join(args.loss_weights).replace("=", "") if args.loss_weights else ""
    name = method if strategy == "fixed" else f"{method}-{strategy}"
    out = args.runs / f"{name}-{fusion}-{args.epochs}ep-{args.digit_labels}labels{weights}"

    def finished(metrics: dict[str, Any]) -> bool:
        config = metrics["config"]
        return bool(config["epochs"] == args.epochs and config["digit_labels"] == args.digit_labels)

    return run_cells(command(method, strategy, fusion, args, out), out, args.data_dir, finished)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--digit-labels", type=float, default=1.0)
    parser.add_argument("--loss-weights", nargs="+", default=None, metavar="TASK=WEIGHT")
    parser.add_argument("--methods", nargs="+", default=["none", "upgrad"])
    parser.add_argument("--fusions", nargs="+", default=["straight_through", "expectation"])
    parser.add_argument(
        "--strategies", nargs="+", default=[], help="loss strategies, each with method none"
    )
    add_table_arguments(parser, "methods", "methods_table.rst")
    args = parser.parse_args()

    header = ["method", "loss strategy", "fusion", "epochs", "digit labels", "loss weights"]
    header += ["test digit", "test sum", "time"]
    rows: list[list[str]] = []
    pairs = [(m, "fixed") for m in args.methods] + [("none", s) for s in args.strategies]
    for fusion, (method, strategy) in itertools.product(args.fusions, pairs):
        metrics = run_cell(args, method, strategy, fusion)
        cmd = " ".join(command(method, strategy, fusion, args, Path("runs/x"))[:-3])
        rows.append(
            [
                f"``{method}``",
                f"``{strategy}``",
                f"``{fusion}``",
                str(args.epochs),
                f"{100 * args.digit_labels:g}%",
                " ".join(args.loss_weights) if args.loss_weights else "1 each",
                f"{metrics['test_digit_accuracy']:.2f}%",
                f"{metrics['test_sum_accuracy']:.2f}%",
                f"{metrics['wall_time_s']:.0f} s",
                f"``{cmd}``",
            ]
        )
        print("| " + " | ".join(rows[-1][:-1]) + " |", flush=True)

    write_table(args.output, "methods_table.py", [*header, "command"], rows)


if __name__ == "__main__":
    main()
