"""The documented run: train ``presets.mnist_sum()`` on MNIST and test it on 10,000 images.

Cross-entropy on the digit and mean squared error on the sum, weighted equally;
10 epochs by default. Run it with ``make train`` or directly::

    python examples/train_mnist_sum.py --epochs 10 --output-dir runs/mnist_sum

Every flag is a field of ``TrainerConfig`` or ``DigitSumRun`` (``--help`` lists them);
``--config runs/mnist_sum/config.yaml`` repeats a run. The command
``multitask-mnist train`` does the same.
"""

from __future__ import annotations

import sys
from dataclasses import asdict

import torch

from multitask_mnist import WeightedMultiLoss, presets, program
from multitask_mnist.cli import DigitSumRun, digit_sum_data, print_test_result, train_callbacks
from multitask_mnist.distributed import is_main_process
from multitask_mnist.training import Trainer, TrainerConfig


def main(config: TrainerConfig, run: DigitSumRun) -> int:
    # Data: MNIST images, each paired with a number 0-9 drawn from the seed; the test
    # split pairs the same 10,000 images with the same numbers in every run.
    train, test = digit_sum_data(
        config.seed, data_dir=run.data_dir, limit=run.limit, digit_labels=run.digit_labels
    )

    # The documented network, and the loss: cross-entropy plus MSE, equal weights
    # (--loss-weights sum=0 trains the digit alone). config.method says how the two
    # losses become one step: "none" sums them; "upgrad", "famo", ... are the field's.
    torch.manual_seed(config.seed)
    model = presets.get(run.preset, **({} if run.fusion is None else {"fusion": run.fusion}))
    trainer = Trainer(
        model,
        config,
        loss=WeightedMultiLoss(run.loss_weights),
        callbacks=train_callbacks(run),  # --gradient-conflict N, --tensorboard
        run_config=asdict(run),  # recorded, and in config.yaml for --config
    )
    trainer.fit(train, resume=run.resume)  # SIGTERM or Ctrl-C: saved, resumable
    metrics = trainer.test(test)
    if is_main_process():  # under torchrun, one process prints
        print("Finished Training")
        print_test_result(metrics, len(test))
    return 0


if __name__ == "__main__":
    # Flags from the two dataclasses; one line on stderr for a mistake, a traceback for a bug.
    sys.exit(program.run(main, defaults={"output_dir": "runs/mnist_sum"}))
