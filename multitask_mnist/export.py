"""Trained networks for other runtimes: ONNX to run anywhere, safetensors for the weights.

:func:`export_onnx` writes a graph that ``onnxruntime`` runs without torch or this
library: one named input per model input, one named output per task, and a dynamic
batch dimension. :func:`save_safetensors` writes the weights without pickles, with the
preset that built the network in the file's metadata, so :func:`load_safetensors` (and
:func:`multitask_mnist.presets.from_checkpoint`) rebuild it from the file alone. Both
need the ``export`` extra: ``pip install 'multitask-mnist[export]'``.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from multitask_mnist import presets
from multitask_mnist._extras import require
from multitask_mnist._validation import check_choice, check_int
from multitask_mnist.checkpoint import SAFETENSORS_FORMAT, load_model_state, read_safetensors
from multitask_mnist.errors import InvalidTypeError, InvalidValueError
from multitask_mnist.models import MultiTaskNet

__all__ = [
    "EXPORT_FORMATS",
    "ONNX_OPSET",
    "export_model",
    "export_onnx",
    "load_safetensors",
    "save_safetensors",
]

#: The formats :func:`export_model` and ``multitask-mnist export --format`` write.
EXPORT_FORMATS = ("onnx", "safetensors")
#: The ONNX opset of :func:`export_onnx`: 18, which onnxruntime 1.14 and later run.
ONNX_OPSET = 18


class _ByPosition(nn.Module):
    """A :class:`MultiTaskNet` called with its inputs in order, returning a tuple of its
    task outputs in order: the signature an ONNX graph has."""

    def __init__(self, model: MultiTaskNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        outputs = self.model(*inputs)
        return tuple(outputs[name].float() for name in self.model.task_names)


def _example_inputs(model: MultiTaskNet, batch: int) -> tuple[Tensor, ...]:
    """Zeros (integers) and ones (floats) of each input's shape: values it accepts."""
    examples = []
    for spec in model.inputs.values():
        if spec.integer:
            low = int(spec.low) if spec.low is not None else 0
            examples.append(torch.full((batch, *spec.shape), low, dtype=torch.int64))
        else:
            examples.append(torch.ones(batch, *spec.shape))
    return tuple(examples)


def export_onnx(
    model: MultiTaskNet, path: str | os.PathLike[str], *, opset: int = ONNX_OPSET
) -> Path:
    """Write ``model`` as an ONNX graph, in float32 and evaluation mode.

    The graph's inputs are named as the model's (``image`` ``(batch, 1, 28, 28)``
    float32 and ``number`` ``(batch,)`` int64 for the documented network) and its
    outputs as the tasks (``digit`` ``(batch, 10)`` logits and ``sum`` ``(batch,)``);
    ``batch`` is dynamic. Images are expected normalized, as in training.

    Args:
        model: The network; it is not changed (a float32 copy on the CPU is exported).
        path: The ``.onnx`` file to write.
        opset: The ONNX opset version.

    Returns:
        The path written.

    Raises:
        MissingExtraError: ``onnx`` or ``onnxscript`` is not installed.
        TypeError: ``model`` is not a :class:`~multitask_mnist.models.MultiTaskNet`.

    Example:
        >>> from multitask_mnist import presets
        >>> export_onnx(presets.mnist_sum(), "mnist_sum.onnx")  # doctest: +SKIP
        PosixPath('mnist_sum.onnx')
    """
    _check_model(model)
    check_int("opset", opset, minimum=7)
    require("onnx", "export", "ONNX export")
    require("onnxscript", "export", "ONNX export")
    path = Path(path)
    wrapped = _ByPosition(copy.deepcopy(model).float().cpu().eval())
    batch = torch.export.Dim("batch", min=1)
    names = list(model.input_names)
    with warnings.catch_warnings():  # the exporter's notes on renamed axes, not ours
        warnings.simplefilter("ignore", UserWarning)
        torch.onnx.export(
            wrapped,
            _example_inputs(model, 2),
            str(path),
            input_names=names,
            output_names=list(model.task_names),
            dynamic_shapes=(tuple({0: batch} for _ in names),),  # one entry: the *inputs
            opset_version=opset,
            dynamo=True,
            verbose=False,
        )
    return path


def save_safetensors(model: MultiTaskNet, path: str | os.PathLike[str]) -> Path:
    """Write the weights (and buffers) of ``model`` as safetensors, without pickles.

    The metadata holds the preset's name and arguments, so :func:`load_safetensors`
    builds the network again from the file alone.

    Args:
        model: A network built by a preset (its ``preset`` is set).
        path: The ``.safetensors`` file to write.

    Returns:
        The path written.

    Raises:
        MissingExtraError: ``safetensors`` is not installed.
        ValueError: The network was not built by a preset (it could not be rebuilt).

    Example:
        >>> from multitask_mnist import presets
        >>> save_safetensors(presets.mnist_sum(), "mnist_sum.safetensors")  # doctest: +SKIP
        PosixPath('mnist_sum.safetensors')
    """
    _check_model(model)
    safetensors_torch = require("safetensors.torch", "export", "safetensors export")
    if model.preset is None:
        raise InvalidValueError(
            "Expected a network built by a preset (its `preset` names the builder), got one "
            "built by hand; save its state_dict with safetensors.torch.save_file yourself"
        )
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {
        "format": SAFETENSORS_FORMAT,
        "preset": model.preset["name"],
        "preset_kwargs": json.dumps(model.preset["kwargs"]),
    }
    path = Path(path)
    safetensors_torch.save_file(tensors, str(path), metadata=metadata)
    return path


def load_safetensors(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> MultiTaskNet:
    """Rebuild the network :func:`save_safetensors` wrote, from the file alone.

    Args:
        path: A ``.safetensors`` file written by :func:`save_safetensors`.
        map_location: Where to put the weights.

    Returns:
        The network in eval mode.

    Raises:
        FileNotFoundError: No file at ``path``.
        MissingExtraError: ``safetensors`` is not installed.
        CheckpointError: Not a safetensors file, of another format, silent about its
            preset, recording a preset or arguments this library does not build (see
            :func:`multitask_mnist.presets.from_record`), or not matching the preset's
            layers.

    Example:
        >>> load_safetensors("missing.safetensors")
        Traceback (most recent call last):
        ...
        FileNotFoundError: Weights not found: missing.safetensors
    """
    tensors, record = read_safetensors(path)
    model = presets.from_record(record["name"], record["kwargs"], source=path)
    load_model_state(model, tensors, source=path)
    return model.to(map_location).eval()


def export_model(model: MultiTaskNet, path: str | os.PathLike[str], format: str = "onnx") -> Path:
    """Write ``model`` in one of :data:`EXPORT_FORMATS`.

    Args:
        model: The network.
        path: The file to write.
        format: ``"onnx"`` (:func:`export_onnx`) or ``"safetensors"``
            (:func:`save_safetensors`).

    Returns:
        The path written.

    Raises:
        ValueError: An unknown format.

    Example:
        >>> from multitask_mnist import presets
        >>> export_model(presets.mnist_sum(), "net.bin", format="pickle")
        Traceback (most recent call last):
        ...
        multitask_mnist.errors.InvalidValueError: Expected argument `format` ..., got 'pickle'
    """
    check_choice("format", format, EXPORT_FORMATS)
    if format == "onnx":
        return export_onnx(model, path)
    return save_safetensors(model, path)


def _check_model(model: object) -> None:
    if not isinstance(model, MultiTaskNet):
        raise InvalidTypeError(f"Expected `model` to be a MultiTaskNet, got {type(model).__name__}")
