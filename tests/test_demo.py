"""The web demo: what it predicts for a drawing, and the page itself in a real browser."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from torchvision.datasets import MNIST

from multitask_mnist import presets
from multitask_mnist.cli import main
from multitask_mnist.demo import DemoResult, build_demo, check_demo_model, predict_drawing
from multitask_mnist.export import save_safetensors
from tests.conftest import run_in_process

CHROMIUM = Path("/usr/bin/chromium")
#: Ink above this gray level (of 255) becomes a stroke when a test image is drawn.
INK = 100
#: The side of the square the strokes are drawn in, in canvas pixels, and the brush width.
SQUARE, BRUSH = 252, 12


def strokes(pixels: torch.Tensor) -> list[tuple[int, int, int]]:
    """The ink of a 28x28 image as horizontal strokes: (row, first column, last column)."""
    found = []
    for row in range(28):
        column = 0
        while column < 28:
            if pixels[row, column] > INK:
                start = column
                while column < 28 and pixels[row, column] > INK:
                    column += 1
                found.append((row, start, column - 1))
            column += 1
    return found


def drawn(pixels: torch.Tensor) -> Image.Image:
    """What drawing those strokes with a round brush on a white canvas looks like."""
    canvas = Image.new("RGB", (SQUARE + 40, SQUARE + 40), "white")
    pen = ImageDraw.Draw(canvas)
    cell = SQUARE / 28
    for row, first, last in strokes(pixels):
        y = 20 + (row + 0.5) * cell
        pen.line(
            [(20 + (first + 0.5) * cell, y), (20 + (last + 0.5) * cell, y)],
            fill="black",
            width=BRUSH,
        )
        for x in (first, last):
            centre = 20 + (x + 0.5) * cell
            pen.ellipse(
                [centre - BRUSH / 2, y - BRUSH / 2, centre + BRUSH / 2, y + BRUSH / 2], "black"
            )
    return canvas


# --- what the page computes ----------------------------------------------------------


def test_an_empty_or_missing_drawing_asks_for_one() -> None:
    model = presets.mnist_sum()
    assert predict_drawing(model, None, {"number": 3}).message == "Draw a digit first."
    blank = predict_drawing(model, Image.new("RGB", (280, 280), "white"), {"number": 3})
    assert blank.message == "Draw a digit first." and blank.labels == {}
    editor = {"background": None, "layers": [], "composite": None}
    assert predict_drawing(model, editor, {"number": 3}).message == "Draw a digit first."


@pytest.mark.parametrize(
    ("number", "message"),
    [
        (12, "The number must be a whole number in 0..9, got 12."),
        (-1, "The number must be a whole number in 0..9, got -1."),
        (3.5, "The number must be a whole number in 0..9, got 3.5."),
        (float("nan"), "The number must be a whole number in 0..9, got nan."),
        (None, "Enter a whole number in 0..9 for number."),
    ],
)
def test_a_bad_number_is_a_message_not_an_error(number: float | None, message: str) -> None:
    result = predict_drawing(presets.mnist_sum(), _stroke(), {"number": number})
    assert result == DemoResult(message)


def _stroke() -> Image.Image:
    digit = Image.new("L", (100, 100), 255)
    ImageDraw.Draw(digit).line([(50, 10), (50, 90)], fill=0, width=8)
    return digit


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("three", "The number must be a whole number in 0..9, got 'three'."),
        ("", "Enter a whole number in 0..9 for number."),
        ([3, 4], "The number must be a whole number in 0..9, got [3, 4]."),
        (True, "The number must be a whole number in 0..9, got True."),
        (complex(3, 1), "The number must be a whole number in 0..9, got (3+1j)."),
    ],
)
def test_a_number_of_another_type_is_a_message(number: object, message: str) -> None:
    assert predict_drawing(presets.mnist_sum(), _stroke(), {"number": number}) == DemoResult(
        message
    )


@pytest.mark.parametrize("number", ["3", " 3 ", 3.0, torch.tensor(3), torch.tensor([3.0])])
def test_a_number_written_otherwise_is_read(number: object) -> None:
    result = predict_drawing(presets.mnist_sum(), _stroke(), {"number": number})
    assert result.message == "" and set(result.labels) == {"digit", "sum"}


WANTED = "a PIL image or an (H, W) or (H, W, C) array of numbers (C = 1, 3 or 4)"


@pytest.mark.parametrize(
    ("drawing", "message"),
    [
        ("seven", f"The drawing must be {WANTED}, got str."),
        (b"\x00\x01", f"The drawing must be {WANTED}, got bytes."),
        (object(), f"The drawing must be {WANTED}, got object."),
        (torch.zeros(28, 28, 5), f"The drawing must be {WANTED}, got shape (28, 28, 5)."),
        (torch.zeros(28), f"The drawing must be {WANTED}, got shape (28,)."),
        (torch.zeros(2, 28, 28, 3), f"The drawing must be {WANTED}, got shape (2, 28, 28, 3)."),
        (torch.zeros(28, 28, dtype=torch.complex64), f"The drawing must be {WANTED}, got Tensor."),
        (torch.zeros(0, 5), "Draw a digit first."),
        ({"composite": "not a picture"}, f"The drawing must be {WANTED}, got str."),
    ],
)
def test_a_drawing_that_is_no_picture_is_a_message(drawing: object, message: str) -> None:
    assert predict_drawing(presets.mnist_sum(), drawing, {"number": 3}) == DemoResult(message)


@given(
    shape=st.lists(st.integers(0, 40), min_size=0, max_size=4),
    dtype=st.sampled_from([torch.uint8, torch.bool, torch.int64, torch.float32, torch.float64]),
    fill=st.sampled_from([0.0, 0.5, 1.0, 255.0, -3.0, float("nan"), float("inf")]),
    number=st.one_of(
        st.none(), st.integers(-5, 15), st.floats(allow_nan=True), st.text(max_size=4)
    ),
)
@settings(max_examples=60, deadline=None)
def test_every_drawing_and_number_gets_an_answer(
    shape: list[int], dtype: torch.dtype, fill: float, number: object
) -> None:
    """Any array and any number: a prediction or a message, never an exception."""
    drawing = (
        torch.full(shape, fill).to(dtype)
        if dtype is not torch.bool
        else torch.ones(shape, dtype=dtype)
    )
    result = predict_drawing(presets.mnist_sum(), drawing, {"number": number})
    assert bool(result.message) != bool(result.labels)


@pytest.mark.parametrize("mode", ["1", "L", "P", "RGB", "RGBA", "LA", "I", "F", "I;16", "CMYK"])
def test_a_picture_in_any_mode_is_read(mode: str) -> None:
    result = predict_drawing(presets.mnist_sum(), _stroke().convert(mode), {"number": 3})
    assert result.message == "" and result.seen is not None


def test_a_drawn_test_image_is_read_as_its_digit(
    trained_checkpoint: Path, mnist_test: MNIST
) -> None:
    model = presets.from_checkpoint(trained_checkpoint)
    right = 0
    for i in range(100):
        pixels, label = mnist_test.data[i], int(mnist_test.targets[i])
        result = predict_drawing(model, drawn(pixels), {"number": 4})
        assert result.seen is not None and result.seen.shape == (28, 28)
        assert sum(result.probabilities["digit"].values()) == pytest.approx(1.0, abs=1e-5)
        assert result.labels["sum"] == round(result.values["sum"])
        right += result.labels["digit"] == label
    assert right >= 85  # the drawn strokes are not the scan, but they read as its digit


def test_the_seen_picture_is_what_the_network_read() -> None:
    model = presets.mnist_sum(fusion="expectation")
    picture = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(picture).ellipse([60, 40, 140, 160], outline=0, width=14)
    result = predict_drawing(model, picture, {"number": 2})
    assert result.seen is not None
    image = result.seen.float().div(255).sub(0.1307).div(0.3081).view(1, 1, 28, 28)
    with torch.inference_mode():
        out = model(image, torch.tensor([2]))
    assert result.labels["digit"] == int(out["digit"].argmax())
    assert result.values["sum"] == pytest.approx(float(out["sum"]), abs=1e-4)


def test_presets_the_page_cannot_show_are_named() -> None:
    assert check_demo_model(presets.mnist_sum_bn())[0] == "image"
    with pytest.raises(ValueError, match=r"preset 'mnist_addition' reads images \(2, 1, 28, 28\)"):
        check_demo_model(presets.mnist_addition())
    assert check_demo_model(presets.multi_mnist_lenet()) == ("image", [])  # left, right
    net = presets.mnist_addition()
    net.preset = None
    with pytest.raises(ValueError, match=r"; this network reads images \(2, 1, 28, 28\)$"):
        check_demo_model(net)
    from multitask_mnist.models import Block, CarryChainSum, Input, MultiTaskNet

    one_image = MultiTaskNet(  # one image, but a task of digits (checked before any call)
        {"sum": Block(torch.nn.Identity(), ["image"], CarryChainSum(1).task())},
        [Input("image", (1, 28, 28))],
    )
    with pytest.raises(ValueError, match=r"task 'sum' is digits$"):
        check_demo_model(one_image)


def test_the_command_refuses_a_preset_it_cannot_show(tmp_path: Path) -> None:
    path = save_safetensors(presets.mnist_addition(), tmp_path / "addition.safetensors")
    result = run_in_process(main, ["demo", "--checkpoint", str(path)])
    assert result.returncode == 1
    assert result.stderr.startswith(
        "multitask-mnist demo: error: The demo shows networks that read one (1, 28, 28) image"
    )
    assert result.stderr.count("\n") == 1


def test_without_gradio_the_command_names_the_extra(
    trained_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if it were not installed
    result = run_in_process(main, ["demo", "--checkpoint", str(trained_checkpoint)])
    assert result.returncode == 1
    assert result.stderr.startswith("multitask-mnist demo: error: The demo needs gradio")
    assert result.stderr.endswith("install it with: pip install 'multitask-mnist[demo]'\n")


def test_the_app_builds_for_the_documented_network() -> None:
    demo = build_demo(presets.mnist_sum(), title="test")
    ids = {getattr(block, "elem_id", None) for block in demo.blocks.values()}
    assert {"drawing", "input-number", "predict", "status", "seen", "task-digit"} <= ids
    assert "task-sum" in ids


# --- the page, in a real browser -----------------------------------------------------


def _browser() -> object:
    """Playwright's sync API with Debian's chromium; CI must have both."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if sync_playwright is None or not CHROMIUM.exists():
        message = "the browser test needs the playwright package and /usr/bin/chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return sync_playwright


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_served(url: str, server: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the demo exited: {server.communicate(timeout=30)[1]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # localhost only
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"the demo did not answer at {url} within {timeout} s")


def _choose_image(model: object, mnist_test: MNIST, number: int) -> tuple[int, int]:
    """A test image whose drawn strokes the network reads confidently, and its label."""
    for i in range(200):
        label = int(mnist_test.targets[i])
        result = predict_drawing(model, drawn(mnist_test.data[i]), {"number": number})  # type: ignore[arg-type]
        if result.labels.get("digit") == label and result.probabilities["digit"][str(label)] > 0.95:
            return i, label
    raise AssertionError("no test image among the first 200 is read confidently when drawn")


@pytest.mark.stress  # a server process and a browser: repeated by tests/stress.py
def test_the_demo_in_a_real_browser(
    trained_checkpoint: Path, mnist_test: MNIST, tmp_path: Path
) -> None:
    sync_playwright = _browser()
    number = 3
    index, label = _choose_image(presets.from_checkpoint(trained_checkpoint), mnist_test, number)
    port = _free_port()
    command = ["demo", "--checkpoint", str(trained_checkpoint), "--port", str(port)]
    server = subprocess.Popen(
        [sys.executable, "-m", "multitask_mnist", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_until_served(url, server)
        with sync_playwright() as playwright:  # type: ignore[operator]
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM),
                headless=True,
                args=["--no-sandbox", "--disable-background-networking"],
            )
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.goto(url)
            canvas = page.locator("#drawing canvas").first
            canvas.wait_for(timeout=60_000)
            page.locator('#drawing button[aria-label="Brush"]').wait_for()
            time.sleep(0.5)  # the page selects the brush once it is drawn
            box = canvas.bounding_box()
            assert box is not None
            cell = SQUARE / 28
            left = box["x"] + (box["width"] - SQUARE) / 2
            top = box["y"] + (box["height"] - SQUARE) / 2
            for row, first, last in strokes(mnist_test.data[index]):
                y = top + (row + 0.5) * cell
                page.mouse.move(left + (first + 0.5) * cell, y)
                page.mouse.down()
                page.mouse.move(left + (last + 0.5) * cell, y, steps=4)
                page.mouse.up()
            page.locator("#input-number input").fill(str(number))

            def predict() -> str:
                status = page.locator("#status")
                before = status.inner_text()
                page.locator("#predict").click()
                page.wait_for_function(  # an answer, not the progress timer
                    "([before]) => { const t = document.querySelector('#status').innerText;"
                    " return t !== before && /^(digit |The |Draw |Enter )/.test(t.trim()); }",
                    arg=[before],
                    timeout=60_000,
                )
                return status.inner_text().strip()

            assert predict() == f"digit {label} · sum {label + number}"
            bars = page.locator("#task-digit").inner_text().split()
            assert bars[:4] == ["digit:", "class", "probabilities", str(label)], bars
            assert sum(word.endswith("%") for word in bars) == 10  # a bar per class
            assert page.locator("#seen img").count() == 1
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
            if os.environ.get("MULTITASK_MNIST_SCREENSHOT"):  # to refresh the README's picture
                shutil.copy(tmp_path / "demo.png", os.environ["MULTITASK_MNIST_SCREENSHOT"])

            page.locator("#input-number input").fill("12")
            assert predict() == "The number must be a whole number in 0..9, got 12."
            page.locator("#input-number input").fill(str(number))
            page.locator('#drawing button[aria-label="Clear canvas"]').click()
            assert predict() == "Draw a digit first."
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert (tmp_path / "demo.png").stat().st_size > 10_000
