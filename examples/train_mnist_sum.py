"""Demo of the documented network on real MNIST: shapes and the parameter table.

Run it with ``make train``. MNIST is read from ``$MULTITASK_MNIST_DATA`` if set,
else downloaded into ``./data``.
"""

from __future__ import annotations

import os

import torch

from multitask_mnist import AugmentedDigitDataset, load_mnist, presets
from multitask_mnist.data import DATA_ENV_VAR


def main() -> None:
    download = not os.environ.get(DATA_ENV_VAR)
    test = AugmentedDigitDataset(load_mnist(train=False, download=download))
    net = presets.mnist_sum().eval()
    print(net)
    print(f"{'parameter':<22}{'shape':<18}{'count':>8}")
    for name, p in net.named_parameters():
        print(f"{name:<22}{tuple(p.shape)!s:<18}{p.numel():>8}")
    print(f"{'total':<40}{sum(p.numel() for p in net.parameters()):>8}")
    batch = test.get_batch(torch.arange(8))
    with torch.inference_mode():
        out = net(batch.image, batch.number)
    print(f"image {tuple(batch.image.shape)}, number {tuple(batch.number.shape)}")
    print(f"digit_logits {tuple(out.digit_logits.shape)}, sum {tuple(out.sum.shape)}")


if __name__ == "__main__":
    main()
