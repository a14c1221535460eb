"""What the Trainer's tests share: small data, a seeded model, a quiet CPU trainer, a
comparison of whole training states, a callback that records events, and three tasks."""

from __future__ import annotations

from typing import Any

import torch

from multitask_mnist import AugmentedDigitDataset, MultiTaskNet, presets
from multitask_mnist.training import Callback, Trainer
from tests.conftest import SyntheticDigits


def make_data(n: int = 512, seed: int = 0) -> AugmentedDigitDataset:
    return AugmentedDigitDataset(SyntheticDigits(n, seed=seed), seed=seed)


def make_model(seed: int = 0, **kwargs: Any) -> MultiTaskNet:
    torch.manual_seed(seed)
    return presets.mnist_sum(**kwargs)


def make_trainer(model: MultiTaskNet | None = None, **kwargs: Any) -> Trainer:
    options: dict[str, Any] = {
        "epochs": 2,
        "batch_size": 64,
        "device": "cpu",
        "progress": False,
        "precision": "fp32",
    }
    options.update(kwargs)
    return Trainer(model if model is not None else make_model(), **options)


def state_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor of the state dict, a module's extra state (nested dicts of tensors
    and numbers: Nash-MTL's) flattened in."""

    def flatten(key: str, value: object) -> dict[str, torch.Tensor]:
        if isinstance(value, dict):
            return {
                k: v
                for sub, item in value.items()
                for k, v in flatten(f"{key}.{sub}", item).items()
            }
        return {key: torch.as_tensor(value).detach().clone()}

    flat: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        flat |= flatten(key, value)
    return flat


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    wa, wb = state_tensors(a), state_tensors(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


class Recorder(Callback):
    def __init__(self, fail_at_epoch_start: int | None = None) -> None:
        self.events: list[tuple[str, int]] = []
        self.fail_at = fail_at_epoch_start

    def on_fit_start(self, trainer: Trainer) -> None:
        self.events.append(("fit_start", 0))

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if epoch == self.fail_at:
            raise KeyboardInterrupt
        self.events.append(("epoch_start", epoch))

    def on_batch_end(self, trainer: Trainer, epoch: int, step: int, loss: torch.Tensor) -> None:
        self.events.append(("batch_end", step))

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        self.events.append(("epoch_end", epoch))

    def on_fit_end(self, trainer: Trainer, history: Any) -> None:
        self.events.append(("fit_end", len(history.epochs)))


def three_tasks(n: int = 256, larger_labels: bool = True) -> Any:
    """Digit, sum, and whether the digit is larger than the number: labelled on every
    sample, or (``larger_labels=False``) only where ``3 * digit + number`` ends in 0."""
    from multitask_mnist.data import WithFields
    from multitask_mnist.tasks import MISSING

    def larger(s: dict[str, torch.Tensor]) -> torch.Tensor:
        label = (s["digit"] > s["number"]).long()
        keep = (3 * s["digit"] + s["number"]) % 10 == 0 if not larger_labels else True
        return torch.where(torch.as_tensor(keep), label, MISSING)

    return WithFields(make_data(n), larger=larger)


def three_task_net(fusion: str = "argmax") -> MultiTaskNet:
    from multitask_mnist.models import Block, ConvTrunk, Input, MLPHead, ScalarFusionHead
    from multitask_mnist.tasks import Task

    torch.manual_seed(0)
    return MultiTaskNet(
        {
            "trunk": Block(
                ConvTrunk(presets.MNIST_SUM_LAYERS), ["image"], Task("digit", "multiclass", 10)
            ),
            "head": Block(
                ScalarFusionHead(fusion=fusion),  # type: ignore[arg-type]
                ["trunk", "number"],
                Task("sum", "regression"),
                "digit",
                True,
            ),
            "compare": Block(MLPHead(11), ["trunk", "number"], Task("larger", "binary")),
        },
        [Input("image", (1, 28, 28)), Input("number", (), integer=True, low=0, high=9)],
    )
