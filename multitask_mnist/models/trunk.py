"""The convolutional trunk: an image in, one logit per digit class out."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from multitask_mnist.errors import InvalidValueError

__all__ = ["Conv", "ConvTrunk", "LayerSpec", "MaxPool"]


@dataclass(frozen=True)
class Conv:
    """A convolution in a :class:`ConvTrunk`; its input channels follow from the layer before.

    Example:
        >>> Conv("conv1", 32, 3)
        Conv(name='conv1', out_channels=32, kernel_size=3, stride=1, padding=0)
    """

    name: str  # module name, e.g. "conv1"; shows in repr() and in parameter names
    out_channels: int  # channels out
    kernel_size: int  # square kernel side
    stride: int = 1
    padding: int = 0


@dataclass(frozen=True)
class MaxPool:
    """A max-pooling layer in a :class:`ConvTrunk`.

    Example:
        >>> MaxPool("pool", 2)
        MaxPool(name='pool', kernel_size=2, stride=None)
    """

    name: str  # module name, e.g. "pool"
    kernel_size: int  # square window side
    stride: int | None = None  # defaults to kernel_size, as in nn.MaxPool2d


LayerSpec = Conv | MaxPool


def _out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class ConvTrunk(nn.Sequential):
    """Reads an image and returns one logit per class, built from a list of named layers.

    An activation follows every convolution but the last, whose channels are the
    logits. Normalization (after the convolution) and dropout (after the
    activation) are optional layer factories, so a preset changes them without
    subclassing. Modules are registered under the names the specs give, so
    ``named_parameters()`` reads ``input1.weight``, ``conv1.weight``, ...

    Args:
        layers: The layers in order; the last must be a :class:`Conv`.
        in_channels: Channels of the input image.
        input_size: ``(H, W)`` of the input image.
        act_layer: Builds an activation, e.g. ``nn.ReLU``.
        norm_layer: Builds a normalization from a channel count, e.g. ``nn.BatchNorm2d``;
            ``None`` for none. Convolutions followed by one have no bias.
        drop_layer: Builds a dropout module, e.g. ``functools.partial(nn.Dropout2d, 0.1)``;
            ``None`` for none.
        global_pool: Average the last feature map over space; without it the last
            convolution must reduce the image to 1x1.

    Shapes:
        ``forward(image)``: ``image`` ``(B, in_channels, H, W)`` float ->
        ``(B, out_features)`` logits.

    Raises:
        ValueError: Empty or duplicate names, a last layer that is not a Conv,
            a layer that shrinks the image below 1x1, or a final map larger than
            1x1 without ``global_pool``.

    Example:
        >>> import torch
        >>> trunk = ConvTrunk([Conv("c1", 8, 3), MaxPool("pool", 2), Conv("out", 10, 13)])
        >>> trunk(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        layers: Sequence[LayerSpec],
        *,
        in_channels: int = 1,
        input_size: tuple[int, int] = (28, 28),
        act_layer: Callable[[], nn.Module] = nn.ReLU,
        norm_layer: Callable[[int], nn.Module] | None = None,
        drop_layer: Callable[[], nn.Module] | None = None,
        global_pool: bool = False,
    ) -> None:
        if not layers or not isinstance(layers[-1], Conv):
            raise InvalidValueError(
                f"Expected argument `layers` to end with a Conv, got {list(layers)!r}"
            )
        modules: OrderedDict[str, nn.Module] = OrderedDict()
        channels, (h, w) = in_channels, input_size
        for i, spec in enumerate(layers):
            if not spec.name or spec.name in modules:
                raise InvalidValueError(
                    f"Layer names must be unique and non-empty, got {spec.name!r}"
                )
            if isinstance(spec, Conv):
                last = i == len(layers) - 1
                norm = None if last or norm_layer is None else norm_layer(spec.out_channels)
                modules[spec.name] = nn.Conv2d(
                    channels,
                    spec.out_channels,
                    spec.kernel_size,
                    spec.stride,
                    spec.padding,
                    bias=norm is None,
                )
                h = _out_size(h, spec.kernel_size, spec.stride, spec.padding)
                w = _out_size(w, spec.kernel_size, spec.stride, spec.padding)
                channels = spec.out_channels
                if not last:
                    if norm is not None:
                        modules[f"{spec.name}_norm"] = norm
                    modules[f"{spec.name}_act"] = act_layer()
                    if drop_layer is not None:
                        modules[f"{spec.name}_drop"] = drop_layer()
            else:
                stride = spec.stride or spec.kernel_size
                modules[spec.name] = nn.MaxPool2d(spec.kernel_size, stride)
                h = _out_size(h, spec.kernel_size, stride, 0)
                w = _out_size(w, spec.kernel_size, stride, 0)
            if h < 1 or w < 1:
                raise InvalidValueError(f"Layer {spec.name!r} shrinks the image below 1x1")
        if global_pool:
            modules["global_pool"] = nn.AdaptiveAvgPool2d(1)
        elif (h, w) != (1, 1):
            raise InvalidValueError(
                f"The last layer leaves a {h}x{w} map; reduce it to 1x1 or pass global_pool=True"
            )
        modules["flatten"] = nn.Flatten(1)
        super().__init__(modules)
        #: ``(C, H, W)`` of one input image.
        self.input_shape = (in_channels, *input_size)
        #: Width of the output, the last convolution's channels.
        self.out_features = channels

    def forward(self, image: Tensor) -> Tensor:
        """Map ``(B, C, H, W)`` images to ``(B, out_features)`` logits."""
        for module in self:
            image = module(image)
        return image
