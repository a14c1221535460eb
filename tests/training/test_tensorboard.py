"""TensorBoard logging: the event files hold every scalar and the confusion matrix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from multitask_mnist import AugmentedDigitDataset, presets
from multitask_mnist.training import Trainer
from multitask_mnist.training.callbacks.tensorboard import TensorBoard, confusion_image, tag
from tests.conftest import SyntheticDigits


def _events(folder: Path) -> EventAccumulator:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return events


def test_every_metric_weight_and_the_confusion_matrix_reach_the_event_files(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    data = AugmentedDigitDataset(SyntheticDigits(192), seed=0)
    trainer = Trainer(
        presets.mnist_sum(fusion="expectation"),
        method="upgrad",  # gradient diagnostics too
        callbacks=[TensorBoard()],
        epochs=2,
        batch_size=64,
        device="cpu",
        precision="fp32",
        output_dir=tmp_path,
        progress=False,
    )
    history = trainer.fit(data, AugmentedDigitDataset(SyntheticDigits(64, seed=1), seed=1))
    trainer.test(AugmentedDigitDataset(SyntheticDigits(64, seed=2), seed=2))
    events = _events(tmp_path / "tensorboard")
    scalars = set(events.Tags()["scalars"])
    for key in history.epochs[-1]:
        if key != "epoch":
            assert tag(key) in scalars, key
    for name in ("train/digit_accuracy", "val/sum_accuracy", "lr", "weights/digit"):
        assert name in scalars
    assert "gradients/cosine" in scalars
    assert "test/digit_accuracy" in scalars
    logged = events.Scalars("val/digit_accuracy")
    assert [e.step for e in logged] == [1, 2]
    assert [e.value for e in logged] == pytest.approx(history.metric("val_digit_accuracy"))
    assert [e.value for e in events.Scalars("lr")] == pytest.approx(history.metric("lr"))
    (image,) = events.Images("test/confusion_digit")
    assert (image.width, image.height) == (240, 240)


def test_tags_group_the_history_keys() -> None:
    assert tag("train_digit_accuracy") == "train/digit_accuracy"
    assert tag("val_loss") == "val/loss"
    assert tag("weight_sum") == "weights/sum"
    assert tag("grad_norm_ratio") == "gradients/norm_ratio"
    assert tag("lr") == "lr"
    assert tag("gate_left_expert0") == "gates/left_expert0"


def test_the_confusion_image_is_darker_where_there_are_more_samples() -> None:
    counts = torch.tensor([[90, 10], [0, 100]])
    image = confusion_image(counts)
    assert image.dtype == torch.uint8 and image.shape == (3, 48, 48)
    cell = {(i, j): int(image[0, 24 * i + 12, 24 * j + 12]) for i in range(2) for j in range(2)}
    assert cell[(1, 1)] < cell[(0, 0)] < cell[(0, 1)] < cell[(1, 0)] == 255  # empty is white


def test_without_an_output_dir_nothing_is_written(tmp_path: Path) -> None:
    callback = TensorBoard()
    trainer = Trainer(presets.mnist_sum(), callbacks=[callback], epochs=1, device="cpu")
    trainer.fit(AugmentedDigitDataset(SyntheticDigits(32), seed=0))
    assert callback._writer is None


def test_without_tensorboard_fit_stops_at_once_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from multitask_mnist.methods import MissingExtraError

    monkeypatch.setitem(sys.modules, "tensorboard", None)
    trainer = Trainer(
        presets.mnist_sum(), callbacks=[TensorBoard()], epochs=1, device="cpu", output_dir=tmp_path
    )
    with pytest.raises(MissingExtraError, match=r"pip install 'multitask-mnist\[tensorboard\]'"):
        trainer.fit(AugmentedDigitDataset(SyntheticDigits(32), seed=0))
    assert not (tmp_path / "last.pt").exists()  # before the first epoch
