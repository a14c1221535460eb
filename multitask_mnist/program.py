"""Running a program built on the library: one line for a mistake, a traceback for a bug.

The command line and every example run through :func:`run`. A
:class:`~multitask_mnist.errors.MultitaskMnistError` (a wrong flag value, a damaged
file, a bad label, a diverging run) or an ``OSError`` (a missing file, a full disk)
ends in one line on stderr, ``PROG: error: MESSAGE``, and exit status 1; a signal
that stopped training, in its one line and ``128 + signal``. Any other exception is
a bug: it keeps its traceback. ``--debug`` (or ``MULTITASK_MNIST_DEBUG=1``) shows the
traceback of every error. Under torchrun, rank 0 alone prints, and the process group
is left before the program exits.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from multitask_mnist import distributed
from multitask_mnist.errors import MultitaskMnistError
from multitask_mnist.training import TrainingInterrupted

__all__ = [
    "DEBUG_ENV_VAR",
    "EXIT_ERROR",
    "EXIT_USAGE",
    "ArgumentParser",
    "configure_logging",
    "run",
]

#: Set to ``1`` to show the traceback of every error, as ``--debug`` does.
DEBUG_ENV_VAR = "MULTITASK_MNIST_DEBUG"
#: The exit status of a failed program, and of a command line it could not parse.
EXIT_ERROR, EXIT_USAGE = 1, 2

_logger = logging.getLogger("multitask_mnist")


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` whose errors are one line on stderr, with a
    ``--debug`` flag (shared by its subcommands' parsers).

    Example:
        >>> parser = ArgumentParser(prog="demo.py")
        >>> parser.parse_args(["--debug"]).debug
        True
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,  # a subcommand's parser must not reset the flag
            help=f"show the traceback of every error (or set {DEBUG_ENV_VAR}=1)",
        )

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE (see --help)`` on one line and exit with status 2."""
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def configure_logging() -> None:
    """Show the library's INFO messages (the epoch lines) on stdout, as bare messages.

    Example:
        >>> configure_logging()
        >>> logging.getLogger("multitask_mnist").level == logging.INFO
        True
    """
    for handler in list(_logger.handlers):  # a program run again in this process
        _logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    _logger.addHandler(handler)
    _logger.setLevel(logging.INFO)
    _logger.propagate = False


def _say(prog: str, text: str) -> None:
    if distributed.is_main_process():  # under torchrun, one process speaks for all
        print(f"{prog}: {text}", file=sys.stderr)


def run(
    main: Callable[[argparse.Namespace], int | None],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
) -> int:
    """Parse the command line with ``parser``, run ``main`` on it, return the exit status.

    Args:
        main: The program: takes the parsed arguments, returns an exit status (``None``
            for 0).
        parser: The program's parser; an :class:`ArgumentParser` gives one-line usage
            errors and ``--debug``. Messages start with its ``prog``, or with the
            parsed ``program_name`` where a subcommand sets one as its default.
        argv: The arguments without the program's name; ``None`` reads ``sys.argv``.

    Returns:
        0 on success, 1 after a library error or an ``OSError``, 2 for a command line
        that does not parse, ``128 + signal`` when a signal stopped training, 130 on
        Ctrl-C elsewhere.

    Raises:
        Exception: Any error that is neither a library error nor an ``OSError`` (a bug),
            and with ``--debug`` every error, with its traceback.

    Example:
        >>> from multitask_mnist.errors import InvalidValueError
        >>> def main(args):
        ...     raise InvalidValueError("Expected argument `epochs` to be >= 1, got 0")
        >>> import contextlib, io
        >>> with contextlib.redirect_stderr(io.StringIO()) as err:
        ...     status = run(main, ArgumentParser(prog="train.py"), [])
        >>> status, err.getvalue()
        (1, 'train.py: error: Expected argument `epochs` to be >= 1, got 0\\n')
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    debug = getattr(args, "debug", False) or os.environ.get(DEBUG_ENV_VAR, "") not in ("", "0")
    prog = getattr(args, "program_name", parser.prog)  # a subcommand's parser may name it
    configure_logging()
    try:
        return int(main(args) or 0)
    except TrainingInterrupted as stopped:
        if debug:
            raise
        _say(prog, str(stopped))
        return 128 + stopped.signal_number
    except (MultitaskMnistError, OSError) as error:
        if debug:
            raise
        _say(prog, f"error: {error}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        if debug:
            raise
        _say(prog, "interrupted")
        return 130
    finally:
        distributed.cleanup()
