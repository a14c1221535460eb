"""Subsets that keep a dataset's batched fetch, and a validation split carved by seed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import torch
from torch import Tensor
from torch.utils.data import Dataset

from multitask_mnist._validation import check_int
from multitask_mnist.errors import InvalidValueError

__all__ = ["Split", "holdout"]

T = TypeVar("T")


class Split(Dataset[T], Generic[T]):
    """The samples of ``dataset`` at ``indices``, as ``torch.utils.data.Subset``, but
    keeping the dataset's batched ``get_batch`` (the Trainer's fast path).

    Args:
        dataset: Any map-style dataset.
        indices: Positions in ``dataset``.

    Example:
        >>> from multitask_mnist.data import AugmentedDigitDataset
        >>> from torch.utils.data import TensorDataset
        >>> base = AugmentedDigitDataset(TensorDataset(torch.zeros(5, 1, 28, 28), torch.arange(5)))
        >>> part = Split(base, [4, 2])
        >>> len(part), part.get_batch(torch.tensor([0, 1])).digit.tolist()
        (2, [4, 2])
    """

    def __init__(self, dataset: Dataset[T], indices: Sequence[int] | Tensor) -> None:
        self.dataset = dataset
        self.indices = torch.as_tensor(indices, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> T:
        return self.dataset[int(self.indices[index])]

    def __getattr__(self, name: str) -> Any:
        if name == "get_batch" and hasattr(self.__dict__.get("dataset"), "get_batch"):
            return lambda indices: self.dataset.get_batch(  # type: ignore[attr-defined]
                self.indices[torch.as_tensor(indices, dtype=torch.long)]
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def holdout(dataset: Dataset[T], size: int, seed: int) -> tuple[Split[T], Split[T]]:
    """Carve a validation split of ``size`` samples out of ``dataset``, chosen by
    ``seed``: the rest trains, the validation split selects (an epoch, a checkpoint),
    and the test split is never looked at until the end.

    Args:
        dataset: The training data.
        size: Samples to hold out, at least 1 and fewer than ``len(dataset)``.
        seed: Chooses them; the same seed holds out the same samples.

    Returns:
        ``(train, validation)``, disjoint, together the whole dataset.

    Raises:
        ValueError: ``size`` out of range.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> train, val = holdout(TensorDataset(torch.arange(10)), 3, seed=0)
        >>> len(train), len(val), sorted(train.indices.tolist() + val.indices.tolist())
        (7, 3, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    """
    n = len(dataset)  # type: ignore[arg-type]
    check_int("size", size, minimum=1)
    if size >= n:
        raise InvalidValueError(
            f"Expected argument `size` to be below the dataset's {n} samples, got {size}"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(check_int("seed", seed)))
    return Split(dataset, order[size:].sort().values), Split(dataset, order[:size].sort().values)
