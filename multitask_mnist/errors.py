"""The errors the library raises on purpose, under one base class.

Every error that a caller can cause (a wrong argument, a damaged file, a bad label, a
diverging run) is a :class:`MultitaskMnistError`, and also the built-in exception it
has always been (:class:`InvalidValueError` is a ``ValueError``, and so on), so code
that catches ``ValueError`` keeps working. A program built on the library (the
command line, the examples) turns these into one line on stderr and lets any other
exception, a bug, show its traceback (:mod:`multitask_mnist.program`).
``docs/errors.rst`` lists each message with the test that checks it.
"""

from __future__ import annotations

__all__ = [
    "InvalidTypeError",
    "InvalidValueError",
    "LabelError",
    "MissingFieldError",
    "MultitaskMnistError",
    "PeerFailedError",
]


class MultitaskMnistError(Exception):
    """Base class of every error the library raises on purpose.

    Example:
        >>> issubclass(InvalidValueError, MultitaskMnistError)
        True
    """


class InvalidValueError(MultitaskMnistError, ValueError):
    """An argument or a value in the data is out of range; the message names it, says
    what was received and what is allowed.

    Example:
        >>> raise InvalidValueError("Expected argument `epochs` to be >= 1, got 0")
        Traceback (most recent call last):
        ...
        multitask_mnist.errors.InvalidValueError: Expected argument `epochs` to be >= 1, got 0
    """


class InvalidTypeError(MultitaskMnistError, TypeError):
    """An argument of the wrong type; the message names it and the type received.

    Example:
        >>> isinstance(InvalidTypeError("Expected ..."), TypeError)
        True
    """


class LabelError(InvalidValueError):
    """A label outside its task's range: a class that is not ``0..C-1``, a binary
    label that is not 0 or 1, an infinite regression target. The message names the
    task, the value and, where known, the sample.

    Example:
        >>> raise LabelError("Task 'digit' has 10 classes, labels 0..9 or -1 (missing); got 12")
        Traceback (most recent call last):
        ...
        multitask_mnist.errors.LabelError: Task 'digit' has 10 classes, labels 0..9 or -1 ...
    """


class MissingFieldError(MultitaskMnistError, KeyError):
    """A batch or a saved state lacks a named field; the message names it and those
    present.

    Its ``str()`` is the message itself, without the quotes ``KeyError`` adds.

    Example:
        >>> str(MissingFieldError("The batch has no field 'digit'"))
        "The batch has no field 'digit'"
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PeerFailedError(MultitaskMnistError, RuntimeError):
    """Another process of the same run (under torchrun) failed, and this one stops with
    it instead of waiting for it forever; that process reports the cause.

    Example:
        >>> str(PeerFailedError("Stopping: a callback failed on another process"))
        'Stopping: a callback failed on another process'
    """
