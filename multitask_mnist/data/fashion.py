"""Loading Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017) from its gzipped IDX files.

Fashion-MNIST has MNIST's shapes (60,000 training and 10,000 test 28x28 grayscale
images, ten classes) with pictures of clothes instead of digits. On Debian the package
``dataset-fashion-mnist`` installs the four gzipped IDX files under
``/usr/share/datasets/fashion-mnist``; elsewhere, download them from the dataset's page
into a folder and point ``$MULTITASK_MNIST_FASHION`` (or ``root``) at it.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import ClassVar

import torch

from multitask_mnist._validation import check_bool
from multitask_mnist.data._idx import DataFileError, parse_idx
from multitask_mnist.data.image import IMAGE_SHAPE
from multitask_mnist.data.mnist import MNISTSplit

__all__ = ["FASHION_ENV_VAR", "FASHION_ROOT", "FashionSplit", "load_fashion_mnist"]

#: Environment variable naming the folder that holds the four ``*-ubyte.gz`` files.
FASHION_ENV_VAR = "MULTITASK_MNIST_FASHION"
#: Where Debian's ``dataset-fashion-mnist`` package puts them.
FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")

_FILES = {
    True: ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    False: ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class FashionSplit(MNISTSplit):
    """One split of Fashion-MNIST: ``data`` ``(N, 28, 28)`` uint8, ``targets`` ``(N,)``
    int64, and ``(PIL image, label)`` items, as :class:`~multitask_mnist.data.MNISTSplit`.

    Example:
        >>> FashionSplit.classes[:3]
        ['T-shirt/top', 'Trouser', 'Pullover']
    """

    classes: ClassVar[list[str]] = [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ]


def _read(path: Path, ndim: int) -> tuple[tuple[int, ...], bytes]:
    try:
        content = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as error:
        raise DataFileError(f"{path}: not a readable gzip file ({error})") from None
    return parse_idx(content, ndim=ndim, name=str(path))


def load_fashion_mnist(
    root: str | os.PathLike[str] | None = None, *, train: bool = True
) -> FashionSplit:
    """Load one split of Fashion-MNIST from its gzipped IDX files.

    Args:
        root: The folder holding ``train-images-idx3-ubyte.gz`` and the three others.
            Defaults to ``$MULTITASK_MNIST_FASHION``, else Debian's
            ``/usr/share/datasets/fashion-mnist``.
        train: The 60,000-image training split if true, else the 10,000-image test split.

    Returns:
        The split, with ``data`` ``(N, 28, 28)`` uint8 and ``targets`` ``(N,)`` int64.

    Raises:
        TypeError: ``train`` is not a bool.
        FileNotFoundError: A file is missing; the message names it and the package.
        DataFileError: A file is not gzip, or not the IDX file its name says, or the
            image and label counts differ.

    Example:
        >>> test = load_fashion_mnist(train=False)  # doctest: +SKIP
        >>> len(test), FashionSplit.classes[int(test.targets[0])]  # doctest: +SKIP
        (10000, 'Ankle boot')
    """
    check_bool("train", train)
    folder = (
        Path(root) if root is not None else Path(os.environ.get(FASHION_ENV_VAR) or FASHION_ROOT)
    )
    images, labels = (folder / name for name in _FILES[train])
    missing = [path.name for path in (images, labels) if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"Fashion-MNIST not found in {folder} (missing: {', '.join(missing)}). On Debian "
            "or Ubuntu: apt-get install dataset-fashion-mnist; elsewhere download the four "
            f"*-ubyte.gz files and point ${FASHION_ENV_VAR} or `root` at their folder."
        )
    image_shape, image_bytes = _read(images, ndim=3)
    (n_labels,), label_bytes = _read(labels, ndim=1)
    if tuple(image_shape[1:]) != IMAGE_SHAPE[1:]:
        raise DataFileError(
            f"{images}: images are {image_shape[1]}x{image_shape[2]}, expected 28x28"
        )
    if image_shape[0] != n_labels:
        raise DataFileError(
            f"{images} holds {image_shape[0]} images but {labels} holds {n_labels} labels; "
            "the counts must match"
        )
    data = torch.frombuffer(bytearray(image_bytes), dtype=torch.uint8).view(-1, 28, 28)
    targets = torch.frombuffer(bytearray(label_bytes), dtype=torch.uint8).long()
    if int(targets.max()) > 9:
        raise DataFileError(f"{labels}: a label of {int(targets.max())}; the classes are 0-9")
    return FashionSplit(folder, train, data, targets)
