"""A web page to try a trained network: draw a digit, give a number, see the predictions.

:func:`build_demo` makes a Gradio app for any network that reads one 28x28 image and,
optionally, whole numbers in a range (the documented network, ``mnist_sum_bn``), and
predicts classes, binary labels or numbers. The drawing goes through the same
preprocessing as ``multitask-mnist predict`` (:func:`~multitask_mnist.data.image_to_tensor`
with ``fit=True``), and the page shows the 28x28 image the network saw. It needs the
``demo`` extra: ``pip install 'multitask-mnist[demo]'``. Run it with
``multitask-mnist demo --checkpoint best.pt``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from multitask_mnist._extras import require
from multitask_mnist.data import MNIST_MEAN, MNIST_STD, image_to_tensor
from multitask_mnist.errors import InvalidValueError
from multitask_mnist.models import Input, MultiTaskNet

__all__ = ["DemoResult", "build_demo", "check_demo_model", "launch_demo", "predict_drawing"]

#: Side of the enlarged picture of what the network saw, in screen pixels.
_SEEN_SIZE = 224
#: A drawing whose brightest pixel, once fitted, is below this (of 255) is blank.
_BLANK_LEVEL = 32
_THEME_FONTS = ["ui-sans-serif", "system-ui", "sans-serif"]  # no web fonts to fetch
#: Selects the sketchpad's brush once the page has drawn it.
_PICK_BRUSH = """() => {
  const pick = (tries) => {
    const brush = document.querySelector('#drawing button[aria-label="Brush"]');
    if (brush) brush.click(); else if (tries > 0) setTimeout(() => pick(tries - 1), 100);
  };
  pick(100);
}"""


@dataclass
class DemoResult:
    """What the page shows for one drawing and its numbers.

    Attributes:
        message: Why nothing was predicted (an empty drawing, a bad number), or ``""``.
        labels: Each task's prediction: the class, the 0/1 label, or the rounded number.
        values: Each task's raw output for one sample: a regression's number, a binary
            task's probability; multiclass tasks are in ``probabilities``.
        probabilities: Each multiclass task's class probabilities, by class name.
        seen: The ``(28, 28)`` uint8 picture the network read, or ``None``.

    Example:
        >>> DemoResult(labels={"digit": 7, "sum": 10}).summary()
        'digit 7 · sum 10'
    """

    message: str = ""
    labels: dict[str, int] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)
    probabilities: dict[str, dict[str, float]] = field(default_factory=dict)
    seen: Tensor | None = None

    def summary(self) -> str:
        """One line such as ``digit 7 · sum 10``, or the message."""
        return self.message or " · ".join(f"{name} {label}" for name, label in self.labels.items())


def check_demo_model(model: MultiTaskNet) -> tuple[str, list[Input]]:
    """The image input and the number inputs of a network the demo can show.

    Args:
        model: The network.

    Returns:
        The name of its one 28x28 image input, and its other inputs (whole numbers
        with both bounds, so the page can say what is allowed).

    Raises:
        ValueError: The network reads something else (several images, a vector, an
            unbounded number), or predicts a number written as digits (a ``"digits"``
            task); the message says what it reads or which task.

    Example:
        >>> from multitask_mnist import presets
        >>> check_demo_model(presets.mnist_sum())[0]
        'image'
        >>> check_demo_model(presets.mnist_addition())
        Traceback (most recent call last):
        ...
        multitask_mnist.errors.InvalidValueError: The demo shows networks that read one ...
    """
    images = [spec for spec in model.inputs.values() if spec.shape == (1, 28, 28)]
    numbers = [spec for spec in model.inputs.values() if spec.shape == ()]
    bounded = all(
        spec.integer and spec.low is not None and spec.high is not None for spec in numbers
    )
    if len(images) != 1 or len(images) + len(numbers) != len(model.inputs) or not bounded:
        reads = ", ".join(f"{spec.name} {spec.shape}" for spec in model.inputs.values())
        preset = f"preset {model.preset['name']!r}" if model.preset else "this network"
        raise InvalidValueError(
            "The demo shows networks that read one (1, 28, 28) image and whole numbers "
            f"in a range; {preset} reads {reads}"
        )
    for task in model.tasks:
        if task.kind == "digits":
            raise InvalidValueError(
                "The demo shows multiclass, binary and regression tasks; task "
                f"{task.name!r} is digits"
            )
    return images[0].name, numbers


def _picture(drawing: Any) -> Image.Image | str | None:
    """The drawing as a PIL image, from Gradio's editor value, an array or an image;
    ``None`` for no drawing; a sentence saying what is wrong with anything else."""
    if isinstance(drawing, Mapping):
        drawing = drawing.get("composite")
    if drawing is None or isinstance(drawing, Image.Image):
        return drawing
    wanted = "a PIL image or an (H, W) or (H, W, C) array of numbers (C = 1, 3 or 4)"
    try:
        array = torch.as_tensor(drawing) if not isinstance(drawing, (str, bytes)) else None
    except (TypeError, ValueError, RuntimeError):
        array = None
    if array is None or array.is_complex():
        return f"The drawing must be {wanted}, got {type(drawing).__name__}."
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
        return f"The drawing must be {wanted}, got shape {tuple(array.shape)}."
    if array.shape[0] == 0 or array.shape[1] == 0:
        return None  # nothing drawn
    if array.dtype != torch.uint8:  # 0-1 floats, bools, other integers: one scale
        scaled = array.double() / (255.0 if not array.is_floating_point() else 1.0)
        array = (scaled.nan_to_num(0.0).clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(array.numpy())


def _whole_number(value: Any) -> float | None:
    """``value`` as a float (a number, a numeric string, a one-element array), or ``None``
    if it is none of these."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):
        return None


def predict_drawing(model: MultiTaskNet, drawing: Any, numbers: Mapping[str, Any]) -> DemoResult:
    """Predict every task for one drawing, as the demo page does.

    Every input gets an answer, never an exception: the predictions, or a
    :class:`DemoResult` whose ``message`` says what to fix.

    Args:
        model: A network :func:`check_demo_model` accepts.
        drawing: A PIL image, an ``(H, W)``/``(H, W, C)`` array (``C`` 1, 3 or 4) of
            uint8, of 0-1 floats or of bools, Gradio's editor value (a dict with
            ``"composite"``), or ``None``.
        numbers: A value for each number input, by name: a number, a numeric string such
            as ``"3"``, or ``None`` for an empty field.

    Returns:
        The predictions, or a :class:`DemoResult` whose ``message`` says what to fix (an
        empty drawing, something that is not a picture, a missing number or one that is
        not a whole number in range).

    Raises:
        ValueError: ``model`` is a network the demo cannot show (:func:`check_demo_model`).

    Example:
        >>> from multitask_mnist import presets
        >>> predict_drawing(presets.mnist_sum(), None, {"number": 3}).message
        'Draw a digit first.'
        >>> predict_drawing(presets.mnist_sum(), Image.new("L", (50, 50)), {"number": 12}).message
        'The number must be a whole number in 0..9, got 12.'
        >>> predict_drawing(presets.mnist_sum(), "seven", {"number": 3}).message
        'The drawing must be a PIL image or an (H, W) or (H, W, C) array of numbers (C = 1, 3 \
or 4), got str.'
    """
    image_name, number_specs = check_demo_model(model)
    picture = _picture(drawing)
    if isinstance(picture, str):
        return DemoResult(picture)
    if picture is None:
        return DemoResult("Draw a digit first.")
    inputs: dict[str, Tensor] = {}
    given = numbers if isinstance(numbers, Mapping) else {}
    for spec in number_specs:
        raw = given.get(spec.name)
        allowed = f"a whole number in {int(spec.low or 0)}..{int(spec.high or 0)}"
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return DemoResult(f"Enter {allowed} for {spec.name}.")
        value = _whole_number(raw)
        if value is None:
            return DemoResult(f"The {spec.name} must be {allowed}, got {raw!r}.")
        whole = math.isfinite(value) and value.is_integer()
        if not whole or not (spec.low or 0) <= value <= (spec.high or 0):
            shown = int(value) if whole else value
            return DemoResult(f"The {spec.name} must be {allowed}, got {shown}.")
        inputs[spec.name] = torch.tensor([int(value)])
    image = image_to_tensor(picture, fit=True)
    seen = (image[0] * MNIST_STD + MNIST_MEAN).mul(255).round().clamp(0, 255).to(torch.uint8)
    if int(seen.max()) < _BLANK_LEVEL:
        return DemoResult("Draw a digit first.", seen=seen)
    inputs[image_name] = image.unsqueeze(0)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            outputs = model(inputs)
    finally:
        model.train(was_training)
    result = DemoResult(seen=seen)
    for task in model.tasks:
        output = outputs[task.name].float()
        result.labels[task.name] = int(task.predicted(output)[0])
        if task.kind == "multiclass":
            probabilities = output[0].softmax(-1).tolist()
            result.probabilities[task.name] = {str(c): p for c, p in enumerate(probabilities)}
        elif task.kind == "binary":
            result.values[task.name] = float(output[0].sigmoid())
        else:
            result.values[task.name] = float(output[0])
    return result


def build_demo(model: MultiTaskNet, *, title: str = "multitask_mnist") -> Any:
    """A Gradio app: a sketchpad, a field per number input, and the predictions.

    The page shows one line with every task's prediction, each multiclass task's class
    probabilities as bars, each number task's value, and the 28x28 image the network
    saw. Problems (an empty drawing, a number out of range) appear as a line on the page.

    Args:
        model: A network :func:`check_demo_model` accepts; it is used in eval mode.
        title: The page's title.

    Returns:
        A ``gradio.Blocks``; call ``.launch(server_name="127.0.0.1")`` on it.

    Raises:
        MissingExtraError: Gradio is not installed.
        ValueError: The network reads inputs the page cannot offer.

    Example:
        >>> from multitask_mnist import presets
        >>> demo = build_demo(presets.mnist_sum())  # doctest: +SKIP
        >>> demo.launch(server_name="127.0.0.1", server_port=7860)  # doctest: +SKIP
    """
    _, number_specs = check_demo_model(model)
    gr = require("gradio", "demo", "The demo")
    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(f"## {title}\nDraw a digit, then press **Predict**.")
        with gr.Row():
            with gr.Column():
                sketch = gr.Sketchpad(
                    label="your digit",
                    type="numpy",
                    image_mode="RGB",
                    canvas_size=(280, 280),
                    brush=gr.Brush(default_size=12, colors=["#000000"], color_mode="fixed"),
                    elem_id="drawing",
                )
                fields = [
                    gr.Number(
                        value=spec.low,
                        label=f"{spec.name} ({int(spec.low or 0)}-{int(spec.high or 0)})",
                        elem_id=f"input-{spec.name}",
                    )
                    for spec in number_specs
                ]
                button = gr.Button("Predict", variant="primary", elem_id="predict")
            with gr.Column():
                status = gr.Markdown(elem_id="status")
                seen = gr.Image(
                    label="what the network saw (28x28)",
                    type="pil",
                    image_mode="L",
                    interactive=False,
                    height=_SEEN_SIZE,
                    elem_id="seen",
                )
                shown: list[Any] = []
                for task in model.tasks:
                    if task.kind == "multiclass":
                        shown.append(
                            gr.Label(
                                label=f"{task.name}: class probabilities",
                                num_top_classes=task.num_classes,
                                elem_id=f"task-{task.name}",
                            )
                        )
                    else:
                        kind = "probability" if task.kind == "binary" else "value"
                        shown.append(
                            gr.Number(
                                label=f"{task.name}: {kind}",
                                interactive=False,
                                elem_id=f"task-{task.name}",
                            )
                        )

        def respond(drawing: Any, *values: float | None) -> list[Any]:
            named = {spec.name: value for spec, value in zip(number_specs, values, strict=True)}
            result = predict_drawing(model, drawing, named)
            picture = None
            if result.seen is not None:
                picture = Image.fromarray(result.seen.numpy()).resize(
                    (_SEEN_SIZE, _SEEN_SIZE), Image.Resampling.NEAREST
                )
            line = f"**{result.message}**" if result.message else f"### {result.summary()}"
            per_task = [
                result.probabilities.get(task.name) or result.values.get(task.name)
                for task in model.tasks
            ]
            return [line, picture, *per_task]

        triggers = [button.click, *(number.submit for number in fields)]
        gr.on(triggers, respond, inputs=[sketch, *fields], outputs=[status, seen, *shown])
        demo.load(None, js=_PICK_BRUSH)  # draw at once, without choosing the brush first
    return demo


def launch_demo(
    model: MultiTaskNet, *, host: str = "127.0.0.1", port: int = 7860, title: str | None = None
) -> None:
    """Serve :func:`build_demo` on ``host:port`` until interrupted; never a share link.

    The page uses the system's fonts, so it needs no network beyond ``host``.

    Args:
        model: A network :func:`check_demo_model` accepts.
        host: The address to bind; the default serves this machine only.
        port: The port.
        title: The page's title; by default it names the preset.

    Raises:
        MissingExtraError: Gradio is not installed.
        ValueError: The network reads inputs the page cannot offer.
        OSError: The port is taken.

    Example:
        >>> from multitask_mnist import presets
        >>> launch_demo(presets.from_checkpoint("runs/mnist_sum/best.pt"))  # doctest: +SKIP
    """
    gr = require("gradio", "demo", "The demo")
    name = model.preset["name"] if model.preset else "multitask_mnist"
    demo = build_demo(model, title=title or f"multitask_mnist · {name}")
    theme = gr.themes.Soft(font=_THEME_FONTS, font_mono=["ui-monospace", "monospace"])
    demo.launch(server_name=host, server_port=port, share=False, theme=theme, ssr_mode=False)
