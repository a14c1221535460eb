"""program: flags from settings dataclasses, one line for a mistake, a traceback for a
bug, --debug for both, --config and --print-config."""

from __future__ import annotations

import errno
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from multitask_mnist import program
from multitask_mnist.errors import InvalidValueError, LabelError
from multitask_mnist.training import CheckpointError, TrainerConfig, TrainingInterrupted
from tests.conftest import run_in_process


@dataclass(frozen=True)
class Tool:
    """A program's settings.

    Args:
        folder: Where the files are.
        epochs: How long.
        weights: By task.
        verbose: Say more.
    """

    folder: Path
    epochs: int = 1
    weights: dict[str, float] | None = None
    verbose: bool = False


def _run(error: BaseException | None, *argv: str, **env: str) -> tuple[int, str, str]:
    """``tool.py FOLDER ARGV``, a program that raises ``error`` or prints its settings."""

    def main(tool: Tool) -> int:
        if error is not None:
            raise error
        print(f"epochs {tool.epochs} weights {tool.weights} verbose {tool.verbose}")  # noqa: T201
        return 0

    main.__annotations__ = {"tool": Tool, "return": int}  # a local class, resolved here
    result = run_in_process(lambda a: program.run(main, a, prog="tool.py"), ("data", *argv), env)
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


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "many"], "argument --epochs: expected an int, got 'many'"),
        (["--weights", "left"], "argument --weights: expected TASK=WEIGHT pairs such as sum=0.5"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--verbose", "maybe"], "argument --verbose: expected true or false, got 'maybe'"),
    ],
)
def test_usage_errors_are_one_line(argv: list[str], message: str) -> None:
    code, out, err = _run(None, *argv)
    assert code == program.EXIT_USAGE and out == ""
    assert err.startswith(f"tool.py: error: {message}") and err.endswith(" (see --help)\n"), err
    assert len(err.splitlines()) == 1


def test_flags_come_from_the_fields_with_dashes_no_flags_and_task_weights() -> None:
    assert _run(None) == (0, "epochs 1 weights None verbose False\n", "")
    code, out, _ = _run(None, "--epochs", "3", "--weights", "a=1", "b=0.5", "--verbose")
    assert (code, out) == (0, "epochs 3 weights {'a': 1.0, 'b': 0.5} verbose True\n")
    assert _run(None, "--verbose", "--no-verbose")[1].endswith("verbose False\n")
    code, out, _ = _run(None, "--help")
    assert code == 0
    for flag in ("--epochs", "--weights", "--verbose", "--no-verbose", "--config", "--debug"):
        assert flag in out
    assert "Where the files are." in out and "FOLDER" in out.upper()  # help from Args:


def test_config_file_then_flags_and_print_config(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"epochs": 4, "weights": {"x": 2.0}}))
    code, out, _ = _run(None, "--config", str(config))
    assert (code, out) == (0, "epochs 4 weights {'x': 2.0} verbose False\n")
    assert _run(None, "--config", str(config), "--epochs", "5")[1].startswith("epochs 5 ")
    code, out, _ = _run(None, "--config", str(config), "--print-config")
    assert code == 0
    assert yaml.safe_load(out) == {
        "debug": False,
        "folder": "data",
        "epochs": 4,
        "weights": {"x": 2.0},
        "verbose": False,
    }
    config.write_text(yaml.safe_dump({"epochs": 4, "colour": "red"}))
    code, _, err = _run(None, "--config", str(config))
    assert code == program.EXIT_USAGE and "colour" in err and len(err.splitlines()) == 1


def test_settings_parser_defaults_replace_the_dataclasses() -> None:
    parser = program.settings_parser(TrainerConfig, prog="x", defaults={"epochs": 3, "nope": 1})
    [config] = program.parse_settings(parser, ["--lr", "0.5"], TrainerConfig)
    assert config == TrainerConfig(epochs=3, lr=0.5)
    with pytest.raises(InvalidValueError, match="`batch_size` to be >= 1, got 0"):
        program.parse_settings(parser, ["--batch-size", "0"], TrainerConfig)


def test_configure_logging_sends_warnings_to_stderr(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    library = logging.getLogger("multitask_mnist")  # put back as it was: the streams close
    monkeypatch.setattr(library, "handlers", list(library.handlers))
    monkeypatch.setattr(library, "level", library.level)
    monkeypatch.setattr(library, "propagate", library.propagate)
    program.configure_logging()
    logger = logging.getLogger("multitask_mnist.test")
    logger.info("an epoch line")
    logger.warning("a warning")
    captured = capsys.readouterr()
    assert captured.out == "an epoch line\n"
    assert captured.err == "WARNING: a warning\n"


def _trainer_program(*argv: str, **env: str) -> tuple[int, str, str]:
    """A training program (its settings include TrainerConfig) that prints its epochs."""

    def main(config: TrainerConfig) -> int:
        print(f"epochs {config.epochs}")  # noqa: T201
        return 0

    main.__annotations__ = {"config": TrainerConfig, "return": int}
    result = run_in_process(lambda a: program.run(main, a, prog="train.py"), argv, env)
    return result.returncode, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("value", "shown"), [("0", "0"), ("-2", "-2"), ("two", "'two'"), ("1.5", "'1.5'")]
)
def test_processes_that_are_not_a_positive_count_or_auto_are_one_line(
    value: str, shown: str
) -> None:
    code, out, err = _trainer_program("--processes", value)
    assert (code, out) == (program.EXIT_ERROR, "")
    assert err == (
        f"train.py: error: Expected `processes` to be a positive integer or 'auto', got {shown}\n"
    )


def test_one_process_runs_the_program_here_and_only_training_programs_take_the_flag() -> None:
    assert _trainer_program("--processes", "1", "--epochs", "2") == (0, "epochs 2\n", "")
    assert _trainer_program("--epochs", "3", MULTITASK_MNIST_PROCESSES="1")[1] == "epochs 3\n"
    code, _, err = _run(None, "--processes", "2")  # Tool has no TrainerConfig: no flag
    assert code == program.EXIT_USAGE and "unrecognized arguments: --processes" in err


def test_processes_need_a_program_started_from_the_command_line(tmp_path: Path) -> None:
    code, out, err = _trainer_program("--processes", "2")  # argv given in code
    assert (code, out) == (program.EXIT_ERROR, "")
    assert "Expected `processes` to be 1 for a program given its arguments in code" in err
    config = tmp_path / "run.yaml"
    config.write_text("processes: 1\nepochs: 4\n")  # a count in a YAML file is a count
    assert _trainer_program("--config", str(config)) == (0, "epochs 4\n", "")
