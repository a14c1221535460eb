"""Faults at the worst moment: kill -9 mid-epoch, then --resume ends exactly as a clean run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from multitask_mnist.training import load_checkpoint
from tests.conftest import interrupted_run_command, write_fake_mnist

pytestmark = pytest.mark.stress  # starts processes: repeated by tests/stress.py

ROOT = Path(__file__).resolve().parents[1]


def _command(out: Path, *extra: str) -> list[str]:
    return interrupted_run_command(out, *extra)


def _env(data: Path) -> dict[str, str]:
    return {**os.environ, "CI": "true", "MULTITASK_MNIST_DATA": str(data)}


def _wait_for_epoch(out: Path, epoch: int, process: subprocess.Popen[bytes]) -> None:
    """Wait until last.pt records ``epoch`` (or the process ends)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if load_checkpoint(out / "last.pt")["epoch"] >= epoch:
                return
        except (FileNotFoundError, RuntimeError):
            pass
        time.sleep(0.02)


def _kill_during_epoch(out: Path, data: Path, epoch: int, resume: bool) -> None:
    """Kill the run with SIGKILL as soon as ``epoch`` is under way (read from its last
    checkpoint, not from a clock, which a busy machine would make wrong)."""
    command = _command(out, "--resume") if resume else _command(out)
    process = subprocess.Popen(
        command, env=_env(data), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_for_epoch(out, epoch - 1, process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    for checkpoint in out.glob("*.pt"):  # every checkpoint on disk still loads
        load_checkpoint(checkpoint)


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    data = write_fake_mnist(tmp_path / "data", n_train=2000, n_test=200)
    straight = subprocess.run(
        _command(tmp_path / "straight"),
        env=_env(data),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )

    out = tmp_path / "killed"
    _kill_during_epoch(out, data, epoch=2, resume=False)  # as epoch 1 is saved, or just after
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    _kill_during_epoch(out, data, epoch=3, resume=True)  # a resumed run, in epoch 3
    assert load_checkpoint(out / "last.pt")["epoch"] == 2
    resumed = subprocess.run(
        _command(out, "--resume"),
        env=_env(data),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )

    epochs = [line for line in resumed.stdout.splitlines() if line.startswith("Epoch: ")]
    assert len(epochs) == 1 and epochs[0].startswith("Epoch: 3,")
    # the test lines
    assert resumed.stdout.splitlines()[-2:] == straight.stdout.splitlines()[-2:]
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(out / "last.pt")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert [r["train_loss"] for r in a["history"]] == [r["train_loss"] for r in b["history"]]
    assert not list(out.glob(".*.tmp"))
