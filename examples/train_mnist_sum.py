"""The documented run: train ``presets.mnist_sum()`` on MNIST and test it on 10,000 images.

Cross-entropy on the digit and mean squared error on the sum, weighted equally;
10 epochs by default. Run it with ``make train`` or directly::

    python examples/train_mnist_sum.py --epochs 10 --output-dir runs/mnist_sum

MNIST is read from ``--data-dir``, else ``$MULTITASK_MNIST_DATA``, else downloaded
into ``./data``. In Python, the same run is::

    import torch
    from multitask_mnist import AugmentedDigitDataset, load_mnist, presets
    from multitask_mnist.training import Trainer

    train = AugmentedDigitDataset(load_mnist(train=True), seed=0)
    test = AugmentedDigitDataset(load_mnist(train=False), seed=0)
    torch.manual_seed(0)
    trainer = Trainer(presets.mnist_sum(), epochs=10, output_dir="runs/mnist_sum")
    trainer.fit(train)
    print(trainer.test(test))
"""

from __future__ import annotations

import argparse
import sys

from multitask_mnist.cli import add_train_arguments, configure_logging, run_train


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging()
    try:
        return run_train(args, preset="mnist_sum")
    except (ValueError, OSError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
