"""Gradient methods: our step against TorchJD's aggregators on known Jacobians.

After TorchJD's own tests of its aggregators: on problems whose per-task gradients are
known, the update our step writes equals the aggregator applied to the true Jacobian;
zero, parallel and opposite gradients give the values the methods promise, never NaN.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchjd import aggregation as jd

from multitask_mnist.methods import (
    METHODS,
    GradientAggregation,
    MissingExtraError,
    create_method,
    make_aggregator,
)

CHEAP = ["upgrad", "pcgrad", "mgda", "imtl_g", "aligned_mtl", "dualproj"]


class TwoTasks(nn.Module):
    """A shared linear map and one linear head per task: Jacobians known in closed form."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.shared = nn.Linear(3, 4)
        self.heads = nn.ModuleList([nn.Linear(4, 1), nn.Linear(4, 1)])

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        features = torch.tanh(self.shared(x))
        return [
            ((head(features).squeeze(1) - y[:, i]) ** 2).mean() for i, head in enumerate(self.heads)
        ]


def _true_jacobian(model: TwoTasks, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    rows = []
    for loss in model.losses(x, y):
        grads = torch.autograd.grad(loss, list(model.shared.parameters()), retain_graph=True)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), method=st.sampled_from(CHEAP))
def test_the_update_is_the_aggregator_applied_to_the_true_jacobian(seed: int, method: str) -> None:
    model = TwoTasks(seed)
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(8, 3, generator=g), torch.randn(8, 2, generator=g)
    expected = make_aggregator(method, 2)(_true_jacobian(model, x, y))
    shared = list(model.shared.parameters())
    specific = list(model.heads.parameters())
    GradientAggregation(make_aggregator(method, 2), shared=shared).backward_rows(
        model.losses(x, y), specific
    )
    got = torch.cat([p.grad.reshape(-1) for p in shared])  # type: ignore[union-attr]
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)
    # each head gets its own task's usual gradient
    for i, head in enumerate(model.heads):
        plain = torch.autograd.grad(model.losses(x, y)[i], list(head.parameters()))
        for p, q in zip(head.parameters(), plain, strict=True):
            assert torch.allclose(p.grad, q, atol=1e-6)  # type: ignore[arg-type]


def _update(method: str, rows: list[torch.Tensor]) -> torch.Tensor:
    """The update written for a parameter ``w`` when task i's loss is ``rows[i] @ w``."""
    w = nn.Parameter(torch.zeros(3))
    step = GradientAggregation(make_aggregator(method, len(rows)), shared=[w])
    step.backward_rows([row @ w for row in rows], [])
    assert w.grad is not None
    return w.grad


@pytest.mark.parametrize("method", [*CHEAP, "graddrop"])
def test_zero_parallel_and_opposite_gradients_give_no_nan(method: str) -> None:
    g = torch.tensor([1.0, 2.0, -1.0])
    for rows in ([0 * g, 0 * g], [g, 2 * g], [g, -g], [g, 0 * g]):
        assert torch.isfinite(_update(method, rows)).all(), (method, rows)


def test_upgrad_keeps_parallel_gradients_and_cancels_opposite_ones() -> None:
    g = torch.tensor([1.0, 2.0, -1.0])
    assert torch.allclose(_update("upgrad", [g, 2 * g]), 1.5 * g, atol=1e-5)  # no conflict: mean
    assert torch.allclose(_update("upgrad", [g, -g]), torch.zeros(3), atol=1e-5)
    assert torch.equal(_update("upgrad", [0 * g, 0 * g]), torch.zeros(3))


def test_pcgrad_projects_away_the_conflict() -> None:
    a, b = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([-1.0, 1.0, 0.0])
    update = _update("pcgrad", [a, b])
    assert float(update @ a) >= -1e-6 and float(update @ b) >= -1e-6


def test_an_aggregator_instance_is_used_as_given() -> None:
    mean = jd.Mean()
    assert make_aggregator(mean, 2) is mean


def test_unknown_method_lists_the_known_ones() -> None:
    with pytest.raises(ValueError) as info:
        create_method("adam", 2)
    assert str(info.value) == (
        "Expected argument `method` to be one of " + ", ".join(map(repr, METHODS)) + ", got 'adam'"
    )


def test_a_missing_solver_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "cvxpy" else real(name, *a)
    )
    monkeypatch.setattr("torchjd._mixins.find_spec", importlib.util.find_spec, raising=False)
    with pytest.raises(MissingExtraError, match=r"pip install 'multitask-mnist\[solvers\]'"):
        make_aggregator("cagrad", 2)


@pytest.mark.parametrize("method", ["cagrad", "nash_mtl"])
def test_solver_methods_run_when_the_extra_is_installed(method: str) -> None:
    g = torch.tensor([1.0, 2.0, -1.0])
    assert torch.isfinite(_update(method, [g, -0.5 * g + torch.tensor([0.0, 0.0, 1.0])])).all()
