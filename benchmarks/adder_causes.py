"""Why a short run used to add wrongly: the two causes, measured one at a time.

Trains the documented network for one epoch on the first ``--limit`` MNIST training
images (default 3,000: 24 steps) four ways, crossing the adder's start (PyTorch's
random initialization, or exact addition) with what it learns from (the predicted
digit, or the true digit: teacher forcing). Prints a Markdown table of the test
digit and sum accuracy, the sum's accuracy where the digit is right, and the
head's certificate (the collapsed map's digit coefficient and rounding margin).

Usage::

    python benchmarks/adder_causes.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
from torch.utils.data import Subset

from multitask_mnist import (
    AugmentedDigitDataset,
    ConvTrunk,
    MultiTaskNet,
    ScalarFusionHead,
    Trainer,
    load_mnist,
)
from multitask_mnist.models import Block, digit_sum_net
from multitask_mnist.presets import MNIST_SUM_LAYERS


def predicted_digit_net(trunk: ConvTrunk, head: ScalarFusionHead) -> MultiTaskNet:
    """The network as it was before teacher forcing: the head learns from the estimate."""
    taught = digit_sum_net(trunk, head)
    blocks = taught.blocks
    blocks["head"] = Block(head, ["trunk", "number"], blocks["head"].task, fast=True)
    return MultiTaskNet(blocks, list(taught.inputs.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("MULTITASK_MNIST_DATA", "data"))
    )
    parser.add_argument("--limit", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    base = load_mnist(args.data_dir, train=True)
    train = AugmentedDigitDataset(Subset(base, range(args.limit)), seed=args.seed)
    test = AugmentedDigitDataset(load_mnist(args.data_dir, train=False), seed=0)
    print(
        "| adder starts | adder learns from | test digit | test sum | sum where digit right "
        "| digit coefficient | margin |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for exact_init in (False, True):
        for teacher in (False, True):
            torch.manual_seed(args.seed)
            build = digit_sum_net if teacher else predicted_digit_net
            head = ScalarFusionHead(exact_init=exact_init)
            model = build(ConvTrunk(MNIST_SUM_LAYERS), head)
            trainer = Trainer(model, epochs=1, seed=args.seed, progress=False)
            trainer.fit(train)
            metrics = trainer.evaluate(test)
            certificate = head.certificate()
            print(
                f"| {'exact addition' if exact_init else 'random'} "
                f"| {'true digit' if teacher else 'predicted digit'} "
                f"| {metrics['digit_accuracy']:.2f}% | {metrics['sum_accuracy']:.2f}% "
                f"| {metrics['sum_given_digit_accuracy']:.2f}% "
                f"| {certificate.coefficients[0]:.3f} | {certificate.margin:+.3f} |"
            )


if __name__ == "__main__":
    main()
