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

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset, Subset, random_split

from multitask_mnist import AugmentedDigitDataset, Trainer, presets, program


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


def build_parser() -> argparse.ArgumentParser:
    parser = program.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="folder with one subfolder of PNGs per label")
    defaults = Trainer.get_default_config()  # the library's defaults, in one place
    parser.add_argument("--epochs", type=int, default=defaults["epochs"])
    parser.add_argument("--batch-size", type=int, default=defaults["batch_size"])
    parser.add_argument("--preset", default="mnist_sum", choices=presets.names())
    parser.add_argument("--seed", type=int, default=defaults["seed"])
    parser.add_argument("--output-dir", type=Path, default=None)
    return parser


def main(args: argparse.Namespace) -> int:
    digits = FolderDigits(args.root)
    split = torch.Generator().manual_seed(args.seed)
    train_part, val_part = random_split(range(len(digits)), [0.8, 0.2], generator=split)
    train = AugmentedDigitDataset(Subset(digits, list(train_part)), seed=args.seed)
    val = AugmentedDigitDataset(Subset(digits, list(val_part)), seed=args.seed + 1)

    torch.manual_seed(args.seed)
    trainer = Trainer(
        presets.get(args.preset),
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        output_dir=args.output_dir,
    )
    trainer.fit(train, val)
    metrics = trainer.evaluate(val)
    print(
        f"Validation on {len(val)} images: digit {metrics['digit_accuracy']:.2f}%, "
        f"sum {metrics['sum_accuracy']:.2f}%"
    )
    return 0


if __name__ == "__main__":
    sys.exit(program.run(main, build_parser()))
