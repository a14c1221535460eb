"""Learned and dynamic loss weighting: uncertainty (Kendall et al.) and DWA (Liu et al.)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multitask_mnist import WeightedMultiLoss
from multitask_mnist.losses import dwa_weights, uncertainty_weighted_loss
from multitask_mnist.tasks import DIGIT_SUM_TASKS

finite = st.floats(-20.0, 20.0, allow_nan=False)
positive = st.floats(1e-4, 1e4, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(s1=finite, s2=finite, l1=st.floats(0.0, 1e4), l2=st.floats(0.0, 1e4))
def test_uncertainty_weights_positive_and_total_bounded_below(
    s1: float, s2: float, l1: float, l2: float
) -> None:
    total, weights = uncertainty_weighted_loss(
        torch.tensor([l1, l2], dtype=torch.float64), torch.tensor([s1, s2], dtype=torch.float64)
    )
    assert torch.all(weights > 0)
    assert float(total) >= 0.0  # the log(1 + sigma^2) form: no term below zero
    assert torch.allclose(weights, 0.5 * torch.exp(-torch.tensor([s1, s2], dtype=torch.float64)))


@settings(max_examples=200, deadline=None)
@given(a=positive, b=positive, c=positive, d=positive, t=st.floats(0.1, 100.0))
def test_dwa_weights_positive_and_sum_to_the_number_of_tasks(
    a: float, b: float, c: float, d: float, t: float
) -> None:
    w = dwa_weights(
        torch.tensor([a, b], dtype=torch.float64), torch.tensor([c, d], dtype=torch.float64), t
    )
    assert torch.all(w > 0)
    assert float(w.sum()) == pytest.approx(2.0)
    faster = 0 if a / c < b / d else 1  # the task whose loss fell more gets less weight
    if abs(a / c - b / d) > 1e-9:
        assert w[faster] < w[1 - faster]


def test_dwa_high_temperature_evens_the_weights() -> None:
    w = dwa_weights(torch.tensor([1.0, 3.0]), torch.tensor([2.0, 1.0]), 1e6)
    assert torch.allclose(w, torch.ones(2), atol=1e-5)


def test_uncertainty_weights_move_as_the_theory_says() -> None:
    """A noisy task (large loss) learns a large variance, so its weight falls; a precise
    task's weight rises. At the optimum, 0.5 * exp(-s) * L = sigmoid(s)."""
    loss = WeightedMultiLoss(strategy="uncertainty", tasks=DIGIT_SUM_TASKS)
    optimizer = torch.optim.Adam(loss.parameters(), lr=0.05)
    losses = torch.tensor([10.0, 0.1])  # digit noisy, sum precise
    for _ in range(2000):
        total = uncertainty_weighted_loss(losses, loss.weighting.log_vars)[0]
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    weights = loss.task_weights()
    assert weights["digit"] < 0.5 < weights["sum"]
    s = loss.weighting.log_vars.detach()
    assert torch.allclose(0.5 * torch.exp(-s) * losses, torch.sigmoid(s), atol=1e-3)


def _output(digit_loss_scale: float) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    digit = torch.tensor([0, 1])
    logits = torch.zeros(2, 10)
    logits[:, 5] = digit_loss_scale  # a confident wrong class: larger scale, larger loss
    return {"digit": logits, "sum": torch.tensor([1.0, 2.0])}, {
        "digit": digit,
        "sum": torch.tensor([1, 4]),
    }


def test_dwa_module_follows_the_epoch_losses() -> None:
    loss = WeightedMultiLoss(strategy="dwa", temperature=2.0, tasks=DIGIT_SUM_TASKS)
    for scale in (8.0, 4.0):  # the digit loss falls, the sum loss stays
        loss(*_output(scale))
        assert loss.task_weights() == {"digit": 1.0, "sum": 1.0}  # first two epochs
        loss.on_train_epoch_end()
    weights = loss.task_weights()
    assert weights["digit"] < 1.0 < weights["sum"]
    assert sum(weights.values()) == pytest.approx(2.0)
    loss.eval()
    loss(*_output(100.0))  # evaluation does not count towards the epoch
    assert float(loss.weighting.running_count) == 0


def test_dwa_state_round_trips_through_the_state_dict() -> None:
    a = WeightedMultiLoss(strategy="dwa", tasks=DIGIT_SUM_TASKS)
    for scale in (8.0, 4.0, 3.0):
        a(*_output(scale))
        a.on_train_epoch_end()
    b = WeightedMultiLoss(strategy="dwa", tasks=DIGIT_SUM_TASKS)
    b.load_state_dict(a.state_dict())
    assert b.task_weights() == a.task_weights() and int(b.weighting.epochs_seen) == 3


def test_weights_apply_to_fixed_only() -> None:
    with pytest.raises(ValueError, match=r"^Argument `weights` applies to strategy='fixed' only"):
        WeightedMultiLoss({"digit": 2.0}, strategy="dwa")


def test_temperature_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"^Expected argument `temperature` to be > 0, got 0.0$"):
        WeightedMultiLoss(strategy="dwa", temperature=0.0)


@settings(max_examples=100, deadline=None)
@given(losses=st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=5))
def test_geometric_equals_torchjds_geometric_mean_on_positive_losses(losses: list[float]) -> None:
    from torchjd.scalarization import GeometricMean

    from multitask_mnist.losses import GeometricLossWeighting

    values = torch.tensor(losses, dtype=torch.float64)
    ours = GeometricLossWeighting(len(losses)).double()(values)
    assert torch.allclose(ours, GeometricMean()(values))


def test_geometric_leaves_out_a_task_without_labels_with_no_nan() -> None:
    from multitask_mnist.losses import GeometricLossWeighting

    losses = torch.tensor([0.0, 4.0, 1.0], requires_grad=True)
    gls = GeometricLossWeighting(3)
    total = gls(losses)
    (grad,) = torch.autograd.grad(total, losses)
    assert float(total.detach()) == pytest.approx(2.0)
    assert torch.isfinite(grad).all() and float(grad[0]) == 0.0
    # d total / d L_i = total / (K L_i) over the K = 2 tasks with a label
    assert torch.allclose(grad[1:], torch.tensor([2.0 / (2 * 4.0), 2.0 / (2 * 1.0)]))
    none = GeometricLossWeighting(2)(torch.zeros(2, requires_grad=True))
    assert float(none.detach()) == 0.0


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), losses=st.lists(st.floats(0.0, 100.0), min_size=2, max_size=5))
def test_rlw_total_lies_between_the_smallest_and_largest_loss(
    seed: int, losses: list[float]
) -> None:
    from multitask_mnist.losses import RandomLossWeighting

    values = torch.tensor(losses)
    rlw = RandomLossWeighting(len(losses))
    torch.manual_seed(seed)
    total = float(rlw(values))
    assert min(losses) - 1e-3 <= total <= max(losses) + 1e-3
    torch.manual_seed(seed)
    assert float(rlw(values)) == total  # the draw follows the global generator
    rlw.eval()
    assert float(rlw(values)) == pytest.approx(sum(losses) / len(losses), rel=1e-5)
