"""Batches: the loader path and the batched path, a missing field named, values checked
on the host."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Subset

from multitask_mnist.data import as_fields
from multitask_mnist.errors import InvalidValueError
from multitask_mnist.models import Input
from tests.training import (
    assert_same_weights,
    make_data,
    make_trainer,
    three_task_net,
    three_tasks,
)


def test_loader_path_and_batched_path_train_identically() -> None:
    data = make_data(256)
    a, b = make_trainer(), make_trainer()
    a.fit(data)
    b.fit(Subset(data, range(256)))  # a Subset has no get_batch: the DataLoader path
    assert_same_weights(a.model, b.model)


def test_dict_samples_without_get_batch_train_through_a_data_loader() -> None:
    class Plain(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
        def __init__(self) -> None:
            self.base = three_tasks(96)

        def __len__(self) -> int:
            return 96

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return self.base[i]

        def set_epoch(self, epoch: int) -> None:
            self.base.set_epoch(epoch)

    a, b = make_trainer(three_task_net(), epochs=1), make_trainer(three_task_net(), epochs=1)
    a.fit(Plain())
    b.fit(three_tasks(96))
    assert_same_weights(a.model, b.model)


def test_a_sample_without_a_task_label_field_is_named() -> None:
    with pytest.raises(KeyError, match=r"The batch has no field 'larger'; it has 'image'"):
        make_trainer(three_task_net(), epochs=1).fit(make_data(64))
    with pytest.raises(TypeError, match=r"Expected samples with named fields"):
        make_trainer(epochs=1, num_workers=0).fit(torch.utils.data.TensorDataset(torch.zeros(4, 1)))


class _OutOfRange(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Good samples, but the number of sample ``bad`` is 12 (the model takes 0..9)."""

    def __init__(self, n: int, bad: int) -> None:
        self.base, self.bad = make_data(n), bad

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = as_fields(self.base[index])
        if index == self.bad:
            sample["number"] = torch.tensor(12)
        return sample


def test_input_values_are_checked_on_the_host_before_the_batch_moves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once per batch, where the batch is made; the forward pass checks shapes alone."""
    checked: list[bool] = []
    check = Input.check

    def counting(
        self: Input, value: object, batch: int | None = None, *, values: bool = True
    ) -> None:
        checked.append(values)
        check(self, value, batch, values=values)

    monkeypatch.setattr(Input, "check", counting)
    trainer = make_trainer(epochs=1, batch_size=32)
    trainer.fit(make_data(64))
    # two batches: each input checked with its values in Batches, without in forward
    assert checked.count(True) == 2 * 2 and checked.count(False) == 2 * 2
    checked.clear()
    trainer.evaluate(make_data(64))
    assert checked.count(True) == 1 * 2 and checked.count(False) == 1 * 2  # one eval batch


def test_a_bad_input_value_in_a_batch_stops_fit_naming_the_input() -> None:
    trainer = make_trainer(epochs=1, batch_size=32)
    with pytest.raises(
        InvalidValueError, match=r"Expected `number` to hold whole numbers in 0\.\.9, got 12"
    ):
        trainer.fit(_OutOfRange(64, bad=40))
    assert trainer.step == 1  # the first batch trained; the second never moved
