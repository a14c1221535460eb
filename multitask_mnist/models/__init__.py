"""Model pieces: the convolutional trunk, the fusion head, and the network joining them."""

from multitask_mnist.models.head import (
    EXACT_SLACK,
    FUSION_MODES,
    AdderCertificate,
    Fusion,
    ScalarFusionHead,
)
from multitask_mnist.models.net import MultiTaskNet, MultiTaskOutput, PresetRecord
from multitask_mnist.models.trunk import Conv, ConvTrunk, LayerSpec, MaxPool

__all__ = [
    "EXACT_SLACK",
    "FUSION_MODES",
    "AdderCertificate",
    "Conv",
    "ConvTrunk",
    "Fusion",
    "LayerSpec",
    "MaxPool",
    "MultiTaskNet",
    "MultiTaskOutput",
    "PresetRecord",
    "ScalarFusionHead",
]
