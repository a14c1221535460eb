"""Turning an image into the network's input: one 28x28 channel, normalized like MNIST."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image, ImageOps, ImageStat
from torch import Tensor

from multitask_mnist.errors import InvalidTypeError, InvalidValueError

__all__ = ["IMAGE_SHAPE", "MNIST_MEAN", "MNIST_STD", "image_to_tensor", "normalize"]

#: Mean and standard deviation of MNIST's training pixels, scaled to 0-1.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
#: ``(C, H, W)`` of one network input.
IMAGE_SHAPE = (1, 28, 28)
#: MNIST's digits fit a box of this many pixels, centred by mass in the 28x28 image.
_DIGIT_BOX = 20
#: Gray levels above this count as ink when a picture is cropped to its digit.
_INK_LEVEL = 32


def normalize(pixels: Tensor) -> Tensor:
    """uint8 (0-255) or float (0-1) pixels to float32 normalized with MNIST's statistics.

    Args:
        pixels: Any shape; uint8 values are divided by 255 first. Left unchanged.

    Returns:
        ``(pixels / 255 - MNIST_MEAN) / MNIST_STD`` as float32, same shape.

    Example:
        >>> round(float(normalize(torch.tensor([255], dtype=torch.uint8))), 4)
        2.8215
    """
    x = pixels.to(torch.float32, copy=True)  # never the caller's tensor: the ops below are in place
    if pixels.dtype == torch.uint8:
        x = x.div_(255)
    return x.sub_(MNIST_MEAN).div_(MNIST_STD)


def _gray_to_tensor(picture: Image.Image) -> Tensor:
    """A grayscale (mode ``L``) PIL image as a ``(1, H, W)`` uint8 tensor."""
    pixels = torch.frombuffer(bytearray(picture.tobytes()), dtype=torch.uint8)
    return pixels.view(1, picture.height, picture.width)


def _fit_picture(picture: Image.Image) -> Image.Image:
    """Any picture to 28x28 grayscale, light digit on dark ground, as in MNIST.

    Transparent pixels count as white paper. A picture of another size is cropped to its
    ink, scaled to fit 20x20 pixels and placed by its centre of mass, as MNIST
    made its images from the NIST scans; a blank one is only resized.
    """
    if picture.mode in ("RGBA", "LA", "PA") or "transparency" in picture.info:
        rgba = picture.convert("RGBA")
        picture = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    gray = picture.convert("L")
    if ImageStat.Stat(gray).mean[0] > 127:  # dark ink on light paper
        gray = ImageOps.invert(gray)
    if gray.size == IMAGE_SHAPE[1:]:
        return gray
    ink = gray.point(lambda value: 255 if value > _INK_LEVEL else 0).getbbox()
    if ink is None:
        return gray.resize(IMAGE_SHAPE[1:], Image.Resampling.LANCZOS)
    digit = gray.crop(ink)
    scale = _DIGIT_BOX / max(digit.size)
    width, height = (max(1, round(side * scale)) for side in digit.size)
    digit = digit.resize((width, height), Image.Resampling.LANCZOS)
    mass = _gray_to_tensor(digit)[0].to(torch.float64)
    total = float(mass.sum())
    if total == 0.0:
        centre_x, centre_y = width / 2, height / 2
    else:  # pixel i covers [i, i + 1): its centre is i + 0.5
        centre_x = float((mass.sum(0) * (torch.arange(width) + 0.5)).sum()) / total
        centre_y = float((mass.sum(1) * (torch.arange(height) + 0.5)).sum()) / total
    size = IMAGE_SHAPE[1]
    left = min(max(round(size / 2 - centre_x), 0), size - width)
    top = min(max(round(size / 2 - centre_y), 0), size - height)
    canvas = Image.new("L", IMAGE_SHAPE[1:], 0)
    canvas.paste(digit, (left, top))
    return canvas


def image_to_tensor(image: Any, *, fit: bool = False) -> Tensor:
    """Convert one image to a normalized ``(1, 28, 28)`` float32 tensor.

    Args:
        image: A PIL image, or a tensor or array of uint8 (0-255) or float (0-1)
            pixels shaped ``(28, 28)`` or ``(1, 28, 28)``.
        fit: For PIL images of any size and mode: convert to grayscale (transparent
            pixels as white paper), invert dark-on-light pictures so the digit is light
            on dark, and, for a picture other than 28x28, crop it to its ink, scale that
            to fit a 20x20 box and centre it by mass in 28x28, as MNIST's images were
            made.

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
        image = _gray_to_tensor(_fit_picture(image) if fit else image.convert("L"))
    elif not isinstance(image, Tensor):
        image = torch.as_tensor(image)
    if not (image.dtype == torch.uint8 or image.is_floating_point()):
        raise InvalidTypeError(
            f"has dtype {image.dtype}; expected uint8 (0-255) or a float dtype (0-1)"
        )
    if image.ndim == 2:
        image = image.unsqueeze(0)
    if tuple(image.shape) != IMAGE_SHAPE:
        raise InvalidValueError(f"has shape {tuple(image.shape)}; expected (28, 28) or (1, 28, 28)")
    return normalize(image)
