"""The functions the weightings share: uncertainty's total and DWA's weights."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multitask_mnist.losses import dwa_weights, uncertainty_weighted_loss

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
