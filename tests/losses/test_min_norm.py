"""MGDA-UB: min-norm weights (TorchJD's properties), the representation, missing labels."""

from __future__ import annotations

import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multitask_mnist import WeightedMultiLoss, presets
from multitask_mnist.losses import MGDAUBWeighting, min_norm_weights, shared_representation
from multitask_mnist.training import TrainingTask
from tests.losses import assert_trains_on_the_weighted_sum, two_task_net

vectors = st.lists(st.floats(-10, 10), min_size=4, max_size=4)


def _gramian(*gradients: list[float]) -> torch.Tensor:
    matrix = torch.tensor(gradients, dtype=torch.float64)
    return matrix @ matrix.T


@settings(max_examples=60, deadline=None)
@given(g1=vectors, g2=vectors)
def test_two_tasks_get_the_closed_form_min_norm_point(g1: list[float], g2: list[float]) -> None:
    a, b = torch.tensor(g1, dtype=torch.float64), torch.tensor(g2, dtype=torch.float64)
    weights = min_norm_weights(_gramian(g1, g2))
    assert torch.isfinite(weights).all() and float(weights.sum()) == pytest.approx(1.0)
    assert bool((weights >= 0).all())
    difference = float((a - b).pow(2).sum())
    if difference > 1e-6 and float(a.pow(2).sum() + b.pow(2).sum()) > 1e-6:
        # min over c in [0, 1] of |c a + (1 - c) b|: c = (b - a).b / |a - b|^2, clipped
        c = min(max(float((b - a) @ b) / difference, 0.0), 1.0)
        best = float((c * a + (1 - c) * b).norm())
        got = float((weights[0] * a + weights[1] * b).norm())
        assert got == pytest.approx(best, rel=1e-3, abs=1e-3)


@settings(max_examples=40, deadline=None)
@given(gradients=st.lists(vectors, min_size=3, max_size=5))
def test_the_combination_is_no_longer_than_any_task_gradient(gradients: list[list[float]]) -> None:
    matrix = torch.tensor(gradients, dtype=torch.float64)
    weights = min_norm_weights(matrix @ matrix.T).double()
    assert float(weights.sum()) == pytest.approx(1.0) and bool((weights >= 0).all())
    norm = float((weights @ matrix).norm())
    assert norm <= float(matrix.norm(dim=1).min()) + 1e-3


def test_zero_parallel_and_opposite_gradients() -> None:
    # zero: nothing to prefer, equal weights, no NaN
    assert min_norm_weights(torch.zeros(2, 2)).tolist() == [0.5, 0.5]
    # parallel, g2 = 3 g1: the shorter one alone
    assert min_norm_weights(_gramian([1, 2, 0, 0], [3, 6, 0, 0])).tolist() == [1.0, 0.0]
    # opposite, g2 = -2 g1: the combination that cancels, 2/3 g1 + 1/3 g2 = 0
    weights = min_norm_weights(_gramian([1, 2, 0, 0], [-2, -4, 0, 0]))
    assert weights.tolist() == pytest.approx([2 / 3, 1 / 3], abs=1e-6)


def test_tasks_without_labels_take_no_part() -> None:
    gramian = _gramian([1, 0, 0, 0], [0, 1, 0, 0], [5, 5, 0, 0])
    weights = min_norm_weights(gramian, torch.tensor([True, False, True]))
    assert weights[1] == 0.0 and float(weights.sum()) == pytest.approx(1.0)
    assert min_norm_weights(gramian, torch.tensor([False, True, False])).tolist() == [0, 1, 0]
    assert min_norm_weights(gramian, torch.zeros(3, dtype=torch.bool)).tolist() == [0, 0, 0]


def test_weights_come_from_the_gradients_on_the_shared_representation() -> None:
    net = two_task_net()
    weighting = MGDAUBWeighting(2)
    task = TrainingTask(net, WeightedMultiLoss(strategy=weighting))
    x = torch.randn(16, 3)
    batch = {"x": x, "a": x.sum(1), "b": -2 * x[:, 0]}
    task.train()
    _, out = task(batch)
    assert weighting._outputs == {}  # no graph is kept past the step
    weights = weighting.weights()
    # by hand: the representation, each loss's gradient on it, the min-norm point
    z = net.get_submodule("shared")(x).detach().requires_grad_()
    by_hand = [((net.get_submodule(name)(z) - batch[name]) ** 2).mean() for name in ("a", "b")]
    rows = torch.stack([torch.autograd.grad(loss, z)[0].flatten() for loss in by_hand])
    assert torch.allclose(weights, min_norm_weights(rows @ rows.T), atol=1e-5)
    assert 0 < float(weights[0]) < 1 and float(weights.sum()) == pytest.approx(1.0)
    # the total is the weighted sum, and the network trains on it with the weights constant
    assert_trains_on_the_weighted_sum(out, weights, net.get_submodule("shared").weight)


def test_a_task_without_labels_gets_no_weight_and_evaluation_keeps_the_last() -> None:
    net = two_task_net()
    weighting = MGDAUBWeighting(2)
    task = TrainingTask(net, WeightedMultiLoss(strategy=weighting))
    x = torch.randn(8, 3)
    task.train()
    _, out = task({"x": x, "a": x.sum(1), "b": torch.full((8,), float("nan"))})
    assert weighting.weights().tolist() == [1.0, 0.0]
    assert float(out.total.detach()) == pytest.approx(float(out.parts["a"].detach()))
    task.eval()
    with torch.no_grad():
        task({"x": x, "a": x.sum(1), "b": x.sum(1)})
    assert weighting.weights().tolist() == [1.0, 0.0]


def test_the_gramian_is_float32_under_bf16_autocast() -> None:
    net = two_task_net()
    weighting = MGDAUBWeighting(2)
    loss = WeightedMultiLoss(strategy=weighting)
    task = TrainingTask(net, loss)
    task.train()
    x = torch.randn(64, 3)
    batch = {"x": x, "a": x.sum(1), "b": -2 * x[:, 0] + x[:, 1]}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        task(batch)
        # by hand: the same bf16 forward, its gradients on z, a float64 Gramian
        z = net.get_submodule("shared")(x).detach().requires_grad_()
        parts = loss.task_losses({n: net.get_submodule(n)(z) for n in ("a", "b")}, batch)
    rows = [torch.autograd.grad(part, z, retain_graph=True)[0] for part in parts.values()]
    jacobian = torch.stack([row.double().flatten() for row in rows])
    expected = min_norm_weights(jacobian @ jacobian.T)
    # a bfloat16 Gramian (8 bits of mantissa) would be off by about 1e-3
    assert torch.allclose(weighting.weights(), expected, atol=1e-5, rtol=0)


def test_argmax_fusion_is_refused_and_the_hooks_come_off() -> None:
    with pytest.raises(ValueError, match=r"block 'head' passes none back to 'trunk'"):
        TrainingTask(presets.mnist_sum(), WeightedMultiLoss(strategy="mgda_ub"))
    net = presets.mnist_sum(fusion="expectation")
    weighting = MGDAUBWeighting(2)
    TrainingTask(net, WeightedMultiLoss(strategy=weighting))
    assert len(net.get_submodule("trunk")._forward_hooks) == 1
    pickle.loads(pickle.dumps(net))  # the hook is a class: the model still pickles
    weighting.detach()
    assert len(net.get_submodule("trunk")._forward_hooks) == 0


def test_the_shared_representation_of_the_presets_and_errors() -> None:
    assert shared_representation(presets.mnist_sum(fusion="expectation")) == ["trunk"]
    assert shared_representation(presets.multi_mnist_lenet()) == ["encoder"]
    with pytest.raises(ValueError, match=r"MGDA-UB needs a block that several tasks share"):
        shared_representation(presets.mnist_addition())
    weighting = MGDAUBWeighting(2)
    weighting.train()
    with pytest.raises(RuntimeError, match=r"call attach\(model\) first"):
        weighting(torch.ones(2, requires_grad=True))
    weighting.attach(two_task_net())
    with pytest.raises(RuntimeError, match=r"run the model's forward pass before the loss"):
        weighting(torch.ones(2, requires_grad=True))
