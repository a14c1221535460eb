"""Gradient methods inside the Trainer: they train, refuse what cannot work, and resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from multitask_mnist import AugmentedDigitDataset, WeightedMultiLoss, presets
from multitask_mnist.training import Callback, Trainer
from tests.conftest import SyntheticDigits
from tests.training.test_trainer import (
    Recorder,
    _assert_same_weights,
    _three_task_net,
    _three_tasks,
)


def _data(n: int = 512) -> AugmentedDigitDataset:
    return AugmentedDigitDataset(SyntheticDigits(n), seed=0)


def _trainer(fusion: str = "expectation", **kwargs: Any) -> Trainer:
    torch.manual_seed(0)
    options: dict[str, Any] = {"epochs": 2, "batch_size": 64, "device": "cpu", "progress": False}
    options.update(kwargs)
    return Trainer(presets.mnist_sum(fusion=fusion), **options)


class GradientDtypes(Callback):
    """Records the dtypes of the trunk's gradients after each step."""

    name = "gradient_dtypes"

    def __init__(self) -> None:
        self.dtypes: set[torch.dtype] = set()

    def on_batch_end(self, trainer: Trainer, epoch: int, step: int, loss: torch.Tensor) -> None:
        trunk = trainer.model.get_submodule("trunk")
        self.dtypes |= {p.grad.dtype for p in trunk.parameters() if p.grad is not None}


@pytest.mark.parametrize("method", ["upgrad", "pcgrad", "mgda"])
def test_a_gradient_method_trains_under_bf16_with_float32_gradients(method: str) -> None:
    dtypes = GradientDtypes()
    trainer = _trainer(method=method, precision="bf16", epochs=4, callbacks=[dtypes])
    trainer.fit(_data(1024))
    metrics = trainer.evaluate(_data(256))
    assert metrics["digit_accuracy"] > 90 and metrics["sum_accuracy"] > 90  # chance: 10%
    assert dtypes.dtypes == {torch.float32}
    assert trainer.config["method"] == method


def test_a_method_with_argmax_fusion_is_refused_naming_the_block() -> None:
    with pytest.raises(
        ValueError,
        match=r"^Method 'upgrad' aggregates each task's gradient on the shared blocks, but "
        r"block 'head' passes none back to 'trunk'",
    ):
        _trainer(fusion="argmax", method="upgrad")


def test_a_method_needs_the_fixed_loss_strategy() -> None:
    with pytest.raises(
        ValueError,
        match=r"^Method 'pcgrad' combines the tasks' gradients itself; use the loss strategy "
        r"'fixed' with it \(got 'uncertainty'\)$",
    ):
        _trainer(method="pcgrad", loss=WeightedMultiLoss(strategy="uncertainty"))


def test_unknown_method_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"^Expected argument `method` to be one of 'none', 'upgrad'"
    ):
        _trainer(method="sgd")


def test_a_task_without_labels_in_every_batch_gives_a_zero_row_and_no_nan() -> None:
    from multitask_mnist.data import WithFields

    data = WithFields(_three_tasks(256), larger=lambda s: torch.full_like(s["digit"], -1))
    torch.manual_seed(0)
    trainer = Trainer(
        _three_task_net("expectation"),
        method="upgrad",
        epochs=1,
        batch_size=64,
        device="cpu",
        progress=False,
    )
    history = trainer.fit(data)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert "train_larger_accuracy" not in history.epochs[0]


def test_a_run_with_a_method_resumes_exactly(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        _trainer(
            method="upgrad",
            epochs=3,
            output_dir=tmp_path,
            callbacks=[Recorder(fail_at_epoch_start=3)],
        ).fit(_data(256))
    resumed = _trainer(method="upgrad", epochs=3, output_dir=tmp_path)
    resumed.fit(_data(256), resume=True)
    straight = _trainer(method="upgrad", epochs=3)
    straight.fit(_data(256))
    _assert_same_weights(resumed.task, straight.task)
