"""What a sample is to the library: named tensors, one per input and one per task label."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from multitask_mnist.errors import InvalidTypeError

__all__ = ["WithFields", "as_fields", "to_device"]


def as_fields(sample: Any) -> dict[str, Tensor]:
    """A sample or a batch as ``{name: tensor}``.

    A dataset for the Trainer yields samples that name their fields: a
    :class:`~typing.NamedTuple` (as :class:`~multitask_mnist.data.DigitSample`) or a
    mapping of names to tensors (a ``dict``). The model's inputs and the tasks'
    labels are looked up by name; other fields are ignored.

    Args:
        sample: A NamedTuple or a mapping of tensors.

    Returns:
        The fields by name.

    Raises:
        TypeError: ``sample`` has no field names (a plain tuple or a tensor), or a field
            that is not a tensor.

    Example:
        >>> as_fields({"image": torch.zeros(1), "digit": torch.tensor(3)})["digit"]
        tensor(3)
        >>> as_fields((torch.zeros(1), torch.tensor(3)))
        Traceback (most recent call last):
        ...
        multitask_mnist.errors.InvalidTypeError: Expected samples with named fields ..., got tuple
    """
    if isinstance(sample, Mapping):
        fields = dict(sample)
    elif isinstance(sample, tuple) and hasattr(sample, "_asdict"):
        fields = sample._asdict()
    else:
        raise InvalidTypeError(
            "Expected samples with named fields (a NamedTuple or a dict of tensors), "
            f"got {type(sample).__name__}"
        )
    for name, value in fields.items():
        if not isinstance(value, Tensor):
            raise InvalidTypeError(
                f"Expected field {name!r} of the sample to be a tensor, got {type(value).__name__}"
            )
    return fields


def to_device(
    fields: Mapping[str, Tensor], device: torch.device, non_blocking: bool
) -> dict[str, Tensor]:
    """``fields`` moved to ``device``."""
    return {name: value.to(device, non_blocking=non_blocking) for name, value in fields.items()}


class WithFields(Dataset[dict[str, Tensor]]):
    """A dataset with more fields, each computed from a sample's (or a batch's) fields.

    The way to add a task whose label follows from the data: ``larger = digit >
    number``. Batches stay batched: a base with ``get_batch`` (as
    :class:`~multitask_mnist.data.AugmentedDigitDataset`) is read a batch at a time,
    and each field's function gets the whole batch's fields. ``set_epoch`` is passed
    on to the base.

    Args:
        dataset: The base dataset of samples with named fields.
        **fields: ``name=function``, each ``function({name: tensor}) -> tensor``;
            later functions see the fields computed before them.

    Example:
        >>> from torch.utils.data import TensorDataset
        >>> from multitask_mnist.data import AugmentedDigitDataset
        >>> base = AugmentedDigitDataset(
        ...     TensorDataset(torch.zeros(4, 1, 28, 28), torch.tensor([0, 5, 7, 9])), seed=0)
        >>> data = WithFields(base, larger=lambda s: (s["digit"] > s["number"]).long())
        >>> batch = data.get_batch(torch.arange(4))
        >>> bool(((batch["digit"] > batch["number"]).long() == batch["larger"]).all())
        True
    """

    def __init__(self, dataset: Any, **fields: Callable[[dict[str, Tensor]], Tensor]) -> None:
        for name, function in fields.items():
            if not callable(function):
                raise InvalidTypeError(
                    f"Expected field {name!r} to be a function, got {function!r}"
                )
        self.dataset = dataset
        self.fields = fields

    def _add(self, sample: Any) -> dict[str, Tensor]:
        values = as_fields(sample)
        for name, function in self.fields.items():
            values[name] = function(values)
        return values

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self._add(self.dataset[index])

    def get_batch(self, indices: Sequence[int] | Tensor) -> dict[str, Tensor]:
        """The fields of the samples at ``indices``, batched."""
        get_batch = getattr(self.dataset, "get_batch", None)
        if get_batch is None:  # collated as a DataLoader would
            index = torch.as_tensor(indices).tolist()
            return self._add(default_collate([self.dataset[i] for i in index]))
        return self._add(get_batch(indices))

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch on to the base dataset, if it takes one."""
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
