from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multitask_mnist import WeightedMultiLoss
from multitask_mnist.losses import weighted_sum
from multitask_mnist.tasks import DIGIT_SUM_TASKS, MISSING, Task, masked_task_losses

weights = st.floats(0.0, 10.0, allow_nan=False)
Batch = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]


def _loss(weights: dict[str, float] | None = None, **kwargs: Any) -> WeightedMultiLoss:
    return WeightedMultiLoss(weights, tasks=DIGIT_SUM_TASKS, **kwargs)


def _batch(seed: int, n: int = 16) -> Batch:
    g = torch.Generator().manual_seed(seed)
    digit = torch.randint(0, 10, (n,), generator=g)
    total = digit + torch.randint(0, 10, (n,), generator=g)
    out = {"digit": torch.randn(n, 10, generator=g), "sum": torch.randn(n, generator=g) * 9 + 9}
    return out, {"digit": digit, "sum": total}


@settings(max_examples=50, deadline=None)
@given(w=weights, seed=st.integers(0, 10_000), zero=st.sampled_from(["digit", "sum"]))
def test_zero_weight_leaves_the_other_task_alone(w: float, seed: int, zero: str) -> None:
    other = "sum" if zero == "digit" else "digit"
    out, targets = _batch(seed)
    result = _loss({zero: 0.0, other: w})(out, targets)
    alone = masked_task_losses(DIGIT_SUM_TASKS, out, targets)[other]
    assert torch.allclose(result.total, w * alone)


@settings(max_examples=50, deadline=None)
@given(wd=weights, ws=weights, seed=st.integers(0, 10_000))
def test_module_matches_function_and_parts_are_unweighted(wd: float, ws: float, seed: int) -> None:
    out, targets = _batch(seed)
    loss = _loss({"digit": wd, "sum": ws})(out, targets)
    parts = masked_task_losses(DIGIT_SUM_TASKS, out, targets)
    assert torch.equal(loss.total, weighted_sum(list(parts.values()), [wd, ws]))
    ce = torch.nn.functional.cross_entropy(out["digit"], targets["digit"])
    mse = torch.nn.functional.mse_loss(out["sum"], targets["sum"].float())
    assert torch.allclose(loss.parts["digit"], ce) and torch.allclose(loss.parts["sum"], mse)
    assert torch.allclose(loss.total, wd * ce + ws * mse)


def test_zero_weight_task_contributes_nothing_even_when_not_finite() -> None:
    out = {"digit": torch.zeros(2, 10), "sum": torch.tensor([float("inf"), 1.0])}
    result = _loss({"sum": 0.0})(out, {"digit": torch.tensor([0, 1]), "sum": torch.tensor([1, 1])})
    assert result.total.item() == pytest.approx(math.log(10))


def test_default_is_equal_weights() -> None:
    assert _loss().weights == {"digit": 1.0, "sum": 1.0}


def test_an_unbound_loss_takes_its_tasks_from_the_model_once() -> None:
    loss = WeightedMultiLoss({"sum": 0.5})
    with pytest.raises(RuntimeError, match="This loss has no tasks yet"):
        loss.task_weights()
    three = (*DIGIT_SUM_TASKS, Task("larger", "binary"))
    loss.bind(three)
    assert loss.task_weights() == {"digit": 1.0, "sum": 0.5, "larger": 1.0}
    loss.bind(three)  # the same tasks again: nothing changes
    with pytest.raises(ValueError, match=r"^This loss is for tasks Task\(name='digit'"):
        loss.bind(DIGIT_SUM_TASKS)


def test_teacher_forced_loss_counts_where_both_labels_are_present() -> None:
    out = {
        "digit": torch.zeros(3, 10),
        "sum": torch.tensor([5.0, 5.0, 5.0]),
        "sum/teacher_forced": torch.tensor([4.0, 0.0, 7.0]),
    }
    targets = {"digit": torch.tensor([1, MISSING, 2]), "sum": torch.tensor([5, 5, 5])}
    parts = _loss()(out, targets, teachers={"sum": "digit"}).parts
    # the sum's own error is 0; the forced one over the two digit-labelled samples: (1 + 4) / 2
    assert float(parts["sum"]) == pytest.approx(2.5)
    assert float(_loss()(out, targets).parts["sum"]) == 0.0  # no teachers: not counted


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"weights": {"digit": -1.0}},
            ValueError,
            "Expected `weights['digit']` to be finite and >= 0, got -1.0",
        ),
        (
            {"weights": {"sum": float("nan")}},
            ValueError,
            "Expected `weights['sum']` to be finite and >= 0, got nan",
        ),
        (
            {"weights": {"sum": float("inf")}},
            ValueError,
            "Expected `weights['sum']` to be finite and >= 0, got inf",
        ),
        (
            {"weights": {"digits": 1.0, "total": 2.0}},
            ValueError,
            "Unknown task name(s) in `weights`: 'digits', 'total'; the tasks are 'digit', 'sum'",
        ),
        ({"weights": {"sum": "1"}}, TypeError, "Expected `weights['sum']` to be a number, got '1'"),
        (
            {"strategy": "magic"},
            ValueError,
            "Expected argument `strategy` to be one of 'fixed', 'uncertainty', 'dwa', 'rlw', "
            "'geometric', 'famo', 'gradnorm', 'mgda_ub', got 'magic'",
        ),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        WeightedMultiLoss(**kwargs, tasks=DIGIT_SUM_TASKS)
    assert str(info.value) == message


def test_missing_digit_labels_give_the_mean_over_the_labelled_ones() -> None:
    logits = torch.randn(6, 10, requires_grad=True)
    digit = torch.tensor([3, MISSING, 1, MISSING, 9, 0])
    sums = torch.tensor([5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    out = {"digit": logits, "sum": sums}
    parts = _loss()(out, {"digit": digit, "sum": sums.long()}).parts
    labelled = digit != MISSING
    expected = torch.nn.functional.cross_entropy(logits[labelled], digit[labelled])
    assert torch.allclose(parts["digit"], expected)
    none = _loss()(out, {"digit": torch.full((6,), MISSING), "sum": sums.long()}).parts
    (grad,) = torch.autograd.grad(none["digit"], logits)
    assert float(none["digit"].detach()) == 0.0 and torch.equal(grad, torch.zeros_like(grad))


def test_a_name_that_moved_to_methods_says_where() -> None:
    import multitask_mnist.losses as losses

    with pytest.raises(AttributeError, match=r"use multitask_mnist\.methods\.Scalarization"):
        losses.LossWeighting  # noqa: B018
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        losses.nothing  # noqa: B018
