"""Data: loading MNIST, the datasets built from it, and what a sample is (named fields)."""

from multitask_mnist.data._idx import DataFileError
from multitask_mnist.data.addition import AdditionSample, MNISTAddition
from multitask_mnist.data.augmented import AugmentedDigitDataset, DigitSample
from multitask_mnist.data.fashion import (
    FASHION_ENV_VAR,
    FASHION_ROOT,
    FashionSplit,
    load_fashion_mnist,
)
from multitask_mnist.data.fields import WithFields, as_fields
from multitask_mnist.data.image import MNIST_MEAN, MNIST_STD, image_to_tensor, normalize
from multitask_mnist.data.mnist import DATA_ENV_VAR, MNISTSplit, default_root, load_mnist
from multitask_mnist.data.multi_mnist import (
    MultiFashion,
    MultiFashionMNIST,
    MultiMNIST,
    MultiMNISTSample,
    OverlaidPairs,
    overlay_digits,
)
from multitask_mnist.data.split import Split, holdout

__all__ = [
    "DATA_ENV_VAR",
    "FASHION_ENV_VAR",
    "FASHION_ROOT",
    "MNIST_MEAN",
    "MNIST_STD",
    "AdditionSample",
    "AugmentedDigitDataset",
    "DataFileError",
    "DigitSample",
    "FashionSplit",
    "MNISTAddition",
    "MNISTSplit",
    "MultiFashion",
    "MultiFashionMNIST",
    "MultiMNIST",
    "MultiMNISTSample",
    "OverlaidPairs",
    "Split",
    "WithFields",
    "as_fields",
    "default_root",
    "holdout",
    "image_to_tensor",
    "load_fashion_mnist",
    "load_mnist",
    "normalize",
    "overlay_digits",
]
