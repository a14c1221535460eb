"""TrainerConfig: the settings declared once, checked when made, recorded as plain values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from multitask_mnist import presets
from multitask_mnist.errors import InvalidTypeError, InvalidValueError
from multitask_mnist.losses import WeightedMultiLoss
from multitask_mnist.methods import DynamicWeightAverage, UncertaintyWeighting
from multitask_mnist.training import Trainer, TrainerConfig
from multitask_mnist.training.config import plain, with_objects
from multitask_mnist.training.task import method_for


def test_the_config_is_frozen_and_round_trips_through_its_record() -> None:
    config = TrainerConfig(epochs=3, lr=1, output_dir="runs/a", method="famo")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 4  # type: ignore[misc]
    assert config.lr == 1.0 and isinstance(config.lr, float)
    assert config.output_dir == Path("runs/a")
    assert TrainerConfig.from_dict({**config.to_dict(), "limit": 5}) == config


def test_every_trainer_keyword_is_a_field_and_an_attribute() -> None:
    trainer = Trainer(presets.mnist_sum(), epochs=2, device="cpu", progress=False)
    # what the Trainer resolves (the optimizer object, the device) has its own attribute
    resolved = {"optimizer", "scheduler", "method", "device", "channels_last", "keep_freed_memory"}
    for name in set(TrainerConfig.field_names()) - resolved:
        assert getattr(trainer, name) == getattr(trainer.settings, name), name
    assert trainer.epochs == 2 and trainer.device.type == "cpu"
    with pytest.raises(InvalidTypeError, match=r"Unknown setting\(s\) colour; the settings are"):
        Trainer(presets.mnist_sum(), colour="red")


def test_a_recorded_value_of_the_wrong_type_is_a_value_error() -> None:
    with pytest.raises(InvalidValueError, match="`epochs`"):
        TrainerConfig.from_dict({"epochs": "ten"})


def test_objects_in_place_of_names_are_recorded_as_custom() -> None:
    method = UncertaintyWeighting(2)
    config, objects = with_objects(TrainerConfig(epochs=2), {"method": method, "lr": 0.5})
    assert (config.method, config.epochs, config.lr) == ("custom", 2, 0.5)
    assert objects == {"method": method}
    trainer = Trainer(presets.mnist_sum(), config, device="cpu", method=method)
    assert trainer.settings.method == "custom" and trainer.method is method
    assert trainer.config["method"] == "uncertainty"  # the record names the object


def test_plain_values_for_the_record() -> None:
    assert plain({"a": Path("x"), "b": {"c": Path("y")}, "d": 1}) == {
        "a": "x",
        "b": {"c": "y"},
        "d": 1,
    }


def test_a_deprecated_strategy_becomes_the_method() -> None:
    model = presets.mnist_sum()
    with pytest.warns(DeprecationWarning):
        loss = WeightedMultiLoss(strategy="dwa", temperature=3.0)
    method = method_for("none", loss, model)
    assert isinstance(method, DynamicWeightAverage) and method.temperature == 3.0
    assert loss.strategy == "fixed"  # the method applies it from here on
    with pytest.warns(DeprecationWarning):
        other = WeightedMultiLoss(strategy="uncertainty")
    with pytest.raises(InvalidValueError, match="Give one method"):
        method_for("upgrad", other, model)
