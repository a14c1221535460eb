"""The Trainer keeps freed buffers in the process: few page faults per step."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest

from multitask_mnist.training import allocator

#: Trains the documented network for 12 steps of 128 and prints the median of the
#: minor page faults per step after the first four (the first steps fault their
#: buffers in either way; the median ignores a one-off fault-in, which about one
#: process in five shows), then how many MB of resident memory the process gave back
#: once fit returned.
LOOP = """
import statistics, sys, torch
from multitask_mnist import AugmentedDigitDataset, presets
from multitask_mnist.training import Callback, Trainer
from multitask_mnist.training.allocator import page_faults

from tests.conftest import SyntheticDigits

def resident_mb():
    with open("/proc/self/status") as status:
        return int(status.read().split("VmRSS:")[1].split()[0]) / 1024

class Faults(Callback):
    def __init__(self):
        self.counts = []

    def on_batch_end(self, trainer, epoch, step, loss):
        self.counts.append(page_faults()[0])
        if step == trainer.steps_per_epoch - 1:  # read /proc once: reading it faults pages
            self.resident = resident_mb()

faults = Faults()
torch.manual_seed(0)
trainer = Trainer(presets.mnist_sum(), epochs=1, batch_size=128, device="cpu", progress=False,
                  callbacks=[faults], keep_freed_memory=sys.argv[1] == "trainer")
trainer.fit(AugmentedDigitDataset(SyntheticDigits(12 * 128), seed=0))
steps = [after - before for before, after in zip(faults.counts[3:], faults.counts[4:])]
print(statistics.median(steps), faults.resident - resident_mb())
"""

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(allocator._glibc() is None, reason="glibc's malloc thresholds")


def _run(mode: str, **env: str) -> tuple[float, float]:
    """Page faults per step, and MB of resident memory given back after fit (each setting
    runs once per test session: several tests read the same run)."""
    return _measure(mode, tuple(sorted(env.items())))


@functools.cache
def _measure(mode: str, env: tuple[tuple[str, str], ...]) -> tuple[float, float]:
    result = subprocess.run(
        [sys.executable, "-c", LOOP, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **dict(env)},
        cwd=ROOT,
        timeout=300,
    )
    faults, released = result.stdout.strip().splitlines()[-1].split()
    return float(faults), float(released)


def _faults_per_step(mode: str, **env: str) -> float:
    return _run(mode, **env)[0]


def test_training_steps_reuse_their_buffers() -> None:
    # Measured: about 0 faults a step kept, 10,000-12,000 without (benchmarks/README.md).
    assert _faults_per_step("trainer") < 200


def test_the_kept_memory_is_given_back_when_fit_returns() -> None:
    # Measured: 49-67 MB given back after fit with the setting, none without it.
    assert _run("trainer")[1] > 20
    assert _run("off")[1] < 10


#: glibc's own default mmap threshold, set explicitly: setting it turns off glibc's
#: dynamic raising of the thresholds, which otherwise adapts to the step's buffers by
#: chance in some processes and hides what the Trainer's setting does (or does not do).
GLIBC_DEFAULTS = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def test_it_can_be_turned_off() -> None:
    assert _faults_per_step("off", **GLIBC_DEFAULTS) > 2_000
    assert _faults_per_step("trainer", MULTITASK_MNIST_MALLOC="default", **GLIBC_DEFAULTS) > 2_000
    assert _faults_per_step("trainer", **GLIBC_DEFAULTS) < 200  # the setting overrides them


def test_the_setting_is_recorded_and_checked() -> None:
    from multitask_mnist import presets
    from multitask_mnist.training import Trainer

    assert Trainer(presets.mnist_sum(), device="cpu").config["keep_freed_memory"] is True
    off = Trainer(presets.mnist_sum(), device="cpu", keep_freed_memory=False)
    assert off.config["keep_freed_memory"] is False
    with pytest.raises(TypeError, match=r"^Expected argument `keep_freed_memory` to be a bool"):
        Trainer(presets.mnist_sum(), device="cpu", keep_freed_memory="yes")  # type: ignore[arg-type]
