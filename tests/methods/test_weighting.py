"""GradNorm, FAMO and MGDA-UB: TorchJD's FAMO step for step, GradNorm's balance, MGDA-UB's
min-norm weights (TorchJD's properties) on the representation, missing labels."""

from __future__ import annotations

import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from multitask_mnist import presets
from multitask_mnist.methods import (
    FAMOWeighting,
    GradNormWeighting,
    MGDAUBWeighting,
    min_norm_weights,
    shared_representation,
)
from multitask_mnist.models import Block, Input, MultiTaskNet
from multitask_mnist.tasks import Task
from multitask_mnist.training import TrainingTask
from tests.methods import assert_trains_on_the_weighted_sum, two_task_net

positive = st.floats(1e-3, 1e3)


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.tuples(positive, positive, positive, positive), min_size=1, max_size=6))
def test_famo_equals_torchjds_famo_step_for_step(
    steps: list[tuple[float, float, float, float]],
) -> None:
    from torchjd.scalarization import FAMO

    ours, theirs = FAMOWeighting(2).double(), FAMO(2).double()
    for a, b, c, d in steps:
        before = torch.tensor([a, b], dtype=torch.float64, requires_grad=True)
        (our_grad,) = torch.autograd.grad(ours(before), before)
        (their_grad,) = torch.autograd.grad(theirs(before), before)
        assert torch.allclose(our_grad, their_grad, rtol=1e-6)
        after = torch.tensor([c, d], dtype=torch.float64)
        ours.update(after)
        theirs.update(after)
        assert torch.allclose(ours.logits, theirs._w.detach(), rtol=1e-5, atol=1e-7)


def test_famo_update_is_convex_combination_and_moves_to_the_slow_task() -> None:
    famo = FAMOWeighting(3)
    losses = torch.tensor([1.0, 2.0, 4.0], requires_grad=True)
    (grad,) = torch.autograd.grad(famo(losses), losses)
    # d total / d l_i = z_i / (c l_i): positive weights of a convex combination
    assert torch.all(grad > 0) and float(grad.sum()) == pytest.approx(1.0)
    for _ in range(20):
        famo(torch.tensor([1.0, 2.0, 4.0]))
        famo.update(torch.tensor([0.5, 1.0, 3.9]))  # the third task hardly falls
    weights = famo.weights()
    assert float(weights.sum()) == pytest.approx(1.0)
    assert weights[2] > weights[0] and weights[2] > weights[1]


def test_famo_leaves_out_a_task_without_labels() -> None:
    from torchjd.scalarization import FAMO

    famo = FAMOWeighting(3)
    famo.logits.copy_(torch.tensor([0.3, -0.2, 0.1]))
    losses = torch.tensor([2.0, 0.0, 0.5], requires_grad=True)
    total = famo(losses)
    (grad,) = torch.autograd.grad(total, losses)
    assert torch.isfinite(grad).all() and float(grad[1]) == 0.0
    reference = FAMO(2)  # the same on the two labelled tasks alone
    with torch.no_grad():
        reference._w.copy_(torch.tensor([0.3, 0.1]))
    present = torch.tensor([2.0, 0.5], requires_grad=True)
    assert float(total.detach()) == pytest.approx(float(reference(present).detach()))
    (expected,) = torch.autograd.grad(reference(present), present)
    assert torch.allclose(grad[[0, 2]], expected)
    famo.update(torch.tensor([1.0, 0.0, 0.4]))
    assert torch.isfinite(famo.logits).all()
    assert float(FAMOWeighting(2)(torch.zeros(2, requires_grad=True)).detach()) == 0.0


def test_famo_update_needs_a_training_forward_first() -> None:
    famo = FAMOWeighting(2)
    with pytest.raises(RuntimeError, match=r"needs a training step's forward first"):
        famo.update(torch.ones(2))
    famo.eval()
    famo(torch.ones(2))  # evaluation keeps nothing for an update
    with pytest.raises(RuntimeError):
        famo.update(torch.ones(2))


def test_gradnorm_lowers_the_weight_of_the_task_with_the_larger_gradient() -> None:
    net = two_task_net(scale=10.0)  # task b's gradients on `shared` are ten times larger
    gradnorm = GradNormWeighting(2)
    task = TrainingTask(net, method=gradnorm)
    assert gradnorm._layer == [net.get_submodule("shared").weight, net.get_submodule("shared").bias]
    optimizer = torch.optim.Adam([gradnorm.theta], lr=0.05)
    x = torch.randn(32, 3)
    batch = {"x": x, "a": x.sum(1), "b": x.sum(1)}
    task.train()
    for _ in range(50):
        optimizer.zero_grad()
        task(batch).total.backward()
        optimizer.step()
    weights = gradnorm.weights()
    assert float(weights.sum()) == pytest.approx(2.0)
    assert weights[1] < 0.5 < 1.5 < weights[0]


def test_gradnorm_total_is_the_weighted_sum_and_the_network_sees_constant_weights() -> None:
    net = two_task_net(scale=3.0)
    gradnorm = GradNormWeighting(2)
    task = TrainingTask(net, method=gradnorm)
    with torch.no_grad():
        gradnorm.theta.copy_(torch.tensor([0.4, -0.4]))
    x = torch.randn(16, 3)
    batch = {"x": x, "a": x.sum(1), "b": -x.sum(1)}
    out = task(batch)
    assert_trains_on_the_weighted_sum(out, gradnorm.weights(), net.get_submodule("shared").weight)
    # theta's gradient: that of sum |w_i n_i - mean(G) r_i^alpha| (r_i = 1 at the first step)
    (theta_grad,) = torch.autograd.grad(task(batch).total, gradnorm.theta)
    norms = torch.stack(
        [
            torch.cat(
                [g.flatten() for g in torch.autograd.grad(part, gradnorm._layer, retain_graph=True)]
            ).norm()
            for part in task(batch).losses.values()
        ]
    )
    theta = gradnorm.theta.detach().requires_grad_()
    scaled = 2 * torch.softmax(theta, 0) * norms
    (reference,) = torch.autograd.grad((scaled - scaled.mean().detach()).abs().sum(), theta)
    assert torch.allclose(theta_grad, reference, atol=1e-5)


def test_gradnorm_leaves_out_a_task_without_labels_and_takes_its_first_loss_later() -> None:
    net = two_task_net(scale=1.0)
    gradnorm = GradNormWeighting(2)
    task = TrainingTask(net, method=gradnorm)
    x = torch.randn(8, 3)
    missing = {"x": x, "a": x.sum(1), "b": torch.full((8,), float("nan"))}
    out = task(missing)
    out.total.backward()
    assert gradnorm.has_initial.tolist() == [True, False]
    assert gradnorm.theta.grad is not None and torch.isfinite(gradnorm.theta.grad).all()
    out = task({"x": x, "a": x.sum(1), "b": x.sum(1)})
    assert gradnorm.has_initial.tolist() == [True, True]
    assert float(gradnorm.initial[1]) == pytest.approx(float(out.losses["b"].detach()))


def test_gradnorm_needs_a_shared_layer() -> None:
    gradnorm = GradNormWeighting(2)
    gradnorm.train()
    with pytest.raises(RuntimeError, match=r"needs the model's last shared layer"):
        gradnorm(torch.ones(2, requires_grad=True))
    separate = MultiTaskNet(  # each task has its own layer: nothing is shared
        {
            "a": Block(
                nn.Sequential(nn.Linear(3, 1), nn.Flatten(0)), ["x"], Task("a", "regression")
            ),
            "b": Block(
                nn.Sequential(nn.Linear(3, 1), nn.Flatten(0)), ["x"], Task("b", "regression")
            ),
        },
        [Input("x", (3,))],
    )
    with pytest.raises(ValueError, match=r"GradNorm needs a layer that several tasks share"):
        GradNormWeighting(2).bind(separate)


def test_a_method_instance_sets_its_own_options() -> None:
    famo = FAMOWeighting(2, lr=0.1)
    task = TrainingTask(presets.mnist_sum(), method=famo)
    assert task.method is famo and famo.lr == 0.1
    assert [k for k in task.state_dict() if k.startswith("method.logits")] == ["method.logits"]
    with pytest.raises(
        ValueError, match=r"^Method 'famo' was built for 3 task\(s\); the model has 2"
    ):
        TrainingTask(presets.mnist_sum(), method=FAMOWeighting(3))


def test_the_recomputed_losses_leave_batch_norm_statistics_as_the_step_left_them() -> None:
    torch.manual_seed(0)
    famo = FAMOWeighting(2)
    task = TrainingTask(presets.mnist_sum_bn(), method=famo)
    task.train()
    batch = {
        "image": torch.randn(8, 1, 28, 28),
        "number": torch.randint(0, 10, (8,)),
        "digit": torch.randint(0, 10, (8,)),
    }
    batch["sum"] = batch["digit"] + batch["number"]
    step = task(batch)
    saved = {k: v.clone() for k, v in task.model.state_dict().items()}
    before = famo.logits.clone()
    famo.after_step(step)  # the losses again, on the same batch
    for key, value in task.model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert not torch.equal(famo.logits, before)  # the update happened


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
    task = TrainingTask(net, method=weighting)
    x = torch.randn(16, 3)
    batch = {"x": x, "a": x.sum(1), "b": -2 * x[:, 0]}
    task.train()
    out = task(batch)
    assert not net.get_submodule("shared")._forward_hooks  # no graph is kept past the step
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
    task = TrainingTask(net, method=weighting)
    x = torch.randn(8, 3)
    task.train()
    out = task({"x": x, "a": x.sum(1), "b": torch.full((8,), float("nan"))})
    assert weighting.weights().tolist() == [1.0, 0.0]
    assert float(out.total.detach()) == pytest.approx(float(out.losses["a"].detach()))
    task.eval()
    with torch.no_grad():
        task({"x": x, "a": x.sum(1), "b": x.sum(1)})
    assert weighting.weights().tolist() == [1.0, 0.0]


def test_the_gramian_is_float32_under_bf16_autocast() -> None:
    net = two_task_net()
    weighting = MGDAUBWeighting(2)
    task = TrainingTask(net, method=weighting)
    loss = task.loss
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
        TrainingTask(presets.mnist_sum(), method=MGDAUBWeighting(2))
    net = presets.mnist_sum(fusion="expectation")
    task = TrainingTask(net, method=MGDAUBWeighting(2)).train()
    batch = {
        "image": torch.randn(4, 1, 28, 28),
        "number": torch.tensor([1, 2, 3, 4]),
        "digit": torch.tensor([1, 2, 3, 4]),
        "sum": torch.tensor([2, 4, 6, 8]),
    }
    task(batch)  # the step watches the representation for the length of its forward pass
    assert len(net.get_submodule("trunk")._forward_hooks) == 0
    pickle.loads(pickle.dumps(net))  # nothing is left on the model: it still pickles


def test_the_shared_representation_of_the_presets_and_errors() -> None:
    assert shared_representation(presets.mnist_sum(fusion="expectation")) == ["trunk"]
    assert shared_representation(presets.multi_mnist_lenet()) == ["encoder"]
    with pytest.raises(ValueError, match=r"MGDA-UB needs a block that several tasks share"):
        shared_representation(presets.mnist_addition())
    weighting = MGDAUBWeighting(2)
    weighting.train()
    with pytest.raises(ValueError, match=r"needs the shared representation of the step"):
        weighting(torch.ones(2, requires_grad=True))
