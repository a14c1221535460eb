"""Labels are checked where they enter: in range, or marked missing."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from multitask_mnist.errors import LabelError
from multitask_mnist.tasks import MISSING, Task, check_labels, invalid_labels

DIGIT = Task("digit", "multiclass", num_classes=10)
LARGER = Task("larger", "binary")
SUM = Task("sum", "regression")


def _reference(task: Task, value: float, is_float: bool) -> bool:
    """Whether one label is invalid, by the documented rules."""
    missing = math.isnan(value) if is_float else value == MISSING
    if missing:
        return False
    if task.kind == "regression":
        return not math.isfinite(value)
    high = task.num_classes if task.kind == "multiclass" else 2
    return not (math.isfinite(value) and value == round(value) and 0 <= value < (high or 2))


@given(
    st.sampled_from([DIGIT, LARGER, SUM]),
    st.lists(st.integers(-3, 14), min_size=1, max_size=20),
)
def test_integer_labels_follow_the_rules(task: Task, values: list[int]) -> None:
    found = invalid_labels(task, torch.tensor(values)).tolist()
    assert found == [_reference(task, v, is_float=False) for v in values]


@given(
    st.sampled_from([DIGIT, LARGER, SUM]),
    st.lists(
        st.sampled_from([0.0, 1.0, 2.0, 9.0, 10.0, -1.0, 0.5, math.nan, math.inf, -math.inf]),
        min_size=1,
        max_size=20,
    ),
)
def test_float_labels_follow_the_rules(task: Task, values: list[float]) -> None:
    found = invalid_labels(task, torch.tensor(values)).tolist()
    assert found == [_reference(task, v, is_float=True) for v in values]


@pytest.mark.parametrize(
    ("task", "labels", "message"),
    [
        (
            DIGIT,
            torch.tensor([3, -1, 12]),
            "Task 'digit' has 10 classes: labels 0..9, or -1 (NaN for float labels) where "
            "missing; got 12 at sample 102",
        ),
        (
            LARGER,
            torch.tensor([0, 2, 1]),
            "Task 'larger' is binary: labels 0 or 1, or -1 (NaN for float labels) where "
            "missing; got 2 at sample 101",
        ),
        (
            SUM,
            torch.tensor([3.0, math.nan, math.inf]),
            "Task 'sum' is a regression: finite targets, or NaN where missing; got inf at "
            "sample 102",
        ),
    ],
)
def test_the_message_names_the_task_the_value_and_the_sample(
    task: Task, labels: torch.Tensor, message: str
) -> None:
    with pytest.raises(LabelError) as error:
        check_labels([task], {task.name: labels}, torch.tensor([100, 101, 102]))
    assert str(error.value) == message
    assert isinstance(error.value, ValueError)


def test_missing_labels_and_absent_tasks_pass() -> None:
    check_labels(
        [DIGIT, LARGER, SUM],
        {"digit": torch.tensor([MISSING, 9]), "sum": torch.tensor([math.nan, -4.5])},
    )


def test_the_trainer_refuses_a_bad_label_before_the_loss_sees_it() -> None:
    from torch.utils.data import Dataset

    from multitask_mnist import presets
    from multitask_mnist.training import Trainer

    class Samples(Dataset[dict[str, torch.Tensor]]):
        def __len__(self) -> int:
            return 40

        def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
            digit = 12 if index == 33 else index % 10  # one class out of 0..9
            return {
                "image": torch.zeros(1, 28, 28),
                "number": torch.tensor(1),
                "digit": torch.tensor(digit),
                "sum": torch.tensor(digit + 1),
            }

    trainer = Trainer(presets.mnist_sum(), epochs=1, batch_size=8, device="cpu", progress=False)
    with pytest.raises(LabelError, match=r"^Task 'digit' has 10 classes: .*; got 12 at sample 33$"):
        trainer.fit(Samples())
    with pytest.raises(LabelError, match=r"got 12 at sample 33$"):
        trainer.evaluate(Samples())


def test_digit_labels_are_checked_row_by_row() -> None:
    from multitask_mnist.models import CarryChainSum

    task = CarryChainSum(digits=2).task()
    good = torch.tensor([[1, 0, 5], [MISSING, MISSING, MISSING]])  # a row may be missing
    check_labels([task], {"sum": good})
    with pytest.raises(LabelError) as error:
        check_labels([task], {"sum": torch.tensor([[0, 4, 2], [0, 10, 3]])}, torch.tensor([7, 8]))
    assert str(error.value) == (
        "Task 'sum' is digits in base 10: (B, L) whole-number labels, each 0..9, or a row "
        "of -1 where missing; got [0, 10, 3] at sample 8"
    )
    with pytest.raises(LabelError, match="got 105 at sample 0"):
        check_labels([task], {"sum": torch.tensor([105])})  # a whole sum for a digits task
    with pytest.raises(LabelError, match=r"got \[1, -1, 3\] at sample 1"):
        check_labels([task], {"sum": torch.tensor([[0, 0, 0], [1, -1, 3]])})  # partly missing
    with pytest.raises(LabelError, match=r"has 10 classes: .*; got \[1, 0, 5\] at sample 0"):
        check_labels([DIGIT], {"digit": torch.tensor([[1, 0, 5]])})  # digits for a class
