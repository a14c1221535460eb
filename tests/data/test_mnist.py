from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from multitask_mnist import DataFileError, load_mnist
from multitask_mnist.data import DATA_ENV_VAR, default_root
from tests.conftest import IDX_NAMES, write_fake_mnist, write_idx


def test_well_formed_files_load(fake_mnist_root: Path) -> None:
    train = load_mnist(fake_mnist_root, train=True)
    test = load_mnist(fake_mnist_root, train=False)
    assert (len(train), len(test)) == (12, 6)
    assert train.data.dtype == torch.uint8 and tuple(train.data.shape) == (12, 28, 28)
    assert train.targets.tolist() == [i % 10 for i in range(12)]


def test_root_defaults_to_environment(
    fake_mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_ENV_VAR, str(fake_mnist_root))
    assert default_root() == fake_mnist_root
    assert len(load_mnist(train=False)) == 6


def test_root_falls_back_to_data_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_ENV_VAR, raising=False)
    assert default_root() == Path("data")


def test_missing_files_name_the_folder_and_the_fixes(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path, train=True)
    message = str(info.value)
    assert str(raw) in message
    assert DATA_ENV_VAR in message and "`root`" in message and "download=True" in message
    assert "train-images-idx3-ubyte" in message


@pytest.mark.parametrize("split", ["train", "test"])
def test_wrong_magic_names_the_file(fake_mnist_root: Path, split: str) -> None:
    path = fake_mnist_root / "MNIST" / "raw" / IDX_NAMES[split][0]
    write_idx(path, torch.zeros(3, 28, 28), magic=0x1F8B0800)  # a gzip header, say
    with pytest.raises(DataFileError, match=re.escape(f"{path}: wrong magic number 0x1f8b0800")):
        load_mnist(fake_mnist_root, train=split == "train")


def test_truncated_file_names_the_file(fake_mnist_root: Path) -> None:
    path = fake_mnist_root / "MNIST" / "raw" / IDX_NAMES["test"][0]
    path.write_bytes(path.read_bytes()[:-100])
    expected = f"{path}: truncated: {16 + 6 * 784 - 100} bytes, expected {16 + 6 * 784}"
    with pytest.raises(DataFileError, match=re.escape(expected)):
        load_mnist(fake_mnist_root, train=False)


def test_truncated_header_names_the_file(fake_mnist_root: Path) -> None:
    path = fake_mnist_root / "MNIST" / "raw" / IDX_NAMES["train"][1]
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DataFileError, match=re.escape(f"{path}: file is 2 bytes")):
        load_mnist(fake_mnist_root, train=True)


def test_count_mismatch_names_both_files(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    images, labels = (raw / n for n in IDX_NAMES["train"])
    write_idx(labels, torch.zeros(11))
    with pytest.raises(DataFileError) as info:
        load_mnist(tmp_path, train=True)
    assert str(info.value) == (
        f"{images} holds 12 images but {labels} holds 11 labels; the counts must match"
    )


def test_wrong_image_size_names_the_file(fake_mnist_root: Path) -> None:
    path = fake_mnist_root / "MNIST" / "raw" / IDX_NAMES["test"][0]
    write_idx(path, torch.zeros(6, 32, 32))
    with pytest.raises(DataFileError, match=re.escape(f"{path}: images are 32x32, expected 28x28")):
        load_mnist(fake_mnist_root, train=False)


@pytest.mark.parametrize("argument", ["train", "download"])
def test_flags_must_be_bools(fake_mnist_root: Path, argument: str) -> None:
    with pytest.raises(TypeError, match=f"Expected argument `{argument}` to be a bool, got 1"):
        load_mnist(fake_mnist_root, **{argument: 1})  # type: ignore[arg-type]


def test_failed_download_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(self: object) -> None:
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr("torchvision.datasets.MNIST.download", offline)
    with pytest.raises(ConnectionError) as info:
        load_mnist(tmp_path, train=True, download=True)
    message = str(info.value)
    assert message.startswith(f"Could not download MNIST into {tmp_path / 'MNIST' / 'raw'}: ")
    assert "Error downloading train-images-idx3-ubyte.gz" in message and DATA_ENV_VAR in message


def test_download_skipped_when_files_are_present(
    fake_mnist_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never(self: object) -> None:
        raise AssertionError("must not download")

    monkeypatch.setattr("torchvision.datasets.MNIST.download", never)
    assert len(load_mnist(fake_mnist_root, train=False, download=True)) == 6


def test_the_split_equals_torchvisions_reading_of_the_same_files(mnist_root: Path) -> None:
    from torchvision.datasets import MNIST

    for train in (True, False):
        ours, theirs = load_mnist(mnist_root, train=train), MNIST(str(mnist_root), train=train)
        assert torch.equal(ours.data, theirs.data) and torch.equal(ours.targets, theirs.targets)
        assert ours.targets.dtype == torch.int64 and len(ours) == len(theirs)
        image, label = ours[5]
        expected_image, expected_label = theirs[5]
        assert label == expected_label and image.tobytes() == expected_image.tobytes()
        assert ours.classes == theirs.classes


def test_reading_mnist_does_not_import_torchvision(mnist_root: Path) -> None:
    code = (
        "import sys; from multitask_mnist import load_mnist; "
        f"load_mnist({str(mnist_root)!r}, train=False); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torchvision', 'torchjd')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "[]", result.stderr
