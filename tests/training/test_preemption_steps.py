"""A signal after any step, the first and the last of an epoch included, resumes bit for bit.

In-process and deterministic: a callback sends the signal to its own process after a
chosen batch. The network has dropout, so the RNG states must come back exactly too.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from multitask_mnist import AugmentedDigitDataset, presets
from multitask_mnist.training import Callback, Trainer, TrainingInterrupted, load_checkpoint
from tests.conftest import SyntheticDigits

STEPS = 4  # 256 images in batches of 64


class SignalAt(Callback):
    def __init__(self, epoch: int, step: int, signum: int) -> None:
        self.at, self.signum = (epoch, step), signum

    def on_batch_end(self, trainer: Trainer, epoch: int, step: int, loss: torch.Tensor) -> None:
        if (epoch, step) == self.at:
            os.kill(os.getpid(), self.signum)


def _trainer(out: Path, **kwargs: Any) -> Trainer:
    torch.manual_seed(0)
    return Trainer(
        presets.mnist_sum_bn(),  # dropout: draws from the RNG every step
        method="dwa",  # running sums inside the epoch
        epochs=3,
        batch_size=64,
        device="cpu",
        precision="fp32",
        progress=False,
        output_dir=out,
        **kwargs,
    )


def _data() -> AugmentedDigitDataset:
    return AugmentedDigitDataset(SyntheticDigits(256))


@pytest.mark.parametrize(
    ("epoch", "step", "signum"),
    [
        (1, 0, signal.SIGTERM),  # after the very first step
        (2, 1, signal.SIGINT),  # mid-epoch
        (2, STEPS - 1, signal.SIGTERM),  # after the last step of an epoch
        (3, STEPS - 1, signal.SIGTERM),  # after the last step of the run
    ],
)
def test_stop_after_any_step_then_resume_equals_the_uninterrupted_run(
    tmp_path: Path, epoch: int, step: int, signum: int
) -> None:
    straight = _trainer(tmp_path / "a")
    straight.fit(_data())

    stopped = _trainer(tmp_path / "b", callbacks=[SignalAt(epoch, step, signum)])
    with pytest.raises(TrainingInterrupted) as info:
        stopped.fit(_data())
    assert info.value.signal_number == signum
    state = load_checkpoint(tmp_path / "b" / "last.pt")
    assert (state["epoch"], state["step"]) == (epoch - 1, step + 1)
    assert f"at epoch {epoch}, step {step + 1} of {STEPS}" in str(info.value)

    resumed = _trainer(tmp_path / "b")
    history = resumed.fit(_data(), resume=True)
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert torch.equal(straight.method.current, resumed.method.current)
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in history.epochs]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in straight.history.epochs]


def test_a_mid_epoch_resume_refuses_another_batch_size(tmp_path: Path) -> None:
    from multitask_mnist.training import CheckpointError

    with pytest.raises(TrainingInterrupted):
        _trainer(tmp_path, callbacks=[SignalAt(1, 1, signal.SIGTERM)]).fit(_data())
    other = _trainer(tmp_path)
    other.batch_size = 32
    with pytest.raises(CheckpointError, match=r"^The run was stopped mid-epoch; it resumes only"):
        other.fit(_data(), resume=True)


class SignalAtEpochEnd(Callback):
    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        if epoch == trainer.epochs:  # after the last check of the last epoch's steps
            os.kill(os.getpid(), signal.SIGTERM)


def test_a_signal_after_the_last_steps_still_stops_the_run(tmp_path: Path) -> None:
    with pytest.raises(TrainingInterrupted, match=r"after epoch 3, the last one; saved "):
        _trainer(tmp_path, callbacks=[SignalAtEpochEnd()]).fit(_data())
    state = load_checkpoint(tmp_path / "last.pt")
    assert (state["epoch"], state["step"]) == (3, 0)  # complete: resuming only tests
    history = _trainer(tmp_path).fit(_data(), resume=True)
    assert history.metric("epoch") == [1, 2, 3]
