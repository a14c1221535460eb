"""multitask_mnist: multi-input, multi-task learning in PyTorch.

The canonical task: an MNIST image and an integer 0-9 in; the digit in the image
(classification) and the sum of digit and integer (regression) out.
"""

from multitask_mnist import presets
from multitask_mnist.data import AugmentedDigitDataset, DataFileError, DigitSample, load_mnist
from multitask_mnist.losses import MultiLossOutput, WeightedMultiLoss
from multitask_mnist.models import (
    Conv,
    ConvTrunk,
    MaxPool,
    MultiTaskNet,
    ScalarFusionHead,
)
from multitask_mnist.tasks import MISSING, Task
from multitask_mnist.training import Trainer

__version__ = "0.3.0"

__all__ = [
    "MISSING",
    "AugmentedDigitDataset",
    "Conv",
    "ConvTrunk",
    "DataFileError",
    "DigitSample",
    "MaxPool",
    "MultiLossOutput",
    "MultiTaskNet",
    "ScalarFusionHead",
    "Task",
    "Trainer",
    "WeightedMultiLoss",
    "__version__",
    "load_mnist",
    "presets",
]
