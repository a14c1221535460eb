"""MultiMNIST (Sener and Koltun, 2018) and its Fashion companions (Lin et al., 2019): two
overlapping images per sample, generated here.

The field's standard small multi-task benchmark: each image holds a left digit and a
right digit, and the tasks are to read each. The dataset is generated from the MNIST
files, reproducibly by seed, following the protocol of Sener and Koltun, "Multi-Task
Learning as Multi-Objective Optimization" (NeurIPS 2018): on a 36x36 canvas, the left
digit fills the top-left 28x28, the right digit the 28x28 shifted 6 pixels down and
right, the two are combined by their maximum, and the canvas is resized to 28x28 by
nearest-neighbour sampling. Each image of the split is the left digit of one sample;
its right digit is another image of the same split drawn at random.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from multitask_mnist._validation import check_int
from multitask_mnist.data.fashion import load_fashion_mnist
from multitask_mnist.data.image import normalize
from multitask_mnist.data.mnist import load_mnist

__all__ = [
    "MultiFashion",
    "MultiFashionMNIST",
    "MultiMNIST",
    "MultiMNISTSample",
    "OverlaidPairs",
    "overlay_digits",
]

#: The canvas side and the right digit's offset, in pixels, of Sener and Koltun's protocol.
CANVAS, OFFSET = 36, 6


class MultiMNISTSample(NamedTuple):
    """One sample, or a batch (every field gains a leading ``B``).

    Attributes:
        image: ``(1, 28, 28)`` float32, normalized with MNIST's mean and std.
        left: ``()`` int64, the digit in the top-left.
        right: ``()`` int64, the digit in the bottom-right.

    Example:
        >>> sample = MultiMNISTSample(torch.zeros(1, 28, 28), torch.tensor(7), torch.tensor(1))
        >>> int(sample.left), int(sample.right)
        (7, 1)
    """

    image: Tensor
    left: Tensor
    right: Tensor


def overlay_digits(left: Tensor, right: Tensor) -> Tensor:
    """Overlay digit images as Sener and Koltun's MultiMNIST does.

    Args:
        left: ``(N, 28, 28)`` uint8 images for the top-left.
        right: ``(N, 28, 28)`` uint8 images for the bottom-right.

    Returns:
        ``(N, 28, 28)`` uint8: the 36x36 canvas (left at (0, 0), right at (6, 6),
        combined by maximum) resized to 28x28 by nearest-neighbour sampling.

    Example:
        >>> one = torch.zeros(1, 28, 28, dtype=torch.uint8)
        >>> one[0, 0, 0] = 255  # a pixel in the left digit's corner stays in the corner
        >>> int(overlay_digits(one, torch.zeros_like(one))[0, 0, 0])
        255
    """
    n = left.shape[0]
    canvas = torch.zeros(n, CANVAS, CANVAS, dtype=torch.uint8)
    canvas[:, :28, :28] = left
    window = canvas[:, OFFSET : OFFSET + 28, OFFSET : OFFSET + 28]
    window.copy_(torch.maximum(window, right))
    resized = F.interpolate(canvas.unsqueeze(1).float(), size=(28, 28), mode="nearest")
    return resized.squeeze(1).to(torch.uint8)


class OverlaidPairs(Dataset[MultiMNISTSample]):
    """Pairs of 28x28 images overlaid as MultiMNIST overlays two digits: each image of
    ``left`` in the top-left, with an image of ``right`` drawn at random by seed in the
    bottom-right (:func:`overlay_digits`). The base of :class:`MultiMNIST`,
    :class:`MultiFashion` and :class:`MultiFashionMNIST`.

    Args:
        left: A split whose ``data`` is ``(N, 28, 28)`` uint8 and ``targets`` ``(N,)``.
        right: Another split (or the same one), of any length.
        seed: Seed of the random pairing; the same seed gives the same dataset.
        train: Whether these are training images (for ``repr``).

    Attributes:
        data: ``(N, 28, 28)`` uint8 images.
        targets: ``(N, 2)`` int64 labels, left then right.
        partners: ``(N,)`` int64: the image of ``right`` in the bottom-right.

    Raises:
        TypeError: ``seed`` is not an int.

    Example:
        >>> from multitask_mnist.data import MNISTSplit
        >>> digits = MNISTSplit("x", True, torch.zeros(4, 28, 28, dtype=torch.uint8),
        ...                     torch.tensor([1, 2, 3, 4]))
        >>> pairs = OverlaidPairs(digits, digits, seed=0)
        >>> pairs.targets.shape, pairs.get_batch([0]).image.shape
        (torch.Size([4, 2]), torch.Size([1, 1, 28, 28]))
    """

    def __init__(self, left: Any, right: Any, *, seed: int = 0, train: bool = True) -> None:
        self.seed = check_int("seed", seed)
        self.train = train
        generator = torch.Generator().manual_seed(seed)
        self.partners = torch.randint(0, len(right.data), (len(left.data),), generator=generator)
        self.data = overlay_digits(left.data, right.data[self.partners])
        self.targets = torch.stack(
            [left.targets.long(), right.targets.long()[self.partners]], dim=1
        )

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> MultiMNISTSample:
        return MultiMNISTSample(*(field[0] for field in self.get_batch([index])))

    def get_batch(self, indices: list[int] | Tensor) -> MultiMNISTSample:
        """Fetch a batch with one tensor index.

        Args:
            indices: ``(B,)`` positions.

        Returns:
            ``image`` ``(B, 1, 28, 28)`` float32, ``left`` and ``right`` ``(B,)`` int64.
        """
        idx = torch.as_tensor(indices, dtype=torch.long)
        labels = self.targets[idx]
        return MultiMNISTSample(normalize(self.data[idx].unsqueeze(1)), labels[:, 0], labels[:, 1])

    def extra_repr(self) -> str:
        split = "train" if self.train else "test"
        return f"Split: {split}, seed {self.seed}"

    def __repr__(self) -> str:
        lines = [f"Number of datapoints: {len(self)}", self.extra_repr()]
        return "\n".join([type(self).__name__, *("    " + line for line in lines)])


class MultiMNIST(OverlaidPairs):
    """MultiMNIST generated from the MNIST files: 60,000 training or 10,000 test images,
    each with a left and a right digit (the partner drawn from the same split).

    Args:
        root: Folder holding ``MNIST/raw/``; see :func:`~multitask_mnist.data.load_mnist`.
        train: The training split (60,000) if true, else the test split (10,000).
        seed: Seed of the random pairing; the same seed gives the same dataset.
        download: Fetch MNIST into ``root`` if it is missing.

    Raises:
        FileNotFoundError: MNIST is missing and may not be downloaded.
        TypeError: ``seed`` is not an int.

    Example:
        >>> data = MultiMNIST(os.environ["MULTITASK_MNIST_DATA"], train=False)  # doctest: +SKIP
        >>> len(data), data.targets[0].tolist()  # doctest: +SKIP
        (10000, [7, 1])
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        train: bool = True,
        seed: int = 0,
        download: bool = False,
    ) -> None:
        mnist = load_mnist(root, train=train, download=download)
        super().__init__(mnist, mnist, seed=seed, train=train)


class MultiFashion(OverlaidPairs):
    """MultiFashion (Lin et al., NeurIPS 2019): MultiMNIST's construction applied to
    Fashion-MNIST, two garments per image; the tasks read the left and the right one.

    Args:
        root: The folder of Fashion-MNIST's gzipped files; see
            :func:`~multitask_mnist.data.load_fashion_mnist`.
        train: The training split (60,000) if true, else the test split (10,000).
        seed: Seed of the random pairing.

    Raises:
        FileNotFoundError: Fashion-MNIST is missing; the message names the package.

    Example:
        >>> data = MultiFashion(train=False)  # doctest: +SKIP
        >>> len(data)  # doctest: +SKIP
        10000
    """

    def __init__(
        self, root: str | os.PathLike[str] | None = None, *, train: bool = True, seed: int = 0
    ) -> None:
        fashion = load_fashion_mnist(root, train=train)
        super().__init__(fashion, fashion, seed=seed, train=train)


class MultiFashionMNIST(OverlaidPairs):
    """Multi-(Fashion+MNIST) (Lin et al., NeurIPS 2019): an MNIST digit in the top-left
    and a Fashion-MNIST garment in the bottom-right, overlaid as in MultiMNIST; the tasks
    are ``left`` (the digit) and ``right`` (the garment). (The authors' generator is not
    public; the order, digit left, follows their accuracy curves.)

    Args:
        mnist_root: Folder holding ``MNIST/raw/``.
        fashion_root: The folder of Fashion-MNIST's gzipped files.
        train: The training split (60,000) if true, else the test split (10,000).
        seed: Seed of the random pairing.

    Raises:
        FileNotFoundError: MNIST or Fashion-MNIST is missing.

    Example:
        >>> data = MultiFashionMNIST(train=False)  # doctest: +SKIP
        >>> data.targets.shape  # doctest: +SKIP
        torch.Size([10000, 2])
    """

    def __init__(
        self,
        mnist_root: str | os.PathLike[str] | None = None,
        fashion_root: str | os.PathLike[str] | None = None,
        *,
        train: bool = True,
        seed: int = 0,
    ) -> None:
        digits = load_mnist(mnist_root, train=train)
        fashion = load_fashion_mnist(fashion_root, train=train)
        super().__init__(digits, fashion, seed=seed, train=train)
