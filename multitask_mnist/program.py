"""Running a program built on the library: flags from the settings, one line for a mistake.

A program's settings are frozen dataclasses (:class:`~multitask_mnist.training.TrainerConfig`
and the program's own); :func:`run` builds its command line from them with
jsonargparse, the library LightningCLI is built on: one flag per field (``batch_size``
is ``--batch-size``, a bool ``progress`` also ``--no-progress``, help from the class's
``Args:``), ``--config FILE`` to read them from YAML (a run's ``config.yaml``), and
``--print-config`` to show the resolved settings. Then it calls the program with the
dataclasses.

A :class:`~multitask_mnist.errors.MultitaskMnistError` (a wrong flag value, a damaged
file, a bad label, a diverging run) or an ``OSError`` (a missing file, a full disk)
ends in one line on stderr, ``PROG: error: MESSAGE``, and exit status 1; a command
line that does not parse, in one line and status 2; a signal that stopped training,
in its one line and ``128 + signal``. Any other exception is a bug: it keeps its
traceback. ``--debug`` (or ``MULTITASK_MNIST_DEBUG=1``) shows the traceback of every
error. Under torchrun, rank 0 alone prints, and the process group is left before the
program exits. A training program (one whose settings include
:class:`~multitask_mnist.training.TrainerConfig`) also takes ``--processes N`` (or
``auto``, one per core): :func:`run` then starts it again as N data-parallel processes
of this machine (:func:`multitask_mnist.distributed.launch`) and waits for them.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import os
import re
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

import jsonargparse
from jsonargparse import ActionConfigFile  # type: ignore[attr-defined]

from multitask_mnist import distributed
from multitask_mnist.errors import InvalidValueError, MultitaskMnistError
from multitask_mnist.training import TrainerConfig, TrainingInterrupted

__all__ = [
    "DEBUG_ENV_VAR",
    "EXIT_ERROR",
    "EXIT_USAGE",
    "ArgumentParser",
    "configure_logging",
    "parse_settings",
    "run",
    "settings_parser",
]

#: Set to ``1`` to show the traceback of every error, as ``--debug`` does.
DEBUG_ENV_VAR = "MULTITASK_MNIST_DEBUG"
#: The exit status of a failed program, and of a command line it could not parse.
EXIT_ERROR, EXIT_USAGE = 1, 2

_logger = logging.getLogger("multitask_mnist")


class ArgumentParser(jsonargparse.ArgumentParser):
    """A jsonargparse parser whose errors are one line on stderr, with ``--debug``, and
    with the dashed spelling of every two-word flag (``--batch-size``, the primary one;
    ``--batch_size`` works too) and ``--no-X`` for every bool flag ``--X``.

    Example:
        >>> parser = ArgumentParser(prog="demo.py")
        >>> parser.parse_args(["--debug"]).debug
        True
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("exit_on_error", False)
        super().__init__(*args, **kwargs)
        self.add_argument(
            "--debug",
            action="store_true",
            help=f"show the traceback of every error (or set {DEBUG_ENV_VAR}=1)",
        )

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        """Print ``PROG: error: MESSAGE (see --help)`` on one line and exit with status 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {_one_line(self, message)} (see --help)\n")

    def add_settings(self, settings: type, defaults: Mapping[str, Any] | None = None) -> None:
        """Add a flag for every field of the dataclass ``settings``, at the top level.

        Args:
            settings: A dataclass whose fields are plain values.
            defaults: Defaults that replace the dataclass's own, by field name.
        """
        self.add_class_arguments(
            settings, nested_key=None, as_group=True, as_positional=True, fail_untyped=True
        )
        names = {field.name for field in dataclasses.fields(settings)}
        wanted = {name: value for name, value in (defaults or {}).items() if name in names}
        if wanted:
            self.set_defaults(wanted)
        self._dashes()

    def _dashes(self) -> None:
        """Give every ``--two_words`` flag its ``--two-words`` spelling, first, and every
        bool flag a ``--no-X`` that sets it false."""
        for action in list(self._actions):
            dashed = [
                option.replace("_", "-")
                for option in action.option_strings
                if option.startswith("--") and "_" in option
            ]
            for option in dashed:
                if option not in self._option_string_actions:
                    action.option_strings = [option, *action.option_strings]
                    self._option_string_actions[option] = action
            hint = getattr(action, "_typehint", None)
            if hint in (bool, bool | None) and action.option_strings:
                action.nargs, action.const = "?", True  # `--resume` alone means true
                name = action.option_strings[0].removeprefix("--")
                negative = f"--no-{name}"
                if negative not in self._option_string_actions:
                    group = _container_of(self, action)
                    group.add_argument(
                        negative,
                        dest=action.dest,
                        action="store_const",
                        const=False,
                        default=action.default,
                        help=f"the same as --{name} false",
                    )


def _container_of(parser: ArgumentParser, action: Any) -> Any:
    """The argument group ``action`` belongs to, for a neighbour flag's help."""
    for group in parser._action_groups:
        if action in group._group_actions:
            return group
    return parser


def _describe(hint: Any) -> str:
    """A type as a person reads it, for an error message."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        return " or ".join(_describe(a) for a in options) if options else "nothing"
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin is dict:
        return "TASK=WEIGHT pairs such as sum=0.5 (or a mapping such as {sum: 0.5})"
    names = {int: "an int", float: "a number", bool: "true or false", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _one_line(parser: jsonargparse.ArgumentParser, message: str) -> str:
    """jsonargparse's message, often several lines, as one a person reads at a glance."""
    found = re.match(r'Parser key "([\w.]+)":\s*(.*)', message, re.DOTALL)
    if not found:
        return " ".join(line.strip() for line in message.splitlines() if line.strip())
    key, rest = found.groups()
    action = next((a for a in _all_actions(parser) if a.dest == key), None)
    positional = action is not None and not action.option_strings
    option = key.upper() if positional else "--" + key.replace("_", "-")
    given = re.search(r"(?:Given|Got) value: (.*)", rest)
    hint = getattr(action, "_typehint", None)
    if given and hint is not None:
        return f"argument {option}: expected {_describe(hint)}, got {given.group(1).strip()!r}"
    return f"argument {option}: " + " ".join(line.strip() for line in rest.splitlines())


def _task_weight_lists(argv: Sequence[str], parser: jsonargparse.ArgumentParser) -> list[str]:
    """``--loss-weights sum=0.5 digit=1`` (the flag's documented form) as the mapping
    jsonargparse reads, ``--loss-weights {"sum": 0.5, "digit": 1}``; ``--methods none
    upgrad`` (a list flag's values, spaced) as the list ``--methods ["none", "upgrad"]``;
    ``--print-config`` as jsonargparse spells it."""
    mappings, lists = set(), set()
    for action in _all_actions(parser):
        origin = typing.get_origin(_non_optional(getattr(action, "_typehint", None)))
        if origin is dict:
            mappings.update(action.option_strings)
        elif origin in (list, tuple):
            lists.update(action.option_strings)
    out: list[str] = []
    tokens = list(argv)
    while tokens:
        token = tokens.pop(0)
        if token.split("=")[0] == "--print-config":  # jsonargparse spots only its spelling
            token = token.replace("--print-config", "--print_config", 1)
        out.append(token)
        if token in lists and tokens and not tokens[0].startswith(("-", "[")):
            values = []
            while tokens and not tokens[0].startswith("-"):
                values.append(tokens.pop(0))
            out.append(json.dumps(values))
        if token not in mappings:
            continue
        pairs: dict[str, Any] = {}
        while tokens and "=" in tokens[0] and not tokens[0].startswith("-"):
            name, _, value = tokens.pop(0).partition("=")
            pairs[name] = _number(value)
        if pairs:
            out.append(json.dumps(pairs))
    return out


def _all_actions(parser: jsonargparse.ArgumentParser) -> list[Any]:
    """The actions of ``parser`` and of its subcommands' parsers."""
    actions = list(parser._actions)
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        for sub in choices.values() if isinstance(choices, Mapping) else ():
            if isinstance(sub, jsonargparse.ArgumentParser):
                actions += _all_actions(sub)
    return actions


def _number(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text  # the parser reports it, naming the flag


def _non_optional(hint: Any) -> Any:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return args[0] if union and len(args) == 1 else hint


def settings_parser(
    *settings: type,
    prog: str | None = None,
    description: str | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> ArgumentParser:
    """A parser with a flag for every field of every dataclass in ``settings``, and
    ``--config FILE`` / ``--print-config``.

    Args:
        *settings: Dataclasses of plain values, e.g.
            :class:`~multitask_mnist.training.TrainerConfig` and a program's own.
        prog: The program's name in messages; the script's by default.
        description: The first line of ``--help``.
        defaults: Defaults that replace the dataclasses' own, by field name.

    Returns:
        The parser.

    Example:
        >>> from multitask_mnist.training import TrainerConfig
        >>> parser = settings_parser(TrainerConfig, prog="train.py", defaults={"epochs": 3})
        >>> parse_settings(parser, ["--batch-size", "64"], TrainerConfig)[0].epochs
        3
    """
    parser = ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--config",
        action=ActionConfigFile,
        help=("read the settings from a YAML file (a run's config.yaml); later flags override it"),
    )
    for dataclass in settings:
        parser.add_settings(dataclass, defaults)
    if TrainerConfig in settings:  # a training program: run() can launch it data-parallel
        parser.add_argument(
            "--processes",
            type=int | str,  # a count or "auto"; checked by distributed.parse_processes
            default=os.environ.get(distributed.PROCESSES_ENV_VAR, 1),
            help=(
                "train as N data-parallel processes of this machine, the cores shared "
                "among them ('auto': one per core, one thread each); --batch-size is per "
                f"process, as under torchrun (or set {distributed.PROCESSES_ENV_VAR})"
            ),
        )
    return parser


def parse_settings(
    parser: ArgumentParser, argv: Sequence[str] | None, *settings: type
) -> list[Any]:
    """Parse ``argv`` and build each dataclass of ``settings`` from the values (each
    checks its own fields, as it does when a program builds it by hand).

    Args:
        parser: From :func:`settings_parser`.
        argv: The arguments without the program's name; ``None`` reads ``sys.argv``.
        *settings: The dataclasses to build, in the order to return them.

    Returns:
        One instance of each dataclass.

    Raises:
        SystemExit: ``--help``, ``--print-config``, or a command line that does not parse
            (one line on stderr).
        MultitaskMnistError: A value the dataclass refuses (``--epochs 0``).

    Example:
        >>> from multitask_mnist.training import TrainerConfig
        >>> parser = settings_parser(TrainerConfig, prog="train.py")
        >>> [config] = parse_settings(parser, ["--epochs", "2", "--no-progress"], TrainerConfig)
        >>> config.epochs, config.progress
        (2, False)
    """
    given = list(sys.argv[1:] if argv is None else argv)
    return settings_from(parser.parse_args(_task_weight_lists(given, parser)), *settings)


def settings_from(args: Any, *settings: type) -> list[Any]:
    """Each dataclass of ``settings``, built from the parsed ``args`` (a namespace).

    Args:
        args: What the parser returned (a subcommand's part of it, for a subcommand).
        *settings: The dataclasses to build, in the order to return them.

    Returns:
        One instance of each dataclass.

    Raises:
        MultitaskMnistError: A value the dataclass refuses.

    Example:
        >>> from multitask_mnist.training import TrainerConfig
        >>> args = settings_parser(TrainerConfig).parse_args(["--lr", "0.1"])
        >>> settings_from(args, TrainerConfig)[0].lr
        0.1
    """
    return [
        dataclass(**{field.name: args[field.name] for field in dataclasses.fields(dataclass)})
        for dataclass in settings
    ]


def configure_logging() -> None:
    """Show the library's INFO messages (the epoch lines) on stdout, as bare messages,
    and its warnings on stderr, as ``WARNING: message``.

    Example:
        >>> configure_logging()
        >>> logging.getLogger("multitask_mnist").level == logging.INFO
        True
    """
    for handler in list(_logger.handlers):  # a program run again in this process
        _logger.removeHandler(handler)
    info = logging.StreamHandler(sys.stdout)
    info.setFormatter(logging.Formatter("%(message)s"))
    info.addFilter(lambda record: record.levelno < logging.WARNING)
    warnings = logging.StreamHandler(sys.stderr)
    warnings.setLevel(logging.WARNING)
    warnings.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    _logger.addHandler(info)
    _logger.addHandler(warnings)
    _logger.setLevel(logging.INFO)
    _logger.propagate = False


def _say(prog: str, text: str) -> None:
    # Under torchrun, one process speaks for all, before the group is joined too.
    if distributed.is_main_process() and os.environ.get("RANK", "0") == "0":
        print(f"{prog}: {text}", file=sys.stderr)


def _program() -> list[str]:
    """How this program was started, to start it again: its script, or ``-m package``."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    module = spec.name.removesuffix(".__main__") if spec is not None and spec.name else ""
    if module and module != "__main__":  # python -m package
        return ["-m", module]
    if sys.argv[0] in ("", "-c"):
        raise InvalidValueError(
            "Expected `processes` to be 1 for a program run by python -c or from a "
            "prompt: save it as a script, or start it under torchrun"
        )
    return [sys.argv[0]]  # a script, a console script, a folder or zipapp


def run(
    main: Callable[..., int | None],
    argv: Sequence[str] | None = None,
    *,
    parser: ArgumentParser | None = None,
    prog: str | None = None,
    description: str | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> int:
    """Run ``main`` as a command-line program and return its exit status.

    Without ``parser``, the command line comes from ``main``'s parameters, each a
    settings dataclass (:func:`settings_parser`), and ``main`` is called with one of
    each. With ``parser``, ``main`` receives the parsed namespace.

    Args:
        main: The program; returns an exit status (``None`` for 0).
        argv: The arguments without the program's name; ``None`` reads ``sys.argv``.
        parser: A parser of one's own (subcommands, positional arguments).
        prog: The program's name in messages (a subcommand's parse may set
            ``program_name`` instead); the script's name by default.
        description: The first line of ``--help``; ``main``'s module docstring's by
            default.
        defaults: Defaults that replace the settings' own, by field name.

    Returns:
        0 on success, 1 after a library error or an ``OSError``, 2 for a command line
        that does not parse, ``128 + signal`` when a signal stopped training, 130 on
        Ctrl-C elsewhere.

    Raises:
        Exception: Any error that is neither a library error nor an ``OSError`` (a bug),
            and with ``--debug`` every error, with its traceback.

    Example:
        >>> import contextlib, io
        >>> from multitask_mnist.training import TrainerConfig
        >>> def main(config: TrainerConfig) -> int:
        ...     print(config.epochs)
        ...     return 0
        >>> run(main, ["--epochs", "2"], prog="train.py")
        2
        0
        >>> with contextlib.redirect_stderr(io.StringIO()) as err:
        ...     status = run(main, ["--epochs", "0"], prog="train.py")
        >>> status, err.getvalue()
        (1, 'train.py: error: Expected argument `epochs` to be >= 1, got 0\\n')
    """
    settings: list[type] = []
    if parser is None:
        hints = typing.get_type_hints(main)
        settings = [hints[name] for name in inspect.signature(main).parameters]
        module = sys.modules.get(main.__module__)
        doc = (module.__doc__ or "").strip().splitlines() if module else []
        parser = settings_parser(
            *settings,
            prog=prog,
            description=description or (doc[0] if doc else None),
            defaults=defaults,
        )
    name = prog or parser.prog
    given = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in given or os.environ.get(DEBUG_ENV_VAR, "") not in ("", "0")
    try:
        args = parser.parse_args(_task_weight_lists(given, parser))
        options = args
        if getattr(args, "command", None):  # a subcommand names the program in messages
            name = f"{name} {args.command}"
            options = args[args.command]
        values = settings_from(args, *settings)
        processes = distributed.parse_processes(getattr(options, "processes", 1))
        configure_logging()
        if processes > 1 and distributed.world_size() == 1 and "WORLD_SIZE" not in os.environ:
            if argv is not None:
                raise InvalidValueError(
                    f"Expected `processes` to be 1 for a program given its arguments in "
                    f"code, got {processes}: start it from the command line, or under torchrun"
                )
            return distributed.launch(_program(), given, processes, verbose=debug)
        return int((main(*values) if settings else main(args)) or 0)
    except SystemExit as exit_:  # --help, --print-config, or a usage error already printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    except TrainingInterrupted as stopped:
        if debug:
            raise
        _say(name, str(stopped))
        return 128 + stopped.signal_number
    except (MultitaskMnistError, OSError) as error:
        if debug:
            raise
        _say(name, f"error: {error}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        if debug:
            raise
        _say(name, "interrupted")
        return 130
    finally:
        distributed.cleanup()
