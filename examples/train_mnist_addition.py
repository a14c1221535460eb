"""MNIST-addition: learn to read digits from the sums of numbers written in them alone.

The benchmark of Manhaeve et al. (2018, DeepProbLog), generated from the MNIST files
by :class:`~multitask_mnist.data.MNISTAddition`: each sample is two ``N``-digit
numbers written in ``2 N`` MNIST images, labelled with their sum only. The network
(``presets.mnist_addition()``) reads every image with the documented trunk and adds
the digit distributions exactly; no digit label is ever used in training. Run it
with::

    python examples/train_mnist_addition.py --digits 1 --epochs 5 --output-dir runs/addition

It reports the test sum accuracy (the 10,000 test images grouped the same way in
every run) and the accuracy of the learned digit classifier on the 10,000 MNIST test
images against their true labels; ``metrics.json`` keeps both as
``test_sum_accuracy`` and ``test_digit_accuracy``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Subset

from multitask_mnist import distributed, load_mnist, presets, program
from multitask_mnist.data import DATA_ENV_VAR, MNISTAddition, normalize
from multitask_mnist.training import Trainer, update_metrics_file

#: The seed of the test split's grouping: every run is scored on the same sums.
TEST_SEED = 0


def build_parser() -> argparse.ArgumentParser:
    defaults = Trainer.get_default_config()  # the one place the defaults live
    parser = program.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, default=1, help="digits per number, N")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64, help="samples (numbers pairs)")
    parser.add_argument("--lr", type=float, default=defaults["lr"])
    parser.add_argument("--seed", type=int, default=defaults["seed"], help="grouping, training")
    parser.add_argument("--limit", type=int, default=None, help="train on the first N samples")
    parser.add_argument("--data-dir", type=Path, default=None, help="holds MNIST/raw/")
    parser.add_argument("--output-dir", type=Path, default=Path("runs/mnist_addition"))
    parser.add_argument("--resume", action="store_true", help="continue from --output-dir")
    parser.add_argument("--device", default=defaults["device"])
    parser.add_argument("--precision", default=defaults["precision"])
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


@torch.no_grad()
def digit_accuracy(classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Percent of ``(N, 28, 28)`` uint8 ``images`` the classifier reads as ``labels``."""
    classifier.eval()
    device = next(classifier.parameters()).device
    right = 0
    for start in range(0, len(images), 1000):
        batch = normalize(images[start : start + 1000].unsqueeze(1)).to(device)
        predicted = classifier(batch).argmax(dim=1).cpu()
        right += int((predicted == labels[start : start + 1000]).sum())
    return 100.0 * right / len(images)


def main(args: argparse.Namespace) -> int:

    # Data: numbers written in MNIST digits, labelled with their sums only.
    download = args.data_dir is None and not os.environ.get(DATA_ENV_VAR)
    train = MNISTAddition(
        args.data_dir, train=True, digits=args.digits, seed=args.seed, download=download
    )
    test = MNISTAddition(args.data_dir, train=False, digits=args.digits, seed=TEST_SEED)
    if args.limit is not None:
        train = Subset(train, range(min(args.limit, len(train))))  # type: ignore[assignment]

    # The documented trunk reads each digit; the head adds the distributions exactly.
    torch.manual_seed(args.seed)
    model = presets.mnist_addition(digits=args.digits)
    trainer = Trainer(
        model,
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        output_dir=args.output_dir,
        progress=not args.no_progress,
        config={"limit": args.limit, "digits": args.digits, "dataset": "MNIST-addition"},
    )
    trainer.fit(train, resume=args.resume)
    metrics = trainer.test(test)  # test_sum_accuracy in metrics.json

    # The latent digit classifier, on the 10,000 MNIST test images and their labels.
    mnist_test = load_mnist(args.data_dir, train=False)
    classifier = model.get_submodule("digits.classifier")
    digits = digit_accuracy(classifier, mnist_test.data, mnist_test.targets)
    if distributed.is_main_process():
        update_metrics_file(args.output_dir, {"test_digit_accuracy": digits})
        print(
            f"MNIST-addition (N={args.digits}): test sum accuracy "
            f"{metrics['sum_accuracy']:.2f}% on {len(test):,} sums; digit accuracy "
            f"{digits:.2f}% on {len(mnist_test):,} MNIST test images (no digit label "
            "used in training)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(program.run(main, build_parser()))
