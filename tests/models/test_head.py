from __future__ import annotations

import pytest
import torch

from multitask_mnist.models import ScalarFusionHead
from multitask_mnist.models.head import digit_estimate


def test_layer_names_and_widths() -> None:
    head = ScalarFusionHead(num_side=2, hidden=(5, 4, 3))
    shapes = {n: tuple(p.shape) for n, p in head.named_parameters() if n.endswith("weight")}
    assert shapes == {
        "input2.weight": (5, 3),
        "layer1.weight": (4, 5),
        "layer2.weight": (3, 4),
        "out2.weight": (1, 3),
    }
    assert tuple(head(torch.randn(6, 10), torch.randint(0, 10, (6, 2))).shape) == (6,)


def test_digit_estimates() -> None:
    logits = torch.tensor([[0.0, 10.0, 0.0], [5.0, 0.0, 5.0]], requires_grad=True)
    hard = digit_estimate(logits, "argmax")
    soft = digit_estimate(logits, "expectation")
    st = digit_estimate(logits, "straight_through")
    assert hard.tolist() == [1.0, 0.0] and not hard.requires_grad
    assert soft[1].item() == pytest.approx(1.0, abs=1e-4)
    assert torch.equal(st.detach(), hard)
    (g_soft,) = torch.autograd.grad(soft.sum(), logits)
    (g_st,) = torch.autograd.grad(st.sum(), logits)
    assert torch.allclose(g_soft, g_st)


def test_exact_adder_is_a_half_weight_per_input() -> None:
    head = ScalarFusionHead(hidden=(1,))
    with torch.no_grad():
        head.input2.weight.copy_(torch.tensor([[0.5, 0.5]]))
        head.input2.bias.zero_()
        head.out2.weight.fill_(1.0)
        head.out2.bias.zero_()
    logits = torch.nn.functional.one_hot(torch.arange(10), 10).float()
    number = torch.tensor([9, 8, 7, 6, 5, 4, 3, 2, 1, 0])
    assert torch.allclose(head(logits, number), torch.arange(10) + number.float(), atol=1e-5)


def test_head_computes_in_float32_under_autocast() -> None:
    head = ScalarFusionHead()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(torch.randn(4, 10).bfloat16(), torch.tensor([1, 2, 3, 4]))
    assert out.dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"fusion": "mean"},
            ValueError,
            "Expected argument `fusion` to be one of 'argmax', 'expectation', 'straight_through', "
            "got 'mean'",
        ),
        (
            {"hidden": ()},
            ValueError,
            "Expected argument `hidden` to name at least one width, got ()",
        ),
        ({"hidden": (5, 0)}, ValueError, "Expected argument `hidden` to be >= 1, got 0"),
        ({"num_side": 0}, ValueError, "Expected argument `num_side` to be >= 1, got 0"),
        (
            {"side_range": (9, 0)},
            ValueError,
            "Expected `side_range` as (low, high) with low <= high, got (9, 0)",
        ),
        (
            {"num_classes": 2.0},
            TypeError,
            "Expected argument `num_classes` to be an int, got 2.0 (float)",
        ),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        ScalarFusionHead(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message
