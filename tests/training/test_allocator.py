"""The Trainer keeps freed buffers in the process: few page faults per step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Trains the documented network for 12 steps of 128 and prints the minor page faults
#: per step after the first four (the first steps fault their buffers in either way).
LOOP = """
import sys, torch
from multitask_mnist import AugmentedDigitDataset, presets
from multitask_mnist.training import Callback, Trainer
from multitask_mnist.training.allocator import page_faults
from tests.conftest import SyntheticDigits

class Faults(Callback):
    def on_batch_end(self, trainer, epoch, step, loss):
        if step == 3:
            self.start = page_faults()[0]
        self.end = page_faults()[0]

faults = Faults()
torch.manual_seed(0)
trainer = Trainer(presets.mnist_sum(), epochs=1, batch_size=128, device="cpu", progress=False,
                  callbacks=[faults], keep_freed_memory=sys.argv[1] == "trainer")
trainer.fit(AugmentedDigitDataset(SyntheticDigits(12 * 128), seed=0))
print((faults.end - faults.start) / 8)
"""

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="glibc's malloc thresholds"
)


def _faults_per_step(mode: str, **env: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", LOOP, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        cwd=ROOT,
        timeout=300,
    )
    return float(result.stdout.strip().splitlines()[-1])


def test_training_steps_reuse_their_buffers() -> None:
    # Measured: about 0 faults a step kept, 10,000-12,000 without (benchmarks/README.md).
    assert _faults_per_step("trainer") < 200


def test_it_can_be_turned_off() -> None:
    assert _faults_per_step("off") > 2_000
    assert _faults_per_step("trainer", MULTITASK_MNIST_MALLOC="default") > 2_000


def test_the_setting_is_recorded_and_checked() -> None:
    from multitask_mnist import presets
    from multitask_mnist.training import Trainer

    assert Trainer(presets.mnist_sum(), device="cpu").config["keep_freed_memory"] is True
    off = Trainer(presets.mnist_sum(), device="cpu", keep_freed_memory=False)
    assert off.config["keep_freed_memory"] is False
    with pytest.raises(TypeError, match=r"^Expected argument `keep_freed_memory` to be a bool"):
        Trainer(presets.mnist_sum(), device="cpu", keep_freed_memory="yes")  # type: ignore[arg-type]
