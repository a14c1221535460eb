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


def _pixels(tensor: torch.Tensor) -> torch.Tensor:
    """Normalized back to 0-255."""
    return (tensor[0] * MNIST_STD + MNIST_MEAN).mul(255).round()


def test_fit_crops_scales_and_centres_the_ink_as_mnist_does() -> None:
    picture = Image.new("L", (400, 300), 255)
    picture.paste(0, (20, 30, 60, 130))  # a small dark bar near a corner, 40 x 100
    ink = _pixels(image_to_tensor(picture, fit=True)) > 128
    rows, columns = ink.nonzero(as_tuple=True)
    assert int(rows.max() - rows.min()) + 1 == 20  # the longer side fills the 20-pixel box
    assert 7 <= int(columns.max() - columns.min()) + 1 <= 9  # the aspect ratio is kept
    mass = _pixels(image_to_tensor(picture, fit=True))
    centre_y = float((mass.sum(1) * (torch.arange(28) + 0.5)).sum() / mass.sum())
    centre_x = float((mass.sum(0) * (torch.arange(28) + 0.5)).sum() / mass.sum())
    assert abs(centre_y - 14) <= 0.5 and abs(centre_x - 14) <= 0.5  # centred by mass


def test_fit_reads_transparent_pixels_as_paper() -> None:
    picture = Image.new("RGBA", (280, 280), (0, 0, 0, 0))  # a sketchpad's empty layer
    picture.paste((0, 0, 0, 255), (130, 40, 150, 240))
    pixels = _pixels(image_to_tensor(picture, fit=True))
    assert pixels[0, 0] == 0 and pixels[14, 14] == 255


def test_fit_keeps_a_blank_picture_blank() -> None:
    assert _pixels(image_to_tensor(Image.new("RGB", (90, 60), "white"), fit=True)).max() == 0


def test_fit_returns_an_mnist_image_drawn_large_close_to_the_original() -> None:
    original = torch.zeros(28, 28, dtype=torch.uint8)
    original[6:22, 12:16] = 255  # a "1", 16 pixels tall, centred
    large = Image.fromarray((255 - original).numpy()).resize((280, 280), Image.Resampling.NEAREST)
    fitted = _pixels(image_to_tensor(large, fit=True))
    assert (fitted > 128).sum() >= (original > 128).sum()  # scaled up to the 20-pixel box
    assert fitted[14, 13] == 255 and fitted[0].max() == 0


def test_normalize_leaves_a_float_input_unchanged() -> None:
    pixels = torch.rand(2, 1, 28, 28)
    before = pixels.clone()
    out = normalize(pixels)
    assert torch.equal(pixels, before)  # it once normalized float32 input in place
    assert torch.allclose(out, (before - MNIST_MEAN) / MNIST_STD)
