"""The two-input dataset: an image with its digit, plus a random number to add to it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from multitask_mnist._validation import check_int, check_number
from multitask_mnist.data.image import (
    IMAGE_SHAPE,
    MNIST_MEAN,
    MNIST_STD,
    image_to_tensor,
    normalize,
)
from multitask_mnist.errors import InvalidTypeError, InvalidValueError
from multitask_mnist.tasks.task import MISSING

__all__ = ["AugmentedDigitDataset", "DigitSample"]

_SEED_MODULUS = 2**63


class DigitSample(NamedTuple):
    """One sample, or a batch of them (every field gains a leading ``B``).

    Attributes:
        image: ``(1, 28, 28)`` float32, normalized with MNIST's mean and std.
        number: ``()`` int64, the second input.
        digit: ``()`` int64, the digit in the image, 0-9, or
            :data:`~multitask_mnist.tasks.MISSING` (-1) where its label is hidden.
        sum: ``()`` int64, the true ``digit + number``.

    Example:
        >>> import torch
        >>> three, four, seven = torch.tensor(3), torch.tensor(4), torch.tensor(7)
        >>> s = DigitSample(torch.zeros(1, 28, 28), three, four, seven)
        >>> int(s.sum), s.to("cpu").image.shape
        (7, torch.Size([1, 28, 28]))
    """

    image: Tensor
    number: Tensor
    digit: Tensor
    sum: Tensor

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> DigitSample:
        """Return the sample with every field moved to ``device``."""
        return DigitSample(*(t.to(device, non_blocking=non_blocking) for t in self))


class _TensorSource(NamedTuple):
    """A base dataset's uint8 images and labels, read by tensor indexing."""

    data: Tensor  # (N, 28, 28) uint8
    targets: Tensor  # (N,) int64
    index_map: Tensor | None  # position in this dataset -> row of `data`, for Subsets


class AugmentedDigitDataset(Dataset[DigitSample]):
    """Pairs each image of a digit dataset with a random number and their sum.

    Wraps any map-style dataset whose items are ``(image, label)`` with labels
    0-9: :class:`torchvision.datasets.MNIST`, a :class:`~torch.utils.data.Subset`
    of it, or a user's own. Images may be PIL images, uint8 tensors (0-255) or
    float tensors (0-1), shaped ``(28, 28)`` or ``(1, 28, 28)``.

    The numbers are drawn uniformly from ``low..high`` inclusive, once for the
    whole dataset, from ``seed``: a dataset that is never given an epoch keeps
    that draw (a fixed evaluation set), while :meth:`set_epoch` draws a fresh,
    equally reproducible set for each epoch (augmentation for training).

    When the base exposes ``data`` (uint8 ``(N, 28, 28)``) and ``targets`` tensors
    and no transforms (torchvision's MNIST family, and Subsets of it), samples
    are normalized straight from the uint8 tensor, and :meth:`get_batch` fetches
    a whole batch with one tensor index. Both paths give identical samples.

    **Missing labels.** With ``digit_labels`` below 1, only that fraction of the
    images keep their digit label, chosen once from ``seed`` (the same images in
    every epoch); the others carry :data:`~multitask_mnist.tasks.MISSING` (-1) as
    their digit, and still their true sum. Losses and metrics count a task over the
    samples that have its label only.

    Args:
        base: The ``(image, label)`` dataset.
        low: Smallest number drawn.
        high: Largest number drawn (inclusive).
        seed: Seed of the draw, and of the choice of labelled images.
        digit_labels: The fraction of images that keep their digit label, in [0, 1];
            ``round(digit_labels * N)`` of them.

    Raises:
        TypeError: ``low``, ``high`` or ``seed`` is not an int, ``digit_labels`` not a
            number.
        ValueError: ``low > high``, ``digit_labels`` outside [0, 1], or the base's
            tensors hold a label outside 0-9 or images that are not 28x28.

    Example:
        >>> import torch
        >>> from torch.utils.data import TensorDataset
        >>> images = torch.zeros(4, 1, 28, 28)
        >>> base = TensorDataset(images, torch.tensor([0, 1, 2, 3]))
        >>> ds = AugmentedDigitDataset(base, seed=0)
        >>> sample = ds[2]
        >>> sample.image.shape, int(sample.digit)
        (torch.Size([1, 28, 28]), 2)
        >>> bool(sample.sum == sample.digit + sample.number)
        True
    """

    #: Mean and standard deviation of MNIST's training pixels, scaled to 0-1.
    MEAN = MNIST_MEAN
    STD = MNIST_STD
    #: Shape of one image.
    IMAGE_SHAPE = IMAGE_SHAPE
    NUM_CLASSES = 10

    def __init__(
        self,
        base: Dataset[Any],
        *,
        low: int = 0,
        high: int = 9,
        seed: int = 0,
        digit_labels: float = 1.0,
    ) -> None:
        self.low = check_int("low", low)
        self.high = check_int("high", high)
        self.seed = check_int("seed", seed)
        if low > high:
            raise InvalidValueError(f"Expected `low` <= `high`, got low={low}, high={high}")
        self.digit_labels = check_number("digit_labels", digit_labels, minimum=0.0)
        if digit_labels > 1:
            raise InvalidValueError(
                f"Expected argument `digit_labels` to be in [0, 1], got {digit_labels}"
            )
        self.base = base
        self._length = len(base)  # type: ignore[arg-type]
        self._source = self._tensor_source(base)
        self._epoch: int | None = None
        self._numbers = self._draw(None)
        self._labelled = self._choose_labelled()

    @property
    def labelled(self) -> Tensor:
        """``(N,)`` bool: which images keep their digit label."""
        return self._labelled

    def _choose_labelled(self) -> Tensor:
        kept = round(self.digit_labels * self._length)
        generator = torch.Generator().manual_seed((self.seed * 7_919 + 104_729) % _SEED_MODULUS)
        chosen = torch.randperm(self._length, generator=generator)[:kept]
        mask = torch.zeros(self._length, dtype=torch.bool)
        mask[chosen] = True
        return mask

    # -- the draw -----------------------------------------------------------------

    @property
    def epoch(self) -> int | None:
        """The epoch whose numbers are drawn, or ``None`` for the seed's own draw."""
        return self._epoch

    @property
    def numbers(self) -> Tensor:
        """``(N,)`` int64: the number paired with each item in the current draw."""
        return self._numbers

    def set_epoch(self, epoch: int) -> None:
        """Draw the numbers for ``epoch``; the same seed and epoch give the same draw.

        Args:
            epoch: A non-negative epoch index.

        Raises:
            TypeError: ``epoch`` is not an int.
            ValueError: ``epoch`` is negative.
        """
        check_int("epoch", epoch, minimum=0)
        if epoch != self._epoch:
            self._epoch = epoch
            self._numbers = self._draw(epoch)

    def _draw(self, epoch: int | None) -> Tensor:
        seed = self.seed if epoch is None else self.seed * 1_000_003 + 7_919 * (epoch + 1)
        generator = torch.Generator().manual_seed(seed % _SEED_MODULUS)
        return torch.randint(self.low, self.high + 1, (self._length,), generator=generator)

    # -- access ---------------------------------------------------------------------

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> DigitSample:
        if self._source is not None:
            return DigitSample(*(field[0] for field in self.get_batch([index])))
        image, label = self.base[index]
        digit = self._check_label(label, index)
        number = self._numbers[index]
        shown = digit if self._labelled[index] else torch.tensor(MISSING)
        return DigitSample(self._to_image(image, index), number, shown, digit + number)

    def __getitems__(self, indices: list[int]) -> list[DigitSample]:
        """Fetch many items at once; :class:`~torch.utils.data.DataLoader` calls this."""
        return [DigitSample(*fields) for fields in zip(*self.get_batch(indices), strict=True)]

    def get_batch(self, indices: Sequence[int] | Tensor) -> DigitSample:
        """Fetch a batch as one :class:`DigitSample` of batched tensors.

        Args:
            indices: ``(B,)`` positions in this dataset.

        Returns:
            ``image`` ``(B, 1, 28, 28)`` float32; ``number``, ``digit``, ``sum`` ``(B,)`` int64.
        """
        if self._source is None:
            items = [self[int(i)] for i in indices]
            return DigitSample(*(torch.stack(field) for field in zip(*items, strict=True)))
        idx = torch.as_tensor(indices, dtype=torch.long)
        rows = idx if self._source.index_map is None else self._source.index_map[idx]
        image = normalize(self._source.data[rows].unsqueeze(1))
        digit = self._source.targets[rows]
        number = self._numbers[idx]
        shown = torch.where(self._labelled[idx], digit, MISSING)
        return DigitSample(image, number, shown, digit + number)

    def __repr__(self) -> str:
        path = "tensor" if self._source is not None else "per-sample"
        lines = [
            f"Number of datapoints: {len(self)}",
            f"Numbers: {self.low}..{self.high}, seed {self.seed}, epoch {self._epoch}",
            f"Digit labels: {int(self._labelled.sum())} of {len(self)}",
            f"Fetch: {path}",
            f"Base: {type(self.base).__name__}",
        ]
        return "\n".join([type(self).__name__, *("    " + line for line in lines)])

    # -- conversion -----------------------------------------------------------------

    @staticmethod
    def _to_image(image: Any, index: int) -> Tensor:
        try:
            return image_to_tensor(image)
        except (TypeError, ValueError) as error:
            raise type(error)(f"Base image at index {index} {error}") from None

    @classmethod
    def _check_label(cls, label: Any, index: int) -> Tensor:
        value = label.item() if isinstance(label, Tensor) and label.numel() == 1 else label
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidTypeError(f"Base label at index {index} is {label!r}; expected an int 0-9")
        if not 0 <= value < cls.NUM_CLASSES:
            raise InvalidValueError(f"Base label at index {index} is {value}, outside 0-9")
        return torch.tensor(value, dtype=torch.long)

    @classmethod
    def _tensor_source(cls, base: Dataset[Any]) -> _TensorSource | None:
        """Find uint8 image and label tensors behind ``base`` (through Subsets), if any."""
        index_map: Tensor | None = None
        while isinstance(base, Subset):
            outer = torch.as_tensor(base.indices, dtype=torch.long)
            index_map = outer if index_map is None else outer[index_map]
            base = base.dataset
        data, targets = getattr(base, "data", None), getattr(base, "targets", None)
        transforms = (getattr(base, a, None) for a in ("transform", "target_transform"))
        transformed = any(t is not None for t in transforms)
        if transformed or not isinstance(data, Tensor) or not isinstance(targets, Tensor):
            return None
        if data.dtype != torch.uint8 or targets.dtype not in (torch.int64, torch.int32):
            return None
        if tuple(data.shape[1:]) != cls.IMAGE_SHAPE[1:]:
            raise InvalidValueError(
                f"Base images have shape {tuple(data.shape[1:])}; expected (28, 28)"
            )
        used = targets if index_map is None else targets[index_map]
        bad = (used < 0) | (used >= cls.NUM_CLASSES)
        if bool(bad.any()):
            position = int(bad.nonzero()[0, 0])
            raise InvalidValueError(
                f"Base label at index {position} is {int(used[position])}, outside 0-9"
            )
        return _TensorSource(data, targets.long(), index_map)
