"""MNIST-addition (Manhaeve et al., 2018): sums of numbers written in MNIST digits.

The benchmark of neuro-symbolic learning: each sample is ``2 N`` MNIST images, the
digits of two ``N``-digit numbers, labelled with their sum only. Built from the MNIST
files with the benchmark's usual protocol: the split's images are shuffled by seed
and cut into consecutive groups of ``2 N`` without reuse (60,000 training images
give 30,000 samples for ``N = 1`` and 15,000 for ``N = 2``; the 10,000 test images
5,000 and 2,500). In each group the first ``N`` images are the first number's
digits, most significant first, the next ``N`` the second's.

The digit labels stay out of the samples: training sees the images and the sum
alone. They are kept in :attr:`MNISTAddition.digit_labels` for evaluation.

The sum is a whole number (``sum_digits=False``, up to ``N = 18``: int64 holds it) or
its ``N + 1`` digits, most significant first (``sum_digits=True``, any ``N``, computed
digit by digit with the carry: nothing of size ``10 ** N`` is ever built).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset

from multitask_mnist._validation import check_int
from multitask_mnist.data.image import normalize
from multitask_mnist.data.mnist import load_mnist
from multitask_mnist.errors import InvalidValueError

__all__ = ["MAX_WHOLE_SUM_DIGITS", "AdditionSample", "MNISTAddition"]

#: The most digits per number whose sum :class:`MNISTAddition` gives as a whole number
#: (int64 holds ``2 * (10 ** 18 - 1)``); longer numbers need ``sum_digits=True``.
MAX_WHOLE_SUM_DIGITS = 18


class AdditionSample(NamedTuple):
    """One sample, or a batch (every field gains a leading ``B``).

    Attributes:
        images: ``(2 N, 1, 28, 28)`` float32, normalized with MNIST's mean and std:
            the first number's digits, then the second's, most significant first.
        sum: ``()`` int64, the sum of the two numbers, or ``(N + 1,)`` int64, its digits
            (most significant first, the first 0 or 1).

    Example:
        >>> sample = AdditionSample(torch.zeros(2, 1, 28, 28), torch.tensor(12))
        >>> sample._fields
        ('images', 'sum')
    """

    images: Tensor
    sum: Tensor


class MNISTAddition(Dataset[AdditionSample]):
    """Pairs of ``digits``-digit numbers in MNIST images, labelled with their sum only.

    Args:
        root: Folder holding ``MNIST/raw/``; see :func:`~multitask_mnist.data.load_mnist`.
        train: The training split if true, else the test split.
        digits: Digits per number, ``N``, at least 1 and at most half the split's
            images (30,000 for training, 5,000 for the test); the papers use 1, 2, 4,
            15 and 100.
        seed: Seed of the grouping; the same seed gives the same dataset.
        download: Fetch MNIST into ``root`` if it is missing.
        sum_digits: Label each sample with the sum's ``N + 1`` digits instead of the
            sum (required above ``N = 18``).

    Attributes:
        images: ``(M, 28, 28)`` uint8, the split's MNIST images.
        groups: ``(G, 2 N)`` int64: which images each sample holds, in order.
        sums: ``(G,)`` int64: each sample's label, or ``(G, N + 1)`` its digits.
        digit_labels: ``(G, 2 N)`` int64: the digits, for evaluation only (never in a
            sample).

    Raises:
        FileNotFoundError: MNIST is missing and may not be downloaded.
        TypeError: ``digits`` or ``seed`` is not an int.
        ValueError: ``digits`` below 1, above 18 without ``sum_digits``, or so large
            that the split holds no sample.

    Example:
        >>> data = MNISTAddition(os.environ["MULTITASK_MNIST_DATA"])  # doctest: +SKIP
        >>> len(data), data.num_classes  # doctest: +SKIP
        (30000, 19)
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        train: bool = True,
        digits: int = 1,
        seed: int = 0,
        download: bool = False,
        sum_digits: bool = False,
    ) -> None:
        self.digits = check_int("digits", digits, minimum=1)
        self.seed = check_int("seed", seed)
        if not sum_digits and self.digits > MAX_WHOLE_SUM_DIGITS:
            raise InvalidValueError(
                f"A sum of two {self.digits}-digit numbers does not fit in int64; pass "
                f"sum_digits=True for digits above {MAX_WHOLE_SUM_DIGITS}"
            )
        self.train = train
        self.sum_digits = sum_digits
        mnist = load_mnist(root, train=train, download=download)
        self.images: Tensor = mnist.data
        labels = mnist.targets.long()
        size = 2 * self.digits
        if len(labels) < size:
            raise InvalidValueError(
                f"Expected `digits` to leave at least one sample ({size} images) in the "
                f"{len(labels)} images of the split, got {self.digits}"
            )
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        self.groups = order[: len(order) // size * size].view(-1, size)
        self.digit_labels = labels[self.groups]
        first, second = self.digit_labels.view(-1, 2, self.digits).unbind(1)
        if sum_digits:
            self.sums = _add_digitwise(first, second)
        else:
            place = 10 ** torch.arange(self.digits - 1, -1, -1)  # most significant first
            self.sums = (first * place).sum(-1) + (second * place).sum(-1)

    @property
    def num_classes(self) -> int:
        """The number of possible sums, ``2 (10 ** N - 1) + 1`` (0 to twice the largest).

        Raises:
            ValueError: The labels are digits (the sums are no classes then).
        """
        if self.sum_digits:
            raise InvalidValueError(
                "The sums are labelled by their digits: there is no class count"
            )
        return 2 * (int(10**self.digits) - 1) + 1

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, index: int) -> AdditionSample:
        return AdditionSample(*(field[0] for field in self.get_batch([index])))

    def get_batch(self, indices: list[int] | Tensor) -> AdditionSample:
        """Fetch a batch with one tensor index.

        Args:
            indices: ``(B,)`` positions.

        Returns:
            ``images`` ``(B, 2 N, 1, 28, 28)`` float32 and ``sum`` ``(B,)`` int64 (or
            ``(B, N + 1)`` digits).
        """
        idx = torch.as_tensor(indices, dtype=torch.long)
        images = normalize(self.images[self.groups[idx]].unsqueeze(2))
        return AdditionSample(images, self.sums[idx])

    def extra_repr(self) -> str:
        split = "train" if self.train else "test"
        labels = ", sums as digits" if self.sum_digits else ""
        return f"Split: {split}, digits per number {self.digits}, seed {self.seed}{labels}"

    def __repr__(self) -> str:
        lines = [f"Number of datapoints: {len(self)}", self.extra_repr()]
        return "\n".join([type(self).__name__, *("    " + line for line in lines)])


def _add_digitwise(first: Tensor, second: Tensor) -> Tensor:
    """``(G, N)`` + ``(G, N)`` digits (most significant first) -> ``(G, N + 1)`` digits of
    the sums, column by column with the carry."""
    out = []
    carry = torch.zeros_like(first[:, 0])
    for k in reversed(range(first.shape[1])):
        total = first[:, k] + second[:, k] + carry
        out.append(total % 10)
        carry = total // 10
    out.append(carry)
    return torch.stack(out[::-1], dim=1)
