"""The carry-chain likelihood of a sum: exact against enumeration, equal to the
convolution head where both apply, differentiable, and linear in the number of digits."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multitask_mnist import presets
from multitask_mnist.data import MNISTAddition
from multitask_mnist.models import CarryChainSum, SumOfNumbers
from multitask_mnist.models.addition import (
    carry_chain_log_likelihood,
    digits_of,
    sum_of_most_probable_digits,
)
from multitask_mnist.tasks import MISSING, label_mask
from multitask_mnist.training import Trainer, TrainerConfig
from tests.conftest import write_fake_mnist


def _brute_force(log_a: torch.Tensor, log_b: torch.Tensor, total: int) -> float:
    """P(first + second = total), enumerating every pair of digit strings."""
    count, base = log_a.shape
    p = 0.0
    for first in itertools.product(range(base), repeat=count):
        for second in itertools.product(range(base), repeat=count):
            a = sum(d * base ** (count - 1 - k) for k, d in enumerate(first))
            b = sum(d * base ** (count - 1 - k) for k, d in enumerate(second))
            if a + b == total:
                p += math.exp(
                    sum(
                        log_a[k, d].item() + log_b[k, e].item()
                        for k, (d, e) in enumerate(zip(first, second, strict=True))
                    )
                )
    return p


@settings(max_examples=40, deadline=None)
@given(
    count=st.integers(1, 3),
    base=st.integers(2, 4),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_equals_enumeration_for_small_numbers(
    count: int, base: int, seed: int, data: st.DataObject
) -> None:
    generator = torch.Generator().manual_seed(seed)
    log_a = torch.randn(count, base, generator=generator, dtype=torch.float64).log_softmax(-1)
    log_b = torch.randn(count, base, generator=generator, dtype=torch.float64).log_softmax(-1)
    total = data.draw(st.integers(0, 2 * (base**count - 1) + 1))  # one above the largest
    digits = (
        digits_of(torch.tensor([total]), count + 1, base) if total < base ** (count + 1) else None
    )
    expected = _brute_force(log_a, log_b, total)
    if digits is None:
        return
    got = carry_chain_log_likelihood(log_a[None].float(), log_b[None].float(), digits).exp()
    assert math.isclose(float(got), expected, rel_tol=1e-4, abs_tol=1e-7)


def test_equals_the_convolution_head_for_every_sum() -> None:
    torch.manual_seed(0)
    for count in (1, 2):
        logits = torch.randn(3, 2 * count, 10)
        head = SumOfNumbers(operands=2, digits=count)
        expected = head(logits)  # (3, classes)
        log = logits.log_softmax(-1)
        for total in range(head.num_classes):
            digits = digits_of(torch.full((3,), total), count + 1)
            got = carry_chain_log_likelihood(log[:, :count], log[:, count:], digits)
            assert torch.allclose(got, expected[:, total], atol=1e-5), (count, total)


def test_its_gradient_is_right() -> None:
    torch.manual_seed(1)
    logits = torch.randn(2, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    digits = torch.tensor([[0, 2, 1], [1, 0, 0]])

    def likelihood(x: torch.Tensor) -> torch.Tensor:
        log = x.log_softmax(-1)
        return carry_chain_log_likelihood(log[:, 0], log[:, 1], digits)

    # the function runs in float32; compare its gradient with finite differences loosely
    likelihood(logits).sum().backward()
    numeric = torch.zeros_like(logits)
    step = 1e-2
    for index in itertools.product(*map(range, logits.shape)):
        bumped = logits.detach().clone()
        bumped[index] += step
        up = likelihood(bumped).sum()
        bumped[index] -= 2 * step
        numeric[index] = (up - likelihood(bumped).sum()) / (2 * step)
    assert logits.grad is not None
    assert torch.allclose(logits.grad, numeric, atol=2e-3)


def test_a_hundred_digits_is_exact_where_the_answer_is_known() -> None:
    count = 100
    a = torch.randint(0, 10, (4, count))
    b = torch.randint(0, 10, (4, count))
    sure = lambda d: torch.nn.functional.one_hot(d, 10).float().mul(60).sub(30).log_softmax(-1)  # noqa: E731
    total = sum_of_most_probable_digits(sure(a), sure(b))
    log_p = carry_chain_log_likelihood(sure(a), sure(b), total)
    assert torch.allclose(log_p, torch.zeros(4), atol=1e-3)  # surely this sum
    wrong = total.clone()
    wrong[:, -1] = (wrong[:, -1] + 1) % 10
    assert bool((carry_chain_log_likelihood(sure(a), sure(b), wrong) < -50).all())


def test_most_probable_digits_add_with_carries() -> None:
    a = torch.nn.functional.one_hot(torch.tensor([[9, 9, 9]]), 10).float()
    b = torch.nn.functional.one_hot(torch.tensor([[0, 0, 1]]), 10).float()
    assert sum_of_most_probable_digits(a, b).tolist() == [[1, 0, 0, 0]]
    assert digits_of(torch.tensor([1000]), 4).tolist() == [[1, 0, 0, 0]]


def test_the_head_and_its_task_score_what_the_convolution_scores() -> None:
    torch.manual_seed(1)
    for count in (1, 2):
        logits = torch.randn(6, 2 * count, 10)
        totals = torch.randint(0, 2 * 10**count - 1, (6,))
        convolution = SumOfNumbers(operands=2, digits=count)
        expected = torch.nn.functional.cross_entropy(convolution(logits), totals, reduction="none")
        head = CarryChainSum(count)
        task = head.task()
        got = task.loss_per_sample(head(logits), digits_of(totals, count + 1))
        assert torch.allclose(got, expected, atol=1e-5)
        right = task.correct(head(logits), digits_of(totals, count + 1))
        most_probable = sum_of_most_probable_digits(logits[:, :count], logits[:, count:])
        assert torch.equal(right, (most_probable == digits_of(totals, count + 1)).all(-1))


def test_a_missing_sum_neither_counts_nor_poisons_the_gradient() -> None:
    head = CarryChainSum(3)
    task = head.task()
    logits = torch.randn(4, 6, 10, requires_grad=True)
    target = digits_of(torch.tensor([105, 1998, 0, 77]), 4)
    target[1] = MISSING
    mask = label_mask(target)
    assert mask.tolist() == [True, False, True, True]
    loss = task.masked_mean_loss(head(logits), target, mask)
    present = task.loss_per_sample(head(logits)[mask], target[mask]).mean()
    assert torch.allclose(loss, present)
    loss.backward()
    assert logits.grad is not None and bool(torch.isfinite(logits.grad).all())
    assert not bool(logits.grad[1].any())


def test_the_trainer_learns_sums_of_four_digits_as_digit_strings(tmp_path: Path) -> None:
    torch.manual_seed(0)
    root = write_fake_mnist(tmp_path, n_train=160, n_test=40)
    train = MNISTAddition(root, digits=4, sum_digits=True)
    model = presets.mnist_addition_lenet(digits=4)
    before = [p.detach().clone() for p in model.parameters()]
    config = TrainerConfig(epochs=2, batch_size=4, progress=False, scheduler="constant")
    trainer = Trainer(model, config)
    history = trainer.fit(train, MNISTAddition(root, train=False, digits=4, sum_digits=True))
    assert [sorted(k for k in e if k.startswith("val_sum")) for e in history.epochs] == [
        ["val_sum_accuracy", "val_sum_loss"]
    ] * 2
    assert all(math.isfinite(e["train_loss"]) for e in history.epochs)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


@settings(max_examples=30, deadline=None)
@given(
    digits=st.integers(1, 6),
    base=st.integers(2, 10),
    seed=st.integers(0, 2**16),
)
def test_every_possible_sum_has_a_finite_gradient(digits: int, base: int, seed: int) -> None:
    # Sums ending in base - 1 once differentiated to NaN (a logsumexp over impossible
    # terms only), which reached the digits through the possible ones.
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(8, 2 * digits, base, generator=generator, requires_grad=True)
    numbers = torch.randint(0, base, (8, 2, digits), generator=generator)
    numbers[0, :, -1] = torch.tensor([base - 1, 0])  # a sum ending in base - 1
    places = base ** torch.arange(digits - 1, -1, -1)
    totals = (numbers * places).sum(-1).sum(-1)
    log = logits.log_softmax(-1)
    likelihood = carry_chain_log_likelihood(
        log[:, :digits], log[:, digits:], digits_of(totals, digits + 1, base)
    )
    assert bool(torch.isfinite(likelihood).all())
    likelihood.sum().backward()
    assert logits.grad is not None and bool(torch.isfinite(logits.grad).all())


def test_two_networks_of_one_preset_have_equal_tasks() -> None:
    assert CarryChainSum(15).task() == presets.mnist_addition_lenet(digits=15).tasks[0]
    assert CarryChainSum(15).task() != CarryChainSum(4).task()
