"""Shared pieces of the method tests: a two-task network and what a weighting must train."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from multitask_mnist.methods import StepOutput
from multitask_mnist.models import Block, Input, MultiTaskNet
from multitask_mnist.tasks import Task


def two_task_net(scale: float = 1.0) -> MultiTaskNet:
    """A shared linear layer and two linear heads; the second head's output scaled."""
    torch.manual_seed(0)

    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 1)

        def forward(self, x: Tensor) -> Tensor:
            return scale * self.linear(x).squeeze(-1)

    first = nn.Sequential(nn.Linear(4, 1), nn.Flatten(0))
    return MultiTaskNet(
        {
            "shared": Block(nn.Linear(3, 4), ["x"]),
            "a": Block(first, ["shared"], Task("a", "regression")),
            "b": Block(Scaled(), ["shared"], Task("b", "regression")),
        },
        [Input("x", (3,))],
    )


def assert_trains_on_the_weighted_sum(out: StepOutput, weights: Tensor, shared: Tensor) -> None:
    """The total of tasks ``a`` and ``b`` is their weighted sum, and ``shared`` gets that
    sum's gradient with the weights held constant."""
    expected = weights[0] * out.losses["a"] + weights[1] * out.losses["b"]
    assert float(out.total.detach()) == pytest.approx(float(expected.detach()))
    (got,) = torch.autograd.grad(out.total, shared, retain_graph=True)
    (want,) = torch.autograd.grad(expected, shared)
    assert torch.allclose(got, want, atol=1e-6)
