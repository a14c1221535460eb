"""The validation split carved out of the training data by seed."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from multitask_mnist.data import AugmentedDigitDataset, Split, holdout


def test_holdout_is_disjoint_complete_and_set_by_the_seed() -> None:
    data = TensorDataset(torch.arange(100))
    train, val = holdout(data, 20, seed=4)
    assert len(train) == 80 and len(val) == 20
    together = torch.cat([train.indices, val.indices]).sort().values
    assert torch.equal(together, torch.arange(100))
    assert torch.equal(holdout(data, 20, seed=4)[1].indices, val.indices)
    assert not torch.equal(holdout(data, 20, seed=5)[1].indices, val.indices)


@pytest.mark.parametrize("size", [0, 100, 101])
def test_holdout_refuses_a_size_out_of_range(size: int) -> None:
    with pytest.raises(ValueError, match="size"):
        holdout(TensorDataset(torch.arange(100)), size, seed=0)


def test_a_split_keeps_the_batched_fetch() -> None:
    images = torch.rand(6, 1, 28, 28)
    base = AugmentedDigitDataset(TensorDataset(images, torch.arange(6)), seed=0)
    part = Split(base, [5, 1, 3])
    batch = part.get_batch(torch.tensor([0, 2]))
    assert batch.digit.tolist() == [5, 3]
    assert torch.equal(batch.image, base.get_batch(torch.tensor([5, 3])).image)
    assert torch.equal(part[1].image, base[1].image)


def test_a_split_of_a_dataset_without_a_batched_fetch_has_none() -> None:
    part = Split(TensorDataset(torch.arange(4)), [0])
    assert not hasattr(part, "get_batch")
