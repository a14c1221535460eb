"""The Trainer keeps freed buffers in the process: few page faults per step."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

#: Allocates and frees an 18 MB tensor 100 times, as a training step does its activations,
#: and prints the minor page faults that took.
LOOP = """
import sys, torch
from multitask_mnist import presets
from multitask_mnist.training import Trainer
from multitask_mnist.training.allocator import page_faults
if sys.argv[1] != "untouched":
    Trainer(presets.mnist_sum(), device="cpu", keep_freed_memory=sys.argv[1] == "trainer")
torch.set_num_threads(1)
x = torch.randn(128, 64, 24, 24)
before = page_faults()[0]
for _ in range(100):
    y = (x * 2).relu()
    del y
print(page_faults()[0] - before)
"""

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="glibc's malloc thresholds"
)


def _faults(mode: str, **env: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", LOOP, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
        timeout=120,
    )
    return int(result.stdout.strip().splitlines()[-1])


def test_a_trainer_makes_freed_buffers_stay_in_the_process() -> None:
    # glibc's own thresholds adapt after the first free, so the untouched count varies
    # (50,000-130,000 measured); kept, only the first buffers fault in (about 10,000).
    untouched = _faults("untouched")
    kept = _faults("trainer")
    assert untouched > 30_000
    assert kept < untouched / 3


def test_it_can_be_turned_off() -> None:
    kept = _faults("trainer")
    assert _faults("off") > 3 * kept
    assert _faults("trainer", MULTITASK_MNIST_MALLOC="default") > 3 * kept


def test_the_setting_is_recorded_and_checked() -> None:
    from multitask_mnist import presets
    from multitask_mnist.training import Trainer

    assert Trainer(presets.mnist_sum(), device="cpu").config["keep_freed_memory"] is True
    off = Trainer(presets.mnist_sum(), device="cpu", keep_freed_memory=False)
    assert off.config["keep_freed_memory"] is False
    with pytest.raises(TypeError, match=r"^Expected argument `keep_freed_memory` to be a bool"):
        Trainer(presets.mnist_sum(), device="cpu", keep_freed_memory="yes")  # type: ignore[arg-type]
