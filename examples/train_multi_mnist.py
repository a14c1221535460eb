"""MultiMNIST (Sener and Koltun, 2018): read both digits of an image of two overlapping ones.

The field's standard small multi-task benchmark, generated from the MNIST files by
:class:`~multitask_mnist.data.MultiMNIST`, trained with ``presets.multi_mnist_lenet()``
(their shared LeNet encoder and one head per digit). Run it with::

    python examples/train_multi_mnist.py --epochs 10 --output-dir runs/multi_mnist

It prints the left and right digits' test accuracy on the 10,000 test images (paired
with the same seed in every run); ``metrics.json`` in the output folder keeps them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import torch
from torch.utils.data import Subset

from multitask_mnist import WeightedMultiLoss, presets
from multitask_mnist.data import DATA_ENV_VAR, MultiMNIST
from multitask_mnist.losses import STRATEGIES
from multitask_mnist.methods import METHODS
from multitask_mnist.training import Trainer, TrainingInterrupted, distributed

#: The seed of the test split's pairing: every run is scored on the same images.
TEST_SEED = 0


def task_weight(text: str) -> tuple[str, float]:
    """``"left=0.5"`` -> ``("left", 0.5)``."""
    task, sep, weight = text.partition("=")
    try:
        if not (task and sep):
            raise ValueError
        return task, float(weight)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected TASK=WEIGHT, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    defaults = Trainer.get_default_config()  # the one place the defaults live
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=defaults["epochs"])
    parser.add_argument("--batch-size", type=int, default=defaults["batch_size"])
    parser.add_argument("--lr", type=float, default=defaults["lr"])
    parser.add_argument("--seed", type=int, default=defaults["seed"], help="pairing and training")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images")
    parser.add_argument("--loss-strategy", choices=STRATEGIES, default="fixed")
    parser.add_argument(
        "--loss-weights",
        nargs="+",
        type=task_weight,
        default=None,
        metavar="TASK=WEIGHT",
        help="fixed weights, e.g. left=1 right=0 for a single-task baseline",
    )
    parser.add_argument("--method", choices=METHODS, default="none", help="gradient method")
    parser.add_argument("--data-dir", type=Path, default=None, help="holds MNIST/raw/")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/multi_mnist"))
    parser.add_argument("--resume", action="store_true", help="continue from --output-dir")
    parser.add_argument("--device", default=defaults["device"])
    parser.add_argument("--precision", default=defaults["precision"])
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(format="%(message)s", level=logging.INFO, stream=sys.stdout)

    # Data: 60,000 training and 10,000 test images of two digits each, paired by seed.
    download = args.data_dir is None and not os.environ.get(DATA_ENV_VAR)
    train = MultiMNIST(args.data_dir, train=True, seed=args.seed, download=download)
    test = MultiMNIST(args.data_dir, train=False, seed=TEST_SEED, download=download)
    if args.limit is not None:
        train = Subset(train, range(min(args.limit, len(train))))

    # MultiLeNet: a shared encoder, a head for the left digit and one for the right.
    torch.manual_seed(args.seed)
    model = presets.multi_mnist_lenet()
    trainer = Trainer(
        model,
        loss=WeightedMultiLoss(
            dict(args.loss_weights) if args.loss_weights else None, strategy=args.loss_strategy
        ),
        method=args.method,  # "none", or a gradient method such as "upgrad"
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        output_dir=args.output_dir,
        progress=not args.no_progress,
        config={"limit": args.limit, "dataset": "MultiMNIST"},
    )
    try:
        trainer.fit(train, resume=args.resume)
    except TrainingInterrupted as stopped:
        if distributed.is_main_process():
            print(stopped, file=sys.stderr)
        return 128 + stopped.signal_number
    metrics = trainer.test(test)
    if distributed.is_main_process():
        print(
            f"MultiMNIST test accuracy on {len(test):,} images: "
            f"left {metrics['left_accuracy']:.2f}%, right {metrics['right_accuracy']:.2f}%"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
