"""The ``multitask-mnist`` command line: train, evaluate, predict, demo, export, presets.

Every failure the user can cause (a bad flag, a missing file, an unreadable
checkpoint, a diverging run) ends in one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from multitask_mnist import distributed, presets, program
from multitask_mnist._validation import check_int
from multitask_mnist.data import (
    DATA_ENV_VAR,
    AugmentedDigitDataset,
    default_root,
    image_to_tensor,
    load_mnist,
)
from multitask_mnist.errors import InvalidValueError
from multitask_mnist.losses import STRATEGIES, WeightedMultiLoss
from multitask_mnist.methods import METHODS
from multitask_mnist.models import FUSION_MODES, MultiTaskNet
from multitask_mnist.program import ArgumentParser, configure_logging
from multitask_mnist.training import (
    PRECISIONS,
    Callback,
    GradientConflict,
    TensorBoard,
    Trainer,
)

__all__ = [
    "add_train_arguments",
    "build_parser",
    "configure_logging",
    "main",
    "mnist_test_split",
    "print_test_result",
    "run_train",
    "train_callbacks",
]

#: Seed of the test split's numbers: every run is scored on the same image/number pairs.
TEST_SEED = 0

#: What ``--checkpoint`` takes, in every command's help.
_WEIGHTS_HELP = "a checkpoint the Trainer wrote (*.pt) or exported weights (*.safetensors)"

#: The formats of ``multitask-mnist export`` (as :data:`multitask_mnist.export.EXPORT_FORMATS`,
#: without importing the exporter at start-up).
EXPORT_FORMATS = ("onnx", "safetensors")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of the documented run, shared by ``train`` and the example scripts.

    The defaults are the Trainer's own
    (:meth:`~multitask_mnist.training.Trainer.get_default_config`); values are checked
    once, by the library, when the run starts.

    Args:
        parser: Receives ``--epochs``, ``--batch-size``, ``--lr``, ``--seed``,
            ``--data-dir``, ``--output-dir``, ``--limit``, ``--digit-labels``,
            ``--resume``, ``--fusion``, ``--loss-strategy``, ``--loss-weights``,
            ``--method``, ``--precision``, ``--device`` and ``--no-progress``.

    Example:
        >>> parser = argparse.ArgumentParser()
        >>> add_train_arguments(parser)
        >>> args = parser.parse_args(["--epochs", "3"])
        >>> args.epochs, args.batch_size
        (3, 128)
    """
    defaults = Trainer.get_default_config()
    parser.add_argument(
        "--epochs",
        type=int,
        default=defaults["epochs"],
        help="epochs to train (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults["batch_size"],
        help="batch size (default: %(default)s)",
    )
    parser.add_argument(
        "--lr", type=float, default=defaults["lr"], help="peak learning rate (default: %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=defaults["seed"], help="seed of the run (default: %(default)s)"
    )
    _add_data_dir(parser)
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("runs/mnist_sum"),
        help="checkpoints, metrics.json, history.csv and plots (default: runs/mnist_sum)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=None,
        metavar="N",
        help="train on the first N training images; the test still uses all 10,000",
    )
    parser.add_argument(
        "--digit-labels",
        type=float,
        default=1.0,
        metavar="FRACTION",
        help="keep the digit label on this fraction of the training images, chosen by "
        "--seed; the others train the sum only (default: 1)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint in --output-dir, also one written mid-epoch",
    )
    parser.add_argument(
        "--fusion",
        choices=FUSION_MODES,
        default=None,
        help="how the digit estimate joins the number (default: the preset's)",
    )
    parser.add_argument(
        "--loss-strategy",
        choices=STRATEGIES,
        default="fixed",
        help="fixed: equal weights; uncertainty: learned; dwa: dynamic weight average; "
        "rlw: random weights each step; geometric: geometric mean of the losses; "
        "famo: fast adaptive multitask optimization; gradnorm: gradient normalization",
    )
    parser.add_argument(
        "--loss-weights",
        nargs="+",
        type=_task_weight,
        default=None,
        metavar="TASK=WEIGHT",
        help="fixed weights by task, e.g. 'sum=0' to train the digit alone (default: 1 each)",
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        default=defaults["method"],
        help="how the tasks' gradients combine: none (one backward of the weighted loss) "
        "or a gradient aggregation method on the shared trunk (default: %(default)s)",
    )
    parser.add_argument(
        "--gradient-conflict",
        type=int,
        default=None,
        metavar="EVERY",
        help="record the tasks' gradient cosine, norms and weights every EVERY steps "
        "(gradient_conflict.csv; the epoch means go to history.csv either way). Without "
        "a gradient method, each recorded step costs one extra backward pass per task",
    )
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        help="log metrics, learning rate, task weights and the test confusion matrix for "
        "TensorBoard under OUTPUT_DIR/tensorboard (needs the tensorboard extra)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=defaults["precision"],
        help="auto: bfloat16 autocast where the hardware runs it natively (default: auto)",
    )
    _add_device(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _task_weight(text: str) -> tuple[str, float]:
    """``"sum=0.5"`` -> ``("sum", 0.5)``, for ``--loss-weights``."""
    name, sep, value = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected TASK=WEIGHT such as sum=0.5, got {text!r}"
        ) from None


def _add_data_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"folder holding MNIST/raw/ (default: ${DATA_ENV_VAR}, else ./data, downloading)",
    )


def _add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default=Trainer.get_default_config()["device"],
        help="auto, cpu, cuda, mps (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``multitask-mnist`` and ``python -m multitask_mnist``.

    Returns:
        A parser with the subcommands ``train``, ``evaluate``, ``predict``, ``demo``,
        ``export`` and ``presets``.

    Example:
        >>> build_parser().parse_args(["evaluate", "--checkpoint", "best.pt"]).command
        'evaluate'
    """
    parser = ArgumentParser(
        prog="multitask-mnist",
        description="Read a handwritten digit and add a number to it.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    train = commands.add_parser("train", help="train a preset and test it on the 10,000 images")
    train.add_argument(
        "--preset", default="mnist_sum", help=f"one of: {', '.join(presets.names())}"
    )
    add_train_arguments(train)

    evaluate = commands.add_parser("evaluate", help="digit and sum accuracy on the test set")
    evaluate.add_argument("--checkpoint", type=Path, required=True, help=_WEIGHTS_HELP)
    _add_data_dir(evaluate)
    _add_device(evaluate)

    predict = commands.add_parser("predict", help="read a PNG digit and add NUMBER to it")
    predict.add_argument("--checkpoint", type=Path, required=True, help=_WEIGHTS_HELP)
    predict.add_argument("image", type=Path, help="a PNG of one digit, any size")
    predict.add_argument("number", type=int, help="the number to add, 0-9")
    _add_device(predict)

    demo = commands.add_parser("demo", help="a web page: draw a digit, see the predictions")
    demo.add_argument("--checkpoint", type=Path, required=True, help=_WEIGHTS_HELP)
    demo.add_argument("--host", default="127.0.0.1", help="address to serve on (default: local)")
    demo.add_argument("--port", type=int, default=7860, help="port to serve on")

    export = commands.add_parser("export", help="write a checkpoint as ONNX or safetensors")
    export.add_argument("--checkpoint", type=Path, required=True, help=_WEIGHTS_HELP)
    export.add_argument("--format", choices=EXPORT_FORMATS, required=True)
    export.add_argument("--output", type=Path, required=True, help="the file to write")

    commands.add_parser("presets", help="list the presets")
    for command in commands.choices.values():  # messages name the subcommand
        command.set_defaults(program_name=command.prog)
    return parser


def _data_root(data_dir: Path | None) -> tuple[Path, bool]:
    """The data folder and whether to download into it (only for the ./data default)."""
    if data_dir is not None:
        return data_dir, False
    return default_root(), not os.environ.get(DATA_ENV_VAR)


def mnist_test_split(
    root: str | os.PathLike[str] | None = None, download: bool = False
) -> AugmentedDigitDataset:
    """The 10,000 test images, paired with the same numbers in every run (``TEST_SEED``).

    Args:
        root: The folder holding ``MNIST/raw/``; ``None`` for
            :func:`~multitask_mnist.data.default_root`.
        download: Download MNIST into ``root`` if it is missing.

    Returns:
        The test split every run of the command line and the examples is scored on.

    Raises:
        FileNotFoundError: MNIST is missing and may not be downloaded.

    Example:
        >>> test = mnist_test_split(os.environ["MULTITASK_MNIST_DATA"])  # doctest: +SKIP
        >>> len(test), test.numbers[:5].tolist()  # doctest: +SKIP
        (10000, [4, 9, 3, 0, 3])
    """
    return AugmentedDigitDataset(load_mnist(root, train=False, download=download), seed=TEST_SEED)


def run_train(args: argparse.Namespace, preset: str = "mnist_sum") -> int:
    """Train ``preset`` as the flags say, then test it on the 10,000 test images.

    Prints the epoch lines (through logging), ``Finished Training`` and the test
    result (:func:`print_test_result`).

    Args:
        args: Flags from :func:`add_train_arguments`.
        preset: A registered preset name.

    Returns:
        The exit status, 0.

    Raises:
        ValueError: A flag out of range, or an unknown preset.
        FileNotFoundError: MNIST is missing and may not be downloaded.
        TrainingInterrupted: SIGTERM or SIGINT stopped training; ``last.pt`` holds it.

    Example:
        >>> parser = argparse.ArgumentParser(); add_train_arguments(parser)
        >>> run_train(parser.parse_args(["--limit", "0"]))
        Traceback (most recent call last):
        ...
        multitask_mnist.errors.InvalidValueError: Expected argument `limit` to be >= 1, got 0
    """
    if args.limit is not None:
        check_int("limit", args.limit, minimum=1)
    torch.manual_seed(args.seed)
    model = _digit_sum_model(
        presets.get(preset, **({} if args.fusion is None else {"fusion": args.fusion})), preset
    )
    trainer = Trainer(
        model,
        loss=WeightedMultiLoss(
            dict(args.loss_weights) if args.loss_weights else None, strategy=args.loss_strategy
        ),
        method=args.method,
        callbacks=train_callbacks(args),
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
        output_dir=args.output_dir,
        progress=not args.no_progress,
        config={"limit": args.limit, "digit_labels": args.digit_labels},
    )
    root, download = _data_root(args.data_dir)
    train_base: Any = load_mnist(root, train=True, download=download)
    if args.limit is not None:
        train_base = Subset(train_base, range(min(args.limit, len(train_base))))
    train_data = AugmentedDigitDataset(train_base, seed=args.seed, digit_labels=args.digit_labels)
    test_data = mnist_test_split(root, download)
    trainer.fit(train_data, resume=args.resume)
    metrics = trainer.test(test_data)
    if distributed.is_main_process():  # under torchrun, rank 0 alone prints
        print("Finished Training")
        print_test_result(metrics, len(test_data))
    return 0


def train_callbacks(args: argparse.Namespace) -> list[Callback]:
    """The callbacks the flags of :func:`add_train_arguments` ask for, beside the defaults:
    :class:`~multitask_mnist.training.GradientConflict` for ``--gradient-conflict`` and
    :class:`~multitask_mnist.training.TensorBoard` for ``--tensorboard``.

    Args:
        args: Flags from :func:`add_train_arguments`.

    Returns:
        The extra callbacks, possibly none.

    Example:
        >>> parser = argparse.ArgumentParser(); add_train_arguments(parser)
        >>> [c.name for c in train_callbacks(parser.parse_args(["--tensorboard"]))]
        ['tensorboard']
    """
    callbacks: list[Callback] = []
    if args.gradient_conflict is not None:
        callbacks.append(GradientConflict(args.gradient_conflict))
    if args.tensorboard:
        callbacks.append(TensorBoard())
    return callbacks


def _digit_sum_model(model: MultiTaskNet, preset: str) -> MultiTaskNet:
    """``model``, if it reads an image and a number and predicts the digit and the sum."""
    if model.task_names != ("digit", "sum") or model.input_names != ("image", "number"):
        raise InvalidValueError(
            f"Preset {preset!r} predicts {', '.join(model.task_names)} from "
            f"{', '.join(model.input_names)}; the command line trains and runs digit + sum "
            "networks (see examples/ for others, such as examples/train_multi_mnist.py)"
        )
    return model


def print_test_result(metrics: dict[str, float], n: int) -> None:
    """Print the test line of the original tutorial and the adder's line.

    Args:
        metrics: From :meth:`~multitask_mnist.training.Trainer.test` or
            :meth:`~multitask_mnist.training.Trainer.evaluate`.
        n: The number of test images.

    Example:
        >>> print_test_result({"digit_accuracy": 99.0, "sum_accuracy": 99.0, "adder_exact": True,
        ...                    "adder_margin": 0.5, "sum_given_digit_accuracy": 100.0}, 10_000)
        Accuracy of the network on the 10,000 test images: digit 99.00%, sum 99.00%
        Adder: exact on every digit/number pair (margin 0.500); the sum is right on 100.00% ...
    """
    print(
        f"Accuracy of the network on the {n:,} test images: "
        f"digit {metrics['digit_accuracy']:.2f}%, sum {metrics['sum_accuracy']:.2f}%"
    )
    exact = "exact" if metrics["adder_exact"] else "NOT exact"
    print(
        f"Adder: {exact} on every digit/number pair (margin {metrics['adder_margin']:.3f}); "
        f"the sum is right on {metrics['sum_given_digit_accuracy']:.2f}% of the images "
        "whose digit is right"
    )


def run_evaluate(args: argparse.Namespace) -> int:
    model = _digit_sum_model(presets.from_checkpoint(args.checkpoint), str(args.checkpoint))
    root, download = _data_root(args.data_dir)
    test_data = mnist_test_split(root, download)
    trainer = Trainer(model, device=args.device, progress=False)
    print_test_result(trainer.evaluate(test_data), len(test_data))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from PIL import Image, UnidentifiedImageError

    model = _digit_sum_model(presets.from_checkpoint(args.checkpoint), str(args.checkpoint))
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


def run_demo(args: argparse.Namespace) -> int:
    from multitask_mnist.demo import check_demo_model, launch_demo

    check_int("port", args.port, minimum=0)
    model = presets.from_checkpoint(args.checkpoint)
    check_demo_model(model)
    launch_demo(model, host=args.host, port=args.port)
    return 0


def run_export(args: argparse.Namespace) -> int:
    from multitask_mnist.export import export_model

    model = presets.from_checkpoint(args.checkpoint)
    if not args.output.parent.is_dir():
        raise FileNotFoundError(f"Output folder not found: {args.output.parent}")
    path = export_model(model, args.output, format=args.format)
    print(f"wrote {path} ({args.format}, preset {model.preset['name'] if model.preset else '?'})")
    return 0


def run_presets(_: argparse.Namespace) -> int:
    width = max(len(name) for name in presets.names())
    for name in presets.names():
        print(f"{name:<{width}}  {presets.describe(name)}")
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    commands = {
        "train": lambda a: run_train(a, a.preset),
        "evaluate": run_evaluate,
        "predict": run_predict,
        "demo": run_demo,
        "export": run_export,
        "presets": run_presets,
    }
    return int(commands[args.command](args))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: The arguments, without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The exit status, 0 on success, 1 for a failed command, 2 for bad usage,
        ``128 + signal`` when a signal stopped training (see
        :func:`multitask_mnist.program.run`).

    Example:
        >>> main(["presets"])  # doctest: +ELLIPSIS
        mnist_addition ...
        mnist_sum          The documented network: ...
        0
    """
    return program.run(_dispatch, build_parser(), argv)
