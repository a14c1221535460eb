from __future__ import annotations

from typing import Any

import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset
from torchvision.datasets import MNIST

from multitask_mnist import AugmentedDigitDataset, DigitSample


class PerSample(Dataset[tuple[Any, int]]):
    """Hides the tensors of a torchvision MNIST, so only the per-sample (PIL) path is left."""

    def __init__(self, base: MNIST) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image, label = self.base[index]
        return image, int(label)


def _tiny(n: int = 20) -> TensorDataset:
    g = torch.Generator().manual_seed(1)
    return TensorDataset(
        torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8), torch.arange(n) % 10
    )


# -- invariants on the real files --------------------------------------------------------


def test_sum_is_digit_plus_number_on_every_test_item(mnist_test: MNIST) -> None:
    ds = AugmentedDigitDataset(mnist_test)
    batch = ds.get_batch(torch.arange(len(ds)))
    assert len(ds) == 10_000
    assert torch.equal(batch.sum, batch.digit + batch.number)
    assert torch.equal(batch.digit, mnist_test.targets)
    assert batch.image.dtype == torch.float32 and tuple(batch.image.shape) == (10_000, 1, 28, 28)
    assert batch.number.dtype == batch.digit.dtype == batch.sum.dtype == torch.int64


def test_numbers_are_uniform_on_the_train_split(mnist_train: MNIST) -> None:
    ds = AugmentedDigitDataset(mnist_train, seed=3)
    counts = torch.bincount(ds.numbers, minlength=10).double()
    assert counts.numel() == 10 and int(ds.numbers.min()) == 0 and int(ds.numbers.max()) == 9
    assert torch.all((counts / len(ds) - 0.1).abs() < 0.003), counts


def test_images_are_normalized_with_mnist_statistics(mnist_train: MNIST) -> None:
    images = AugmentedDigitDataset(mnist_train).get_batch(torch.arange(len(mnist_train))).image
    assert abs(float(images.mean())) < 1e-3
    assert abs(float(images.std()) - 1.0) < 1e-3


def test_fast_and_per_sample_paths_give_identical_samples(mnist_test: MNIST) -> None:
    fast = AugmentedDigitDataset(mnist_test, seed=5)
    slow = AugmentedDigitDataset(PerSample(mnist_test), seed=5)
    assert "Fetch: tensor" in repr(fast) and "Fetch: per-sample" in repr(slow)
    indices = [0, 1, 17, 4242, 9999]
    for a, b in zip(fast.get_batch(indices), slow.get_batch(indices), strict=True):
        assert torch.equal(a, b)
    for i in indices:
        for a, b in zip(fast[i], slow[i], strict=True):
            assert torch.equal(a, b)


def test_subset_of_mnist_uses_the_fast_path(mnist_test: MNIST) -> None:
    subset = Subset(Subset(mnist_test, list(range(100, 200))), [5, 0, 99])
    ds = AugmentedDigitDataset(subset)
    assert "Fetch: tensor" in repr(ds)
    batch = ds.get_batch([0, 1, 2])
    assert batch.digit.tolist() == [int(mnist_test.targets[i]) for i in (105, 100, 199)]
    expected = AugmentedDigitDataset(PerSample(mnist_test)).get_batch([105, 100, 199]).image
    assert torch.equal(batch.image, expected)


# -- reproducibility -------------------------------------------------------------------


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    a, b, c = (AugmentedDigitDataset(_tiny(500), seed=s) for s in (7, 7, 8))
    assert torch.equal(a.numbers, b.numbers)
    assert not torch.equal(a.numbers, c.numbers)


def test_set_epoch_draws_afresh_and_reproducibly() -> None:
    a, b = AugmentedDigitDataset(_tiny(500)), AugmentedDigitDataset(_tiny(500))
    fixed = a.numbers.clone()
    assert a.epoch is None
    a.set_epoch(0)
    assert not torch.equal(a.numbers, fixed)
    epoch0 = a.numbers.clone()
    a.set_epoch(1)
    assert not torch.equal(a.numbers, epoch0)
    b.set_epoch(1)
    assert torch.equal(a.numbers, b.numbers)
    a.set_epoch(0)
    assert torch.equal(a.numbers, epoch0)
    c = AugmentedDigitDataset(_tiny(500))
    assert torch.equal(c.numbers, fixed)  # never given an epoch: the seed's own draw


def test_numbers_respect_low_and_high() -> None:
    ds = AugmentedDigitDataset(_tiny(400), low=3, high=5)
    assert set(ds.numbers.tolist()) == {3, 4, 5}


# -- batching ----------------------------------------------------------------------------


def test_default_collate_gives_a_batched_digit_sample() -> None:
    ds = AugmentedDigitDataset(_tiny())
    batch = next(iter(DataLoader(ds, batch_size=8)))
    assert isinstance(batch, DigitSample)
    assert tuple(batch.image.shape) == (8, 1, 28, 28) and tuple(batch.number.shape) == (8,)
    direct = ds.get_batch(list(range(8)))
    for a, b in zip(batch, direct, strict=True):
        assert torch.equal(a, b)


def test_getitems_returns_one_sample_per_index() -> None:
    ds = AugmentedDigitDataset(_tiny())
    items = ds.__getitems__([3, 4])
    assert len(items) == 2 and all(isinstance(s, DigitSample) for s in items)
    assert tuple(items[0].image.shape) == (1, 28, 28) and int(items[1].digit) == 4


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (28, 28), color=255),
        torch.full((28, 28), 255, dtype=torch.uint8),
        torch.ones(1, 28, 28),
    ],
    ids=["pil", "uint8", "float01"],
)
def test_per_sample_path_accepts_common_image_types(image: Any) -> None:
    ds = AugmentedDigitDataset([(image, 4)])  # type: ignore[arg-type]
    expected = (1.0 - AugmentedDigitDataset.MEAN) / AugmentedDigitDataset.STD
    assert torch.allclose(ds[0].image, torch.full((1, 28, 28), expected))
    assert int(ds[0].digit) == 4


# -- errors --------------------------------------------------------------------------------


def test_label_outside_range_in_tensors() -> None:
    base = TensorDataset(torch.zeros(3, 28, 28, dtype=torch.uint8), torch.tensor([1, 12, 3]))
    base.data, base.targets = base.tensors  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"^Base label at index 1 is 12, outside 0-9$"):
        AugmentedDigitDataset(base)


def test_label_outside_range_per_sample() -> None:
    ds = AugmentedDigitDataset([(torch.zeros(28, 28), -1)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^Base label at index 0 is -1, outside 0-9$"):
        ds[0]


def test_non_integer_label() -> None:
    ds = AugmentedDigitDataset([(torch.zeros(28, 28), 2.5)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^Base label at index 0 is 2.5; expected an int 0-9$"):
        ds[0]


def test_wrong_image_shape_per_sample() -> None:
    ds = AugmentedDigitDataset([(torch.zeros(3, 28, 28), 1)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^Base image at index 0 has shape \(3, 28, 28\)"):
        ds[0]


def test_wrong_image_shape_in_tensors() -> None:
    base = TensorDataset(torch.zeros(3, 32, 32, dtype=torch.uint8), torch.tensor([1, 2, 3]))
    base.data, base.targets = base.tensors  # type: ignore[attr-defined]
    with pytest.raises(
        ValueError, match=r"^Base images have shape \(32, 32\); expected \(28, 28\)$"
    ):
        AugmentedDigitDataset(base)


def test_wrong_image_dtype() -> None:
    ds = AugmentedDigitDataset([(torch.zeros(28, 28, dtype=torch.int32), 1)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^Base image at index 0 has dtype torch.int32"):
        ds[0]


@pytest.mark.parametrize("seed", [1.5, "0", True, None])
def test_non_integer_seed(seed: Any) -> None:
    with pytest.raises(TypeError, match=r"^Expected argument `seed` to be an int, got "):
        AugmentedDigitDataset(_tiny(), seed=seed)


def test_low_above_high() -> None:
    with pytest.raises(ValueError, match=r"^Expected `low` <= `high`, got low=5, high=4$"):
        AugmentedDigitDataset(_tiny(), low=5, high=4)


def test_negative_epoch() -> None:
    with pytest.raises(ValueError, match=r"^Expected argument `epoch` to be >= 0, got -1$"):
        AugmentedDigitDataset(_tiny()).set_epoch(-1)


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.5, 1.0])
def test_digit_labels_kept_on_a_fraction_chosen_by_seed(fraction: float) -> None:
    from multitask_mnist.tasks import MISSING
    from tests.conftest import SyntheticDigits

    base = SyntheticDigits(300)
    data = AugmentedDigitDataset(base, seed=4, digit_labels=fraction)
    batch = data.get_batch(torch.arange(300))
    kept = batch.digit != MISSING
    assert int(kept.sum()) == round(fraction * 300) == int(data.labelled.sum())
    assert torch.equal(batch.digit[kept], base.targets[kept])
    assert torch.equal(batch.sum, base.targets + batch.number)  # the sum label is on all
    again = AugmentedDigitDataset(base, seed=4, digit_labels=fraction)
    assert torch.equal(again.labelled, data.labelled)
    data.set_epoch(3)  # the same images stay labelled in every epoch
    assert torch.equal(data.get_batch(torch.arange(300)).digit != MISSING, kept)
    per_item = torch.stack([data[i].digit for i in range(300)])
    assert torch.equal(per_item != MISSING, kept)


def test_another_seed_labels_other_images() -> None:
    from tests.conftest import SyntheticDigits

    base = SyntheticDigits(300)
    a = AugmentedDigitDataset(base, seed=0, digit_labels=0.1).labelled
    b = AugmentedDigitDataset(base, seed=1, digit_labels=0.1).labelled
    assert not torch.equal(a, b)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (1.5, ValueError, "Expected argument `digit_labels` to be in [0, 1], got 1.5"),
        (
            -0.1,
            ValueError,
            "Expected argument `digit_labels` to be a finite number >= 0.0, got -0.1",
        ),
        ("half", TypeError, "Expected argument `digit_labels` to be a number, got 'half' (str)"),
    ],
)
def test_bad_digit_label_fractions(value: Any, error: type[Exception], message: str) -> None:
    from tests.conftest import SyntheticDigits

    with pytest.raises(error) as info:
        AugmentedDigitDataset(SyntheticDigits(10), digit_labels=value)
    assert str(info.value) == message
