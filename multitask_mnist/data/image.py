"""Turning an image into the network's input: one 28x28 channel, normalized like MNIST."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image, ImageOps, ImageStat
from torch import Tensor
from torchvision.transforms.functional import pil_to_tensor

__all__ = ["IMAGE_SHAPE", "MNIST_MEAN", "MNIST_STD", "image_to_tensor", "normalize"]

#: Mean and standard deviation of MNIST's training pixels, scaled to 0-1.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
#: ``(C, H, W)`` of one network input.
IMAGE_SHAPE = (1, 28, 28)


def normalize(pixels: Tensor) -> Tensor:
    """uint8 (0-255) or float (0-1) pixels to float32 normalized with MNIST's statistics.

    Args:
        pixels: Any shape; uint8 values are divided by 255 first.

    Returns:
        ``(pixels / 255 - MNIST_MEAN) / MNIST_STD`` as float32, same shape.

    Example:
        >>> round(float(normalize(torch.tensor([255], dtype=torch.uint8))), 4)
        2.8215
    """
    x = pixels.to(torch.float32)
    if pixels.dtype == torch.uint8:
        x = x.div_(255)
    return x.sub_(MNIST_MEAN).div_(MNIST_STD)


def _fit_picture(picture: Image.Image) -> Image.Image:
    """Any picture to 28x28 grayscale, light digit on dark ground, as in MNIST."""
    gray = picture.convert("L")
    if gray.size != IMAGE_SHAPE[1:]:
        gray = gray.resize(IMAGE_SHAPE[1:], Image.Resampling.LANCZOS)
    light_paper = ImageStat.Stat(gray).mean[0] > 127  # dark ink on light paper
    return ImageOps.invert(gray) if light_paper else gray


def image_to_tensor(image: Any, *, fit: bool = False) -> Tensor:
    """Convert one image to a normalized ``(1, 28, 28)`` float32 tensor.

    Args:
        image: A PIL image, or a tensor or array of uint8 (0-255) or float (0-1)
            pixels shaped ``(28, 28)`` or ``(1, 28, 28)``.
        fit: For PIL images of any size and mode: convert to grayscale, resize to
            28x28, and invert dark-on-light pictures so the digit is light on dark,
            as in MNIST.

    Returns:
        ``(1, 28, 28)`` float32.

    Raises:
        TypeError: Pixels neither uint8 nor floating point.
        ValueError: A shape other than ``(28, 28)`` or ``(1, 28, 28)``.

    Example:
        >>> from PIL import Image
        >>> image_to_tensor(Image.new("RGB", (100, 80), "white"), fit=True).shape
        torch.Size([1, 28, 28])
    """
    if isinstance(image, Image.Image):
        image = pil_to_tensor(_fit_picture(image) if fit else image.convert("L"))
    elif not isinstance(image, Tensor):
        image = torch.as_tensor(image)
    if not (image.dtype == torch.uint8 or image.is_floating_point()):
        raise TypeError(f"has dtype {image.dtype}; expected uint8 (0-255) or a float dtype (0-1)")
    if image.ndim == 2:
        image = image.unsqueeze(0)
    if tuple(image.shape) != IMAGE_SHAPE:
        raise ValueError(f"has shape {tuple(image.shape)}; expected (28, 28) or (1, 28, 28)")
    return normalize(image)
