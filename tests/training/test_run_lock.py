"""One run per output folder; a lock left by a dead run does not block --resume."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from multitask_mnist import AugmentedDigitDataset, presets
from multitask_mnist.training import OutputDirLockedError, Trainer
from multitask_mnist.training.run_lock import LOCK_FILE, RunLock
from tests.conftest import SyntheticDigits


def _write_lock(folder: Path, pid: int, host: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    record = {"pid": pid, "host": host or socket.gethostname(), "token": "theirs"}
    (folder / LOCK_FILE).write_text(json.dumps(record))


def _live_process() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_folder_held_by_a_live_run_is_refused_naming_it(tmp_path: Path) -> None:
    other = _live_process()
    try:
        _write_lock(tmp_path, other.pid)
        with pytest.raises(OutputDirLockedError) as info:  # at once, before any data
            Trainer(presets.mnist_sum(), epochs=1, device="cpu", output_dir=tmp_path)
        assert str(info.value) == (
            f"The output folder {tmp_path} is in use by another run (process {other.pid} on "
            f"{socket.gethostname()}); wait for it to end or choose another output folder (if "
            f"that run is gone, delete {tmp_path / LOCK_FILE})"
        )
    finally:
        other.kill()
        other.wait()


def test_a_stale_lock_does_not_block_a_resume(tmp_path: Path) -> None:
    dead = _live_process()
    dead.kill()
    dead.wait()
    _write_lock(tmp_path, dead.pid)
    torch.manual_seed(0)
    trainer = Trainer(presets.mnist_sum(), epochs=1, device="cpu", output_dir=tmp_path)
    trainer.fit(AugmentedDigitDataset(SyntheticDigits(64)), resume=True)
    holder = json.loads((tmp_path / LOCK_FILE).read_text())
    assert holder["pid"] == os.getpid()
    trainer.close()
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_lock_from_another_host_is_refused(tmp_path: Path) -> None:
    _write_lock(tmp_path, 1, host="elsewhere")
    with pytest.raises(OutputDirLockedError, match=r"\(process 1 on elsewhere\)"):
        RunLock(tmp_path).acquire()


def test_a_lock_is_released_with_its_owner_only(tmp_path: Path) -> None:
    first, second = RunLock(tmp_path), RunLock(tmp_path)
    first.acquire()
    second.acquire()  # the same process takes its own lock over
    first.release()  # no longer the holder: leaves the file alone
    assert json.loads((tmp_path / LOCK_FILE).read_text())["token"] == second.token
    second.release()
    assert not (tmp_path / LOCK_FILE).exists()


def test_two_processes_on_one_folder(tmp_path: Path) -> None:
    """The second command on a folder in use stops at once, with one line naming it."""
    (tmp_path / "run").mkdir()
    code = (
        "import sys, time; from pathlib import Path\n"
        "from multitask_mnist.training.run_lock import RunLock\n"
        f"lock = RunLock(Path({str(tmp_path / 'run')!r})); lock.acquire()\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "multitask_mnist",
                "train",
                "--output-dir",
                str(tmp_path / "run"),
                "--data-dir",
                str(tmp_path / "no-data"),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "CI": "true"},
            timeout=120,
        )
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"multitask-mnist train: error: The output folder {tmp_path / 'run'} is in use by "
        f"another run (process {holder.pid} on "
    )
