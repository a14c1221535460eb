"""Tasks by name with missing labels: properties over many mixes of task kinds."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multitask_mnist.losses import weighted_sum
from multitask_mnist.tasks import (
    DIGIT_SUM_TASKS,
    MISSING,
    Task,
    TaskMetrics,
    label_mask,
    masked_task_losses,
)

KINDS = st.sampled_from(["multiclass", "binary", "regression"])


def _task(i: int, kind: str) -> Task:
    return Task(f"t{i}", kind, num_classes=4 if kind == "multiclass" else None)  # type: ignore[arg-type]


def _batch(task: Task, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if task.kind == "multiclass":
        return torch.randn(n, 4, generator=generator), torch.randint(
            0, 4, (n,), generator=generator
        )
    if task.kind == "binary":
        return torch.randn(n, generator=generator), torch.randint(0, 2, (n,), generator=generator)
    return 9 * torch.rand(n, generator=generator), torch.randint(0, 10, (n,), generator=generator)


problems = st.tuples(
    st.lists(KINDS, min_size=1, max_size=4),
    st.integers(1, 12),
    st.integers(0, 2**31 - 1),
)


def _problem(
    kinds: list[str], n: int, seed: int
) -> tuple[list[Task], dict[str, Any], dict[str, Any], dict[str, Any]]:
    generator = torch.Generator().manual_seed(seed)
    tasks = [_task(i, kind) for i, kind in enumerate(kinds)]
    predictions, targets, masks = {}, {}, {}
    for task in tasks:
        predictions[task.name], targets[task.name] = _batch(task, n, generator)
        masks[task.name] = torch.rand(n, generator=generator) < 0.6
    return tasks, predictions, targets, masks


@given(problems)
@settings(max_examples=60, deadline=None)
def test_losses_are_finite_scalars_for_any_mix_of_tasks(
    problem: tuple[list[str], int, int],
) -> None:
    tasks, predictions, targets, masks = _problem(*problem)
    losses = masked_task_losses(tasks, predictions, targets, masks)
    assert list(losses) == [task.name for task in tasks]
    for loss in losses.values():
        assert loss.shape == () and torch.isfinite(loss)


@given(problems)
@settings(max_examples=60, deadline=None)
def test_the_masked_loss_equals_the_loss_on_the_labelled_subset(
    problem: tuple[list[str], int, int],
) -> None:
    tasks, predictions, targets, masks = _problem(*problem)
    losses = masked_task_losses(tasks, predictions, targets, masks)
    for task in tasks:
        keep = masks[task.name]
        if not keep.any():
            assert float(losses[task.name]) == 0.0
            continue
        subset = task.loss_per_sample(predictions[task.name][keep], targets[task.name][keep]).mean()
        assert torch.allclose(losses[task.name], subset, atol=1e-6)


@given(problems)
@settings(max_examples=40, deadline=None)
def test_missing_labels_by_sentinel_equal_an_explicit_mask(
    problem: tuple[list[str], int, int],
) -> None:
    tasks, predictions, targets, masks = _problem(*problem)
    marked = {
        name: torch.where(masks[name], t, torch.full_like(t, MISSING))
        for name, t in targets.items()
    }
    by_mask = masked_task_losses(tasks, predictions, targets, masks)
    by_sentinel = masked_task_losses(tasks, predictions, marked)
    for name in by_mask:
        assert torch.equal(by_mask[name], by_sentinel[name])


@given(problems)
@settings(max_examples=40, deadline=None)
def test_a_batch_without_labels_contributes_nothing_and_no_nan(
    problem: tuple[list[str], int, int],
) -> None:
    tasks, predictions, targets, _ = _problem(*problem)
    leaves = {name: p.clone().requires_grad_(True) for name, p in predictions.items()}
    nothing = {name: torch.zeros_like(t, dtype=torch.bool) for name, t in targets.items()}
    losses = masked_task_losses(tasks, leaves, targets, nothing)
    total = weighted_sum(list(losses.values()), [1.0] * len(losses))
    total.backward()
    assert float(total.detach()) == 0.0
    for leaf in leaves.values():
        assert leaf.grad is not None and torch.equal(leaf.grad, torch.zeros_like(leaf))


@given(problems)
@settings(max_examples=40, deadline=None)
def test_a_task_of_weight_zero_contributes_nothing(problem: tuple[list[str], int, int]) -> None:
    tasks, predictions, targets, masks = _problem(*problem)
    losses = list(masked_task_losses(tasks, predictions, targets, masks).values())
    poisoned = [torch.tensor(float("nan")), *losses]
    assert torch.equal(
        weighted_sum(poisoned, [0.0] + [1.0] * len(losses)),
        weighted_sum(losses, [1.0] * len(losses)),
    )


@given(problems)
@settings(max_examples=40, deadline=None)
def test_metrics_count_only_labelled_samples(problem: tuple[list[str], int, int]) -> None:
    tasks, predictions, targets, masks = _problem(*problem)
    metrics = TaskMetrics(tasks)
    metrics.update(predictions, targets, masks)
    metrics.update(predictions, targets, masks)  # two batches: sums add up
    out = metrics.compute()
    for task in tasks:
        keep = masks[task.name]
        if not keep.any():
            assert f"{task.name}_accuracy" not in out
            continue
        right = task.correct(predictions[task.name][keep], targets[task.name][keep])
        assert out[f"{task.name}_accuracy"] == pytest.approx(100.0 * right.double().mean().item())
    restored = TaskMetrics(tasks)
    restored.load_state_dict(metrics.state_dict())
    assert restored.compute() == out


def test_float_targets_mark_missing_labels_with_nan_only() -> None:
    assert label_mask(torch.tensor([1.5, float("nan"), -1.0])).tolist() == [True, False, True]


def test_the_digit_sum_pair_is_one_instance() -> None:
    digit, total = DIGIT_SUM_TASKS
    assert (digit.name, digit.kind, digit.num_classes) == ("digit", "multiclass", 10)
    assert (total.name, total.kind) == ("sum", "regression")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "", "kind": "binary"}, "Expected argument `name` to be a non-empty str, got ''"),
        (
            {"name": "a", "kind": "ranking"},
            "Expected argument `kind` to be one of 'multiclass', 'binary', 'regression', "
            "'digits', got 'ranking'",
        ),
        ({"name": "a", "kind": "multiclass"}, "Task 'a' is multiclass: give its `num_classes`"),
        (
            {"name": "a", "kind": "binary", "num_classes": 2},
            "Argument `num_classes` applies to multiclass and digits tasks only; task 'a' is "
            "binary",
        ),
        (
            {"name": "a", "kind": "multiclass", "num_classes": 1},
            "Expected argument `num_classes` to be >= 2, got 1",
        ),
        (
            {"name": "a", "kind": "digits", "num_classes": 10},
            "Task 'a' is digits: give its `loss` and `decode`, got loss=None, decode=None",
        ),
        (
            {"name": "a", "kind": "multiclass", "num_classes": 3, "decode": len},
            "Argument `decode` applies to digits tasks only; task 'a' is multiclass",
        ),
    ],
)
def test_bad_tasks(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        Task(**kwargs)
    assert str(info.value) == message


def test_a_missing_prediction_is_named() -> None:
    with pytest.raises(KeyError, match="No prediction for task 'sum'"):
        masked_task_losses(
            DIGIT_SUM_TASKS,
            {"digit": torch.zeros(1, 10)},
            {"digit": torch.tensor([1]), "sum": torch.tensor([2])},
        )


def test_a_task_may_not_take_the_metrics_name_joint() -> None:
    from multitask_mnist.tasks import TaskMetrics

    with pytest.raises(ValueError, match="A task may not be named 'joint'"):
        TaskMetrics([Task("joint", "binary"), Task("other", "binary")])
