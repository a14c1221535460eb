from __future__ import annotations

import re
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from multitask_mnist import MultiTaskNet, presets
from multitask_mnist.models import (
    FUSION_MODES,
    Block,
    Conv,
    ConvTrunk,
    Input,
    MLPHead,
    ScalarFusionHead,
    digit_sum_net,
)
from multitask_mnist.tasks import DIGIT_SUM_TASKS, Task, masked_task_losses

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
    assert list(out) == ["digit", "sum"]
    assert tuple(out["digit"].shape) == (batch, 10)
    assert tuple(out["sum"].shape) == (batch,)
    assert out["sum"].dtype == torch.float32
    assert torch.isfinite(out["digit"]).all() and torch.isfinite(out["sum"]).all()


def _grads(net: MultiTaskNet, task: str, batch: int, seed: int) -> dict[str, torch.Tensor | None]:
    net.zero_grad(set_to_none=True)
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 1, 28, 28, generator=g)
    number = torch.randint(0, 10, (batch,), generator=g)
    digit = torch.randint(0, 10, (batch,), generator=g)
    out = net(image, number)
    targets = {"digit": digit, "sum": digit + number}
    masked_task_losses(DIGIT_SUM_TASKS, out, targets)[task].backward()
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
    assert torch.equal(a["sum"], b["sum"])


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
            "Expected `number` to hold a batch of 2 like the first input, got 3",
        ),
        (
            GOOD_IMAGE,
            torch.tensor([[1], [2]]),
            ValueError,
            "Expected `number` of shape (B,), got (2, 1)",
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
    if "hold" not in message and "finite" not in message:  # types and shapes: always
        with pytest.raises(error, match=f"^{re.escape(message)}$"):
            NETS["argmax"](image, number, check_values=False)


def test_check_values_false_leaves_the_values_to_the_caller() -> None:
    """The Trainer checks values on the host before a batch moves; the forward pass
    then checks types and shapes only, and never waits for the device."""
    net = NETS["argmax"]
    out = net(GOOD_IMAGE, torch.tensor([1, 10]), check_values=False)
    assert out["sum"].shape == (2,)
    with pytest.raises(ValueError, match="got 10"):
        net(GOOD_IMAGE, torch.tensor([1, 10]))


def test_trunk_and_head_widths_must_agree() -> None:
    trunk = ConvTrunk([Conv("c", 5, 28)])
    with pytest.raises(
        ValueError, match=r"^The trunk gives 5 logits but the head expects num_classes=10$"
    ):
        digit_sum_net(trunk, ScalarFusionHead(10))


# -- the general network: named inputs, blocks and tasks ----------------------------------------

IMAGE, NUMBER = Input("image", (1, 4, 4)), Input("number", (), integer=True, low=0, high=9)
DIGIT = Task("digit", "multiclass", num_classes=10)


def _three_task_net() -> MultiTaskNet:
    return MultiTaskNet(
        {
            "encoder": Block(nn.Flatten(), ["image"]),
            "digit": Block(nn.Linear(16, 10), ["encoder"], DIGIT),
            "head": Block(
                ScalarFusionHead(), ["digit", "number"], Task("sum", "regression"), teacher="digit"
            ),
            "larger": Block(MLPHead(11), ["digit", "number"], Task("larger", "binary")),
        },
        [IMAGE, NUMBER],
    )


def test_inputs_by_mapping_position_or_keyword_give_the_same_predictions() -> None:
    net = _three_task_net()
    image, number = torch.randn(3, 1, 4, 4), torch.tensor([1, 5, 9])
    a = net({"image": image, "number": number})
    b = net(image, number)
    c = net(image, number=number)
    assert list(a) == ["digit", "sum", "larger"]
    for out in (b, c):
        assert all(torch.equal(a[k], out[k]) for k in a)
    assert a["larger"].shape == (3,)


def test_targets_add_the_teacher_forced_prediction() -> None:
    net = _three_task_net()
    image, number = torch.randn(2, 1, 4, 4), torch.tensor([1, 5])
    digit = torch.tensor([3, 4])
    out = net(image, number, targets={"digit": digit})
    assert sorted(out) == ["digit", "larger", "sum", "sum/teacher_forced"]
    # the head starts as exact addition: taught with the true digit it adds exactly
    assert torch.equal(out["sum/teacher_forced"], (digit + number).float())


def test_block_tasks_tell_shared_blocks_from_task_heads() -> None:
    assert _three_task_net().block_tasks() == {
        "encoder": ("digit", "sum", "larger"),
        "digit": ("digit", "sum", "larger"),
        "head": ("sum",),
        "larger": ("larger",),
    }
    assert presets.multi_mnist_lenet().block_tasks() == {
        "encoder": ("left", "right"),
        "left": ("left",),
        "right": ("right",),
    }


def test_mnist_sum_keeps_its_parameter_names() -> None:
    names = [name for name, _ in presets.mnist_sum().named_parameters()]
    assert names[:2] == ["trunk.input1.weight", "trunk.input1.bias"]
    assert names[-6:] == [
        f"head.{layer}.{kind}"
        for layer in ("input2", "layer1", "out2")
        for kind in ("weight", "bias")
    ]


def _linear(task: Task | None = None, reads: tuple[str, ...] = ("image",)) -> Block:
    return Block(nn.Flatten(), list(reads), task)


@pytest.mark.parametrize(
    ("blocks", "inputs", "message"),
    [
        ({"a": _linear(DIGIT, ("nothing",))}, [IMAGE], "Block 'a' reads 'nothing', which is"),
        ({"image": _linear(DIGIT)}, [IMAGE], "The name 'image' is used twice"),
        ({"a": _linear()}, [IMAGE], "Expected at least one block with a `task`, got none"),
        ({"a": _linear(DIGIT), "b": _linear(DIGIT)}, [IMAGE], "Two blocks predict task 'digit'"),
        ({"a": _linear(DIGIT)}, [], "Expected at least one input, got none"),
        ({"a": _linear(DIGIT)}, [IMAGE, IMAGE], "Two inputs are named 'image'"),
        ({"training": _linear(DIGIT)}, [IMAGE], "Cannot name a block 'training'"),
        (
            {"a": Block(nn.Flatten(), ["image"], DIGIT, teacher="nope")},
            [IMAGE],
            "Block of task 'digit' has teacher 'nope', which is not a task",
        ),
    ],
)
def test_bad_graphs_are_refused_with_the_name_at_fault(
    blocks: dict[str, Block], inputs: list[Input], message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        MultiTaskNet(blocks, inputs)


def test_missing_and_unknown_inputs_are_named() -> None:
    net = _three_task_net()
    with pytest.raises(ValueError, match=r"missing 'number'; unknown 'numbr'"):
        net({"image": torch.zeros(1, 1, 4, 4), "numbr": torch.tensor([1])})
    with pytest.raises(TypeError, match="Expected at most 2 positional inputs"):
        net(torch.zeros(1, 1, 4, 4), torch.tensor([1]), torch.tensor([1]))
    with pytest.raises(TypeError, match="Got input 'image' both by position and by keyword"):
        net(torch.zeros(1, 1, 4, 4), image=torch.zeros(1, 1, 4, 4))


def test_a_vector_input_is_checked_for_its_shape() -> None:
    net = MultiTaskNet(
        {"y": Block(nn.Linear(3, 1), ["v"], Task("y", "regression"))}, [Input("v", (3,))]
    )
    assert net(torch.zeros(2, 3))["y"].shape == (2, 1)
    with pytest.raises(ValueError, match=re.escape("Expected `v` of shape (B, 3), got (2, 4)")):
        net(torch.zeros(2, 4))


class _Shared(nn.Module):
    """One classifier applied to every image it is given: logits stacked per image."""

    def __init__(self) -> None:
        super().__init__()
        self.classify = nn.Sequential(nn.Flatten(), nn.Linear(16, 10))

    def forward(self, *images: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.classify(image) for image in images], dim=1)


def test_two_images_one_shared_classifier_and_a_single_task() -> None:
    net = MultiTaskNet(
        {
            "digits": Block(_Shared(), ["first", "second"]),
            "sum": Block(MLPHead(20, hidden=(8,)), ["digits"], Task("sum", "regression")),
        },
        [Input("first", (1, 4, 4)), Input("second", (1, 4, 4))],
    )
    out = net(first=torch.randn(5, 1, 4, 4), second=torch.randn(5, 1, 4, 4))
    assert list(out) == ["sum"] and out["sum"].shape == (5,)
    assert net.block_tasks() == {"digits": ("sum",), "sum": ("sum",)}
    assert net.task_names == ("sum",) and net.input_names == ("first", "second")


class _Taught(nn.Module):
    """A regression head that can be taught with the true value of another task."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(1, 1)

    def forward(
        self, a: torch.Tensor, teacher: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        pred = self.lin(a.unsqueeze(1)).squeeze(1)
        if teacher is None:
            return pred
        return pred, self.lin(teacher.float().unsqueeze(1)).squeeze(1)


def test_a_missing_teacher_label_puts_no_nan_in_any_gradient() -> None:
    from multitask_mnist import WeightedMultiLoss

    net = MultiTaskNet(
        {
            "a": Block(MLPHead(1, hidden=()), ["x"], Task("a", "regression")),
            "b": Block(_Taught(), ["a"], Task("b", "regression"), teacher="a"),
        },
        [Input("x", (1,))],
    )
    targets = {"a": torch.tensor([1.0, float("nan"), 2.0]), "b": torch.tensor([1.0, 2.0, 3.0])}
    out = net(torch.randn(3, 1), targets=targets)
    loss = WeightedMultiLoss(tasks=net.tasks)(out, targets, teachers=net.teachers)
    loss.total.backward()
    assert torch.isfinite(loss.total)
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), name


def test_mlp_head_computes_in_float32_under_autocast() -> None:
    head = MLPHead(11, hidden=(8,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(torch.randn(4, 10), torch.tensor([1, 2, 3, 4]))
    assert out.dtype == torch.float32
