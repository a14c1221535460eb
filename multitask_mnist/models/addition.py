"""Sums of numbers written in several images: a classifier per image, an exact sum head.

:class:`PerImage` runs one digit classifier over every image of a sample;
:class:`SumOfNumbers` turns the digits' class distributions into the exact
distribution of the sum of the numbers they write (a convolution of
distributions), in log space. Trained with the sum's negative log-likelihood,
the classifier learns the digits from the sums alone (MNIST-addition, Manhaeve et
al., 2018).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from multitask_mnist.errors import InvalidValueError

__all__ = ["PerImage", "SumOfNumbers", "convolve_log"]


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
