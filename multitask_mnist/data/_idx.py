"""Header checks for the IDX files MNIST ships in.

torchvision parses IDX files with bare ``assert`` statements, so a truncated or
foreign file surfaces as an ``AssertionError`` or a reshape error from deep inside.
These checks read only the header and the file size, and raise
:class:`DataFileError` naming the file and what is wrong before torchvision
reads it.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path

from multitask_mnist.errors import MultitaskMnistError

__all__ = ["DataFileError", "check_idx_pair", "parse_idx", "read_idx_shape"]

# IDX magic: two zero bytes, a type code, and the number of dimensions.
_UBYTE = 0x08


class DataFileError(MultitaskMnistError, ValueError):
    """A data file exists but cannot be parsed; the message names the file and the fault.

    A subclass of :class:`ValueError`, raised by :func:`~multitask_mnist.data.load_mnist`.

    Example:
        >>> raise DataFileError("data/MNIST/raw/t10k-images-idx3-ubyte: truncated")
        Traceback (most recent call last):
        ...
        multitask_mnist.data._idx.DataFileError: data/MNIST/raw/t10k-images-idx3-ubyte: truncated
    """


def read_idx_shape(path: str | os.PathLike[str], *, ndim: int) -> tuple[int, ...]:
    """Return the shape an unsigned-byte IDX file declares, after checking its size.

    Args:
        path: The IDX file.
        ndim: The number of dimensions the file must declare (3 for images, 1 for labels).

    Returns:
        The declared shape, e.g. ``(60000, 28, 28)``.

    Raises:
        DataFileError: Wrong magic number, wrong number of dimensions, or a file
            shorter or longer than its header declares.
    """
    path = Path(path)
    size = path.stat().st_size
    header_len = 4 + 4 * ndim
    with path.open("rb") as f:
        header = f.read(header_len)
    if len(header) < 4:
        raise DataFileError(f"{path}: file is {size} bytes, too short for an IDX header")
    _check_magic(header, ndim, str(path), "; is this the right file, and is it decompressed?")
    if len(header) < header_len:
        raise DataFileError(f"{path}: truncated header ({size} bytes, expected {header_len})")
    shape = struct.unpack(f">{ndim}I", header[4:])
    expected_size = header_len + math.prod(shape)
    if size != expected_size:
        what = "truncated" if size < expected_size else "longer than its header declares"
        raise DataFileError(
            f"{path}: {what}: {size} bytes, expected {expected_size} for shape {tuple(shape)}"
        )
    return tuple(shape)


def check_idx_pair(
    images: str | os.PathLike[str],
    labels: str | os.PathLike[str],
    *,
    image_size: tuple[int, int],
) -> int:
    """Check an image file and a label file against each other.

    Args:
        images: IDX file of ``(N, H, W)`` unsigned bytes.
        labels: IDX file of ``(N,)`` unsigned bytes.
        image_size: The ``(H, W)`` every image must have.

    Returns:
        The number of samples ``N``.

    Raises:
        DataFileError: Either file is malformed, the images are not ``image_size``,
            or the two counts differ.
    """
    n_images, *hw = read_idx_shape(images, ndim=3)
    (n_labels,) = read_idx_shape(labels, ndim=1)
    if tuple(hw) != tuple(image_size):
        raise DataFileError(
            f"{images}: images are {hw[0]}x{hw[1]}, expected {image_size[0]}x{image_size[1]}"
        )
    if n_images != n_labels:
        raise DataFileError(
            f"{images} holds {n_images} images but {labels} holds {n_labels} labels; "
            "the counts must match"
        )
    return n_images


def parse_idx(content: bytes, *, ndim: int, name: str) -> tuple[tuple[int, ...], bytes]:
    """The shape and the data of an unsigned-byte IDX file's ``content`` (a gzipped
    file, decompressed), after the checks :func:`read_idx_shape` makes on a file.

    Args:
        content: The whole file's bytes.
        ndim: The number of dimensions the file must declare.
        name: The file's name, for messages.

    Returns:
        The declared shape and the bytes after the header.

    Raises:
        DataFileError: Wrong magic number, wrong number of dimensions, or content
            shorter or longer than its header declares.

    Example:
        >>> parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 3]), ndim=1, name="labels")
        ((2,), b'\\x07\\x03')
    """
    header_len = 4 + 4 * ndim
    if len(content) < header_len:
        raise DataFileError(f"{name}: {len(content)} bytes, too short for an IDX header")
    _check_magic(content, ndim, name)
    shape = tuple(struct.unpack(f">{ndim}I", content[4:header_len]))
    expected = header_len + math.prod(shape)
    if len(content) != expected:
        what = "truncated" if len(content) < expected else "longer than its header declares"
        raise DataFileError(
            f"{name}: {what}: {len(content)} bytes, expected {expected} for shape {shape}"
        )
    return shape, content[header_len:]


def _check_magic(header: bytes, ndim: int, name: str, hint: str = "") -> None:
    """Raise :class:`DataFileError` unless ``header`` starts with the magic number of
    an unsigned-byte IDX file of ``ndim`` dimensions."""
    expected = (_UBYTE << 8) | ndim
    magic = struct.unpack(">I", header[:4])[0]
    if magic != expected:
        raise DataFileError(
            f"{name}: wrong magic number 0x{magic:08x}, expected 0x{expected:08x} "
            f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''}){hint}"
        )
