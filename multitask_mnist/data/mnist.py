"""Loading MNIST from disk, with errors that say which file is wrong and how to fix it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from multitask_mnist._validation import check_bool
from multitask_mnist.data._idx import check_idx_pair
from multitask_mnist.data.image import IMAGE_SHAPE

__all__ = ["DATA_ENV_VAR", "MNISTSplit", "default_root", "load_mnist"]

#: Environment variable naming the folder that holds ``MNIST/raw/``.
DATA_ENV_VAR = "MULTITASK_MNIST_DATA"

_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class MNISTSplit(Dataset[tuple[Image.Image, int]]):
    """One split of MNIST read straight from its IDX files, as torchvision's ``MNIST``
    without its transforms: ``data``, ``targets``, and ``(PIL image, label)`` items.

    Reading the files here spares every process the import of torchvision (about two
    seconds), which is only needed to download them.

    Args:
        root: The folder holding ``MNIST/raw/``.
        train: The training split if true, else the test split.
        data: ``(N, 28, 28)`` uint8 images.
        targets: ``(N,)`` int64 labels.

    Example:
        >>> split = MNISTSplit("data", True, torch.zeros(2, 28, 28, dtype=torch.uint8),
        ...                    torch.tensor([3, 1]))
        >>> len(split), split[0][1], split[0][0].size
        (2, 3, (28, 28))
    """

    #: The class names, as torchvision gives them.
    classes: ClassVar[list[str]] = [
        f"{digit} - {name}"
        for digit, name in enumerate(
            ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
        )
    ]

    def __init__(self, root: str | os.PathLike[str], train: bool, data: Tensor, targets: Tensor):
        self.root = str(root)
        self.train = train
        self.data = data
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return Image.fromarray(self.data[index].numpy()), int(self.targets[index])

    def __repr__(self) -> str:
        split = "Train" if self.train else "Test"
        return f"MNISTSplit(split={split}, images={len(self)}, root={self.root})"


def _read_idx(path: Path, header: int) -> Tensor:
    """The bytes after an IDX header, as a uint8 tensor (the header is checked first)."""
    return torch.frombuffer(bytearray(path.read_bytes()[header:]), dtype=torch.uint8)


def default_root() -> Path:
    """The data folder used when none is given: ``$MULTITASK_MNIST_DATA``, else ``./data``.

    Returns:
        The folder that should hold ``MNIST/raw/``.

    Example:
        >>> import os
        >>> default_root() == Path(os.environ.get(DATA_ENV_VAR) or "data")
        True
    """
    return Path(os.environ.get(DATA_ENV_VAR) or "data")


def load_mnist(
    root: str | os.PathLike[str] | None = None, *, train: bool = True, download: bool = False
) -> MNISTSplit:
    """Load one split of MNIST.

    The files are the four uncompressed IDX files in torchvision's layout,
    ``<root>/MNIST/raw/``. Their headers are checked before they are read, so a
    damaged file gets an error that names it. torchvision is imported only to
    download them.

    Args:
        root: Folder holding ``MNIST/raw/``. Defaults to ``$MULTITASK_MNIST_DATA``,
            else ``./data``.
        train: The 60,000-image training split if true, else the 10,000-image test split.
        download: Fetch the files into ``root`` if they are missing.

    Returns:
        A :class:`MNISTSplit` whose ``data`` is a ``(N, 28, 28)`` uint8 tensor and
        ``targets`` a ``(N,)`` int64 tensor, as in torchvision's ``MNIST``.

    Raises:
        TypeError: ``train`` or ``download`` is not a bool.
        FileNotFoundError: The files are missing and ``download`` is false.
        ConnectionError: The files are missing and could not be downloaded.
        DataFileError: A file is present but malformed (wrong magic number,
            truncated, or image and label counts that differ).

    Example:
        >>> import os
        >>> test = load_mnist(os.environ["MULTITASK_MNIST_DATA"], train=False)  # doctest: +SKIP
        >>> len(test)  # doctest: +SKIP
        10000
    """
    check_bool("train", train)
    check_bool("download", download)
    root_path = Path(root) if root is not None else default_root()
    raw = root_path / "MNIST" / "raw"
    # torchvision checks all four files whichever split is asked for.
    missing = [name for pair in _FILES.values() for name in pair if not (raw / name).is_file()]
    if missing and not download:
        raise FileNotFoundError(
            f"MNIST not found in {raw} (missing: {', '.join(missing)}). Point "
            f"${DATA_ENV_VAR} or `root` at the folder that holds MNIST/raw/, "
            "or pass download=True to fetch it."
        )
    if missing:
        from torchvision.datasets import MNIST

        try:
            MNIST(str(root_path), train=train, download=True)
        except (OSError, RuntimeError) as error:
            raise ConnectionError(
                f"Could not download MNIST into {raw}: {error}. Without a network, put the "
                f"four IDX files ({', '.join(missing)}) there, or point ${DATA_ENV_VAR} at a "
                "folder that holds MNIST/raw/."
            ) from error
    images, labels = _FILES[train]
    check_idx_pair(raw / images, raw / labels, image_size=IMAGE_SHAPE[1:])
    data = _read_idx(raw / images, header=16).view(-1, *IMAGE_SHAPE[1:])
    targets = _read_idx(raw / labels, header=8).long()
    return MNISTSplit(root_path, train, data, targets)
