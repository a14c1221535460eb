"""Gradient methods inside the Trainer: they train, refuse what cannot work, and resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from multitask_mnist import AugmentedDigitDataset, WeightedMultiLoss, presets
from multitask_mnist.methods import METHODS
from multitask_mnist.training import Callback, Trainer
from tests.conftest import SyntheticDigits
from tests.training import Recorder, assert_same_weights, three_task_net, three_tasks


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


@pytest.mark.parametrize("method", [m for m in METHODS if m != "none"])
def test_every_method_steps_under_bf16_with_float32_gradients(method: str) -> None:
    dtypes = GradientDtypes()
    trainer = _trainer(method=method, precision="bf16", epochs=1, callbacks=[dtypes])
    start = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.fit(_data(128))
    assert dtypes.dtypes == {torch.float32}
    after = list(trainer.model.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a, b) for a, b in zip(start, after, strict=True))


def test_a_method_with_argmax_fusion_is_refused_naming_the_block() -> None:
    with pytest.raises(
        ValueError,
        match=r"^Method 'upgrad' aggregates each task's gradient on the shared blocks, but "
        r"block 'head' passes none back to 'trunk'",
    ):
        _trainer(fusion="argmax", method="upgrad")


def test_a_method_and_a_deprecated_loss_strategy_are_refused_together() -> None:
    with pytest.warns(DeprecationWarning, match=r"WeightedMultiLoss\(strategy=...\) is deprecated"):
        loss = WeightedMultiLoss(strategy="uncertainty")
    with pytest.raises(
        ValueError,
        match=r"^Give one method: Trainer\(method=...\) got 'pcgrad' and the loss the "
        r"deprecated WeightedMultiLoss\(strategy='uncertainty'\); drop the strategy$",
    ):
        _trainer(method="pcgrad", loss=loss)


def test_unknown_method_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"^Expected argument `method` to be one of 'none', 'uncertainty'"
    ):
        _trainer(method="sgd")


def test_a_task_without_labels_in_every_batch_gives_a_zero_row_and_no_nan() -> None:
    from multitask_mnist.data import WithFields

    data = WithFields(three_tasks(256), larger=lambda s: torch.full_like(s["digit"], -1))
    torch.manual_seed(0)
    trainer = Trainer(
        three_task_net("expectation"),
        method="upgrad",
        epochs=1,
        batch_size=64,
        device="cpu",
        progress=False,
    )
    history = trainer.fit(data)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert "train_larger_accuracy" not in history.epochs[0]


@pytest.mark.stress  # once flaky under load: repeated by tests/stress.py
@pytest.mark.parametrize("method", ["upgrad", "nash_mtl"])  # Nash-MTL keeps a state
def test_a_run_with_a_method_resumes_exactly(tmp_path: Path, method: str) -> None:
    with pytest.raises(KeyboardInterrupt):
        _trainer(
            method=method,
            epochs=3,
            output_dir=tmp_path,
            callbacks=[Recorder(fail_at_epoch_start=3)],
        ).fit(_data(256))
    resumed = _trainer(method=method, epochs=3, output_dir=tmp_path)
    resumed.fit(_data(256), resume=True)
    straight = _trainer(method=method, epochs=3)
    straight.fit(_data(256))
    assert_same_weights(resumed.task, straight.task)
    if method == "nash_mtl":  # its step count and last weights came back too
        ours, theirs = (t.method.aggregator.weighting for t in (resumed, straight))
        assert ours.step == theirs.step == 12
        assert (ours.prvs_alpha == theirs.prvs_alpha).all()


def test_gradient_diagnostics_per_epoch_and_per_step(tmp_path: Path) -> None:
    from multitask_mnist.training import GradientConflict

    conflict = GradientConflict(every=2)
    trainer = _trainer(method="upgrad", epochs=2, output_dir=tmp_path, callbacks=[conflict])
    history = trainer.fit(_data(256))
    for row in history.epochs:
        assert -1.0 <= row["grad_cosine"] <= 1.0
        assert row["grad_norm_ratio"] >= 1.0
        assert row["effective_weight_digit"] > 0 and row["effective_weight_sum"] > 0
    assert [(r["epoch"], r["step"]) for r in conflict.rows] == [(1, 1), (1, 3), (2, 1), (2, 3)]
    last = trainer.gradient_diagnostics()
    assert set(last) >= {"grad_cosine", "grad_norm_digit", "grad_norm_sum", "grad_norm_ratio"}
    ratio = max(last["grad_norm_digit"], last["grad_norm_sum"]) / min(
        last["grad_norm_digit"], last["grad_norm_sum"]
    )
    assert last["grad_norm_ratio"] == pytest.approx(ratio)
    assert "grad_cosine" in (tmp_path / "history.csv").read_text().splitlines()[0]
    assert (tmp_path / "gradient_conflict.csv").read_text().startswith("epoch,step,")
    assert _trainer(epochs=1).gradient_diagnostics() == {}  # no method: nothing to report


def test_the_step_diagnostics_match_the_gramian_of_known_gradients() -> None:
    from multitask_mnist.methods import GradientAggregation, make_aggregator

    w = torch.nn.Parameter(torch.zeros(2))
    step = GradientAggregation(make_aggregator("upgrad", 2), shared=[w])
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([1.0, 1.0])
    step.backward_rows([a @ w, b @ w], [])
    means = step.diagnostics.epoch(["a", "b"])
    assert means["grad_cosine"] == pytest.approx(3.0 / (3.0 * 2**0.5))
    assert means["grad_norm_ratio"] == pytest.approx(3.0 / 2**0.5)
    assert step.diagnostics.epoch(["a", "b"]) == {}  # read once, then a fresh epoch


def test_without_a_method_the_conflict_callback_measures_the_gradients(tmp_path: Path) -> None:
    from multitask_mnist.training import GradientConflict

    conflict = GradientConflict(every=2)
    trainer = _trainer(
        epochs=2,
        output_dir=tmp_path,
        callbacks=[conflict],
        loss=WeightedMultiLoss({"sum": 0.5}),
    )
    history = trainer.fit(_data(256))
    for row in history.epochs:  # means over the measured steps
        assert -1.0 <= row["grad_cosine"] <= 1.0 and row["grad_norm_ratio"] >= 1.0
        assert row["effective_weight_digit"] == pytest.approx(1.0)
        assert row["effective_weight_sum"] == pytest.approx(0.5)  # the loss weight
    assert [(r["epoch"], r["step"]) for r in conflict.rows] == [(1, 1), (1, 3), (2, 1), (2, 3)]
    assert "grad_cosine" in (tmp_path / "history.csv").read_text().splitlines()[0]
    no_conflict = _trainer(epochs=1)
    assert "grad_cosine" not in no_conflict.fit(_data(64)).epochs[0]  # no callback: no cost


def test_the_probe_sees_the_jacobian_a_gradient_method_sees() -> None:
    """On the same model and batch, the probe (method none) and upgrad measure the same."""
    from multitask_mnist.data import as_fields
    from multitask_mnist.methods import GradientProbe, split_parameters
    from multitask_mnist.training import TrainingTask

    torch.manual_seed(0)
    task = TrainingTask(presets.mnist_sum(fusion="expectation"), WeightedMultiLoss())
    batch = as_fields(_data(32).get_batch(torch.arange(32)))
    with pytest.raises(TypeError, match=r"^Expected the batch as a mapping of named tensors"):
        task(_data(32).get_batch(torch.arange(32)))  # type: ignore[arg-type]
    shared, specific = split_parameters(task.model, task.loss)
    probe = GradientProbe(shared)
    out = task(batch)
    probe.measure(list(out.losses.values()), out.total)
    from multitask_mnist.methods import GradientAggregation, make_aggregator

    step = GradientAggregation(make_aggregator("upgrad", 2), shared=shared)
    out = task(batch)
    step.backward_rows(list(out.losses.values()), specific)
    assert probe.diagnostics.last_gramian is not None
    assert torch.allclose(probe.diagnostics.last_gramian, step.diagnostics.last_gramian, rtol=1e-5)
    names = ["digit", "sum"]
    ours, theirs = probe.diagnostics.step(names), step.diagnostics.step(names)
    assert ours["grad_cosine"] == pytest.approx(theirs["grad_cosine"], rel=1e-5)
    assert ours["effective_weight_digit"] == ours["effective_weight_sum"] == 1.0
