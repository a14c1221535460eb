"""The ``multitask-mnist`` command line: train, evaluate, predict, demo, export, compare,
presets.

``train``'s flags come from :class:`~multitask_mnist.training.TrainerConfig` and
:class:`DigitSumRun`, declared once (:mod:`multitask_mnist.program`); every failure the
user can cause (a bad flag, a missing file, an unreadable checkpoint, a diverging run)
ends in one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonargparse

from multitask_mnist import program
from multitask_mnist.cli import commands
from multitask_mnist.cli.digit_sum import (
    DigitSumRun,
    digit_sum_data,
    mnist_test_split,
    print_test_result,
    train,
    train_callbacks,
)
from multitask_mnist.experiments import Comparison
from multitask_mnist.losses import STRATEGIES
from multitask_mnist.program import configure_logging
from multitask_mnist.training import TrainerConfig

__all__ = [
    "DigitSumRun",
    "build_parser",
    "configure_logging",
    "digit_sum_data",
    "main",
    "mnist_test_split",
    "print_test_result",
    "train",
    "train_callbacks",
]

logger = logging.getLogger("multitask_mnist")

#: The formats of ``multitask-mnist export`` (as :data:`multitask_mnist.export.EXPORT_FORMATS`,
#: without importing the exporter at start-up).
EXPORT_FORMATS = ("onnx", "safetensors")

#: What ``--checkpoint`` takes, in every command's help.
_WEIGHTS_HELP = "a checkpoint the Trainer wrote (*.pt) or exported weights (*.safetensors)"


def _subparser(prog: str, description: str) -> program.ArgumentParser:
    return program.ArgumentParser(prog=prog, description=description)


def _add(commands: Any, name: str, parser: jsonargparse.ArgumentParser, help: str) -> None:
    """Add a subcommand, keeping its program name for messages (``multitask-mnist train``)."""
    prog = parser.prog
    commands.add_subcommand(name, parser, help=help)
    parser.prog = prog


def build_parser() -> program.ArgumentParser:
    """The parser of ``multitask-mnist`` and ``python -m multitask_mnist``.

    Returns:
        A parser with the subcommands ``train``, ``evaluate``, ``predict``, ``demo``,
        ``export``, ``compare`` and ``presets``.

    Example:
        >>> build_parser().parse_args(["evaluate", "--checkpoint", "best.pt"]).command
        'evaluate'
    """
    name = "multitask-mnist"
    parser = program.ArgumentParser(
        prog=name, description="Read a handwritten digit and add a number to it."
    )
    commands = parser.add_subcommands(dest="command", required=True)
    train_parser = program.settings_parser(
        TrainerConfig,
        DigitSumRun,
        prog=f"{name} train",
        description="Train a preset and test it on the 10,000 test images.",
        defaults={"output_dir": Path("runs/mnist_sum")},
    )
    train_parser.add_argument(
        "--loss-strategy",
        choices=STRATEGIES,
        default=None,
        help="deprecated, gone in 0.3: --method, which names the same methods (fixed is none)",
    )
    _add(commands, "train", train_parser, "train a preset and test it")

    evaluate = _subparser(f"{name} evaluate", "Digit and sum accuracy on the test set.")
    evaluate.add_argument("--checkpoint", type=Path, required=True, help=_WEIGHTS_HELP)
    evaluate.add_argument("--data-dir", type=Path | None, default=None, help="holds MNIST/raw/")
    evaluate.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    _add(commands, "evaluate", evaluate, "digit and sum accuracy on the test set")

    predict = _subparser(f"{name} predict", "Read a PNG digit and add NUMBER to it.")
    predict.add_argument("--checkpoint", type=Path, required=True, help=_WEIGHTS_HELP)
    predict.add_argument("image", type=Path, help="a PNG of one digit, any size")
    predict.add_argument("number", type=int, help="the number to add, 0-9")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    _add(commands, "predict", predict, "read a PNG digit and add NUMBER to it")

    demo = _subparser(f"{name} demo", "A web page: draw a digit, see the predictions.")
    demo.add_argument("--checkpoint", type=Path, required=True, help=_WEIGHTS_HELP)
    demo.add_argument("--host", default="127.0.0.1", help="address to serve on (local)")
    demo.add_argument("--port", type=int, default=7860, help="port to serve on")
    _add(commands, "demo", demo, "a web page: draw a digit, see the predictions")

    export = _subparser(f"{name} export", "Write a checkpoint as ONNX or safetensors.")
    export.add_argument("--checkpoint", type=Path, required=True, help=_WEIGHTS_HELP)
    export.add_argument("--format", choices=EXPORT_FORMATS, required=True)
    export.add_argument("--output", type=Path, required=True, help="the file to write")
    _add(commands, "export", export, "write a checkpoint as ONNX or safetensors")

    compare = program.settings_parser(
        Comparison,
        prog=f"{name} compare",
        description="Compare methods over seeds on a benchmark, selected on held-out data.",
    )
    _add(commands, "compare", compare, "compare methods over seeds: intervals, Δm, paired tests")

    _add(commands, "presets", _subparser(f"{name} presets", "List the presets."), "list them")
    return parser


def _dispatch(args: Any) -> int:
    command = args.command
    options = args[command]
    if command == "train":
        config, run = program.settings_from(options, TrainerConfig, DigitSumRun)
        if options.loss_strategy is not None:  # deprecated: the method, under its old name
            method = "none" if options.loss_strategy == "fixed" else options.loss_strategy
            logger.warning("--loss-strategy is deprecated and goes in 0.3: use --method %s", method)
            config = config.replace(method=method)
        return train(config, run)
    handlers = {
        "evaluate": commands.evaluate,
        "predict": commands.predict,
        "demo": commands.demo,
        "export": commands.export,
        "presets": commands.list_presets,
        "compare": commands.compare,
    }
    return handlers[command](options)


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
        mnist_sum                 100,461  The documented network: ...
        0
    """
    return program.run(_dispatch, argv, parser=build_parser())
