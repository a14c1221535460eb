"""Scalarizations: uncertainty (Kendall et al.), DWA (Liu et al.), RLW, geometric."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multitask_mnist import presets
from multitask_mnist.losses import uncertainty_weighted_loss
from multitask_mnist.methods import (
    DynamicWeightAverage,
    FixedWeighting,
    GeometricLossWeighting,
    RandomLossWeighting,
    UncertaintyWeighting,
)
from multitask_mnist.tasks import DIGIT_SUM_TASKS, masked_task_losses


def test_uncertainty_weights_move_as_the_theory_says() -> None:
    """A noisy task (large loss) learns a large variance, so its weight falls; a precise
    task's weight rises. At the optimum, 0.5 * exp(-s) * L = sigmoid(s)."""
    method = UncertaintyWeighting(2)
    method.bind(presets.mnist_sum())
    optimizer = torch.optim.Adam(method.parameters(), lr=0.05)
    losses = torch.tensor([10.0, 0.1])  # digit noisy, sum precise
    for _ in range(2000):
        total = uncertainty_weighted_loss(losses, method.log_vars)[0]
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    weights = method.task_weights()
    assert weights["digit"] < 0.5 < weights["sum"]
    s = method.log_vars.detach()
    assert torch.allclose(0.5 * torch.exp(-s) * losses, torch.sigmoid(s), atol=1e-3)


def _output(digit_loss_scale: float) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    digit = torch.tensor([0, 1])
    logits = torch.zeros(2, 10)
    logits[:, 5] = digit_loss_scale  # a confident wrong class: larger scale, larger loss
    return {"digit": logits, "sum": torch.tensor([1.0, 2.0])}, {
        "digit": digit,
        "sum": torch.tensor([1, 4]),
    }


def _dwa(temperature: float = 2.0) -> DynamicWeightAverage:
    method = DynamicWeightAverage(2, temperature)
    method.bind(presets.mnist_sum())
    return method


def _losses(scale: float) -> torch.Tensor:
    """The digit and sum losses of :func:`_output` at ``scale``."""
    out, targets = _output(scale)
    return torch.stack(list(masked_task_losses(DIGIT_SUM_TASKS, out, targets).values()))


def test_dwa_module_follows_the_epoch_losses() -> None:
    method = _dwa(temperature=2.0)
    for scale in (8.0, 4.0):  # the digit loss falls, the sum loss stays
        method(_losses(scale))
        assert method.task_weights() == {"digit": 1.0, "sum": 1.0}  # first two epochs
        method.on_train_epoch_end()
    weights = method.task_weights()
    assert weights["digit"] < 1.0 < weights["sum"]
    assert sum(weights.values()) == pytest.approx(2.0)
    method.eval()
    method(_losses(100.0))  # evaluation does not count towards the epoch
    assert float(method.running_count) == 0


def test_dwa_state_round_trips_through_the_state_dict() -> None:
    a = _dwa()
    for scale in (8.0, 4.0, 3.0):
        a(_losses(scale))
        a.on_train_epoch_end()
    b = _dwa()
    b.load_state_dict(a.state_dict())
    assert b.task_weights() == a.task_weights() and int(b.epochs_seen) == 3


def test_temperature_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"^Expected argument `temperature` to be > 0, got 0.0$"):
        DynamicWeightAverage(2, temperature=0.0)


@settings(max_examples=100, deadline=None)
@given(losses=st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=5))
def test_geometric_equals_torchjds_geometric_mean_on_positive_losses(losses: list[float]) -> None:
    from torchjd.scalarization import GeometricMean

    values = torch.tensor(losses, dtype=torch.float64)
    ours = GeometricLossWeighting(len(losses)).double()(values)
    assert torch.allclose(ours, GeometricMean()(values))


def test_geometric_leaves_out_a_task_without_labels_with_no_nan() -> None:
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
    values = torch.tensor(losses)
    rlw = RandomLossWeighting(len(losses))
    torch.manual_seed(seed)
    total = float(rlw(values))
    assert min(losses) - 1e-3 <= total <= max(losses) + 1e-3
    torch.manual_seed(seed)
    assert float(rlw(values)) == total  # the draw follows the global generator
    rlw.eval()
    assert float(rlw(values)) == pytest.approx(sum(losses) / len(losses), rel=1e-5)


def test_fixed_weighting_is_the_loss_sum_with_its_weights() -> None:
    method = FixedWeighting()
    method.bind(presets.mnist_sum(), {"digit": 2.0, "sum": 0.0})
    assert method.task_weights() == {"digit": 2.0, "sum": 0.0}
    assert float(method(torch.tensor([1.5, float("nan")]))) == 3.0  # weight 0: not even NaN


def test_a_per_task_method_built_for_other_tasks_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"^Method 'famo' was built for 3 task\(s\); the model has 2 "
    ):
        from multitask_mnist.methods import FAMOWeighting

        FAMOWeighting(3).bind(presets.mnist_sum())
