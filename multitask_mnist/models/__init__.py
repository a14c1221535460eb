"""Model pieces: the multi-task network of named blocks, the convolutional trunk and
the fusion head, and the digit + sum composition of the two; the per-image classifier
and exact sum head of MNIST-addition; soft-sharing blocks (MMoE, CGC/PLE,
cross-stitch, task attention)."""

from multitask_mnist.models.addition import (
    CarryChainSum,
    PerImage,
    SumOfNumbers,
    carry_chain_log_likelihood,
    convolve_log,
    digits_of,
    sum_of_most_probable_digits,
)
from multitask_mnist.models.digit_sum import digit_sum_net
from multitask_mnist.models.head import (
    EXACT_SLACK,
    FUSION_MODES,
    AdderCertificate,
    Fusion,
    ScalarFusionHead,
)
from multitask_mnist.models.lenet import MultiLeNetEncoder, MultiLeNetHead
from multitask_mnist.models.mlp import MLPHead
from multitask_mnist.models.net import Block, Input, MultiTaskNet, PresetRecord
from multitask_mnist.models.sharing import (
    CrossStitch,
    ExtractionLayer,
    FlattenConcat,
    MixtureOfExperts,
    ProgressiveExtraction,
    TaskAttention,
)
from multitask_mnist.models.trunk import Conv, ConvTrunk, LayerSpec, MaxPool

__all__ = [
    "EXACT_SLACK",
    "FUSION_MODES",
    "AdderCertificate",
    "Block",
    "CarryChainSum",
    "Conv",
    "ConvTrunk",
    "CrossStitch",
    "ExtractionLayer",
    "FlattenConcat",
    "Fusion",
    "Input",
    "LayerSpec",
    "MLPHead",
    "MaxPool",
    "MixtureOfExperts",
    "MultiLeNetEncoder",
    "MultiLeNetHead",
    "MultiTaskNet",
    "PerImage",
    "PresetRecord",
    "ProgressiveExtraction",
    "ScalarFusionHead",
    "SumOfNumbers",
    "TaskAttention",
    "carry_chain_log_likelihood",
    "convolve_log",
    "digit_sum_net",
    "digits_of",
    "sum_of_most_probable_digits",
]
