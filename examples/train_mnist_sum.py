"""The documented run: train ``presets.mnist_sum()`` on MNIST and test it on 10,000 images.

Cross-entropy on the digit and mean squared error on the sum, weighted equally;
10 epochs by default. Run it with ``make train`` or directly::

    python examples/train_mnist_sum.py --epochs 10 --output-dir runs/mnist_sum

MNIST is read from ``--data-dir``, else ``$MULTITASK_MNIST_DATA``, else downloaded
into ``./data``. Below the argument parsing, this is the library's public API in
plain code: the command ``multitask-mnist train`` does the same.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from torch.utils.data import Subset

from multitask_mnist import AugmentedDigitDataset, WeightedMultiLoss, load_mnist, presets, program
from multitask_mnist.cli import add_train_arguments, mnist_test_split, print_test_result
from multitask_mnist.data import DATA_ENV_VAR
from multitask_mnist.training import (
    Callback,
    GradientConflict,
    TensorBoard,
    Trainer,
    distributed,
)


def build_parser() -> argparse.ArgumentParser:
    parser = program.ArgumentParser(description=__doc__.splitlines()[0])
    add_train_arguments(parser)  # the Trainer's defaults, as the command line has them
    return parser


def main(args: argparse.Namespace) -> int:
    # Data: MNIST images, each paired with a number 0-9 drawn from the seed.
    download = args.data_dir is None and not os.environ.get(DATA_ENV_VAR)  # into ./data
    images = load_mnist(args.data_dir, train=True, download=download)
    if args.limit is not None:  # the first N images, for a quick try
        images = Subset(images, range(min(args.limit, len(images))))
    # --digit-labels 0.01 keeps the digit label on 1% of the images: the rest teach the sum.
    train = AugmentedDigitDataset(images, seed=args.seed, digit_labels=args.digit_labels)
    test = mnist_test_split(args.data_dir, download)  # the same 10,000 pairs every run

    # The documented network, and the loss: cross-entropy plus MSE, equal weights.
    # Beside the default callbacks (progress, epoch log, checkpoints, run files):
    callbacks: list[Callback] = []
    if args.gradient_conflict is not None:  # the tasks' gradient cosine every N steps
        callbacks.append(GradientConflict(args.gradient_conflict))
    if args.tensorboard:  # event files under OUTPUT_DIR/tensorboard
        callbacks.append(TensorBoard())

    torch.manual_seed(args.seed)
    model = presets.mnist_sum(**({} if args.fusion is None else {"fusion": args.fusion}))
    trainer = Trainer(
        model,
        # --loss-weights sum=0 trains the digit alone; the default weighs both tasks 1.
        loss=WeightedMultiLoss(
            dict(args.loss_weights) if args.loss_weights else None, strategy=args.loss_strategy
        ),
        method=args.method,  # "none", or a gradient method such as "upgrad"
        callbacks=callbacks,
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        output_dir=args.output_dir,  # checkpoints, metrics.json, history.csv, plots
        progress=not args.no_progress,
        config={"limit": args.limit, "digit_labels": args.digit_labels},  # for the record
    )
    trainer.fit(train, resume=args.resume)  # SIGTERM or Ctrl-C: saved, resumable
    metrics = trainer.test(test)
    if distributed.is_main_process():  # under torchrun, one process prints
        print("Finished Training")
        print_test_result(metrics, len(test))
    return 0


if __name__ == "__main__":
    # One line on stderr for a mistake (a bad flag, a missing file), a traceback for a bug.
    sys.exit(program.run(main, build_parser()))
