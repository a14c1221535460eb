"""The MNIST-addition table of the docs: several seeds per number length, real runs.

Each cell is one ``python examples/train_mnist_addition.py --digits N --seed S`` run
in its own process (``presets.mnist_addition()``: the documented trunk and the exact
sum head, no digit label in training), scored on the test sums and, for the latent
digit classifier, on the 10,000 MNIST test images. Each row is one ``N`` over the
seeds: mean and standard deviation, beside the published rows with their sources.
Written to ``docs/_generated/addition_table.rst`` and printed as Markdown. Cells
already run (same epochs) are reused; run them one after another, never two at once.

Usage::

    python benchmarks/addition_table.py --epochs 5 --digits 1 2 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from _cells import add_table_arguments, write_table
from _cells import run_cell as run_cells

#: (N, method, test sum accuracy as published, source).
PUBLISHED = [
    (1, "DeepProbLog", "97.2 ± 0.5", "Manhaeve et al. 2018"),
    (1, "NeurASP", "97.3 ± 0.3", "Yang et al. 2020"),
    (1, "NeuPSL", "97.34", "Pryor et al. 2023"),
    (1, "A-NeSI", "97.66 ± 0.21", "van Krieken et al. 2023"),
    (1, "DeepStochLog", "97.9 ± 0.1", "Winters et al. 2022"),
    (2, "DeepProbLog", "95.2 ± 1.7", "Manhaeve et al. 2018"),
    (2, "NeurASP", "93.9 ± 0.7", "Yang et al. 2020"),
    (2, "A-NeSI", "95.96 ± 0.38", "van Krieken et al. 2023"),
    (2, "DeepStochLog", "96.4 ± 0.1", "Winters et al. 2022"),
    # Long numbers, the best published rows (DeepStochLog and Scallop time out at N=15).
    (4, "DPrL", "94.0 ± 0.3", "DPrL, AAAI 2026"),
    (15, "A-NeSI", "75.9 ± 2.2", "van Krieken et al. 2023"),
    (15, "DeepSoftLog", "77.1", "Maene and De Raedt 2023"),
    (15, "DPrL", "80.8 ± 1.1", "DPrL, AAAI 2026"),
    (100, "DPrL", "37.8", "DPrL, AAAI 2026"),
]


def command(args: argparse.Namespace, digits: int, seed: int, out: Path) -> list[str]:
    cmd = ["python", "examples/train_mnist_addition.py", "--digits", str(digits)]
    cmd += ["--seed", str(seed), "--epochs", str(args.epochs)]
    return [*cmd, "--output-dir", str(out), "--no-progress"]


def run_cell(args: argparse.Namespace, digits: int, seed: int) -> dict[str, Any]:
    out = args.runs / f"n{digits}-seed{seed}-{args.epochs}ep"

    def finished(metrics: dict[str, Any]) -> bool:
        return bool(metrics["config"]["epochs"] == args.epochs)

    cmd = command(args, digits, seed, out)
    return run_cells(cmd, out, args.data_dir, finished, result="test_digit_accuracy")


def spread(values: list[float]) -> str:
    """``mean ± sd`` over the seeds (the sample standard deviation), in percent."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--digits", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    add_table_arguments(parser, "addition", "addition_table.rst")
    args = parser.parse_args()

    header = ["N", "method", "epochs", "test sum %", "latent digit %", "per seed", "time"]
    header.append("command or source")
    rows: list[list[str]] = []
    for digits in args.digits:
        cells = [run_cell(args, digits, seed) for seed in args.seeds]
        sums = [m["test_sum_accuracy"] for m in cells]
        latent = [m["test_digit_accuracy"] for m in cells]
        per_seed = "; ".join(f"{s:.2f} / {d:.2f}" for s, d in zip(sums, latent, strict=True))
        cmd = " ".join(command(args, digits, args.seeds[0], Path("runs/x"))[:-3])
        seeds = " ".join(map(str, args.seeds))
        rows.append(
            [
                str(digits),
                f"ours, seeds {seeds}",
                str(args.epochs),
                spread(sums),
                spread(latent),
                per_seed,
                f"{statistics.mean(m['wall_time_s'] for m in cells):.0f} s each",
                f"``{cmd}`` (``--seed`` each of {seeds})",
            ]
        )
        print("| " + " | ".join(rows[-1]) + " |", flush=True)
        for n, method, published, source in PUBLISHED:
            if n == digits:
                rows.append([str(n), method, "", published, "", "", "", source])
                print("| " + " | ".join(rows[-1]) + " |", flush=True)
    write_table(args.output, "addition_table.py", header, rows)


if __name__ == "__main__":
    main()
