from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import Tensor

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


def _grid(head: ScalarFusionHead) -> tuple[Tensor, Tensor, Tensor]:
    """Every (digit, side...) cell in range: one-hot logits, side inputs, exact sums."""
    low, high = head.side_range
    axes = [torch.arange(head.num_classes)] + [torch.arange(low, high + 1)] * head.num_side
    cells = torch.cartesian_prod(*axes).reshape(-1, 1 + head.num_side)
    logits = F.one_hot(cells[:, 0], head.num_classes).float() * 10
    return logits, cells[:, 1:], cells.sum(dim=1)


heads = st.builds(
    lambda classes, side, low, span, hidden: ScalarFusionHead(
        classes, num_side=side, side_range=(low, low + span), hidden=hidden
    ),
    st.integers(2, 12),
    st.integers(1, 3),
    st.integers(-5, 5),
    st.integers(0, 9),
    st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple),
)


@given(heads, st.integers(0, 2**31 - 1))
@settings(max_examples=40, deadline=None)
def test_a_new_head_adds_every_cell_exactly_in_float32(head: ScalarFusionHead, seed: int) -> None:
    logits, side, sums = _grid(head)
    out = head(logits, side)
    assert torch.equal(out, sums.float())  # bit for bit, not approximately
    certificate = head.certificate()
    assert certificate.exact and certificate.margin == 0.5 and certificate.max_error == 0.0


@given(heads, st.floats(0.0, 0.4), st.integers(0, 2**31 - 1))
@settings(max_examples=80, deadline=None)
def test_certificate_is_exact_iff_every_cell_rounds_right(
    head: ScalarFusionHead, noise: float, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in head.parameters():
            param.add_(noise * torch.randn(param.shape, generator=generator))
    certificate = head.certificate()
    assume(abs(certificate.margin) > 1e-4)  # clear of float32 rounding at the boundary
    logits, side, sums = _grid(head)
    with torch.no_grad():
        out = head(logits, side).double()
    all_right = bool((out.round() == sums).all())
    assert certificate.exact == all_right
    assert certificate.max_error == pytest.approx(float((out - sums).abs().max()), abs=1e-4)


def test_certificate_collapses_the_layers_to_one_affine_map() -> None:
    head = ScalarFusionHead(exact_init=False)
    certificate = head.certificate()
    logits, side, _ = _grid(head)
    with torch.no_grad():
        out = head(logits, side).double()
    digit, number = logits.argmax(dim=1).double(), side[:, 0].double()
    a, b = certificate.coefficients
    assert torch.allclose(out, a * digit + b * number + certificate.intercept, atol=1e-4)


def test_teacher_forcing_trains_the_head_from_true_digits_only() -> None:
    head = ScalarFusionHead(fusion="expectation", exact_init=False)
    logits = torch.randn(8, 10, requires_grad=True)
    digit, number = torch.randint(0, 10, (8,)), torch.randint(0, 10, (8,))
    sum_pred, adder = head(logits, number, digit)
    assert torch.allclose(sum_pred, head(logits, number))  # the same prediction
    weights = list(head.parameters())
    # The prediction's loss reaches the trunk's logits and never the head's weights ...
    grads = torch.autograd.grad(sum_pred.sum(), [logits, *weights], allow_unused=True)
    assert grads[0] is not None and all(g is None for g in grads[1:])
    # ... and the teacher-forced sum's loss reaches the weights and never the logits.
    grads = torch.autograd.grad(adder.sum(), [logits, *weights], allow_unused=True)
    assert grads[0] is None and all(g is not None for g in grads[1:])
    assert torch.allclose(adder, head(F.one_hot(digit, 10).float() * 50, number), atol=1e-4)


def _fit_adder(head: ScalarFusionHead, digit_noise: float, steps: int = 600) -> None:
    """Fit the head alone with Adam; a fraction ``digit_noise`` of its digit inputs is wrong."""
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for _ in range(steps):
        digit = torch.randint(0, 10, (128,), generator=generator)
        number = torch.randint(0, 10, (128,), generator=generator)
        wrong = torch.rand(128, generator=generator) < digit_noise
        seen = torch.where(wrong, torch.randint(0, 10, (128,), generator=generator), digit)
        loss = F.mse_loss(head(F.one_hot(seen, 10).float() * 50, number), (digit + number).float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_the_adder_learns_addition_from_true_digits_and_shrinks_on_wrong_ones() -> None:
    torch.manual_seed(0)
    taught = ScalarFusionHead(exact_init=False)
    _fit_adder(taught, digit_noise=0.0)
    assert taught.certificate().exact
    # Regression dilution: fitted to wrong digits, the digit's weight shrinks below one
    # and rounding fails on cells whose digit is right.
    diluted = ScalarFusionHead()
    _fit_adder(diluted, digit_noise=0.3)
    certificate = diluted.certificate()
    assert certificate.coefficients[0] < 0.9 and not certificate.exact


def test_an_exact_head_has_zero_loss_and_zero_gradient_under_teacher_forcing() -> None:
    head = ScalarFusionHead()
    digit, number = torch.randint(0, 10, (64,)), torch.randint(0, 10, (64,))
    _, adder = head(torch.randn(64, 10), number, digit)
    loss = F.mse_loss(adder, (digit + number).float())
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert all(float(p.grad.abs().max()) == 0.0 for p in head.parameters() if p.grad is not None)


@given(st.lists(st.floats(-8, 8), min_size=10, max_size=10), st.integers(0, 9), st.integers(0, 9))
@settings(max_examples=100, deadline=None)
def test_expectation_sum_is_right_iff_the_expected_digit_rounds_to_the_digit(
    raw: list[float], digit: int, number: int
) -> None:
    """What holds for `expectation` with an exact adder: the sum reads the softmax mean."""
    head = ScalarFusionHead(fusion="expectation")
    logits = torch.tensor([raw])
    expected = float(torch.softmax(logits, dim=1) @ torch.arange(10.0))
    assume(abs(expected - round(expected)) < 0.49 or abs(expected - round(expected)) > 0.51)
    with torch.no_grad():
        right = round(float(head(logits, torch.tensor([number])))) == digit + number
    assert right == (abs(expected - digit) < 0.5)


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
