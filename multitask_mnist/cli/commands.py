"""The commands beside ``train``: ``evaluate``, ``predict``, ``demo``, ``export`` and
``presets``, each a function of its parsed arguments that returns the exit status."""

from __future__ import annotations

import math
from typing import Any

import torch

from multitask_mnist import presets
from multitask_mnist.cli.digit_sum import (
    data_root,
    digit_sum_model,
    mnist_test_split,
    print_test_result,
)
from multitask_mnist.data import (
    image_to_tensor,
)
from multitask_mnist.errors import InvalidValueError
from multitask_mnist.training import (
    Trainer,
)

__all__ = ["compare", "demo", "evaluate", "export", "list_presets", "predict"]


def evaluate(args: Any) -> int:
    model = digit_sum_model(presets.from_checkpoint(args.checkpoint), str(args.checkpoint))
    root, download = data_root(args.data_dir)
    test_data = mnist_test_split(root, download)
    trainer = Trainer(model, device=args.device, progress=False)
    print_test_result(trainer.evaluate(test_data), len(test_data))
    return 0


def predict(args: Any) -> int:
    from PIL import Image, UnidentifiedImageError

    model = digit_sum_model(presets.from_checkpoint(args.checkpoint), str(args.checkpoint))
    if not args.image.is_file():
        raise FileNotFoundError(f"Image not found: {args.image}")
    try:
        with Image.open(args.image) as picture:
            image = image_to_tensor(picture, fit=True)
    except UnidentifiedImageError as error:
        raise InvalidValueError(f"{args.image} is not an image PIL can read") from error
    number = model.inputs["number"]
    low = number.low if number.low is not None else -math.inf
    high = number.high if number.high is not None else math.inf
    if not low <= args.number <= high:
        raise InvalidValueError(f"NUMBER must be in {low:g}..{high:g}, got {args.number}")
    trainer = Trainer(model, device=args.device, progress=False)
    prediction = trainer.predict(
        {"image": image.unsqueeze(0), "number": torch.tensor([args.number])}
    )
    print(f"digit: {int(prediction.labels['digit'][0])}, sum: {int(prediction.labels['sum'][0])}")
    return 0


def demo(args: Any) -> int:
    from multitask_mnist.demo import check_demo_model, launch_demo  # gradio: only here

    if args.port < 0:
        raise InvalidValueError(f"Expected argument `port` to be >= 0, got {args.port}")
    model = presets.from_checkpoint(args.checkpoint)
    check_demo_model(model)
    launch_demo(model, host=args.host, port=args.port)
    return 0


def export(args: Any) -> int:
    from multitask_mnist.export import export_model  # onnx: only here

    model = presets.from_checkpoint(args.checkpoint)
    if not args.output.parent.is_dir():
        raise FileNotFoundError(f"Output folder not found: {args.output.parent}")
    path = export_model(model, args.output, format=args.format)
    print(f"wrote {path} ({args.format}, preset {model.preset['name'] if model.preset else '?'})")
    return 0


def list_presets(_: Any) -> int:
    width = max(len(name) for name in presets.names())
    for name in presets.names():
        parameters = presets.get(name).num_parameters()  # with the preset's defaults
        print(f"{name:<{width}}  {parameters:>7,}  {presets.describe(name)}")
    return 0


def compare(args: Any) -> int:
    from multitask_mnist import program
    from multitask_mnist.experiments import Comparison
    from multitask_mnist.experiments import compare as run_comparison

    [comparison] = program.settings_from(args, Comparison)
    total = len(comparison.cells())
    done = 0

    def progress(cell: Any, result: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        test = result["test"].items()
        scores = ", ".join(f"{k.removesuffix('_accuracy')} {v:.2f}" for k, v in test)
        print(f"[{done}/{total}] {cell.name} seed {cell.seed}: {scores}", flush=True)

    outcome = run_comparison(comparison, on_result=progress)
    for report in outcome.reports:
        print(report.markdown())
    print("wrote " + ", ".join(str(path) for path in outcome.files))
    return 0
