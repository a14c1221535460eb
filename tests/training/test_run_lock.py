"""One run per output folder; a lock left by a dead run does not block --resume."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from multitask_mnist import AugmentedDigitDataset, presets
from multitask_mnist.training import OutputDirLockedError, Trainer
from multitask_mnist.training.run_lock import LOCK_FILE, RunLock
from tests.conftest import SyntheticDigits

pytestmark = pytest.mark.stress  # starts processes: repeated by tests/stress.py

HOLD = (
    "import sys, time; from pathlib import Path\n"
    "from multitask_mnist.training.run_lock import RunLock\n"
    "lock = RunLock(Path(sys.argv[1])); lock.acquire()\n"
    "print('locked', flush=True)\n"
    "time.sleep(120)\n"
)


@contextmanager
def held_elsewhere(folder: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``folder``'s lock until the block ends (then killed)."""
    folder.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_folder_held_by_a_live_run_is_refused_naming_it(tmp_path: Path) -> None:
    # refused at once, when the Trainer is built, before any data is read
    with held_elsewhere(tmp_path) as other, pytest.raises(OutputDirLockedError) as info:
        Trainer(presets.mnist_sum(), epochs=1, device="cpu", output_dir=tmp_path)
    assert str(info.value) == (
        f"The output folder {tmp_path} is in use by another run (process {other.pid} on "
        f"{socket.gethostname()}); wait for it to end or choose another output folder"
    )


def test_the_lock_of_a_killed_run_does_not_block_a_resume(tmp_path: Path) -> None:
    with held_elsewhere(tmp_path):
        pass  # killed with SIGKILL: the operating system drops its lock
    assert (tmp_path / LOCK_FILE).exists()  # the file stays; it no longer locks anything
    torch.manual_seed(0)
    trainer = Trainer(presets.mnist_sum(), epochs=1, device="cpu", output_dir=tmp_path)
    trainer.fit(AugmentedDigitDataset(SyntheticDigits(64)), resume=True)
    assert f'"pid": {os.getpid()}' in (tmp_path / LOCK_FILE).read_text()
    trainer.close()
    free = RunLock(tmp_path)
    free.acquire()
    free.release()


def test_a_second_lock_in_the_same_process_takes_the_folder_over(tmp_path: Path) -> None:
    first, second = RunLock(tmp_path), RunLock(tmp_path)
    first.acquire()
    second.acquire()
    assert second.held and not first.held and first.revoked
    second.release()
    assert not second.held


def test_a_trainer_whose_folder_was_taken_over_does_not_write_to_it(tmp_path: Path) -> None:
    first = Trainer(presets.mnist_sum(), epochs=1, device="cpu", output_dir=tmp_path)
    second = Trainer(presets.mnist_sum(), epochs=1, device="cpu", output_dir=tmp_path)
    with pytest.raises(OutputDirLockedError, match="was taken over by another Trainer"):
        first.fit(AugmentedDigitDataset(SyntheticDigits(64)))
    second.close()


def test_two_processes_on_one_folder(tmp_path: Path) -> None:
    """The second command on a folder in use stops at once, with one line naming it."""
    with held_elsewhere(tmp_path / "run") as holder:
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
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"multitask-mnist train: error: The output folder {tmp_path / 'run'} is in use by "
        f"another run (process {holder.pid} on {socket.gethostname()}); wait for it to end "
        "or choose another output folder"
    ]
