"""Loading MNIST from disk, with errors that say which file is wrong and how to fix it."""

from __future__ import annotations

import os
from pathlib import Path

from torchvision.datasets import MNIST

from multitask_mnist.data._idx import check_idx_pair
from multitask_mnist.data.image import IMAGE_SHAPE

__all__ = ["DATA_ENV_VAR", "default_root", "load_mnist"]

#: Environment variable naming the folder that holds ``MNIST/raw/``.
DATA_ENV_VAR = "MULTITASK_MNIST_DATA"

_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


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
) -> MNIST:
    """Load one split of MNIST as a torchvision dataset.

    The files are the four uncompressed IDX files in torchvision's layout,
    ``<root>/MNIST/raw/``. Their headers are checked before torchvision parses
    them, so a damaged file gets an error that names it.

    Args:
        root: Folder holding ``MNIST/raw/``. Defaults to ``$MULTITASK_MNIST_DATA``,
            else ``./data``.
        train: The 60,000-image training split if true, else the 10,000-image test split.
        download: Fetch the files into ``root`` if they are missing.

    Returns:
        A :class:`torchvision.datasets.MNIST` whose ``data`` is a ``(N, 28, 28)``
        uint8 tensor and ``targets`` a ``(N,)`` int64 tensor.

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
    for name, value in (("train", train), ("download", download)):
        if not isinstance(value, bool):
            raise TypeError(f"Expected argument `{name}` to be a bool, got {value!r}")
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
        try:
            return MNIST(str(root_path), train=train, download=True)
        except (OSError, RuntimeError) as error:
            raise ConnectionError(
                f"Could not download MNIST into {raw}: {error}. Without a network, put the "
                f"four IDX files ({', '.join(missing)}) there, or point ${DATA_ENV_VAR} at a "
                "folder that holds MNIST/raw/."
            ) from error
    images, labels = _FILES[train]
    check_idx_pair(raw / images, raw / labels, image_size=IMAGE_SHAPE[1:])
    return MNIST(str(root_path), train=train, download=False)
