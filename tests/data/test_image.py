from __future__ import annotations

import pytest
import torch
from PIL import Image

from multitask_mnist.data import MNIST_MEAN, MNIST_STD, image_to_tensor, normalize

LOW = (0.0 - MNIST_MEAN) / MNIST_STD
HIGH = (1.0 - MNIST_MEAN) / MNIST_STD


def test_normalize_uint8_and_float_agree() -> None:
    pixels = torch.arange(256, dtype=torch.uint8)
    assert torch.allclose(normalize(pixels), normalize(pixels.float() / 255))
    assert normalize(pixels)[0].item() == pytest.approx(LOW)
    assert normalize(pixels)[-1].item() == pytest.approx(HIGH)


def test_fit_resizes_and_inverts_dark_ink_on_light_paper() -> None:
    picture = Image.new("RGB", (280, 140), "white")
    picture.paste((0, 0, 0), (120, 20, 160, 120))  # a dark vertical stroke
    tensor = image_to_tensor(picture, fit=True)
    assert tuple(tensor.shape) == (1, 28, 28)
    assert tensor[0, 0, 0].item() == pytest.approx(LOW, abs=1e-3)  # paper -> dark ground
    assert tensor[0, 14, 14].item() == pytest.approx(HIGH, abs=1e-3)  # ink -> light digit


def test_fit_keeps_light_digits_on_dark_ground() -> None:
    picture = Image.new("L", (28, 28), 0)
    picture.paste(255, (10, 4, 18, 24))
    tensor = image_to_tensor(picture, fit=True)
    assert tensor[0, 0, 0].item() == pytest.approx(LOW) and tensor[
        0, 10, 12
    ].item() == pytest.approx(HIGH)


def test_without_fit_size_is_checked() -> None:
    with pytest.raises(
        ValueError, match=r"^has shape \(1, 30, 30\); expected \(28, 28\) or \(1, 28, 28\)$"
    ):
        image_to_tensor(Image.new("L", (30, 30)))
