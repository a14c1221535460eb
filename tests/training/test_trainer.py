"""The Trainer: it learns, it is reproducible, it takes its settings and refuses bad ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from multitask_mnist import AugmentedDigitDataset, presets
from multitask_mnist.training import (
    Trainer,
    _runtime,
)
from tests.conftest import SyntheticDigits
from tests.training import (
    assert_same_weights,
    make_data,
    make_model,
    make_trainer,
    state_tensors,
    three_task_net,
    three_tasks,
)


def test_loss_falls_and_accuracy_rises_above_chance() -> None:
    train, val = make_data(1024, seed=0), make_data(256, seed=1)
    trainer = make_trainer(epochs=3, precision="auto")
    history = trainer.fit(train, val)
    losses = history.metric("train_loss")
    assert losses[-1] < losses[0] / 2
    metrics = trainer.evaluate(val)
    assert metrics["digit_accuracy"] > 90  # chance is 10
    assert metrics["sum_accuracy"] > 90  # chance is about 1 in 19
    assert set(metrics) >= {"loss", "digit_accuracy", "sum_accuracy", "joint_accuracy", "sum_mae"}
    assert metrics["joint_accuracy"] <= min(metrics["digit_accuracy"], metrics["sum_accuracy"])


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_same_seed_same_run(precision: str) -> None:
    a, b = make_trainer(precision=precision), make_trainer(precision=precision)
    ha, hb = a.fit(make_data()), b.fit(make_data())
    strip = [{k: v for k, v in row.items() if k != "time_s"} for row in ha.epochs]
    assert strip == [{k: v for k, v in row.items() if k != "time_s"} for row in hb.epochs]
    assert_same_weights(a.model, b.model)


def test_other_seed_other_run() -> None:
    a, b = make_trainer(seed=0), make_trainer(seed=1)
    a.fit(make_data())
    b.fit(make_data())
    assert not torch.equal(a.model.trunk.conv6.weight, b.model.trunk.conv6.weight)


def test_gradient_clipping_limits_the_step() -> None:
    free, clipped = make_model(), make_model()
    before = state_tensors(free)
    make_trainer(free, epochs=1, optimizer="sgd", lr=0.01).fit(make_data(128))
    make_trainer(clipped, epochs=1, optimizer="sgd", lr=0.01, grad_clip=1e-6).fit(make_data(128))
    moved = {k: (free.state_dict()[k] - before[k]).abs().max() for k in before}
    moved_clipped = {k: (clipped.state_dict()[k] - before[k]).abs().max() for k in before}
    assert max(moved_clipped.values()) < 1e-6 < max(moved.values())


def test_head_learns_at_its_own_rate() -> None:
    trainer = make_trainer(lr=1e-3, head_lr_scale=10.0, scheduler="constant")
    trainer.fit(make_data(64))
    assert trainer.optimizer is not None
    groups = trainer.optimizer.param_groups
    assert [g["lr"] for g in groups] == pytest.approx([1e-3, 1e-2])
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in trainer.model.head.parameters()}
    assert len(groups[0]["params"]) == len(list(trainer.model.trunk.parameters()))


def test_optimizer_and_scheduler_callables() -> None:
    calls: list[int] = []

    def scheduler(opt: torch.optim.Optimizer, total: int) -> Any:
        calls.append(total)
        return torch.optim.lr_scheduler.LinearLR(opt, total_iters=total)

    trainer = make_trainer(optimizer=lambda groups: torch.optim.AdamW(groups), scheduler=scheduler)
    trainer.fit(make_data(256))
    assert calls == [2 * 4] and isinstance(trainer.optimizer, torch.optim.AdamW)


def test_precision_auto_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(_runtime, "cpu_supports_bf16", lambda: True)
    assert _runtime.resolve_precision("auto", cpu) is torch.bfloat16
    monkeypatch.setattr(_runtime, "cpu_supports_bf16", lambda: False)
    assert _runtime.resolve_precision("auto", cpu) is None
    assert _runtime.resolve_precision("bf16", cpu) is torch.bfloat16
    assert _runtime.resolve_precision("fp32", cpu) is None


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"epochs": 0}, ValueError, "Expected argument `epochs` to be >= 1, got 0"),
        (
            {"batch_size": 2.5},
            TypeError,
            "Expected argument `batch_size` to be an int, got 2.5 (float)",
        ),
        ({"lr": -1.0}, ValueError, "Expected argument `lr` to be a finite number >= 0.0, got -1.0"),
        (
            {"optimizer": "lbfgs"},
            ValueError,
            "Expected argument `optimizer` to be one of 'adam', 'adamw', 'sgd', got 'lbfgs'",
        ),
        (
            {"scheduler": "step"},
            ValueError,
            "Expected argument `scheduler` to be one of 'onecycle', 'cosine', 'constant', "
            "got 'step'",
        ),
        (
            {"precision": "fp16"},
            ValueError,
            "Expected argument `precision` to be one of 'auto', 'bf16', 'fp32', got 'fp16'",
        ),
        (
            {"device": "gpu0"},
            ValueError,
            "Expected argument `device` to be 'auto' or a torch device, got 'gpu0'",
        ),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        make_trainer(**kwargs)
    assert str(info.value) == message


def test_model_must_be_a_multitask_net() -> None:
    with pytest.raises(TypeError, match=r"^Expected `model` to be a MultiTaskNet, got Linear$"):
        Trainer(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


def test_device_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _runtime.resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert _runtime.resolve_device("auto").type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert _runtime.resolve_device("auto").type == "cpu"
    with pytest.raises(
        ValueError, match=r"^Argument `device` is 'cuda' but CUDA is not available$"
    ):
        _runtime.resolve_device("cuda")


def test_training_with_most_digit_labels_missing() -> None:
    train = AugmentedDigitDataset(SyntheticDigits(512), digit_labels=0.25)
    trainer = make_trainer(epochs=6)
    history = trainer.fit(train)
    for row in history.epochs:
        assert all(v == v for v in row.values() if isinstance(v, float))  # no NaN
    metrics = trainer.evaluate(make_data(256, seed=1))
    assert metrics["digit_accuracy"] > 90  # learned from the 128 labelled images; chance 10
    assert metrics["sum_given_digit_accuracy"] == 100.0  # the adder stays exact


def test_three_tasks_train_and_report_per_task(tmp_path: Path) -> None:
    trainer = make_trainer(three_task_net(), epochs=2)
    history = trainer.fit(three_tasks(), three_tasks(128))
    last = history.epochs[-1]
    for split in ("train", "val"):
        for task in ("digit", "sum", "larger"):
            assert 0.0 <= last[f"{split}_{task}_accuracy"] <= 100.0
        assert f"{split}_larger_loss" in last and f"{split}_sum_mae" in last
        assert f"{split}_larger_mae" not in last  # a regression metric only
    assert last["weight_larger"] == 1.0
    metrics = trainer.test(three_tasks(128))
    assert {"larger_accuracy", "joint_accuracy", "sum_given_digit_accuracy"} <= set(metrics)


def test_multi_mnist_lenet_trains_on_two_digits_of_one_image() -> None:
    from multitask_mnist.data import overlay_digits

    base = SyntheticDigits(512, seed=0)
    canvas = overlay_digits(base.data, base.data.roll(1, 0)).unsqueeze(1).float() / 127.5 - 1
    left, right = base.targets, base.targets.roll(1)
    data = [{"image": canvas[i], "left": left[i], "right": right[i]} for i in range(512)]
    torch.manual_seed(0)
    trainer = make_trainer(presets.multi_mnist_lenet(dropout=0.0), epochs=6, batch_size=32, lr=1e-2)
    trainer.fit(data)  # type: ignore[arg-type]
    metrics = trainer.evaluate(data)  # type: ignore[arg-type]
    assert metrics["left_accuracy"] > 50.0 and metrics["right_accuracy"] > 50.0
