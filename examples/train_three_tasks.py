"""A new user's problem: three tasks of three kinds on two inputs, built from MNIST.

Each MNIST image is paired with a number 0-9 (as in the documented run), and the
network answers three questions: the digit (multiclass), the digit plus the number
(regression) and whether the digit is larger than the number (binary). Run it with
the flags of the Trainer's settings and of ``ThreeTaskRun``::

    python examples/train_three_tasks.py --epochs 3 --output-dir runs/three_tasks

``--digit-labels 0.1`` hides the digit (and so the ``larger`` label) on 90% of the
training images; every task still trains on the samples that have its label. The
test prints each task's accuracy; ``metrics.json`` in the output folder holds them
all (``test_larger_accuracy``, ...). The docs page "Your own multi-task problem"
explains each part.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from multitask_mnist import MISSING, ConvTrunk, ScalarFusionHead, Task, distributed, program
from multitask_mnist.cli import digit_sum_data
from multitask_mnist.data import WithFields
from multitask_mnist.losses import WeightedMultiLoss
from multitask_mnist.models import Block, Fusion, Input, MLPHead, MultiTaskNet
from multitask_mnist.presets import MNIST_SUM_LAYERS
from multitask_mnist.training import GradientConflict, Trainer, TrainerConfig


@dataclass(frozen=True)
class ThreeTaskRun:
    """The program's own settings, beside the Trainer's: each field is a flag.

    Args:
        data_dir: The folder holding ``MNIST/raw/``.
        limit: Train on the first N training images.
        digit_labels: Keep the digit label on this fraction of the training images.
        fusion: How the sum head reads the digit logits.
        loss_weights: Fixed weights by task, e.g. ``larger=2``.
        gradient_conflict: Record the tasks' gradient cosine every this many steps.
        resume: Continue from the last checkpoint in the output folder.
    """

    data_dir: Path | None = None
    limit: int | None = None
    digit_labels: float = 1.0
    fusion: Fusion = "argmax"
    loss_weights: dict[str, float] | None = None
    gradient_conflict: int | None = None
    resume: bool = False


def larger_label(sample: dict[str, Tensor]) -> Tensor:
    """1 where the digit is larger than the number, 0 where not, MISSING where unknown."""
    larger = (sample["digit"] > sample["number"]).long()
    return torch.where(sample["digit"] == MISSING, MISSING, larger)


def three_task_net(fusion: Fusion = "argmax") -> MultiTaskNet:
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


def main(config: TrainerConfig, run: ThreeTaskRun) -> int:
    # Data: the digit dataset, with the third task's label computed from its fields.
    digits, test_digits = digit_sum_data(
        config.seed, data_dir=run.data_dir, limit=run.limit, digit_labels=run.digit_labels
    )
    train = WithFields(digits, larger=larger_label)
    test = WithFields(test_digits, larger=larger_label)

    torch.manual_seed(config.seed)
    model = three_task_net(run.fusion)
    trainer = Trainer(
        model,
        config,  # config.method: "none", or the field's methods, such as "upgrad"
        loss=WeightedMultiLoss(run.loss_weights),  # its tasks come from the model
        callbacks=[GradientConflict(every)] if (every := run.gradient_conflict) else [],
        run_config=asdict(run),  # recorded, and in config.yaml for --config
    )
    trainer.fit(train, resume=run.resume)
    metrics = trainer.test(test)
    if distributed.is_main_process():
        print(f"Test accuracy on {len(test):,} images:")
        for task in model.task_names:
            print(f"  {task}: {metrics[f'{task}_accuracy']:.2f}%")
    return 0


if __name__ == "__main__":
    defaults = {"epochs": 3, "output_dir": "runs/three_tasks"}
    sys.exit(program.run(main, defaults=defaults))
