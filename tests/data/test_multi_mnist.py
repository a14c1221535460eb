"""MultiMNIST: generated reproducibly by seed, with labels that match the source digits."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.datasets import MNIST

from multitask_mnist.data import MultiMNIST
from multitask_mnist.data.multi_mnist import overlay_digits


def _by_hand(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """The protocol written out pixel by pixel: a 36x36 canvas, the max, nearest 28x28."""
    canvas = torch.zeros(36, 36, dtype=torch.uint8)
    canvas[:28, :28] = left
    for y in range(28):
        for x in range(28):
            canvas[y + 6, x + 6] = max(int(canvas[y + 6, x + 6]), int(right[y, x]))
    rows = [(i * 36) // 28 for i in range(28)]
    return canvas[rows][:, rows]


def test_overlay_follows_the_protocol_pixel_for_pixel() -> None:
    generator = torch.Generator().manual_seed(0)
    left = torch.randint(0, 256, (3, 28, 28), generator=generator, dtype=torch.uint8)
    right = torch.randint(0, 256, (3, 28, 28), generator=generator, dtype=torch.uint8)
    out = overlay_digits(left, right)
    for i in range(3):
        assert torch.equal(out[i], _by_hand(left[i], right[i]))


def test_same_seed_same_data_other_seed_other_pairs(mnist_root: Path) -> None:
    a = MultiMNIST(mnist_root, train=False, seed=0)
    b = MultiMNIST(mnist_root, train=False, seed=0)
    c = MultiMNIST(mnist_root, train=False, seed=1)
    assert torch.equal(a.data, b.data) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.partners, c.partners)


def test_labels_match_the_source_digits(mnist_root: Path, mnist_test: MNIST) -> None:
    data = MultiMNIST(mnist_root, train=False, seed=3)
    assert len(data) == 10_000 and data.data.shape == (10_000, 28, 28)
    assert torch.equal(data.targets[:, 0], mnist_test.targets)
    assert torch.equal(data.targets[:, 1], mnist_test.targets[data.partners])
    for i in (0, 17, 9_999):
        assert torch.equal(
            data.data[i], _by_hand(mnist_test.data[i], mnist_test.data[data.partners[i]])
        )
    sample = data[17]
    assert sample.image.shape == (1, 28, 28) and sample.image.dtype == torch.float32
    assert (int(sample.left), int(sample.right)) == tuple(data.targets[17].tolist())


def test_the_training_split_has_60000_images(mnist_root: Path) -> None:
    data = MultiMNIST(mnist_root, train=True)
    assert len(data) == 60_000 and data.targets.shape == (60_000, 2)
    batch = data.get_batch(torch.arange(5))
    assert batch.image.shape == (5, 1, 28, 28) and batch.left.shape == batch.right.shape == (5,)
