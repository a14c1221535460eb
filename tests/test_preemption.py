"""Preemption: SIGTERM or SIGINT mid-epoch saves the exact step, and --resume ends bit for bit
as an uninterrupted run, under one process and under torchrun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from multitask_mnist.training import load_checkpoint
from multitask_mnist.training.run_lock import RunLock
from tests.conftest import interrupted_run_command, write_fake_mnist

pytestmark = pytest.mark.stress  # starts processes: repeated by tests/stress.py

ROOT = Path(__file__).resolve().parents[1]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
#: The library's own launcher: ``--processes 2`` on a plain command.
PROCESSES = [sys.executable]
STEPS = 40  # 2,000 images in batches of 50 (per process: 20 under torchrun)


def _command(out: Path, launcher: list[str], *extra: str) -> list[str]:
    # DWA keeps running loss sums per process: they must survive a mid-epoch stop too.
    if launcher is PROCESSES:
        extra = ("--processes", "2", *extra)
    return interrupted_run_command(out, "--method", "dwa", *extra, launcher=tuple(launcher))


def _env(data: Path) -> dict[str, str]:
    return {**os.environ, "CI": "true", "MULTITASK_MNIST_DATA": str(data), "PYTHONPATH": str(ROOT)}


def _epochs_done(out: Path) -> int:
    try:
        return int(load_checkpoint(out / "last.pt")["epoch"])
    except (FileNotFoundError, RuntimeError):
        return 0


def _catches_sigterm(pid: int) -> bool:
    """Whether process ``pid`` has a SIGTERM handler (Linux: ``SigCgt`` in its status)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1)


def _trainers(pid: int, workers: int) -> list[int]:
    """The processes that train: ``pid`` itself, or the ``workers`` torchrun started."""
    if not workers:
        return [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in children.split()]


def _signal_during(
    out: Path, command: list[str], data: Path, epoch: int, signum: int, workers: int = 0
) -> subprocess.CompletedProcess[str]:
    """Start ``command`` and signal it as soon as ``epoch`` is under way.

    The moment is read from the run itself (its handlers and its last checkpoint), not
    from a clock: on a busy machine an epoch can take several times as long as it did a
    minute before. ``workers``: the number of training processes torchrun starts, 0
    without torchrun.
    """
    process = subprocess.Popen(
        command, env=_env(data), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 180
    while process.poll() is None and time.monotonic() < deadline:
        # Training has begun once fit catches SIGTERM in every training process (the
        # Trainer locks the folder earlier, before the data is loaded; torchrun's own
        # launcher catches it from the start); the epoch, once the one before is saved.
        trainers = _trainers(process.pid, workers)
        started = len(trainers) == max(workers, 1) and all(map(_catches_sigterm, trainers))
        if started and _epochs_done(out) >= epoch - 1:
            break
        time.sleep(0.01)
    process.send_signal(signum)
    try:
        stdout, stderr = process.communicate(timeout=180)
    finally:
        process.kill()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _flat(state: dict[str, Any], prefix: str = "") -> dict[str, torch.Tensor]:
    """The tensors of a state dict, nested dicts (a module's extra state) flattened."""
    flat: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _assert_same_run(a: Path, b: Path) -> None:
    first, second = load_checkpoint(a / "last.pt"), load_checkpoint(b / "last.pt")
    assert first["model"].keys() == second["model"].keys()
    for key in first["model"]:
        assert torch.equal(first["model"][key], second["model"][key]), key
    assert _flat(first["loss"]).keys() == _flat(second["loss"]).keys()
    for key, value in _flat(first["loss"]).items():
        assert torch.equal(value, _flat(second["loss"])[key]), key
    for state in (first, second):
        for row in state["history"]:
            row.pop("time_s")
    assert first["history"] == second["history"]
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (a, b)]
    tests = [{k: v for k, v in m.items() if k.startswith("test_")} for m in metrics]
    assert tests[0] == tests[1] and tests[0]


def _preempt_and_resume(tmp_path: Path, launcher: list[str]) -> None:
    """Stop a run three times, resume it, and compare it with an uninterrupted run.

    With ``launcher`` TORCHRUN, the run is started and stopped twice under torchrun,
    then stopped once more and finished under ``--processes 2``: the library's launcher
    passes the signal on, and the two launches resume each other's checkpoints and
    train alike, bit for bit.
    """
    data = write_fake_mnist(tmp_path / "data", n_train=2000, n_test=200)
    straight = subprocess.run(
        _command(tmp_path / "straight", launcher),
        env=_env(data),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert straight.returncode == 0, straight.stderr[-3000:]

    out = tmp_path / "preempted"
    workers = 2 if launcher is TORCHRUN else 0
    steps = STEPS // max(workers, 1)
    last = PROCESSES if launcher is TORCHRUN else launcher
    moments = [
        (1, signal.SIGTERM, [], launcher),  # in the first epoch
        (2, signal.SIGINT, ["--resume"], launcher),  # in a resumed run's next epoch (Ctrl-C)
        (3, signal.SIGTERM, ["--resume"], last),  # in the last epoch
    ]
    for epoch, signum, extra, started_by in moments:
        command = _command(out, started_by, *extra)
        result = _signal_during(out, command, data, epoch, signum, workers)
        assert result.returncode != 0, "the run ended before the signal came"
        if started_by is not TORCHRUN:  # the status is the signal's (torchrun's is 1)
            assert result.returncode == 128 + signum, result.stderr[-3000:]
        name = signal.Signals(signum).name
        state = load_checkpoint(out / "last.pt")
        assert state["epoch"] == epoch - 1 and 0 < state["step"] <= steps, (
            state["step"],
            result.stderr,
        )
        message = (
            f"multitask-mnist train: Stopped by {name} at epoch {epoch}, step {state['step']} of "
            f"{steps}; saved {out / 'last.pt'}; resume with fit(resume=True) (on the command "
            "line: the same command with --resume)"
        )
        assert message in result.stderr.splitlines(), result.stderr[-3000:]
        # No traceback of ours (torchrun's launcher prints its own on a signal).
        assert "multitask_mnist" not in "".join(
            line for line in result.stderr.splitlines(keepends=True) if line.startswith("  File")
        ), result.stderr[-3000:]
        if started_by is not TORCHRUN:  # nor a launcher's report under --processes
            assert "Traceback" not in result.stderr, result.stderr[-3000:]
        lock = RunLock(out)  # released on the way out: this process can take it
        lock.acquire()
        lock.release()
    resumed = subprocess.run(
        _command(out, last, "--resume"),
        env=_env(data),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.splitlines()[-2:] == straight.stdout.splitlines()[-2:]
    _assert_same_run(tmp_path / "straight", out)


@pytest.mark.slow
def test_signals_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    _preempt_and_resume(tmp_path, [sys.executable])


@pytest.mark.slow
def test_signals_under_torchrun_and_the_processes_flag_then_resume_equal_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    _preempt_and_resume(tmp_path, TORCHRUN)
