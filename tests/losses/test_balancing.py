"""FAMO and GradNorm: TorchJD's FAMO step for step, GradNorm's balance, missing labels."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from multitask_mnist import WeightedMultiLoss, presets
from multitask_mnist.losses import FAMOWeighting, GradNormWeighting
from multitask_mnist.models import Block, Input, MultiTaskNet
from multitask_mnist.tasks import DIGIT_SUM_TASKS, Task
from multitask_mnist.training import TrainingTask
from tests.losses import assert_trains_on_the_weighted_sum, two_task_net

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
    task = TrainingTask(net, WeightedMultiLoss(strategy=gradnorm))
    assert gradnorm._layer == [net.get_submodule("shared").weight, net.get_submodule("shared").bias]
    optimizer = torch.optim.Adam([gradnorm.theta], lr=0.05)
    x = torch.randn(32, 3)
    batch = {"x": x, "a": x.sum(1), "b": x.sum(1)}
    task.train()
    for _ in range(50):
        optimizer.zero_grad()
        _, loss = task(batch)
        loss.total.backward()
        optimizer.step()
    weights = gradnorm.weights()
    assert float(weights.sum()) == pytest.approx(2.0)
    assert weights[1] < 0.5 < 1.5 < weights[0]


def test_gradnorm_total_is_the_weighted_sum_and_the_network_sees_constant_weights() -> None:
    net = two_task_net(scale=3.0)
    gradnorm = GradNormWeighting(2)
    loss = WeightedMultiLoss(strategy=gradnorm)
    task = TrainingTask(net, loss)
    with torch.no_grad():
        gradnorm.theta.copy_(torch.tensor([0.4, -0.4]))
    x = torch.randn(16, 3)
    batch = {"x": x, "a": x.sum(1), "b": -x.sum(1)}
    _, out = task(batch)
    assert_trains_on_the_weighted_sum(out, gradnorm.weights(), net.get_submodule("shared").weight)
    # theta's gradient: that of sum |w_i n_i - mean(G) r_i^alpha| (r_i = 1 at the first step)
    (theta_grad,) = torch.autograd.grad(task(batch)[1].total, gradnorm.theta)
    norms = torch.stack(
        [
            torch.cat(
                [g.flatten() for g in torch.autograd.grad(part, gradnorm._layer, retain_graph=True)]
            ).norm()
            for part in task(batch)[1].parts.values()
        ]
    )
    theta = gradnorm.theta.detach().requires_grad_()
    scaled = 2 * torch.softmax(theta, 0) * norms
    (reference,) = torch.autograd.grad((scaled - scaled.mean().detach()).abs().sum(), theta)
    assert torch.allclose(theta_grad, reference, atol=1e-5)


def test_gradnorm_leaves_out_a_task_without_labels_and_takes_its_first_loss_later() -> None:
    net = two_task_net(scale=1.0)
    gradnorm = GradNormWeighting(2)
    task = TrainingTask(net, WeightedMultiLoss(strategy=gradnorm))
    x = torch.randn(8, 3)
    missing = {"x": x, "a": x.sum(1), "b": torch.full((8,), float("nan"))}
    _, out = task(missing)
    out.total.backward()
    assert gradnorm.has_initial.tolist() == [True, False]
    assert gradnorm.theta.grad is not None and torch.isfinite(gradnorm.theta.grad).all()
    _, out = task({"x": x, "a": x.sum(1), "b": x.sum(1)})
    assert gradnorm.has_initial.tolist() == [True, True]
    assert float(gradnorm.initial[1]) == pytest.approx(float(out.parts["b"].detach()))


def test_gradnorm_needs_a_shared_layer() -> None:
    loss = WeightedMultiLoss(strategy="gradnorm", tasks=DIGIT_SUM_TASKS)
    loss.train()
    with pytest.raises(RuntimeError, match=r"needs the model's last shared layer"):
        loss.weighting(torch.ones(2, requires_grad=True))
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
        GradNormWeighting(2).attach(separate)


def test_a_strategy_instance_sets_its_own_options() -> None:
    famo = FAMOWeighting(2, lr=0.1)
    loss = WeightedMultiLoss(strategy=famo, tasks=DIGIT_SUM_TASKS)
    assert loss.weighting is famo and loss.strategy == "famo"
    assert [k for k in loss.state_dict() if k.startswith("weighting.logits")] == [
        "weighting.logits"
    ]
    with pytest.raises(
        ValueError, match=r"^The strategy 'famo' was built for 3 task\(s\); the model"
    ):
        WeightedMultiLoss(strategy=FAMOWeighting(3), tasks=DIGIT_SUM_TASKS)
    with pytest.raises(TypeError, match=r"^Expected `strategy` to be one of 'fixed'.* got int$"):
        WeightedMultiLoss(strategy=3)  # type: ignore[arg-type]


def test_the_recomputed_losses_leave_batch_norm_statistics_as_the_step_left_them() -> None:
    torch.manual_seed(0)
    task = TrainingTask(presets.mnist_sum_bn(), WeightedMultiLoss(strategy="famo"))
    task.train()
    batch = {
        "image": torch.randn(8, 1, 28, 28),
        "number": torch.randint(0, 10, (8,)),
        "digit": torch.randint(0, 10, (8,)),
    }
    batch["sum"] = batch["digit"] + batch["number"]
    task(batch)
    saved = {k: v.clone() for k, v in task.model.state_dict().items()}
    before = task.loss.weighting.logits.clone()
    task.update_after_step(batch)
    for key, value in task.model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert not torch.equal(task.loss.weighting.logits, before)  # the update happened
