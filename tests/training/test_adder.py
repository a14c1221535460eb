"""The exact adder on MNIST with deliberately weak classifiers: right digit, right sum."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Subset
from torchvision.datasets import MNIST

from multitask_mnist import AugmentedDigitDataset, Trainer, presets


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["argmax", "straight_through"])
@pytest.mark.parametrize("frozen_trunk", [False, True], ids=["3000-images", "frozen-trunk"])
def test_sum_is_right_wherever_the_digit_is_after_one_short_epoch(
    mnist_train: MNIST, mnist_test: MNIST, fusion: str, frozen_trunk: bool
) -> None:
    train = AugmentedDigitDataset(Subset(mnist_train, range(3000)), seed=0)
    test = AugmentedDigitDataset(mnist_test, seed=0)
    torch.manual_seed(0)
    model = presets.mnist_sum(fusion=fusion)  # type: ignore[arg-type]
    if frozen_trunk:  # a classifier left at its random initialisation
        model.trunk.requires_grad_(False)
    trainer = Trainer(model, epochs=1, seed=0, device="cpu", progress=False)
    history = trainer.fit(train)
    metrics = trainer.evaluate(test)

    assert metrics["digit_accuracy"] < 90  # weak on purpose: many digits are wrong
    assert metrics["sum_given_digit_accuracy"] >= 99.9
    assert metrics["adder_exact"] is True and metrics["adder_margin"] > 0
    assert history.epochs[-1]["adder_exact"] is True
    assert history.epochs[-1]["train_sum_given_digit_accuracy"] >= 99.9
