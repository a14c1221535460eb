"""Fashion-MNIST from gzipped IDX files: the real files when installed, and every way a
file can be missing or damaged, each refused with a message naming the file."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest
import torch

from multitask_mnist.data import (
    FASHION_ROOT,
    DataFileError,
    MultiFashion,
    MultiFashionMNIST,
    MultiMNIST,
    load_fashion_mnist,
)
from tests.conftest import write_idx

NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")


def _write_gz(folder: Path, images: torch.Tensor, labels: torch.Tensor) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in zip(NAMES, (images, labels), strict=True):
        raw = folder / name.removesuffix(".gz")
        write_idx(raw, array)
        (folder / name).write_bytes(gzip.compress(raw.read_bytes()))
        raw.unlink()
    return folder


@pytest.fixture
def fashion_root() -> Path:
    """The installed Fashion-MNIST (Debian's dataset-fashion-mnist; CI installs it)."""
    root = Path(os.environ.get("MULTITASK_MNIST_FASHION") or FASHION_ROOT)
    if not (root / NAMES[0]).is_file():
        if os.environ.get("CI"):
            pytest.fail(
                f"Fashion-MNIST is not installed in {root}: apt-get install dataset-fashion-mnist"
            )
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    return root


def test_reads_a_small_well_formed_set(tmp_path: Path) -> None:
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    labels = torch.tensor([0, 9, 3, 3, 1])
    split = load_fashion_mnist(_write_gz(tmp_path, images, labels), train=True)
    assert torch.equal(split.data, images) and torch.equal(split.targets, labels)
    assert split.targets.dtype == torch.int64 and len(split) == 5


def test_a_missing_folder_names_the_files_and_the_package(tmp_path: Path) -> None:
    pattern = r"train-images-idx3-ubyte.gz.*apt-get install dataset-fashion-mnist"
    with pytest.raises(FileNotFoundError, match=pattern):
        load_fashion_mnist(tmp_path / "nowhere")


def test_the_environment_variable_names_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _write_gz(
        tmp_path / "f", torch.zeros(2, 28, 28, dtype=torch.uint8), torch.tensor([1, 2])
    )
    monkeypatch.setenv("MULTITASK_MNIST_FASHION", str(folder))
    assert load_fashion_mnist().targets.tolist() == [1, 2]


def test_a_file_that_is_not_gzip_is_named(tmp_path: Path) -> None:
    folder = _write_gz(tmp_path, torch.zeros(2, 28, 28, dtype=torch.uint8), torch.tensor([1, 2]))
    (folder / NAMES[0]).write_bytes(b"not gzip at all")
    with pytest.raises(DataFileError, match=f"{NAMES[0]}: not a readable gzip file"):
        load_fashion_mnist(folder)


def test_a_truncated_gzip_is_named(tmp_path: Path) -> None:
    folder = _write_gz(tmp_path, torch.zeros(2, 28, 28, dtype=torch.uint8), torch.tensor([1, 2]))
    path = folder / NAMES[0]
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DataFileError, match=NAMES[0]):
        load_fashion_mnist(folder)


def test_labels_in_the_images_file_are_refused(tmp_path: Path) -> None:
    labels = torch.tensor([1, 2])
    folder = _write_gz(tmp_path, labels, labels)  # a 1-d file where images belong
    with pytest.raises(DataFileError, match=NAMES[0]):
        load_fashion_mnist(folder)


def test_counts_that_differ_are_refused(tmp_path: Path) -> None:
    folder = _write_gz(tmp_path, torch.zeros(3, 28, 28, dtype=torch.uint8), torch.tensor([1, 2]))
    with pytest.raises(DataFileError, match=r"3 images but .* 2 labels"):
        load_fashion_mnist(folder)


def test_a_label_above_nine_is_refused(tmp_path: Path) -> None:
    folder = _write_gz(tmp_path, torch.zeros(2, 28, 28, dtype=torch.uint8), torch.tensor([1, 12]))
    with pytest.raises(DataFileError, match="a label of 12"):
        load_fashion_mnist(folder)


def test_the_installed_files_have_fashion_mnists_shape(fashion_root: Path) -> None:
    train = load_fashion_mnist(fashion_root, train=True)
    test = load_fashion_mnist(fashion_root, train=False)
    assert tuple(train.data.shape) == (60_000, 28, 28) and len(test) == 10_000
    assert torch.bincount(test.targets).tolist() == [1000] * 10  # balanced classes


def test_multi_fashion_pairs_garments_as_multi_mnist_pairs_digits(fashion_root: Path) -> None:
    test = load_fashion_mnist(fashion_root, train=False)
    data = MultiFashion(fashion_root, train=False, seed=3)
    assert torch.equal(data.targets[:, 0], test.targets)
    assert torch.equal(data.targets[:, 1], test.targets[data.partners])
    again = MultiFashion(fashion_root, train=False, seed=3)
    assert torch.equal(again.data, data.data)


def test_multi_fashion_mnist_has_a_digit_left_and_a_garment_right(
    fashion_root: Path, mnist_root: Path
) -> None:
    data = MultiFashionMNIST(mnist_root, fashion_root, train=False, seed=0)
    digits = MultiMNIST(mnist_root, train=False, seed=0)
    garments = load_fashion_mnist(fashion_root, train=False)
    assert torch.equal(data.targets[:, 0], digits.targets[:, 0])
    assert torch.equal(data.targets[:, 1], garments.targets[data.partners])
    # the same seed draws the same partners, so the top-left corner is MultiMNIST's
    assert torch.equal(data.data[:, :4, :4], digits.data[:, :4, :4])
