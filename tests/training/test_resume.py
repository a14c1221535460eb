"""Resume: a run stopped and resumed ends exactly as one that was not; what a checkpoint refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from multitask_mnist.training import (
    Trainer,
    load_checkpoint,
)
from tests.training import (
    Recorder,
    assert_same_weights,
    make_data,
    make_model,
    make_trainer,
    three_task_net,
    three_tasks,
)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_resume_after_interruption_equals_uninterrupted(tmp_path: Path, precision: str) -> None:
    straight = make_trainer(epochs=3, precision=precision, output_dir=tmp_path / "straight")
    straight.fit(make_data())

    out = tmp_path / "interrupted"
    first = make_trainer(
        epochs=3, precision=precision, output_dir=out, callbacks=[Recorder(fail_at_epoch_start=2)]
    )
    with pytest.raises(KeyboardInterrupt):
        first.fit(make_data())
    assert load_checkpoint(out / "last.pt")["epoch"] == 1

    recorder = Recorder()
    second = make_trainer(
        make_model(seed=99), epochs=3, precision=precision, output_dir=out, callbacks=[recorder]
    )
    history = second.fit(make_data(), resume=True)
    assert [e for e in recorder.events if e[0] == "epoch_start"] == [
        ("epoch_start", 2),
        ("epoch_start", 3),
    ]
    assert_same_weights(straight.model, second.model)
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in history.epochs]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in straight.history.epochs]


def test_resume_with_more_epochs_trains_only_the_new_ones(tmp_path: Path) -> None:
    make_trainer(epochs=1, output_dir=tmp_path).fit(make_data())
    recorder = Recorder()
    history = make_trainer(epochs=2, output_dir=tmp_path, callbacks=[recorder]).fit(
        make_data(), resume=True
    )
    assert [e for e in recorder.events if e[0] == "epoch_start"] == [("epoch_start", 2)]
    assert history.metric("epoch") == [1, 2]
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 2


def test_resume_without_checkpoint_starts_afresh(tmp_path: Path) -> None:
    history = make_trainer(epochs=1, output_dir=tmp_path).fit(make_data(), resume=True)
    assert history.metric("epoch") == [1]


def test_resume_needs_output_dir() -> None:
    with pytest.raises(ValueError, match=r"^`resume=True` needs `output_dir`"):
        make_trainer().fit(make_data(), resume=True)


def test_checkpoints_load_with_weights_only(tmp_path: Path) -> None:
    trainer = make_trainer(output_dir=tmp_path)
    trainer.fit(make_data())
    for name in ("last.pt", "best.pt"):
        state = torch.load(tmp_path / name, weights_only=True)
        assert {"model", "optimizer", "scheduler", "loss", "epoch", "rng", "config"} <= set(state)
        assert len(state["rng"]) == 1 and {"torch", "python"} <= set(state["rng"][0])  # per process
    assert not list(tmp_path.glob(".*.tmp"))


def test_resume_into_another_architecture_names_the_layers(tmp_path: Path) -> None:
    from multitask_mnist.models import Conv, ConvTrunk, ScalarFusionHead, digit_sum_net
    from multitask_mnist.training import CheckpointError

    make_trainer(epochs=1, output_dir=tmp_path).fit(make_data(64))
    other = digit_sum_net(ConvTrunk([Conv("input1", 10, 28)]), ScalarFusionHead())
    with pytest.raises(
        CheckpointError,
        match=r"does not fit this network: layers this network lacks: trunk.conv1, ",
    ):
        make_trainer(other, epochs=2, output_dir=tmp_path).fit(make_data(64), resume=True)


def test_state_dict_before_fit() -> None:
    with pytest.raises(
        RuntimeError, match=r"^The optimizer and schedule are built by Trainer.fit\(\)$"
    ):
        make_trainer().state_dict()


def test_resume_from_a_foreign_checkpoint(tmp_path: Path) -> None:
    from multitask_mnist.training import CheckpointError, save_checkpoint

    save_checkpoint({"model": make_model().state_dict()}, tmp_path / "last.pt")
    with pytest.raises(
        CheckpointError, match=r"is not a multitask_mnist checkpoint \(no 'format' entry"
    ):
        make_trainer(output_dir=tmp_path).fit(make_data(64), resume=True)


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
        return make_trainer(
            make_model(fusion=fusion),
            epochs=4,
            output_dir=out,
            method=strategy,
            **kwargs,
        )

    straight = trainer(tmp_path / "straight")
    history = straight.fit(make_data(256))
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
        trainer(out, callbacks=[Recorder(fail_at_epoch_start=4)]).fit(make_data(256))
    resumed = trainer(out)
    resumed.fit(make_data(256), resume=True)
    assert_same_weights(straight.model, resumed.model)
    assert_same_weights(straight.loss, resumed.loss)


def test_three_tasks_resume_exactly_with_a_stateful_weighting(tmp_path: Path) -> None:
    def trainer(**kwargs: Any) -> Trainer:
        return make_trainer(three_task_net(), epochs=3, method="dwa", **kwargs)

    with pytest.raises(KeyboardInterrupt):
        trainer(output_dir=tmp_path, callbacks=[Recorder(fail_at_epoch_start=3)]).fit(three_tasks())
    resumed, straight = trainer(output_dir=tmp_path), trainer()
    resumed.fit(three_tasks(), resume=True)
    straight.fit(three_tasks())
    assert_same_weights(resumed.task, straight.task)
    assert (
        resumed.method.task_weights()
        == straight.method.task_weights()
        != {
            "digit": 1.0,
            "sum": 1.0,
            "larger": 1.0,
        }
    )


@pytest.mark.parametrize("strategy", ["rlw", "geometric"])
def test_random_and_geometric_weightings_train_and_resume_exactly(
    tmp_path: Path, strategy: str
) -> None:
    def trainer(**kwargs: Any) -> Trainer:
        return make_trainer(epochs=3, method=strategy, **kwargs)

    with pytest.raises(KeyboardInterrupt):
        trainer(output_dir=tmp_path, callbacks=[Recorder(fail_at_epoch_start=3)]).fit(
            make_data(256)
        )
    resumed, straight = trainer(output_dir=tmp_path), trainer()
    resumed.fit(make_data(256), resume=True)
    history = straight.fit(make_data(256))
    assert_same_weights(resumed.task, straight.task)
    assert history.epochs[-1]["train_digit_accuracy"] > 20  # it learns: chance is 10%
