"""program.run: one line for a mistake, a traceback for a bug, --debug for both."""

from __future__ import annotations

import argparse
import errno
import signal

import pytest

from multitask_mnist import program
from multitask_mnist.errors import InvalidValueError, LabelError
from multitask_mnist.training import CheckpointError, TrainingInterrupted
from tests.conftest import run_in_process


def _program(error: BaseException | None) -> program.ArgumentParser:
    """A parser whose program raises ``error`` (or prints and succeeds)."""
    parser = program.ArgumentParser(prog="tool.py")
    parser.add_argument("--epochs", type=int, default=1)

    def main(args: argparse.Namespace) -> int:
        if error is not None:
            raise error
        print(f"epochs {args.epochs}")  # noqa: T201 - a program writes its output
        return 0

    parser.set_defaults(main=main)
    return parser


def _run(error: BaseException | None, *argv: str, **env: str) -> tuple[int, str, str]:
    parser = _program(error)
    result = run_in_process(
        lambda a: program.run(lambda args: args.main(args), parser, a), argv, env
    )
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (InvalidValueError("Expected argument `epochs` to be >= 1, got 0"), "Expected argument"),
        (LabelError("Task 'digit' has 10 classes ...; got 12 at sample 3"), "Task 'digit'"),
        (CheckpointError("runs/a/last.pt is not a readable checkpoint"), "runs/a/last.pt"),
        (FileNotFoundError("MNIST not found in data/MNIST/raw"), "MNIST not found"),
        (OSError(errno.ENOSPC, "No space left on device", "runs/a/m.json"), "[Errno 28]"),
    ],
)
def test_a_library_error_or_an_os_error_is_one_line(error: Exception, line: str) -> None:
    code, out, err = _run(error)
    assert code == program.EXIT_ERROR and out == ""
    assert err == f"tool.py: error: {error}\n" and line in err


def test_a_bug_keeps_its_traceback() -> None:
    with pytest.raises(ZeroDivisionError):
        _run(ZeroDivisionError("division by zero"))
    with pytest.raises(ValueError, match="a plain ValueError"):  # not raised by the library
        _run(ValueError("a plain ValueError"))


@pytest.mark.parametrize("how", [("--debug",), ()])
def test_debug_shows_the_traceback_of_every_error(how: tuple[str, ...]) -> None:
    env = {} if how else {program.DEBUG_ENV_VAR: "1"}
    with pytest.raises(InvalidValueError, match="got 0"):
        _run(InvalidValueError("Expected argument `epochs` to be >= 1, got 0"), *how, **env)


def test_a_signal_that_stopped_training_is_its_line_and_128_plus_its_number() -> None:
    stopped = TrainingInterrupted("Stopped by SIGTERM at epoch 2, step 5 of 40", signal.SIGTERM)
    assert _run(stopped) == (128 + signal.SIGTERM, "", f"tool.py: {stopped}\n")
    assert _run(KeyboardInterrupt()) == (130, "", "tool.py: interrupted\n")


def test_usage_errors_are_one_line_and_help_succeeds() -> None:
    code, _, err = _run(None, "--epochs", "many")
    assert code == program.EXIT_USAGE
    assert err == "tool.py: error: argument --epochs: invalid int value: 'many' (see --help)\n"
    code, out, _ = _run(None, "--help")
    assert code == 0 and "--debug" in out
    assert _run(None, "--epochs", "3") == (0, "epochs 3\n", "")
