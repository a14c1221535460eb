"""Two CPU processes under torchrun (gloo): every rank agrees, rank 0 alone prints and writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from multitask_mnist.training import load_checkpoint
from tests.conftest import write_fake_mnist

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def _env() -> dict[str, str]:
    return {**os.environ, "CI": "true", "PYTHONPATH": str(ROOT)}


@pytest.mark.parametrize("strategy", ["fixed", "uncertainty", "dwa"])
def test_ranks_agree_on_metrics_weights_and_loss_state(tmp_path: Path, strategy: str) -> None:
    result = subprocess.run(
        [*TORCHRUN, str(ROOT / "tests" / "training" / "ddp_worker.py"), str(tmp_path), strategy],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0["world"] == rank1["world"] == 2
    assert rank0["history"] == rank1["history"]  # train metrics reduced over both ranks
    assert rank0["evaluate"] == rank1["evaluate"]
    assert rank0["weights"] == rank1["weights"]  # DDP kept the replicas identical
    assert rank0["loss_state"] == rank1["loss_state"]  # learned loss weights too
    assert rank0["evaluate"]["digit_accuracy"] > 50  # it learned: chance is 10%
    assert [row["epoch"] for row in rank0["history"]] == [1, 2, 3]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 3


def test_command_line_under_torchrun_prints_each_line_once(tmp_path: Path) -> None:
    data = write_fake_mnist(tmp_path / "data", n_train=200, n_test=50)
    out = tmp_path / "run"
    result = subprocess.run(
        [
            *TORCHRUN,
            "-m",
            "multitask_mnist",
            "train",
            "--epochs",
            "2",
            "--batch-size",
            "25",
            "--output-dir",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        env={**_env(), "MULTITASK_MNIST_DATA": str(data)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert [line.split(",")[0] for line in lines if line.startswith("Epoch")] == [
        "Epoch: 1",
        "Epoch: 2",
    ]
    assert lines.count("Finished Training") == 1
    assert sum(line.startswith("Accuracy of the network on the 50 test") for line in lines) == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 2 and "test_digit_accuracy" in metrics
    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    assert not list(out.glob(".*.tmp"))
