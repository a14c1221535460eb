"""MNIST-addition: the benchmark's grouping, reproducible, with no digit label in a sample."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from multitask_mnist.data import AdditionSample, MNISTAddition
from tests.conftest import write_fake_mnist


@pytest.mark.parametrize(("digits", "train_size", "test_size"), [(1, 12, 5), (2, 6, 2)])
def test_groups_use_each_image_once_and_sum_the_numbers(
    tmp_path: Path, digits: int, train_size: int, test_size: int
) -> None:
    root = write_fake_mnist(tmp_path, n_train=24, n_test=10)
    data = MNISTAddition(root, digits=digits, seed=3)
    assert len(data) == train_size
    assert len(MNISTAddition(root, train=False, digits=digits)) == test_size
    assert data.groups.shape == (train_size, 2 * digits)
    assert data.groups.unique().numel() == data.groups.numel()  # no image used twice
    labels = torch.arange(24) % 10  # write_fake_mnist's labels
    for group, total in zip(data.groups, data.sums, strict=True):
        d = labels[group].tolist()
        first = int("".join(map(str, d[:digits])))  # most significant digit first
        second = int("".join(map(str, d[digits:])))
        assert int(total) == first + second
    assert torch.equal(data.digit_labels, labels[data.groups])
    assert data.num_classes == (19 if digits == 1 else 199)


def test_a_sample_holds_the_images_and_the_sum_only(tmp_path: Path) -> None:
    data = MNISTAddition(write_fake_mnist(tmp_path, n_train=24, n_test=10), digits=2)
    sample = data[0]
    assert isinstance(sample, AdditionSample) and sample._fields == ("images", "sum")
    assert sample.images.shape == (4, 1, 28, 28) and sample.images.dtype == torch.float32
    batch = data.get_batch(torch.tensor([0, 2]))
    assert batch._fields == ("images", "sum")  # the digit labels never reach training
    assert (
        batch.images.shape == (2, 4, 1, 28, 28) and batch.sum.tolist() == data.sums[[0, 2]].tolist()
    )
    assert torch.equal(batch.images[1], data[2].images)


def test_the_grouping_follows_the_seed(tmp_path: Path) -> None:
    root = write_fake_mnist(tmp_path, n_train=40, n_test=10)
    a, b, c = (MNISTAddition(root, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.groups, b.groups) and not torch.equal(a.groups, c.groups)
    with pytest.raises(ValueError, match=r"^Expected argument `digits` to be >= 1, got 0$"):
        MNISTAddition(root, digits=0)


def test_the_real_splits_have_the_benchmarks_sizes(mnist_root: Path) -> None:
    for digits, train, test in ((1, 30_000, 5_000), (2, 15_000, 2_500)):
        assert len(MNISTAddition(mnist_root, digits=digits)) == train
        assert len(MNISTAddition(mnist_root, train=False, digits=digits)) == test


@pytest.mark.parametrize("digits", [1, 2, 3])
def test_sum_digits_write_the_sum(tmp_path: Path, digits: int) -> None:
    root = write_fake_mnist(tmp_path, n_train=24, n_test=10)
    whole = MNISTAddition(root, digits=digits, seed=5)
    written = MNISTAddition(root, digits=digits, seed=5, sum_digits=True)
    assert written.sums.shape == (len(whole), digits + 1)
    for total, row in zip(whole.sums, written.sums, strict=True):
        assert int("".join(map(str, row.tolist()))) == int(total)
    assert written[0].sum.shape == (digits + 1,)
    with pytest.raises(ValueError, match="labelled by their digits"):
        _ = written.num_classes


def test_a_hundred_digits_builds_nothing_exponential(mnist_root: Path) -> None:
    data = MNISTAddition(mnist_root, digits=100, sum_digits=True)
    assert len(data) == 300 and data.sums.shape == (300, 101)  # 60,000 / 200
    for g in (0, 299):  # Python's big integers check the carries
        d = data.digit_labels[g].tolist()
        first, second = int("".join(map(str, d[:100]))), int("".join(map(str, d[100:])))
        assert "".join(map(str, data.sums[g].tolist())) == str(first + second).zfill(101)
    assert len(MNISTAddition(mnist_root, train=False, digits=15, sum_digits=True)) == 333


def test_long_sums_need_digit_labels(tmp_path: Path) -> None:
    root = write_fake_mnist(tmp_path, n_train=40, n_test=10)
    with pytest.raises(ValueError, match="does not fit in int64; pass sum_digits=True"):
        MNISTAddition(root, digits=19)
    assert MNISTAddition(root, digits=19, sum_digits=True).sums.shape == (1, 20)
    with pytest.raises(ValueError, match=r"at least one sample \(42 images\) in the 40 images"):
        MNISTAddition(root, digits=21, sum_digits=True)
