"""A new user's problem: three tasks of three kinds on two inputs, built from MNIST.

Each MNIST image is paired with a number 0-9 (as in the documented run), and the
network answers three questions: the digit (multiclass), the digit plus the number
(regression) and whether the digit is larger than the number (binary). Run it with
the MNIST example's flags::

    python examples/train_three_tasks.py --epochs 3 --output-dir runs/three_tasks

``--digit-labels 0.1`` hides the digit (and so the ``larger`` label) on 90% of the
training images; every task still trains on the samples that have its label. The
test prints each task's accuracy; ``metrics.json`` in the output folder holds them
all (``test_larger_accuracy``, ...). The docs page "Your own multi-task problem"
explains each part.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Subset

from multitask_mnist import (
    MISSING,
    AugmentedDigitDataset,
    ConvTrunk,
    ScalarFusionHead,
    Task,
    distributed,
    program,
)
from multitask_mnist.cli import add_train_arguments, mnist_test_split
from multitask_mnist.data import DATA_ENV_VAR, WithFields, load_mnist
from multitask_mnist.losses import WeightedMultiLoss
from multitask_mnist.models import Block, Input, MLPHead, MultiTaskNet
from multitask_mnist.presets import MNIST_SUM_LAYERS
from multitask_mnist.training import GradientConflict, Trainer


def larger_label(sample: dict[str, Tensor]) -> Tensor:
    """1 where the digit is larger than the number, 0 where not, MISSING where unknown."""
    larger = (sample["digit"] > sample["number"]).long()
    return torch.where(sample["digit"] == MISSING, MISSING, larger)


def three_task_net(fusion: str = "argmax") -> MultiTaskNet:
    """The documented trunk reads the digit; one head adds the number, one compares."""
    digit = Task("digit", "multiclass", num_classes=10)
    total = Task("sum", "regression")
    larger = Task("larger", "binary")
    blocks = {
        "trunk": Block(ConvTrunk(MNIST_SUM_LAYERS), ["image"], digit),
        # The exact adder of mnist_sum, taught with the true digit, at a higher rate.
        "head": Block(
            ScalarFusionHead(fusion=fusion), ["trunk", "number"], total, teacher="digit", fast=True
        ),
        # A small MLP over the ten digit logits and the number: one logit.
        "compare": Block(MLPHead(11, hidden=(32,)), ["trunk", "number"], larger),
    }
    inputs = [Input("image", (1, 28, 28)), Input("number", (), integer=True, low=0, high=9)]
    return MultiTaskNet(blocks, inputs)


def build_parser() -> argparse.ArgumentParser:
    parser = program.ArgumentParser(description=__doc__.splitlines()[0])
    add_train_arguments(parser)
    parser.set_defaults(epochs=3, output_dir=Path("runs/three_tasks"))
    return parser


def main(args: argparse.Namespace) -> int:

    # Data: the digit dataset, with the third task's label computed from its fields.
    download = args.data_dir is None and not os.environ.get(DATA_ENV_VAR)
    images = load_mnist(args.data_dir, train=True, download=download)
    if args.limit is not None:
        images = Subset(images, range(min(args.limit, len(images))))
    digits = AugmentedDigitDataset(images, seed=args.seed, digit_labels=args.digit_labels)
    train = WithFields(digits, larger=larger_label)
    test = WithFields(mnist_test_split(args.data_dir, download), larger=larger_label)

    torch.manual_seed(args.seed)
    model = three_task_net(args.fusion or "argmax")
    trainer = Trainer(
        model,
        loss=WeightedMultiLoss(  # its tasks come from the model
            dict(args.loss_weights) if args.loss_weights else None, strategy=args.loss_strategy
        ),
        method=args.method,  # "none", or a gradient method such as "upgrad"
        # --gradient-conflict N: the tasks' gradient cosine and norms every N steps
        callbacks=[GradientConflict(args.gradient_conflict)]
        if args.gradient_conflict is not None
        else [],
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        output_dir=args.output_dir,
        progress=not args.no_progress,
        config={"limit": args.limit, "digit_labels": args.digit_labels},
    )
    trainer.fit(train, resume=args.resume)
    metrics = trainer.test(test)
    if distributed.is_main_process():
        print(f"Test accuracy on {len(test):,} images:")
        for task in model.task_names:
            print(f"  {task}: {metrics[f'{task}_accuracy']:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(program.run(main, build_parser()))
