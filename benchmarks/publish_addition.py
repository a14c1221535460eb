"""Copy the MNIST-addition table that ``benchmarks/addition_long.sh`` wrote into the docs.

``python benchmarks/publish_addition.py`` reads every
``runs/addition/tables/mnist_addition_N[_trunk]/heldout/SETTINGS/runs.json`` and writes
``docs/_generated/addition_long.rst``: per N and network, the test sum accuracy and the
latent digit accuracy (mean ± sample sd over the seeds), the sum accuracy a digit
classifier of each run's digit accuracy would give if its errors were independent
(digit accuracy to the power 2N, mean over the seeds), each seed's sum and digit
accuracy, the epochs and the wall time of a run, beside the published rows with their
sources.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from pathlib import Path

from _cells import write_table
from addition_table import PUBLISHED

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = {"": "LeNet (the papers')", "_trunk": "documented trunk"}


def _spread(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def rows(tables: Path) -> list[list[str]]:
    found: dict[tuple[int, str], list[str]] = {}
    for runs_file in sorted(tables.glob("mnist_addition_*/heldout/*/runs.json")):
        match = re.fullmatch(r"mnist_addition_(\d+)(_trunk)?", runs_file.parents[2].name)
        if match is None:
            continue
        digits, suffix = int(match.group(1)), match.group(2) or ""
        runs = json.loads(runs_file.read_text())
        runs = sorted(runs, key=lambda run: run["cell"]["seed"])
        sums = [run["test"]["sum_accuracy"] for run in runs]
        latent = [run["test"]["digit_accuracy"] for run in runs]
        reference = [100 * (d / 100) ** (2 * digits) for d in latent]
        seeds = [run["cell"]["seed"] for run in runs]
        per_seed = "; ".join(f"{s:.2f} / {d:.2f}" for s, d in zip(sums, latent, strict=True))
        minutes = statistics.mean(run["wall_time_s"] for run in runs) / 60
        found[(digits, suffix)] = [
            str(digits),
            f"ours, {NETWORKS[suffix]}, seeds {' '.join(map(str, seeds))}",
            str(runs[0]["epochs"]),
            _spread(sums),
            _spread(latent),
            _spread(reference),
            per_seed,
            f"{minutes:.1f} min",
            f"``benchmarks/addition_long.sh`` ({runs_file.parents[2].name})",
        ]
    out = []
    for digits in sorted({n for n, _ in found} | {n for n, *_ in PUBLISHED}):
        out += [found[(digits, s)] for s in NETWORKS if (digits, s) in found]
        out += [
            [str(n), method, "", published, "", "", "", "", source]
            for n, method, published, source in PUBLISHED
            if n == digits
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=Path, default=ROOT / "runs/addition/tables")
    parser.add_argument("--output", type=Path, default=ROOT / "docs/_generated/addition_long.rst")
    args = parser.parse_args()
    header = [
        "N",
        "network or method",
        "epochs",
        "test sum %",
        "latent digit %",
        "digit % ^ 2N",
        "sum / digit % per seed",
        "time a run",
        "command or source",
    ]
    write_table(args.output, "publish_addition.py", header, rows(args.tables))


if __name__ == "__main__":
    main()
