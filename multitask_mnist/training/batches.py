"""Batches for the loop: in a seeded order, labels and input values checked on the host,
on the device, as named fields."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from multitask_mnist import distributed
from multitask_mnist.data.fields import as_fields, to_device
from multitask_mnist.models import Input
from multitask_mnist.tasks import Task, check_labels

__all__ = ["Batches", "epoch_seed", "set_epoch"]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of ``epoch``'s shuffle and loader: a resumed run draws what an
    uninterrupted one would."""
    return (seed * 1_000_003 + epoch * 7_919 + 17) % 2**63


def set_epoch(data: Any, epoch: int) -> None:
    """Call ``set_epoch`` on ``data`` or on the dataset a Subset wraps."""
    while data is not None:
        if hasattr(data, "set_epoch"):
            data.set_epoch(epoch)
            return
        data = getattr(data, "dataset", None)


class Batches:
    """Makes the batches of a dataset for the loop.

    Args:
        tasks: The model's tasks, whose labels are checked on the host before a batch
            moves (:func:`~multitask_mnist.tasks.check_labels`).
        inputs: The model's inputs, whose values are checked there too (finite, whole,
            in bounds: :meth:`~multitask_mnist.models.Input.check`), so that the
            forward pass checks types and shapes alone and never waits for the device.
        device: Where batches go.
        channels_last: Images (4-D float fields) in channels-last memory order.
        num_workers: Loader processes for datasets without a batched ``get_batch``.

    Example:
        >>> from multitask_mnist.tasks import DIGIT_SUM_TASKS
        >>> batches = Batches(DIGIT_SUM_TASKS, torch.device("cpu"))
        >>> data = [{"digit": torch.tensor(3), "sum": torch.tensor(5)}] * 3
        >>> [b["digit"].tolist() for b in batches(data, 2)]
        [[3, 3], [3]]
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        device: torch.device,
        *,
        inputs: Mapping[str, Input] | None = None,
        channels_last: bool = False,
        num_workers: int = 0,
    ) -> None:
        self.tasks = tuple(tasks)
        self.inputs = dict(inputs or {})
        self.device = device
        self.channels_last = channels_last
        self.num_workers = num_workers

    def __call__(
        self, data: Dataset[Any], batch_size: int, order: Tensor | None = None, seed: int = 0
    ) -> Iterator[dict[str, Tensor]]:
        """Yield batches of ``data`` in ``order`` (default: as stored).

        A loader's own generator is seeded from ``seed``: it leaves the global RNG
        alone, so a resumed epoch draws the same dropout masks as an uninterrupted one.
        """
        n = len(data)  # type: ignore[arg-type]
        if order is not None and order.numel() == 0:
            return  # torch.split would still yield one empty chunk
        chunks = torch.split(order if order is not None else torch.arange(n), batch_size)
        get_batch = getattr(data, "get_batch", None)
        non_blocking = self.device.type == "cuda"
        if get_batch is not None and self.num_workers == 0:
            for idx in chunks:
                yield self.to_device(get_batch(idx), non_blocking, idx)
            return
        loader = DataLoader(
            data,
            batch_sampler=[c.tolist() for c in chunks],
            num_workers=self.num_workers,
            pin_memory=non_blocking,
            generator=torch.Generator().manual_seed(seed),
        )
        for idx, batch in zip(chunks, loader, strict=True):
            yield self.to_device(batch, non_blocking, idx)

    def to_device(
        self, batch: Any, non_blocking: bool = False, indices: Tensor | None = None
    ) -> dict[str, Tensor]:
        """``batch`` as named fields on the device; with the samples' ``indices``, its
        labels are checked on the host first."""
        fields = as_fields(batch)
        if indices is not None:
            check_labels(self.tasks, fields, indices)
            for name, spec in self.inputs.items():
                if name in fields:  # a missing one is named where the batch is split
                    spec.check(fields[name])
        fields = to_device(fields, self.device, non_blocking)
        if self.channels_last:
            for name, value in fields.items():
                if value.ndim == 4 and value.is_floating_point():
                    fields[name] = value.contiguous(memory_format=torch.channels_last)
        return fields

    def epoch_order(self, data: Dataset[Any], seed: int, epoch: int) -> Tensor:
        """This process's sample order for ``epoch``: a seeded shuffle, sharded under
        torchrun."""
        world = distributed.world_size()
        if world == 1:
            generator = torch.Generator().manual_seed(epoch_seed(seed, epoch))
            return torch.randperm(len(data), generator=generator)  # type: ignore[arg-type]
        sampler: DistributedSampler[int] = DistributedSampler(
            data, num_replicas=world, rank=distributed.rank(), shuffle=True, seed=seed
        )
        sampler.set_epoch(epoch)
        return torch.tensor(list(sampler), dtype=torch.long)
