"""Training speed of two revisions of the library, side by side on this machine.

Exports each revision's tree with ``git archive`` and times ``Trainer.fit`` on the
same MNIST images in a fresh process per run, alternating the two (A B A B ...) so
that the machine's drift hits both alike. Prints each run and the median images/s
per revision with their ratio. Only the public API the two revisions share is used:
``Trainer(presets.mnist_sum(), epochs=1, ...)`` and ``History.epochs[0]["time_s"]``.

Usage::

    python benchmarks/compare_revisions.py --before 1190cd7 --after HEAD --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SNIPPET = """
import json, sys, torch
from torch.utils.data import Subset
import multitask_mnist
from multitask_mnist import AugmentedDigitDataset, load_mnist, presets
from multitask_mnist.training import Trainer

root, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = AugmentedDigitDataset(Subset(load_mnist(root, train=True), range(n)), seed=0)
warm = AugmentedDigitDataset(Subset(load_mnist(root, train=True), range(batch * 5)), seed=0)
torch.manual_seed(0)
Trainer(presets.mnist_sum(), epochs=1, batch_size=batch, device="cpu", progress=False).fit(warm)
torch.manual_seed(0)
trainer = Trainer(presets.mnist_sum(), epochs=1, batch_size=batch, device="cpu", progress=False)
seconds = trainer.fit(data).epochs[0]["time_s"]
print(json.dumps({"images_per_s": n / seconds, "package": multitask_mnist.__file__}))
"""


def export(revision: str, folder: Path) -> Path:
    """Write ``revision``'s tree into ``folder``; return the folder."""
    folder.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True, timeout=300
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True, timeout=300)
    return folder


def run(tree: Path, data: Path, images: int, batch: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), "CI": "true"}
    result = subprocess.run(
        [sys.executable, "-c", SNIPPET, str(data), str(images), str(batch)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tree,
        check=True,
        timeout=3600,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if not report["package"].startswith(str(tree)):
        raise RuntimeError(f"imported {report['package']}, not the tree under test {tree}")
    return float(report["images_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="a git revision, e.g. a commit")
    parser.add_argument("--after", default="HEAD", help="a git revision (default: HEAD)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=12_800)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("MULTITASK_MNIST_DATA", "data"))
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        trees = {
            name: export(rev, Path(tmp) / name)
            for name, rev in (("before", args.before), ("after", args.after))
        }
        rates: dict[str, list[float]] = {"before": [], "after": []}
        for round_ in range(1, args.rounds + 1):
            for name, tree in trees.items():
                rate = run(tree, args.data_dir.resolve(), args.images, args.batch_size)
                rates[name].append(rate)
                print(f"round {round_} {name:>6}: {rate:,.0f} images/s", flush=True)
    before, after = (statistics.median(rates[k]) for k in ("before", "after"))
    print()
    print("| revision | median train images/s | ratio |")
    print("|---|---:|---:|")
    print(f"| before ({args.before}) | {before:,.0f} | 1.00 |")
    print(f"| after ({args.after}) | {after:,.0f} | {after / before:.2f} |")


if __name__ == "__main__":
    main()
