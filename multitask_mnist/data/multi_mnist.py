"""MultiMNIST (Sener and Koltun, 2018): two overlapping digits per image, generated here.

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
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from multitask_mnist._validation import check_int
from multitask_mnist.data.image import normalize
from multitask_mnist.data.mnist import load_mnist

__all__ = ["MultiMNIST", "MultiMNISTSample", "overlay_digits"]

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


class MultiMNIST(Dataset[MultiMNISTSample]):
    """MultiMNIST generated from the MNIST files: 60,000 training or 10,000 test images.

    Args:
        root: Folder holding ``MNIST/raw/``; see :func:`~multitask_mnist.data.load_mnist`.
        train: The training split (60,000) if true, else the test split (10,000).
        seed: Seed of the random pairing; the same seed gives the same dataset.
        download: Fetch MNIST into ``root`` if it is missing.

    Attributes:
        data: ``(N, 28, 28)`` uint8 images.
        targets: ``(N, 2)`` int64 labels, left then right.
        partners: ``(N,)`` int64: the MNIST image whose digit is on the right.

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
        self.seed = check_int("seed", seed)
        self.train = train
        mnist = load_mnist(root, train=train, download=download)
        images, labels = mnist.data, mnist.targets.long()
        generator = torch.Generator().manual_seed(seed)
        self.partners = torch.randint(0, len(images), (len(images),), generator=generator)
        self.data = overlay_digits(images, images[self.partners])
        self.targets = torch.stack([labels, labels[self.partners]], dim=1)

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
