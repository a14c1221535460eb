"""Data: loading MNIST, and the dataset that adds a second input and a second target."""

from multitask_mnist.data._idx import DataFileError
from multitask_mnist.data.augmented import AugmentedDigitDataset, DigitSample
from multitask_mnist.data.mnist import DATA_ENV_VAR, default_root, load_mnist

__all__ = [
    "DATA_ENV_VAR",
    "AugmentedDigitDataset",
    "DataFileError",
    "DigitSample",
    "default_root",
    "load_mnist",
]
