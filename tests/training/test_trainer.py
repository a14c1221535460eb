from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import Subset

from multitask_mnist import AugmentedDigitDataset, MultiTaskNet, presets
from multitask_mnist.training import (
    Callback,
    EarlyStopping,
    NonFiniteLossError,
    ProgressBar,
    Trainer,
    _runtime,
    load_checkpoint,
)
from tests.conftest import SyntheticDigits


def _data(n: int = 512, seed: int = 0) -> AugmentedDigitDataset:
    return AugmentedDigitDataset(SyntheticDigits(n, seed=seed), seed=seed)


def _model(seed: int = 0, **kwargs: Any) -> MultiTaskNet:
    torch.manual_seed(seed)
    return presets.mnist_sum(**kwargs)


def _trainer(model: MultiTaskNet | None = None, **kwargs: Any) -> Trainer:
    options: dict[str, Any] = {
        "epochs": 2,
        "batch_size": 64,
        "device": "cpu",
        "progress": False,
        "precision": "fp32",
    }
    options.update(kwargs)
    return Trainer(model if model is not None else _model(), **options)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
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


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    wa, wb = _weights(a), _weights(b)
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


# -- learning ------------------------------------------------------------------------------------


def test_loss_falls_and_accuracy_rises_above_chance() -> None:
    train, val = _data(1024, seed=0), _data(256, seed=1)
    trainer = _trainer(epochs=3, precision="auto")
    history = trainer.fit(train, val)
    losses = history.metric("train_loss")
    assert losses[-1] < losses[0] / 2
    metrics = trainer.evaluate(val)
    assert metrics["digit_accuracy"] > 90  # chance is 10
    assert metrics["sum_accuracy"] > 90  # chance is about 1 in 19
    assert set(metrics) >= {"loss", "digit_accuracy", "sum_accuracy", "joint_accuracy", "sum_mae"}
    assert metrics["joint_accuracy"] <= min(metrics["digit_accuracy"], metrics["sum_accuracy"])


def test_evaluate_counts_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _data(10)
    trainer = _trainer()
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
    data = _data(300)
    trainer = _trainer(epochs=1, eval_batch_size=128)
    batch = data.get_batch(torch.arange(300))
    prediction = trainer.predict({"image": batch.image, "number": batch.number})
    labels, outputs = prediction.labels, prediction.outputs
    assert labels["digit"].shape == labels["sum"].shape == (300,)
    assert labels["digit"].dtype == labels["sum"].dtype == torch.int64
    assert torch.equal(labels["sum"], outputs["sum"].round().long())
    assert torch.equal(labels["digit"], outputs["digit"].argmax(1))
    with pytest.raises(ValueError, match=r"^Expected `number` to hold a batch of 300"):
        trainer.predict({"image": batch.image, "number": batch.number[:5]})


# -- determinism and resume -----------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_same_seed_same_run(precision: str) -> None:
    a, b = _trainer(precision=precision), _trainer(precision=precision)
    ha, hb = a.fit(_data()), b.fit(_data())
    strip = [{k: v for k, v in row.items() if k != "time_s"} for row in ha.epochs]
    assert strip == [{k: v for k, v in row.items() if k != "time_s"} for row in hb.epochs]
    _assert_same_weights(a.model, b.model)


def test_other_seed_other_run() -> None:
    a, b = _trainer(seed=0), _trainer(seed=1)
    a.fit(_data())
    b.fit(_data())
    assert not torch.equal(a.model.trunk.conv6.weight, b.model.trunk.conv6.weight)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_after_interruption_equals_uninterrupted(tmp_path: Path, precision: str) -> None:
    straight = _trainer(epochs=3, precision=precision, output_dir=tmp_path / "straight")
    straight.fit(_data())

    out = tmp_path / "interrupted"
    first = _trainer(
        epochs=3, precision=precision, output_dir=out, callbacks=[Recorder(fail_at_epoch_start=2)]
    )
    with pytest.raises(KeyboardInterrupt):
        first.fit(_data())
    assert load_checkpoint(out / "last.pt")["epoch"] == 1

    recorder = Recorder()
    second = _trainer(
        _model(seed=99), epochs=3, precision=precision, output_dir=out, callbacks=[recorder]
    )
    history = second.fit(_data(), resume=True)
    assert [e for e in recorder.events if e[0] == "epoch_start"] == [
        ("epoch_start", 2),
        ("epoch_start", 3),
    ]
    _assert_same_weights(straight.model, second.model)
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in history.epochs]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in straight.history.epochs]


def test_resume_with_more_epochs_trains_only_the_new_ones(tmp_path: Path) -> None:
    _trainer(epochs=1, output_dir=tmp_path).fit(_data())
    recorder = Recorder()
    history = _trainer(epochs=2, output_dir=tmp_path, callbacks=[recorder]).fit(
        _data(), resume=True
    )
    assert [e for e in recorder.events if e[0] == "epoch_start"] == [("epoch_start", 2)]
    assert history.metric("epoch") == [1, 2]
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2


def test_resume_without_checkpoint_starts_afresh(tmp_path: Path) -> None:
    history = _trainer(epochs=1, output_dir=tmp_path).fit(_data(), resume=True)
    assert history.metric("epoch") == [1]


def test_resume_needs_output_dir() -> None:
    with pytest.raises(ValueError, match=r"^`resume=True` needs `output_dir`"):
        _trainer().fit(_data(), resume=True)


# -- outputs --------------------------------------------------------------------------------------


def test_files_written(tmp_path: Path) -> None:
    trainer = _trainer(output_dir=tmp_path, run_config={"preset": "mnist_sum"})
    trainer.fit(_data(), _data(128, seed=1))
    test = trainer.test(_data(128, seed=2))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("test_digit_accuracy", "test_sum_accuracy", "test_joint_accuracy", "test_sum_mae"):
        assert metrics[key] == pytest.approx(test[key.removeprefix("test_")])
    assert metrics["wall_time_s"] > 0
    assert metrics["config"]["preset"] == "mnist_sum" and metrics["config"]["epochs"] == 2
    assert [row["epoch"] for row in metrics["epochs"]] == [1, 2]
    assert {"train_loss", "train_digit_accuracy", "val_sum_accuracy"} <= set(metrics["epochs"][0])
    rows = list(csv.DictReader((tmp_path / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and "val_loss" in rows[0]
    for name in ("loss.png", "accuracy.png", "confusion_matrix.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoints_load_with_weights_only(tmp_path: Path) -> None:
    trainer = _trainer(output_dir=tmp_path)
    trainer.fit(_data())
    for name in ("last.pt", "best.pt"):
        state = torch.load(tmp_path / name, weights_only=True)
        assert {"model", "optimizer", "scheduler", "loss", "epoch", "rng", "config"} <= set(state)
        assert len(state["rng"]) == 1 and {"torch", "python"} <= set(state["rng"][0])  # per process
    assert not list(tmp_path.glob(".*.tmp"))


def test_epoch_lines_in_the_original_format(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="multitask_mnist"):
        _trainer().fit(_data())
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Epoch")]
    pattern = (
        r"^Epoch: \d+, loss: \d+\.\d{4}, Classification Acc: \d+\.\d{2}, Addition Acc: \d+\.\d{2}$"
    )
    assert len(lines) == 2 and all(re.match(pattern, line) for line in lines), lines
    assert lines[0].startswith("Epoch: 1,") and lines[1].startswith("Epoch: 2,")


# -- events and options ---------------------------------------------------------------------


def test_events_fire_in_order_and_set_epoch_reaches_a_wrapped_dataset() -> None:
    data = _data(200)
    recorder = Recorder()
    _trainer(callbacks=[recorder], batch_size=100).fit(Subset(data, range(200)))
    assert recorder.events == [
        ("fit_start", 0),
        ("epoch_start", 1),
        ("batch_end", 0),
        ("batch_end", 1),
        ("epoch_end", 1),
        ("epoch_start", 2),
        ("batch_end", 0),
        ("batch_end", 1),
        ("epoch_end", 2),
        ("fit_end", 2),
    ]
    assert data.epoch == 1  # set_epoch(epoch - 1) went through the Subset


def test_loader_path_and_batched_path_train_identically() -> None:
    data = _data(256)
    a, b = _trainer(), _trainer()
    a.fit(data)
    b.fit(Subset(data, range(256)))  # a Subset has no get_batch: the DataLoader path
    _assert_same_weights(a.model, b.model)


def test_early_stopping_stops() -> None:
    stopper = EarlyStopping("train_loss", patience=1, mode="max")  # loss falls: never "improves"
    history = _trainer(epochs=5, callbacks=[stopper]).fit(_data())
    assert len(history.epochs) == 2 and "train_loss did not improve" in str(history.stop_reason)


def test_gradient_clipping_limits_the_step() -> None:
    free, clipped = _model(), _model()
    before = _weights(free)
    _trainer(free, epochs=1, optimizer="sgd", lr=0.01).fit(_data(128))
    _trainer(clipped, epochs=1, optimizer="sgd", lr=0.01, grad_clip=1e-6).fit(_data(128))
    moved = {k: (free.state_dict()[k] - before[k]).abs().max() for k in before}
    moved_clipped = {k: (clipped.state_dict()[k] - before[k]).abs().max() for k in before}
    assert max(moved_clipped.values()) < 1e-6 < max(moved.values())


def test_head_learns_at_its_own_rate() -> None:
    trainer = _trainer(lr=1e-3, head_lr_scale=10.0, scheduler="constant")
    trainer.fit(_data(64))
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

    trainer = _trainer(optimizer=lambda groups: torch.optim.AdamW(groups), scheduler=scheduler)
    trainer.fit(_data(256))
    assert calls == [2 * 4] and isinstance(trainer.optimizer, torch.optim.AdamW)


def test_diverging_run_stops_with_epoch_and_step(tmp_path: Path) -> None:
    trainer = _trainer(epochs=2, optimizer="sgd", lr=1e9, output_dir=tmp_path)
    with pytest.raises(NonFiniteLossError, match=r"at epoch 1, step \d+; try a lower learning"):
        trainer.fit(_data())
    assert not (tmp_path / "last.pt").exists()


def test_progress_bar_only_on_a_terminal_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    monkeypatch.delenv("CI", raising=False)
    assert ProgressBar.enabled()
    assert "progress_bar" in _trainer(progress=True).callbacks
    assert "progress_bar" not in _trainer(progress=False).callbacks
    monkeypatch.setenv("CI", "true")
    assert not ProgressBar.enabled()
    monkeypatch.delenv("CI")
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert not ProgressBar.enabled()


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
        _trainer(**kwargs)
    assert str(info.value) == message


def test_model_must_be_a_multitask_net() -> None:
    with pytest.raises(TypeError, match=r"^Expected `model` to be a MultiTaskNet, got Linear$"):
        Trainer(torch.nn.Linear(2, 2))  # type: ignore[arg-type]


class _Poison(Callback):
    """Makes the weights NaN at the start of an epoch, as a diverging run would."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if epoch == self.epoch:
            with torch.no_grad():
                trainer.model.trunk.conv6.weight.fill_(float("nan"))


def test_non_finite_loss_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    trainer = _trainer(epochs=3, output_dir=tmp_path, callbacks=[_Poison(epoch=2)])
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit(_data(256))
    assert str(info.value) == (
        "The training loss became NaN or infinite at epoch 2, step 1; try a lower learning "
        f"rate (lr=0.003) or grad_clip; the last good checkpoint is {tmp_path / 'last.pt'}"
    )
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_resume_into_another_architecture_names_the_layers(tmp_path: Path) -> None:
    from multitask_mnist.models import Conv, ConvTrunk, ScalarFusionHead, digit_sum_net
    from multitask_mnist.training import CheckpointError

    _trainer(epochs=1, output_dir=tmp_path).fit(_data(64))
    other = digit_sum_net(ConvTrunk([Conv("input1", 10, 28)]), ScalarFusionHead())
    with pytest.raises(
        CheckpointError,
        match=r"does not fit this network: layers this network lacks: trunk.conv1, ",
    ):
        _trainer(other, epochs=2, output_dir=tmp_path).fit(_data(64), resume=True)


def test_early_stopping_on_an_unknown_metric() -> None:
    with pytest.raises(ValueError, match=r"^EarlyStopping monitors 'val_loss', which is not among"):
        _trainer(epochs=1, callbacks=[EarlyStopping("val_loss")]).fit(_data(64))


def test_state_dict_before_fit() -> None:
    with pytest.raises(
        RuntimeError, match=r"^The optimizer and schedule are built by Trainer.fit\(\)$"
    ):
        _trainer().state_dict()


def test_resume_from_a_foreign_checkpoint(tmp_path: Path) -> None:
    from multitask_mnist.training import CheckpointError, save_checkpoint

    save_checkpoint({"model": _model().state_dict()}, tmp_path / "last.pt")
    with pytest.raises(
        CheckpointError, match=r"is not a multitask_mnist checkpoint \(no 'format' entry"
    ):
        _trainer(output_dir=tmp_path).fit(_data(64), resume=True)


_STATE_KEYS = {
    "uncertainty": {"log_vars"},
    "dwa": {"current", "epoch_means", "_extra_state"},
    "famo": {"logits", "exp_avg", "exp_avg_sq"},
    "gradnorm": {"theta", "initial", "has_initial"},
    "mgda_ub": {"last"},
}


@pytest.mark.parametrize("strategy", sorted(_STATE_KEYS))
def test_learned_loss_state_trains_checkpoints_and_resumes_exactly(
    tmp_path: Path, strategy: str
) -> None:
    # MGDA-UB needs the sum's gradient on the trunk: argmax fusion stops it
    fusion = "expectation" if strategy == "mgda_ub" else "argmax"

    def trainer(out: Path, **kwargs: Any) -> Trainer:
        return _trainer(
            _model(fusion=fusion),
            epochs=4,
            output_dir=out,
            method=strategy,
            **kwargs,
        )

    straight = trainer(tmp_path / "straight")
    history = straight.fit(_data(256))
    weights = [(row["weight_digit"], row["weight_sum"]) for row in history.epochs]
    assert len(set(weights)) > 1  # the weights moved during training
    if strategy != "mgda_ub":  # MGDA-UB gives the digit all the weight here (see docs)
        assert all(w > 0 for pair in weights[1:] for w in pair)  # neither task was dropped
    assert straight.optimizer is not None
    optimized = {id(p) for g in straight.optimizer.param_groups for p in g["params"]}
    learned = list(straight.method.parameters())  # log-variances, GradNorm's theta
    assert all(id(p) in optimized for p in learned)
    assert len(learned) == (1 if strategy in ("uncertainty", "gradnorm") else 0)
    state = load_checkpoint(tmp_path / "straight" / "last.pt")["method"]
    assert set(state) >= _STATE_KEYS[strategy]

    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        trainer(out, callbacks=[Recorder(fail_at_epoch_start=4)]).fit(_data(256))
    resumed = trainer(out)
    resumed.fit(_data(256), resume=True)
    _assert_same_weights(straight.model, resumed.model)
    _assert_same_weights(straight.loss, resumed.loss)


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
    trainer = _trainer(epochs=6)
    history = trainer.fit(train)
    for row in history.epochs:
        assert all(v == v for v in row.values() if isinstance(v, float))  # no NaN
    metrics = trainer.evaluate(_data(256, seed=1))
    assert metrics["digit_accuracy"] > 90  # learned from the 128 labelled images; chance 10
    assert metrics["sum_given_digit_accuracy"] == 100.0  # the adder stays exact


def test_evaluating_data_without_digit_labels_counts_the_sum_only() -> None:
    trainer = _trainer(epochs=1)
    trainer.fit(_data(128))
    hidden = AugmentedDigitDataset(SyntheticDigits(64, seed=2), digit_labels=0.0)
    metrics = trainer.evaluate(hidden)
    assert "digit_loss" not in metrics and "digit_accuracy" not in metrics  # none labelled
    assert 0 <= metrics["sum_accuracy"] <= 100


# -- any tasks, any inputs ------------------------------------------------------------------


def _three_tasks(n: int = 256, larger_labels: bool = True) -> Any:
    """Digit, sum, and whether the digit is larger than the number: labelled on every
    sample, or (``larger_labels=False``) only where ``3 * digit + number`` ends in 0."""
    from multitask_mnist.data import WithFields
    from multitask_mnist.tasks import MISSING

    def larger(s: dict[str, torch.Tensor]) -> torch.Tensor:
        label = (s["digit"] > s["number"]).long()
        keep = (3 * s["digit"] + s["number"]) % 10 == 0 if not larger_labels else True
        return torch.where(torch.as_tensor(keep), label, MISSING)

    return WithFields(_data(n), larger=larger)


def _three_task_net(fusion: str = "argmax") -> MultiTaskNet:
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


def test_three_tasks_train_and_report_per_task(tmp_path: Path) -> None:
    trainer = _trainer(_three_task_net(), epochs=2)
    history = trainer.fit(_three_tasks(), _three_tasks(128))
    last = history.epochs[-1]
    for split in ("train", "val"):
        for task in ("digit", "sum", "larger"):
            assert 0.0 <= last[f"{split}_{task}_accuracy"] <= 100.0
        assert f"{split}_larger_loss" in last and f"{split}_sum_mae" in last
        assert f"{split}_larger_mae" not in last  # a regression metric only
    assert last["weight_larger"] == 1.0
    metrics = trainer.test(_three_tasks(128))
    assert {"larger_accuracy", "joint_accuracy", "sum_given_digit_accuracy"} <= set(metrics)


def test_three_tasks_resume_exactly_with_a_stateful_weighting(tmp_path: Path) -> None:
    def trainer(**kwargs: Any) -> Trainer:
        return _trainer(_three_task_net(), epochs=3, method="dwa", **kwargs)

    with pytest.raises(KeyboardInterrupt):
        trainer(output_dir=tmp_path, callbacks=[Recorder(fail_at_epoch_start=3)]).fit(
            _three_tasks()
        )
    resumed, straight = trainer(output_dir=tmp_path), trainer()
    resumed.fit(_three_tasks(), resume=True)
    straight.fit(_three_tasks())
    _assert_same_weights(resumed.task, straight.task)
    assert (
        resumed.method.task_weights()
        == straight.method.task_weights()
        != {
            "digit": 1.0,
            "sum": 1.0,
            "larger": 1.0,
        }
    )


def test_a_task_with_few_labels_counts_only_those() -> None:
    trainer = _trainer(_three_task_net(), epochs=1)
    data = _three_tasks(256, larger_labels=False)
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


def test_dict_samples_without_get_batch_train_through_a_data_loader() -> None:
    class Plain(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
        def __init__(self) -> None:
            self.base = _three_tasks(96)

        def __len__(self) -> int:
            return 96

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return self.base[i]

        def set_epoch(self, epoch: int) -> None:
            self.base.set_epoch(epoch)

    a, b = _trainer(_three_task_net(), epochs=1), _trainer(_three_task_net(), epochs=1)
    a.fit(Plain())
    b.fit(_three_tasks(96))
    _assert_same_weights(a.model, b.model)


def test_a_sample_without_a_task_label_field_is_named() -> None:
    with pytest.raises(KeyError, match=r"The batch has no field 'larger'; it has 'image'"):
        _trainer(_three_task_net(), epochs=1).fit(_data(64))
    with pytest.raises(TypeError, match=r"Expected samples with named fields"):
        _trainer(epochs=1, num_workers=0).fit(torch.utils.data.TensorDataset(torch.zeros(4, 1)))


def test_multi_mnist_lenet_trains_on_two_digits_of_one_image() -> None:
    from multitask_mnist.data import overlay_digits

    base = SyntheticDigits(512, seed=0)
    canvas = overlay_digits(base.data, base.data.roll(1, 0)).unsqueeze(1).float() / 127.5 - 1
    left, right = base.targets, base.targets.roll(1)
    data = [{"image": canvas[i], "left": left[i], "right": right[i]} for i in range(512)]
    torch.manual_seed(0)
    trainer = _trainer(presets.multi_mnist_lenet(dropout=0.0), epochs=6, batch_size=32, lr=1e-2)
    trainer.fit(data)  # type: ignore[arg-type]
    metrics = trainer.evaluate(data)  # type: ignore[arg-type]
    assert metrics["left_accuracy"] > 50.0 and metrics["right_accuracy"] > 50.0


@pytest.mark.parametrize("strategy", ["rlw", "geometric"])
def test_random_and_geometric_weightings_train_and_resume_exactly(
    tmp_path: Path, strategy: str
) -> None:
    def trainer(**kwargs: Any) -> Trainer:
        return _trainer(epochs=3, method=strategy, **kwargs)

    with pytest.raises(KeyboardInterrupt):
        trainer(output_dir=tmp_path, callbacks=[Recorder(fail_at_epoch_start=3)]).fit(_data(256))
    resumed, straight = trainer(output_dir=tmp_path), trainer()
    resumed.fit(_data(256), resume=True)
    history = straight.fit(_data(256))
    _assert_same_weights(resumed.task, straight.task)
    assert history.epochs[-1]["train_digit_accuracy"] > 20  # it learns: chance is 10%
