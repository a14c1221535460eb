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

import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Subset

from multitask_mnist import distributed, load_mnist, presets, program
from multitask_mnist.data import DATA_ENV_VAR, MNISTAddition, normalize
from multitask_mnist.training import Trainer, TrainerConfig, update_metrics_file

#: The seed of the test split's grouping: every run is scored on the same sums.
TEST_SEED = 0


@dataclass(frozen=True)
class AdditionRun:
    """The program's own settings, beside the Trainer's: each field is a flag.

    Args:
        digits: Digits per number, N.
        data_dir: The folder holding ``MNIST/raw/``.
        limit: Train on the first N samples (pairs of numbers).
        resume: Continue from the last checkpoint in the output folder.
    """

    digits: int = 1
    data_dir: Path | None = None
    limit: int | None = None
    resume: bool = False


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


def main(config: TrainerConfig, run: AdditionRun) -> int:
    # The documented trunk reads each digit; an exact head adds them: the whole
    # distribution of the sum for one digit, the carry chain over the digits above.
    torch.manual_seed(config.seed)
    model = presets.mnist_addition(digits=run.digits)
    as_digits = model.tasks[0].kind == "digits"  # the carry chain scores the sum's digits

    # Data: numbers written in MNIST digits, labelled with their sums only.
    download = run.data_dir is None and not os.environ.get(DATA_ENV_VAR)
    train = MNISTAddition(
        run.data_dir,
        train=True,
        digits=run.digits,
        seed=config.seed,
        download=download,
        sum_digits=as_digits,
    )
    test = MNISTAddition(
        run.data_dir, train=False, digits=run.digits, seed=TEST_SEED, sum_digits=as_digits
    )
    if run.limit is not None:
        train = Subset(train, range(min(run.limit, len(train))))  # type: ignore[assignment]

    trainer = Trainer(model, config, run_config=asdict(run))  # config.yaml: --config
    trainer.fit(train, resume=run.resume)
    metrics = trainer.test(test)  # test_sum_accuracy in metrics.json

    # The latent digit classifier, on the 10,000 MNIST test images and their labels.
    mnist_test = load_mnist(run.data_dir, train=False)
    classifier = model.get_submodule("digits.classifier")
    digits = digit_accuracy(classifier, mnist_test.data, mnist_test.targets)
    if distributed.is_main_process() and trainer.output_dir is not None:
        update_metrics_file(trainer.output_dir, {"test_digit_accuracy": digits})
    if distributed.is_main_process():
        print(
            f"MNIST-addition (N={run.digits}): test sum accuracy "
            f"{metrics['sum_accuracy']:.2f}% on {len(test):,} sums; digit accuracy "
            f"{digits:.2f}% on {len(mnist_test):,} MNIST test images (no digit label "
            "used in training)"
        )
    return 0


if __name__ == "__main__":
    defaults = {"epochs": 5, "batch_size": 64, "output_dir": "runs/mnist_addition"}
    sys.exit(program.run(main, defaults=defaults))
