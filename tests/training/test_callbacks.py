"""Default callbacks by name, callback state across a resume, EarlyStopping resumed exactly."""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from multitask_mnist import AugmentedDigitDataset, presets
from multitask_mnist.training import (
    Callback,
    EarlyStopping,
    ModelCheckpoint,
    ProgressBar,
    Trainer,
    load_checkpoint,
)
from tests.conftest import SyntheticDigits
from tests.training import (
    make_data,
    make_trainer,
)


def _data(n: int = 256, seed: int = 0) -> AugmentedDigitDataset:
    return AugmentedDigitDataset(SyntheticDigits(n, seed=seed), seed=seed)


def _trainer(**kwargs: Any) -> Trainer:
    torch.manual_seed(0)
    options: dict[str, Any] = {"epochs": 2, "batch_size": 64, "device": "cpu", "precision": "fp32"}
    return Trainer(presets.mnist_sum(), **(options | kwargs))


class LossSum(Callback):
    """A user's callback with state: the sum of every batch loss so far."""

    def __init__(self) -> None:
        self.total = 0.0
        self.batches = 0

    def on_batch_end(self, trainer: Trainer, epoch: int, step: int, loss: torch.Tensor) -> None:
        self.total += float(loss)
        self.batches += 1

    def state_dict(self) -> dict[str, Any]:
        return {"total": self.total, "batches": self.batches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.total, self.batches = state["total"], state["batches"]


class StopAt(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_defaults_in_order_and_others_before_the_saving_ones() -> None:
    trainer = _trainer(progress=True, callbacks=[LossSum()])
    assert list(trainer.callbacks) == [
        "progress_bar",
        "epoch_log",
        "loss_sum",
        "model_checkpoint",
        "run_files",
    ]


def test_a_default_is_replaced_or_removed_by_name() -> None:
    mine = ModelCheckpoint()
    trainer = _trainer(callbacks=[mine, ("epoch_log", None)])
    assert trainer.callbacks["model_checkpoint"] is mine
    assert "epoch_log" not in trainer.callbacks


@pytest.mark.parametrize(
    ("callbacks", "error", "message"),
    [
        (
            [("no_such", None)],
            ValueError,
            "Cannot remove callback 'no_such': the default callbacks are 'progress_bar', "
            "'epoch_log', 'model_checkpoint', 'run_files'",
        ),
        ([LossSum(), LossSum()], ValueError, "Two callbacks are named 'loss_sum'; give one"),
        ([("x", "not a callback")], TypeError, "Expected each callback to be a Callback or a"),
    ],
)
def test_bad_callbacks(callbacks: list[Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=f"^{message}"):
        _trainer(callbacks=callbacks)


def test_a_user_callback_keeps_its_state_across_a_resume(tmp_path: Path) -> None:
    straight = LossSum()
    _trainer(epochs=3, output_dir=tmp_path / "a", callbacks=[straight]).fit(_data())
    with pytest.raises(KeyboardInterrupt):
        _trainer(epochs=3, output_dir=tmp_path / "b", callbacks=[LossSum(), StopAt(3)]).fit(_data())
    assert load_checkpoint(tmp_path / "b" / "last.pt")["callbacks"]["loss_sum"]["batches"] == 8
    resumed = LossSum()
    _trainer(epochs=3, output_dir=tmp_path / "b", callbacks=[resumed]).fit(_data(), resume=True)
    assert (resumed.total, resumed.batches) == (straight.total, straight.batches)


def test_early_stopping_resumed_equals_the_uninterrupted_run(tmp_path: Path) -> None:
    """min_delta large enough that no epoch improves after the first: it stops at epoch 3 of 6."""

    def stopper() -> EarlyStopping:
        return EarlyStopping("train_loss", patience=2, min_delta=1e6)

    straight = _trainer(epochs=6, output_dir=tmp_path / "a", callbacks=[stopper()])
    history = straight.fit(_data())
    assert history.metric("epoch") == [1, 2, 3] and history.stop_reason is not None

    with pytest.raises(KeyboardInterrupt):  # after epoch 2: one bad epoch counted
        _trainer(epochs=6, output_dir=tmp_path / "b", callbacks=[stopper(), StopAt(3)]).fit(_data())
    saved = load_checkpoint(tmp_path / "b" / "last.pt")["callbacks"]["early_stopping"]
    assert saved["bad_epochs"] == 1
    resumed = _trainer(epochs=6, output_dir=tmp_path / "b", callbacks=[stopper()])
    again = resumed.fit(_data(), resume=True)
    assert again.metric("epoch") == [1, 2, 3]  # without its state it would run to epoch 4
    assert again.stop_reason == history.stop_reason
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in again.epochs]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in history.epochs]


def test_run_files_keep_every_step_loss_across_a_resume(tmp_path: Path) -> None:
    straight = _trainer(epochs=3, output_dir=tmp_path / "a")
    straight.fit(_data())
    files = straight.callbacks["run_files"]
    losses = files.state_dict()["step_losses"]
    assert len(losses) == 3 * 4 and len(set(losses)) == len(losses)  # 256 / 64 steps an epoch
    assert files.state_dict()["step_positions"][:5] == [0.25, 0.5, 0.75, 1.0, 1.25]
    with pytest.raises(KeyboardInterrupt):
        _trainer(epochs=3, output_dir=tmp_path / "b", callbacks=[StopAt(3)]).fit(_data())
    resumed = _trainer(epochs=3, output_dir=tmp_path / "b")
    resumed.fit(_data(), resume=True)
    assert resumed.callbacks["run_files"].state_dict()["step_losses"] == losses


def test_the_loss_plot_draws_each_step_on_whole_epoch_ticks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("matplotlib")
    from multitask_mnist.training import plots

    figures: list[Any] = []
    new_figure = plots._new_figure

    def keep(size: tuple[float, float]) -> Any:
        figures.append(new_figure(size))
        return figures[-1]

    monkeypatch.setattr(plots, "_new_figure", keep)
    trainer = _trainer(epochs=1, output_dir=tmp_path)
    trainer.fit(_data())
    assert (tmp_path / "loss.png").is_file() and (tmp_path / "accuracy.png").is_file()
    loss_axes = figures[0].axes[0]
    step_line = loss_axes.lines[0]
    assert list(step_line.get_xdata()) == [0.25, 0.5, 0.75, 1.0]  # a curve, not one dot
    for figure in figures:
        ticks = [t for t in figure.axes[0].get_xticks() if 0 <= t <= 1]
        assert ticks and all(float(t).is_integer() for t in ticks)


def test_files_written(tmp_path: Path) -> None:
    trainer = make_trainer(output_dir=tmp_path, run_config={"preset": "mnist_sum"})
    trainer.fit(make_data(), make_data(128, seed=1))
    test = trainer.test(make_data(128, seed=2))
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


def test_epoch_lines_in_the_original_format(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="multitask_mnist"):
        make_trainer().fit(make_data())
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Epoch")]
    pattern = (
        r"^Epoch: \d+, loss: \d+\.\d{4}, Classification Acc: \d+\.\d{2}, Addition Acc: \d+\.\d{2}$"
    )
    assert len(lines) == 2 and all(re.match(pattern, line) for line in lines), lines
    assert lines[0].startswith("Epoch: 1,") and lines[1].startswith("Epoch: 2,")


def test_progress_bar_only_on_a_terminal_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    monkeypatch.delenv("CI", raising=False)
    assert ProgressBar.enabled()
    assert "progress_bar" in make_trainer(progress=True).callbacks
    assert "progress_bar" not in make_trainer(progress=False).callbacks
    monkeypatch.setenv("CI", "true")
    assert not ProgressBar.enabled()
    monkeypatch.delenv("CI")
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert not ProgressBar.enabled()
