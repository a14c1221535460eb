"""What the table scripts share: one training run per cell, reused once it has finished."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def add_table_arguments(parser: argparse.ArgumentParser, runs: str, output: str) -> None:
    """``--data-dir``, ``--runs`` (one folder per cell) and ``--output`` (the .rst table)."""
    default_data = Path(os.environ.get("MULTITASK_MNIST_DATA", "data"))
    parser.add_argument("--data-dir", type=Path, default=default_data)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / runs)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "_generated" / output)


def run_cell(
    command: list[str], out: Path, data_dir: Path, finished: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The metrics of ``multitask-mnist ...`` (``command``) writing into ``out``: read back
    when ``out/metrics.json`` holds a run that is ``finished``, else run in a new process."""
    metrics_file = out / "metrics.json"
    if metrics_file.exists():
        metrics = json.loads(metrics_file.read_text())
        if "test_digit_accuracy" in metrics and finished(metrics):
            return dict(metrics)
    env = {**os.environ, "MULTITASK_MNIST_DATA": str(data_dir), "CI": "true"}
    executable = [sys.executable, "-m", "multitask_mnist", *command[1:]]
    subprocess.run(executable, check=True, env=env, cwd=ROOT, capture_output=True)
    return dict(json.loads(metrics_file.read_text()))
