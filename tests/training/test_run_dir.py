"""The run folder's guard: a diverging run stops with its epoch and step and keeps the
last good checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from multitask_mnist.training import (
    Callback,
    NonFiniteLossError,
    Trainer,
    load_checkpoint,
)
from tests.training import (
    make_data,
    make_trainer,
)


def test_diverging_run_stops_with_epoch_and_step(tmp_path: Path) -> None:
    trainer = make_trainer(epochs=2, optimizer="sgd", lr=1e9, output_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"at epoch 1, step \d+; try a lower learning"):
        trainer.fit(make_data())
    assert not (tmp_path / "last.pt").exists()


class _Poison(Callback):
    """Makes the weights NaN at the start of an epoch, as a diverging run would."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if epoch == self.epoch:
            with torch.no_grad():
                trainer.model.trunk.conv6.weight.fill_(float("nan"))


def test_non_finite_loss_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    trainer = make_trainer(epochs=3, output_dir=tmp_path, callbacks=[_Poison(epoch=2)])
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(make_data(256))
    assert str(info.value) == (
        "The training loss became NaN or infinite at epoch 2, step 1; try a lower learning "
        f"rate (lr=0.003) or grad_clip; the last good checkpoint is {tmp_path / 'last.pt'}"
    )
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())
