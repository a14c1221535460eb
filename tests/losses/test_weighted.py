from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multitask_mnist import MultiTaskOutput, WeightedMultiLoss
from multitask_mnist.losses import task_losses, weighted_multi_loss

weights = st.floats(0.0, 10.0, allow_nan=False)


def _batch(seed: int, n: int = 16) -> tuple[MultiTaskOutput, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    digit = torch.randint(0, 10, (n,), generator=g)
    total = digit + torch.randint(0, 10, (n,), generator=g)
    out = MultiTaskOutput(torch.randn(n, 10, generator=g), torch.randn(n, generator=g) * 9 + 9)
    return out, digit, total


@settings(max_examples=50, deadline=None)
@given(w=weights, seed=st.integers(0, 10_000), zero=st.sampled_from(["digit", "sum"]))
def test_zero_weight_leaves_the_other_task_alone(w: float, seed: int, zero: str) -> None:
    other = "sum" if zero == "digit" else "digit"
    out, digit, total = _batch(seed)
    result = WeightedMultiLoss({zero: 0.0, other: w})(out, digit, total)
    alone = task_losses(out.digit_logits, out.sum, digit, total)[other]
    assert torch.allclose(result.total, w * alone)


@settings(max_examples=50, deadline=None)
@given(wd=weights, ws=weights, seed=st.integers(0, 10_000))
def test_module_matches_function_and_parts_are_unweighted(wd: float, ws: float, seed: int) -> None:
    out, digit, total = _batch(seed)
    loss = WeightedMultiLoss({"digit": wd, "sum": ws})(out, digit, total)
    pure = weighted_multi_loss(out.digit_logits, out.sum, digit, total, {"digit": wd, "sum": ws})
    assert torch.equal(loss.total, pure.total)
    ce = torch.nn.functional.cross_entropy(out.digit_logits, digit)
    mse = torch.nn.functional.mse_loss(out.sum, total.float())
    assert torch.allclose(loss.parts["digit"], ce) and torch.allclose(loss.parts["sum"], mse)
    assert torch.allclose(loss.total, wd * ce + ws * mse)


def test_zero_weight_task_contributes_nothing_even_when_not_finite() -> None:
    out = MultiTaskOutput(torch.zeros(2, 10), torch.tensor([float("inf"), 1.0]))
    result = WeightedMultiLoss({"sum": 0.0})(out, torch.tensor([0, 1]), torch.tensor([1, 1]))
    assert result.total.item() == pytest.approx(math.log(10))


def test_default_is_equal_weights() -> None:
    assert WeightedMultiLoss().weights == {"digit": 1.0, "sum": 1.0}


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
            "Expected argument `strategy` to be one of 'fixed', 'uncertainty', 'dwa', got 'magic'",
        ),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        WeightedMultiLoss(**kwargs)
    assert str(info.value) == message


def test_missing_digit_labels_give_the_mean_over_the_labelled_ones() -> None:
    from multitask_mnist.losses import task_losses
    from multitask_mnist.tasks import MISSING

    logits = torch.randn(6, 10, requires_grad=True)
    digit = torch.tensor([3, MISSING, 1, MISSING, 9, 0])
    sums = torch.tensor([5.0, 6.0, 7.0, 8.0, 9.0, 10.0])
    parts = task_losses(logits, sums, digit, sums.long())
    labelled = digit != MISSING
    expected = torch.nn.functional.cross_entropy(logits[labelled], digit[labelled])
    assert torch.allclose(parts["digit"], expected)
    none = task_losses(logits, sums, torch.full((6,), MISSING), sums.long())
    (grad,) = torch.autograd.grad(none["digit"], logits)
    assert float(none["digit"].detach()) == 0.0 and torch.equal(grad, torch.zeros_like(grad))
