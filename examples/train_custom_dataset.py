"""Train on your own digits: any map-style dataset of 28x28 one-channel images, labels 0-9.

Here the dataset is a folder of PNG files, one subfolder per label::

    my_digits/0/a.png  my_digits/0/b.png  ...  my_digits/9/z.png

    python examples/train_custom_dataset.py my_digits --epochs 5

The same public API as the documented run: the images pass through
``AugmentedDigitDataset``, which pairs each with a number and the sum, and the
``Trainer`` fits any preset on them. Any other dataset class works the same way as
long as ``dataset[i]`` returns ``(image, label)``, with the image a PIL image or a
tensor of 28x28 pixels.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset, Subset, random_split

from multitask_mnist import AugmentedDigitDataset, Trainer, presets, program
from multitask_mnist.training import TrainerConfig


class FolderDigits(Dataset[tuple[Image.Image, int]]):
    """``root/<label>/*.png`` as ``(28x28 grayscale PIL image, label)`` pairs."""

    def __init__(self, root: Path) -> None:
        self.items = sorted(
            (path, int(folder.name))
            for folder in root.iterdir()
            if folder.is_dir() and folder.name.isdigit()
            for path in folder.glob("*.png")
        )
        if not self.items:
            raise FileNotFoundError(f"No PNG files under {root}/<0-9>/")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        path, label = self.items[index]
        with Image.open(path) as image:
            return image.convert("L"), label


@dataclass(frozen=True)
class Folder:
    """The program's own settings, beside the Trainer's: each field is a flag.

    Args:
        root: A folder with one subfolder of PNGs per label (``0/`` to ``9/``).
        preset: The network, a digit + sum preset.
    """

    root: Path
    preset: str = "mnist_sum"


def main(config: TrainerConfig, folder: Folder) -> int:
    digits = FolderDigits(folder.root)
    split = torch.Generator().manual_seed(config.seed)
    train_part, val_part = random_split(range(len(digits)), [0.8, 0.2], generator=split)
    train = AugmentedDigitDataset(Subset(digits, list(train_part)), seed=config.seed)
    val = AugmentedDigitDataset(Subset(digits, list(val_part)), seed=config.seed + 1)

    torch.manual_seed(config.seed)
    trainer = Trainer(presets.get(folder.preset), config)
    trainer.fit(train, val)
    metrics = trainer.evaluate(val)
    print(
        f"Validation on {len(val)} images: digit {metrics['digit_accuracy']:.2f}%, "
        f"sum {metrics['sum_accuracy']:.2f}%"
    )
    return 0


if __name__ == "__main__":
    sys.exit(program.run(main))
