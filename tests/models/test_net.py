from __future__ import annotations

import re
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multitask_mnist import MultiTaskNet, presets
from multitask_mnist.losses import task_losses
from multitask_mnist.models import FUSION_MODES, Conv, ConvTrunk, ScalarFusionHead

torch.set_num_threads(max(1, torch.get_num_threads()))
NETS = {mode: presets.mnist_sum(fusion=mode) for mode in FUSION_MODES}


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 256),
    fusion=st.sampled_from(FUSION_MODES),
    seed=st.integers(0, 2**31 - 1),
)
def test_output_shapes_and_finiteness(batch: int, fusion: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 1, 28, 28, generator=g)
    number = torch.randint(0, 10, (batch,), generator=g)
    with torch.no_grad():
        out = NETS[fusion](image, number)
    assert tuple(out.digit_logits.shape) == (batch, 10)
    assert tuple(out.sum.shape) == (batch,)
    assert out.sum.dtype == torch.float32
    assert torch.isfinite(out.digit_logits).all() and torch.isfinite(out.sum).all()


def _grads(net: MultiTaskNet, task: str, batch: int, seed: int) -> dict[str, torch.Tensor | None]:
    net.zero_grad(set_to_none=True)
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 1, 28, 28, generator=g)
    number = torch.randint(0, 10, (batch,), generator=g)
    digit = torch.randint(0, 10, (batch,), generator=g)
    out = net(image, number)
    task_losses(out.digit_logits, out.sum, digit, digit + number)[task].backward()
    return {name: p.grad for name, p in net.named_parameters()}


@settings(max_examples=10, deadline=None)
@given(batch=st.integers(2, 64), fusion=st.sampled_from(FUSION_MODES), seed=st.integers(0, 999))
def test_sum_loss_reaches_the_trunk_only_when_fusion_is_differentiable(
    batch: int, fusion: str, seed: int
) -> None:
    grads = _grads(NETS[fusion], "sum", batch, seed)
    head = {k: v for k, v in grads.items() if k.startswith("head.")}
    trunk = {k: v for k, v in grads.items() if k.startswith("trunk.")}
    assert all(g is not None and torch.isfinite(g).all() for g in head.values())
    assert any(g is not None and g.abs().sum() > 0 for g in head.values())
    if fusion == "argmax":
        assert all(g is None for g in trunk.values())
    else:
        assert all(g is not None for g in trunk.values())
        assert trunk["trunk.conv6.weight"].abs().sum() > 0  # type: ignore[union-attr]


@settings(max_examples=5, deadline=None)
@given(batch=st.integers(2, 64), seed=st.integers(0, 999))
def test_digit_loss_reaches_every_trunk_parameter_and_no_head_parameter(
    batch: int, seed: int
) -> None:
    grads = _grads(NETS["argmax"], "digit", batch, seed)
    for name, grad in grads.items():
        if name.startswith("trunk."):
            assert grad is not None and grad.abs().sum() > 0, name
        else:
            assert grad is None, name


def test_head_learns_exact_addition_fast() -> None:
    """The scaled adder reaches exact sums on every digit/number pair in a hundred steps."""
    torch.manual_seed(0)
    head = ScalarFusionHead()
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    digit, number = torch.meshgrid(torch.arange(10), torch.arange(10), indexing="ij")
    digit, number = digit.flatten(), number.flatten()
    logits = torch.nn.functional.one_hot(digit, 10).float()
    for _ in range(100):  # unscaled raw inputs miss most seeds at 100 steps
        loss = torch.nn.functional.mse_loss(head(logits, number), (digit + number).float())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.equal(head(logits, number).round(), (digit + number).float())


def test_number_may_be_a_float_holding_whole_numbers() -> None:
    net = NETS["argmax"]
    image = torch.zeros(3, 1, 28, 28)
    a = net(image, torch.tensor([1, 2, 3]))
    b = net(image, torch.tensor([1.0, 2.0, 3.0]))
    assert torch.equal(a.sum, b.sum)


# -- bad input -------------------------------------------------------------------------------

GOOD_IMAGE = torch.zeros(2, 1, 28, 28)
GOOD_NUMBER = torch.tensor([1, 2])


@pytest.mark.parametrize(
    ("image", "number", "error", "message"),
    [
        (
            torch.zeros(2, 28, 28),
            GOOD_NUMBER,
            ValueError,
            "Expected `image` of shape (B, 1, 28, 28), got (2, 28, 28)",
        ),
        (
            torch.zeros(2, 3, 28, 28),
            GOOD_NUMBER,
            ValueError,
            "Expected `image` of shape (B, 1, 28, 28), got (2, 3, 28, 28)",
        ),
        (
            torch.zeros(2, 1, 28, 28, dtype=torch.uint8),
            GOOD_NUMBER,
            TypeError,
            "Expected `image` to be a floating-point tensor, got torch.uint8",
        ),
        (
            [[0.0]],
            GOOD_NUMBER,
            TypeError,
            "Expected `image` to be a floating-point tensor, got list",
        ),
        (
            torch.full((2, 1, 28, 28), float("nan")),
            GOOD_NUMBER,
            ValueError,
            "Expected `image` to be finite, got NaN or infinite values",
        ),
        (
            GOOD_IMAGE,
            torch.tensor([1, 2, 3]),
            ValueError,
            "Expected `number` of shape (2,) to match the batch of `image`, got (3,)",
        ),
        (
            GOOD_IMAGE,
            torch.tensor([[1], [2]]),
            ValueError,
            "Expected `number` of shape (2,) to match the batch of `image`, got (2, 1)",
        ),
        (
            GOOD_IMAGE,
            torch.tensor([1, 10]),
            ValueError,
            "Expected `number` to hold whole numbers in 0..9, got 10",
        ),
        (
            GOOD_IMAGE,
            torch.tensor([-1, 0]),
            ValueError,
            "Expected `number` to hold whole numbers in 0..9, got -1",
        ),
        (
            GOOD_IMAGE,
            torch.tensor([1.5, 2.0]),
            ValueError,
            "Expected `number` to hold whole numbers in 0..9, got 1.5",
        ),
        (
            GOOD_IMAGE,
            torch.tensor([float("nan"), 2.0]),
            ValueError,
            "Expected `number` to hold whole numbers in 0..9, got nan",
        ),
        (
            GOOD_IMAGE,
            torch.tensor([float("inf"), 2.0]),
            ValueError,
            "Expected `number` to hold whole numbers in 0..9, got inf",
        ),
        (
            GOOD_IMAGE,
            torch.tensor([True, False]),
            TypeError,
            "Expected `number` to be an integer or float tensor, got torch.bool",
        ),
        (
            GOOD_IMAGE,
            [1, 2],
            TypeError,
            "Expected `number` to be an integer or float tensor, got list",
        ),
    ],
)
def test_bad_inputs_get_errors_naming_them(
    image: Any, number: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        NETS["argmax"](image, number)


def test_trunk_and_head_widths_must_agree() -> None:
    trunk = ConvTrunk([Conv("c", 5, 28)])
    with pytest.raises(
        ValueError, match=r"^The trunk gives 5 logits but the head expects num_classes=10$"
    ):
        MultiTaskNet(trunk, ScalarFusionHead(10))
