"""Named, ready-made networks, and a small registry to find them by name.

``presets.mnist_sum()`` is the documented network, layer for layer
(:mod:`~multitask_mnist.presets.networks`); :func:`get`, :func:`names` and
:func:`register` are the registry (:mod:`~multitask_mnist.presets.registry`), which
checks every builder call against its annotations and rebuilds a checkpoint's network
from the preset it records (:func:`from_checkpoint`).
"""

from multitask_mnist.presets.networks import (
    MAX_ADDITION_DIGITS,
    MAX_CONVOLUTION_DIGITS,
    MNIST_SUM_BN_LAYERS,
    MNIST_SUM_LAYERS,
    NUMBER_LIMIT,
    AdditionHead,
    mnist_addition,
    mnist_addition_lenet,
    mnist_sum,
    mnist_sum_bn,
    multi_mnist_lenet,
)
from multitask_mnist.presets.registry import (
    Range,
    describe,
    from_checkpoint,
    from_record,
    get,
    names,
    register,
)
from multitask_mnist.presets.soft_sharing import (
    mnist_sum_mmoe,
    multi_mnist_cgc,
    multi_mnist_cross_stitch,
    multi_mnist_mmoe,
    multi_mnist_mtan,
)

__all__ = [
    "MAX_ADDITION_DIGITS",
    "MAX_CONVOLUTION_DIGITS",
    "MNIST_SUM_BN_LAYERS",
    "MNIST_SUM_LAYERS",
    "NUMBER_LIMIT",
    "AdditionHead",
    "Range",
    "describe",
    "from_checkpoint",
    "from_record",
    "get",
    "mnist_addition",
    "mnist_addition_lenet",
    "mnist_sum",
    "mnist_sum_bn",
    "mnist_sum_mmoe",
    "multi_mnist_cgc",
    "multi_mnist_cross_stitch",
    "multi_mnist_lenet",
    "multi_mnist_mmoe",
    "multi_mnist_mtan",
    "names",
    "register",
]
