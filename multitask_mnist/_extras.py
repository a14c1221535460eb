"""Optional extras: import their packages, or fail with one line that names the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from multitask_mnist.errors import MultitaskMnistError

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(MultitaskMnistError, ImportError):
    """A feature needs packages of an optional extra that are not installed.

    Example:
        >>> raise MissingExtraError("method 'cagrad' needs: pip install multitask-mnist[solvers]")
        Traceback (most recent call last):
        ...
        multitask_mnist._extras.MissingExtraError: method 'cagrad' needs: ...
    """


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming ``extra``.

    Example:
        >>> require("no_such_package_here", "demo", "The demo")
        Traceback (most recent call last):
        ...
        multitask_mnist._extras.MissingExtraError: The demo needs no_such_package_here, ...
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f"{purpose} needs {module}, which is not installed ({error}); install it "
            f"with: pip install 'multitask-mnist[{extra}]'"
        ) from error
