"""Sums of numbers written in several images: a classifier per image, an exact sum head.

:class:`PerImage` runs one digit classifier over every image of a sample. Two heads
give the exact likelihood of the sum from the digits' class distributions, in log
space: :class:`SumOfNumbers`, the whole distribution of the sum (a convolution of
distributions, ``base ** N`` classes per number), and :class:`CarryChainSum`, the
probability of the sum's digits by a dynamic programme over positions with the carry as
its state (:func:`carry_chain_log_likelihood`, linear in ``N``). Trained with the sum's
negative log-likelihood, the classifier learns the digits from the sums alone
(MNIST-addition, Manhaeve et al., 2018).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from multitask_mnist._validation import check_int
from multitask_mnist.errors import InvalidValueError
from multitask_mnist.tasks.task import Task

__all__ = [
    "CarryChainSum",
    "PerImage",
    "SumOfNumbers",
    "carry_chain_log_likelihood",
    "convolve_log",
    "digits_of",
    "sum_of_most_probable_digits",
]


class PerImage(nn.Module):
    """One module applied to each image of a sample: the same weights for every image.

    Args:
        classifier: A module ``(N, C, H, W) -> (N, K)``.

    Shapes:
        ``(B, I, C, H, W)`` -> ``(B, I, K)``: ``I`` images per sample.

    Example:
        >>> per = PerImage(nn.Sequential(nn.Flatten(), nn.Linear(4, 3)))
        >>> per(torch.zeros(2, 5, 1, 2, 2)).shape
        torch.Size([2, 5, 3])
    """

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, images: Tensor) -> Tensor:
        """``(B, I, C, H, W)`` images -> ``(B, I, K)``: the classifier on each."""
        batch, count = images.shape[:2]
        out: Tensor = self.classifier(images.flatten(0, 1))
        return out.reshape(batch, count, *out.shape[1:])


def convolve_log(first: Tensor, second: Tensor) -> Tensor:
    """The log-distribution of ``a + b`` for independent ``a`` and ``b``.

    Args:
        first: ``(B, M)`` log-probabilities of ``a`` over ``0 .. M-1``.
        second: ``(B, L)`` log-probabilities of ``b`` over ``0 .. L-1``.

    Returns:
        ``(B, M + L - 1)``: ``log sum_{i + j = s} p(a = i) p(b = j)`` for each ``s``,
        computed with ``logsumexp``, so tiny probabilities neither underflow to
        ``-inf`` nor lose their gradient.

    Example:
        >>> half = torch.full((1, 2), 0.5).log()  # a fair coin, twice
        >>> convolve_log(half, half).exp()
        tensor([[0.2500, 0.5000, 0.2500]])
    """
    m, length = first.shape[-1], second.shape[-1]
    outer = first.unsqueeze(-1) + second.unsqueeze(-2)  # (B, M, L): log p(i) + log p(j)
    columns = torch.arange(m, device=first.device)[:, None] + torch.arange(
        length, device=first.device
    )  # (M, L): i + j
    spread = outer.new_full((*outer.shape[:-1], m + length - 1), float("-inf"))
    spread = spread.scatter(-1, columns.expand_as(outer), outer)  # row i, column i + j
    return torch.logsumexp(spread, dim=-2)


class SumOfNumbers(nn.Module):
    """The exact distribution of a sum of numbers from the distributions of their digits.

    The input holds, for each sample, ``operands * digits`` class distributions (as
    logits) over ``0 .. base-1``: the digits of the first number, most significant
    first, then those of the second, and so on. The digits are taken as independent;
    each number's distribution is the product of its digits' (placed by their
    value), and the sum's is the convolution of the numbers'. Everything happens in
    log space and in float32, also under autocast. The output is the sum's
    log-probabilities: as logits of a multiclass task, its cross-entropy is the sum's
    negative log-likelihood and its argmax the most probable sum.

    Args:
        operands: How many numbers are added (at least 1).
        digits: Digits per number (at least 1).
        base: The digits' base (at least 2).

    Raises:
        ValueError: An argument below its minimum.

    Shapes:
        ``(B, operands * digits, base)`` logits -> ``(B, num_classes)`` log-probabilities,
        ``num_classes = operands * (base ** digits - 1) + 1``.

    Example:
        >>> head = SumOfNumbers(operands=2, digits=1)
        >>> sure = torch.full((1, 2, 10), -1e4)
        >>> sure[0, 0, 3] = sure[0, 1, 4] = 0.0  # certainly 3 and certainly 4
        >>> head(sure).argmax(-1).item(), head.num_classes
        (7, 19)
    """

    def __init__(self, operands: int = 2, digits: int = 1, base: int = 10) -> None:
        super().__init__()
        for name, value, minimum in (("operands", operands, 1), ("digits", digits, 1)):
            if value < minimum:
                raise InvalidValueError(
                    f"Expected argument `{name}` to be >= {minimum}, got {value}"
                )
        if base < 2:
            raise InvalidValueError(f"Expected argument `base` to be >= 2, got {base}")
        self.operands, self.digits, self.base = operands, digits, base
        self.num_classes = operands * (int(base**digits) - 1) + 1

    def forward(self, logits: Tensor) -> Tensor:
        """``(B, operands * digits, base)`` digit logits -> ``(B, num_classes)`` log-probabilities
        of the sum.

        Raises:
            ValueError: ``logits`` of another shape.
        """
        expected = (self.operands * self.digits, self.base)
        if tuple(logits.shape[1:]) != expected:
            raise InvalidValueError(
                f"Expected digit logits of shape (B, {expected[0]}, {expected[1]}), got "
                f"{tuple(logits.shape)}"
            )
        with torch.autocast(logits.device.type, enabled=False):
            log_digits = torch.log_softmax(logits.float(), dim=-1)
            d = self.digits
            numbers = [
                self._number(log_digits[:, i * d : (i + 1) * d]) for i in range(self.operands)
            ]
            total = numbers[0]
            for number in numbers[1:]:
                total = convolve_log(total, number)
        return total

    def _number(self, log_digits: Tensor) -> Tensor:
        """``(B, digits, base)`` -> ``(B, base ** digits)``: the number's log-distribution."""
        value = log_digits[:, 0]
        for k in range(1, self.digits):  # append a less significant digit
            value = (value.unsqueeze(-1) + log_digits[:, k].unsqueeze(-2)).flatten(1)
        return value

    def extra_repr(self) -> str:
        return f"operands={self.operands}, digits={self.digits}, base={self.base}"


def digits_of(values: Tensor, count: int, base: int = 10) -> Tensor:
    """The ``count`` base-``base`` digits of non-negative integers, most significant first.

    Args:
        values: ``(B,)`` int64, each below ``base ** count``.
        count: Digits per value.
        base: The base.

    Returns:
        ``(B, count)`` int64 digits.

    Example:
        >>> digits_of(torch.tensor([107, 5]), 3).tolist()
        [[1, 0, 7], [0, 0, 5]]
    """
    out = []
    rest = values.clone()
    for _ in range(count):
        out.append(rest % base)
        rest = torch.div(rest, base, rounding_mode="floor")
    return torch.stack(out[::-1], dim=1)


#: The log-probability of what cannot happen, inside the carry chain: far below any
#: real log-likelihood (200 digits at -1e4 each are -2e6), far above float32's limit.
_IMPOSSIBLE = -1e30


def carry_chain_log_likelihood(log_first: Tensor, log_second: Tensor, sum_digits: Tensor) -> Tensor:
    """The exact log-probability that two numbers of independent digits add up to the
    sum written in ``sum_digits``, by a dynamic programme over the digit positions whose
    state is the carry (0 or 1): ``O(N base^2)`` per sample, for any number of digits
    ``N`` (the convolution of :class:`SumOfNumbers` needs ``base ** N`` classes).

    From the least significant position up, ``alpha(c)`` is the log-probability that the
    positions so far write the sum's digits there and carry ``c``; position ``k`` with
    sum digit ``s`` updates it as ``alpha'(c') = logsumexp_c alpha(c) + log P(a_k + b_k =
    s + base c' - c)``, and the sum's leading digit must equal the last carry. All in log
    space and float32 (also under autocast).

    Args:
        log_first: ``(B, N, base)`` log-probabilities of the first number's digits, most
            significant first.
        log_second: ``(B, N, base)`` the second number's.
        sum_digits: ``(B, N + 1)`` int64 digits of the sum, most significant first (the
            first is the final carry, 0 or 1).

    Returns:
        ``(B,)`` log-probabilities (``-inf`` for a sum the digits cannot write).

    Raises:
        ValueError: Shapes that do not match.

    Example:
        >>> a, b = torch.full((1, 2, 10), -1e4), torch.full((1, 2, 10), -1e4)
        >>> a[0, 0, 4] = a[0, 1, 7] = b[0, 0, 5] = b[0, 1, 8] = 0.0  # surely 47 and 58
        >>> log_a, log_b = a.log_softmax(-1), b.log_softmax(-1)
        >>> carry_chain_log_likelihood(log_a, log_b, digits_of(torch.tensor([105]), 3)).exp()
        tensor([1.])
    """
    if log_first.shape != log_second.shape or log_first.dim() != 3:
        raise InvalidValueError(
            f"Expected two (B, N, base) digit log-probabilities of one shape, got "
            f"{tuple(log_first.shape)} and {tuple(log_second.shape)}"
        )
    batch, count, base = log_first.shape
    if tuple(sum_digits.shape) != (batch, count + 1):
        raise InvalidValueError(
            f"Expected sum digits of shape ({batch}, {count + 1}), got {tuple(sum_digits.shape)}"
        )
    with torch.autocast(log_first.device.type, enabled=False):
        pairs = convolve_log(
            log_first.float().reshape(-1, base), log_second.float().reshape(-1, base)
        ).reshape(batch, count, 2 * base - 1)  # log P(a_k + b_k = v), v = 0 .. 2 base - 2
        # Pad so that v = -1 and v = 2 base - 1 (unreachable) read "impossible": a
        # finite stand-in for -inf, since a logsumexp over -inf alone differentiates to
        # NaN (0 * inf), which would reach the digits through the possible terms.
        pairs = nn.functional.pad(pairs, (1, 1), value=_IMPOSSIBLE)
        # Every position's transitions at once: (B, N, carry in, carry out), read at
        # v = digit + base * carry_out - carry_in (+1 for the padding).
        carry = torch.arange(2, device=pairs.device)
        index = sum_digits[:, 1:, None, None].long() + base * carry - carry[:, None] + 1
        moves = pairs.gather(2, index.reshape(batch, count, 4)).reshape(batch, count, 2, 2)
        none = torch.full((batch,), _IMPOSSIBLE, device=pairs.device)
        alpha = torch.stack([torch.zeros_like(none), none], dim=1)  # no carry into the end
        for k in reversed(range(count)):
            alpha = torch.logsumexp(alpha[:, :, None] + moves[:, k], dim=1)
        lead = sum_digits[:, 0].long()
        padded = torch.cat([alpha, none[:, None]], dim=1)  # a leading digit above 1
        found = padded.gather(1, lead.clamp(0, 2)[:, None])[:, 0]
        return torch.where(found < _IMPOSSIBLE / 2, float("-inf"), found)


def sum_of_most_probable_digits(first: Tensor, second: Tensor) -> Tensor:
    """The sum's digits when each image is read as its most probable digit (the
    decoding of the MNIST-addition papers' accuracy): ``(B, N + 1)``, most significant
    first.

    Args:
        first: ``(B, N, base)`` logits (or log-probabilities) of the first number's digits.
        second: ``(B, N, base)`` the second number's.

    Returns:
        ``(B, N + 1)`` int64 digits of the sum, most significant first.

    Example:
        >>> a = torch.zeros(1, 2, 10); a[0, 0, 9] = a[0, 1, 9] = 1.0  # 99
        >>> b = torch.zeros(1, 2, 10); b[0, 1, 3] = 1.0  # 03
        >>> sum_of_most_probable_digits(a, b).tolist()
        [[1, 0, 2]]
    """
    base = first.shape[-1]
    a, b = first.argmax(-1), second.argmax(-1)
    out = []
    carry = torch.zeros_like(a[:, 0])
    for k in reversed(range(a.shape[1])):
        total = a[:, k] + b[:, k] + carry
        out.append(total % base)
        carry = torch.div(total, base, rounding_mode="floor")
    out.append(carry)
    return torch.stack(out[::-1], dim=1)


class CarryChainSum(nn.Module):
    """The exact sum of two ``N``-digit numbers, for any ``N``: the digits'
    log-probabilities, scored against the sum's digits by :func:`carry_chain_log_likelihood`.

    The module itself only normalizes: its output, the prediction of a ``"digits"``
    task (:meth:`task`), is the ``2 N`` digits' log-probabilities. The task's loss is
    the negative log-likelihood of the sum's ``N + 1`` digits; its prediction is the
    sum of the most probable digits (:func:`sum_of_most_probable_digits`), right when
    every digit of the sum is.

    Args:
        digits: Digits per number, ``N`` (at least 1).
        base: The digits' base (at least 2).

    Shapes:
        ``(B, 2 N, base)`` logits -> ``(B, 2 N, base)`` float32 log-probabilities;
        targets ``(B, N + 1)`` int64 digits of the sum, most significant first.

    Raises:
        ValueError: An argument below its minimum.

    Example:
        >>> head = CarryChainSum(digits=2)
        >>> sure = torch.full((1, 4, 10), -1e4)
        >>> sure[0, 0, 4] = sure[0, 1, 7] = sure[0, 2, 5] = sure[0, 3, 8] = 0.0  # 47, 58
        >>> prediction = head(sure)
        >>> head.decode(prediction).tolist()
        [[1, 0, 5]]
        >>> head.negative_log_likelihood(prediction, torch.tensor([[1, 0, 5]])).abs()
        tensor([0.])
    """

    def __init__(self, digits: int, base: int = 10) -> None:
        super().__init__()
        self.digits = check_int("digits", digits, minimum=1)
        self.base = check_int("base", base, minimum=2)

    def forward(self, logits: Tensor) -> Tensor:
        """``(B, 2 N, base)`` digit logits -> their float32 log-probabilities.

        Raises:
            ValueError: ``logits`` of another shape.
        """
        expected = (2 * self.digits, self.base)
        if tuple(logits.shape[1:]) != expected:
            raise InvalidValueError(
                f"Expected digit logits of shape (B, {expected[0]}, {expected[1]}), got "
                f"{tuple(logits.shape)}"
            )
        with torch.autocast(logits.device.type, enabled=False):
            return torch.log_softmax(logits.float(), dim=-1)

    def negative_log_likelihood(self, prediction: Tensor, target: Tensor) -> Tensor:
        """``(B,)``: minus the log-probability of each sum's ``(B, N + 1)`` digits."""
        return _ChainLoss(self.digits)(prediction, target)

    def decode(self, prediction: Tensor) -> Tensor:
        """``(B, N + 1)``: the sum of the most probable digits, most significant first."""
        return _ChainDecode(self.digits)(prediction)

    def task(self, name: str = "sum") -> Task:
        """The ``"digits"`` task this head predicts: its loss and its decoding.

        Args:
            name: The task's name.

        Returns:
            ``Task(name, "digits", num_classes=base, ...)``.

        Example:
            >>> CarryChainSum(digits=15).task().kind
            'digits'
        """
        # Functions equal by value, so two networks of one preset have equal tasks.
        return Task(
            name,
            "digits",
            num_classes=self.base,
            loss=_ChainLoss(self.digits),
            decode=_ChainDecode(self.digits),
        )

    def extra_repr(self) -> str:
        return f"digits={self.digits}, base={self.base}"


@dataclass(frozen=True)
class _ChainLoss:
    """The carry-chain negative log-likelihood of ``(B, 2 N, base)`` log-probabilities."""

    digits: int

    def __call__(self, prediction: Tensor, target: Tensor) -> Tensor:
        n = self.digits
        return -carry_chain_log_likelihood(prediction[:, :n], prediction[:, n:], target)


@dataclass(frozen=True)
class _ChainDecode:
    """The sum of the most probable digits of ``(B, 2 N, base)`` log-probabilities."""

    digits: int

    def __call__(self, prediction: Tensor) -> Tensor:
        n = self.digits
        return sum_of_most_probable_digits(prediction[:, :n], prediction[:, n:])
