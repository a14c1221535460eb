"""Evaluation and prediction: exact counts, missing labels left out."""

from __future__ import annotations

import pytest
import torch

from multitask_mnist import AugmentedDigitDataset
from tests.conftest import SyntheticDigits
from tests.training import (
    make_data,
    make_trainer,
    three_task_net,
    three_tasks,
)


def test_evaluate_counts_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_data(10)
    trainer = make_trainer()
    batch = data.get_batch(torch.arange(10))
    logits = torch.nn.functional.one_hot(batch.digit, 10).float() * 10
    logits[:3] = logits[:3].roll(1, dims=1)  # 3 wrong digits
    sums = batch.sum.float() + torch.tensor([0.0, 0.0, 0.0, 0.0, 0.6, 0.4, 0, 0, 0, -0.7])
    monkeypatch.setattr(trainer.model.trunk, "forward", lambda image: logits[: image.shape[0]])
    monkeypatch.setattr(trainer.model.head, "forward", lambda lg, n: sums[: lg.shape[0]])
    assert trainer.model.training
    metrics = trainer.evaluate(data)
    assert trainer.model.training and trainer.loss.training  # the mode is restored
    assert metrics["digit_accuracy"] == pytest.approx(70.0)
    assert metrics["sum_accuracy"] == pytest.approx(80.0)  # 0.6 and -0.7 round away
    assert metrics["joint_accuracy"] == pytest.approx(50.0)
    assert metrics["sum_mae"] == pytest.approx(1.7 / 10)


def test_predict_returns_digits_and_rounded_sums() -> None:
    data = make_data(300)
    trainer = make_trainer(epochs=1, eval_batch_size=128)
    batch = data.get_batch(torch.arange(300))
    prediction = trainer.predict({"image": batch.image, "number": batch.number})
    labels, outputs = prediction.labels, prediction.outputs
    assert labels["digit"].shape == labels["sum"].shape == (300,)
    assert labels["digit"].dtype == labels["sum"].dtype == torch.int64
    assert torch.equal(labels["sum"], outputs["sum"].round().long())
    assert torch.equal(labels["digit"], outputs["digit"].argmax(1))
    with pytest.raises(ValueError, match=r"^Expected `number` to hold a batch of 300"):
        trainer.predict({"image": batch.image, "number": batch.number[:5]})


def test_evaluating_data_without_digit_labels_counts_the_sum_only() -> None:
    trainer = make_trainer(epochs=1)
    trainer.fit(make_data(128))
    hidden = AugmentedDigitDataset(SyntheticDigits(64, seed=2), digit_labels=0.0)
    metrics = trainer.evaluate(hidden)
    assert "digit_loss" not in metrics and "digit_accuracy" not in metrics  # none labelled
    assert 0 <= metrics["sum_accuracy"] <= 100


def test_a_task_with_few_labels_counts_only_those() -> None:
    trainer = make_trainer(three_task_net(), epochs=1)
    data = three_tasks(256, larger_labels=False)
    trainer.fit(data)
    metrics = trainer.evaluate(data)
    batch = data.get_batch(torch.arange(256))
    labelled = batch["larger"] != -1
    predicted = trainer.predict({"image": batch["image"], "number": batch["number"]})
    right = predicted.labels["larger"][labelled] == batch["larger"][labelled]
    assert metrics["larger_accuracy"] == pytest.approx(100.0 * right.float().mean().item())
    assert 0 < int(labelled.sum()) < 64
    from multitask_mnist.data import WithFields

    none = WithFields(data, larger=lambda s: torch.full_like(s["digit"], -1))
    assert "larger_accuracy" not in trainer.evaluate(none)  # no label: nothing to report
