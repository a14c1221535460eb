"""The exact sum head: a proper distribution, equal to brute-force enumeration."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multitask_mnist import presets
from multitask_mnist.models import PerImage, SumOfNumbers, convolve_log


def _enumerate(probs: torch.Tensor, operands: int, digits: int, base: int) -> torch.Tensor:
    """P(sum = s) by summing over every assignment of digits: ``(operands*digits, base)``."""
    out = torch.zeros(operands * (base**digits - 1) + 1, dtype=torch.float64)
    for assignment in itertools.product(range(base), repeat=operands * digits):
        p = torch.prod(torch.stack([probs[i, d] for i, d in enumerate(assignment)]))
        total = 0
        for k in range(operands):
            number = assignment[k * digits : (k + 1) * digits]
            total += sum(d * base ** (digits - 1 - j) for j, d in enumerate(number))
        out[total] += p
    return out


@settings(max_examples=60, deadline=None)
@given(
    operands=st.integers(1, 3),
    digits=st.integers(1, 2),
    base=st.integers(2, 4),
    seed=st.integers(0, 10_000),
    scale=st.floats(0.1, 20.0),
)
def test_the_sum_distribution_equals_brute_force_enumeration(
    operands: int, digits: int, base: int, seed: int, scale: float
) -> None:
    head = SumOfNumbers(operands=operands, digits=digits, base=base)
    logits = torch.randn(1, operands * digits, base, generator=torch.Generator().manual_seed(seed))
    logits = (scale * logits).double()
    log_probs = head(logits)[0]
    assert log_probs.shape == (head.num_classes,)
    assert log_probs.dtype == torch.float32  # the head computes in float32
    probs = log_probs.double().exp()
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-5)  # a proper distribution
    expected = _enumerate(torch.softmax(logits[0], dim=-1), operands, digits, base)
    assert torch.allclose(probs, expected, atol=1e-5)


def test_convolve_log_matches_a_direct_convolution_and_keeps_tiny_probabilities() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = (
        torch.softmax(torch.randn(3, 5, generator=g), -1),
        torch.softmax(torch.randn(3, 4, generator=g), -1),
    )
    direct = torch.stack(
        [
            torch.tensor(
                [sum(a[r, i] * b[r, s - i] for i in range(5) if 0 <= s - i < 4) for s in range(8)]
            )
            for r in range(3)
        ]
    )
    assert torch.allclose(convolve_log(a.log(), b.log()).exp(), direct, atol=1e-6)
    sure = torch.full((1, 10), -1e4)  # log-probabilities far below float32's smallest
    sure[0, 3] = 0.0
    sure.requires_grad_()
    out = convolve_log(sure, sure)
    assert torch.isfinite(out).all()  # no -inf: logsumexp, not log of a product
    out[0, 5].backward()  # an impossible sum still has a gradient, finite
    assert sure.grad is not None and torch.isfinite(sure.grad).all()


def test_the_head_runs_in_float32_under_bf16_autocast_and_checks_its_input() -> None:
    head = SumOfNumbers(operands=2, digits=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(torch.randn(4, 4, 10).bfloat16())
    assert out.dtype == torch.float32 and out.shape == (4, 199)
    with pytest.raises(ValueError, match=r"^Expected digit logits of shape \(B, 4, 10\), got"):
        head(torch.randn(4, 2, 10))
    with pytest.raises(ValueError, match=r"^Expected argument `base` to be >= 2, got 1$"):
        SumOfNumbers(base=1)
    with pytest.raises(ValueError, match=r"^Expected argument `operands` to be >= 1, got 0$"):
        SumOfNumbers(operands=0)


def test_per_image_shares_one_classifier_across_the_images() -> None:
    classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    images = torch.randn(2, 5, 1, 2, 2)
    out = PerImage(classifier)(images)
    assert out.shape == (2, 5, 3)
    assert torch.allclose(out[1, 4], classifier(images[1, 4:5])[0])


def test_the_preset_reads_the_images_and_predicts_the_sum_only() -> None:
    net = presets.mnist_addition()
    assert net.input_names == ("images",) and net.task_names == ("sum",)
    assert net.tasks[0].num_classes == 19
    out = net(torch.randn(3, 2, 1, 28, 28))
    assert out["sum"].shape == (3, 19)
    assert torch.allclose(out["sum"].exp().sum(-1), torch.ones(3), atol=1e-5)
    trunk = presets.mnist_sum().get_submodule("trunk")
    assert net.num_parameters() == sum(p.numel() for p in trunk.parameters())  # the head has none
    with pytest.raises(
        ValueError, match=r"^Expected argument `digits` to be in \[1, 1000\], got 0$"
    ):
        presets.mnist_addition(digits=0)
    with pytest.raises(ValueError, match=r"to be in \[1, 1000\], got 1001$"):
        presets.mnist_addition(digits=1001)
    with pytest.raises(ValueError, match=r"at most 2 with head='convolution' .* got 3"):
        presets.mnist_addition(digits=3, head="convolution")  # 1,999 classes
    assert presets.mnist_addition(digits=3).tasks[0].kind == "digits"  # the carry chain
    with pytest.raises(ValueError, match=r"pins base=10"):
        presets.mnist_addition(base=2)
