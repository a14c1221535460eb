"""What the tasks share, read from the model's graph: parameters, outputs, gradients.

One helper each: :func:`split_parameters` (the shared parameters, where a gradient
method takes its Jacobian), :func:`shared_representation` (the shared blocks' outputs
the task heads read, where MGDA-UB takes its gradients), :func:`last_shared_layer`
(where GradNorm measures its norms), and :func:`gramian` (the tasks' gradients'
inner products, for every method and diagnostic that needs them). All start from
:meth:`~multitask_mnist.models.MultiTaskNet.shared_blocks`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from multitask_mnist.errors import InvalidValueError
from multitask_mnist.models import MultiTaskNet
from multitask_mnist.models.net import source_of

__all__ = [
    "capture_outputs",
    "gramian",
    "last_shared_layer",
    "shared_representation",
    "split_parameters",
]


def split_parameters(
    model: MultiTaskNet, extra: nn.Module | None = None
) -> tuple[list[Tensor], list[Tensor]]:
    """The shared and the task-specific trainable parameters of ``model``.

    A block is shared when several tasks' predictions depend on it
    (:meth:`~multitask_mnist.models.MultiTaskNet.shared_blocks`), task-specific when one
    does. ``extra`` (the loss and the method, with any parameters of their own) counts as
    task-specific.

    Args:
        model: The network.
        extra: Another module whose parameters train with the model, or ``None``.

    Returns:
        ``(shared, specific)`` lists of parameters.

    Example:
        >>> from multitask_mnist import presets
        >>> shared, specific = split_parameters(presets.mnist_sum())
        >>> len(shared), len(specific)  # the trunk's 8 convolutions, the head's 3 layers
        (16, 6)
    """
    names = model.shared_blocks()
    shared: dict[int, Tensor] = {}
    specific: dict[int, Tensor] = {}
    for name in model.blocks:
        target = shared if name in names else specific
        for parameter in model.get_submodule(name).parameters():
            if parameter.requires_grad:
                target[id(parameter)] = parameter
    if extra is not None:
        for parameter in extra.parameters():
            if parameter.requires_grad and id(parameter) not in shared:
                specific[id(parameter)] = parameter
    for key in shared:
        specific.pop(key, None)
    return list(shared.values()), list(specific.values())


def shared_representation(model: MultiTaskNet) -> list[str]:
    """The shared blocks whose outputs task-specific blocks or the tasks themselves read.

    Their outputs together are the representation ``z`` that MGDA-UB differentiates
    with respect to: every task's prediction depends on the shared parameters only
    through them.

    Args:
        model: The network.

    Returns:
        The block names, in the order they run.

    Raises:
        ValueError: No block is shared by several tasks, or a task's gradient stops
            short of them (:meth:`~multitask_mnist.models.MultiTaskNet.gradient_stops`:
            its zero gradient would be the minimum-norm point and take all the weight).

    Example:
        >>> from multitask_mnist import presets
        >>> shared_representation(presets.mnist_sum(fusion="expectation"))
        ['trunk']
        >>> shared_representation(presets.multi_mnist_lenet())
        ['encoder']
    """
    shared = set(model.shared_blocks())
    frontier = {name for name in shared if model.blocks[name].task is not None}
    for name, block in model.blocks.items():
        if name not in shared:
            frontier |= shared.intersection(source_of(read) for read in block.reads)
    owners = model.block_tasks()
    if not frontier:
        raise InvalidValueError(
            "MGDA-UB needs a block that several tasks share; this model has none "
            f"(blocks and their tasks: {owners})"
        )
    stops = model.gradient_stops()
    if stops:
        stopping, shared_block = stops[0]
        raise InvalidValueError(
            f"MGDA-UB weighs each task's gradient on the shared representation, but block "
            f"{stopping!r} passes none back to {shared_block!r}: task {owners[stopping][0]!r} "
            "would have a zero gradient and take all the weight; use a differentiable "
            "fusion ('expectation' or 'straight_through')"
        )
    return [name for name in model.blocks if name in frontier]


def last_shared_layer(model: MultiTaskNet) -> list[Tensor]:
    """The trainable parameters of the last layer that several tasks depend on.

    The last module, in registration order, with parameters of its own inside the
    last shared block: ``conv6``, the layer that makes the digit logits, for the
    documented network.

    Args:
        model: The network.

    Returns:
        The layer's parameters (weight, then bias).

    Raises:
        ValueError: The model has no shared block with trainable parameters.

    Example:
        >>> from multitask_mnist import presets
        >>> [tuple(p.shape) for p in last_shared_layer(presets.mnist_sum())]
        [(10, 64, 5, 5), (10,)]
    """
    layer: list[Tensor] = []
    for name in model.shared_blocks():
        for module in model.get_submodule(name).modules():
            own: list[Tensor] = [p for p in module.parameters(recurse=False) if p.requires_grad]
            if own:
                layer = own
    if not layer:
        raise InvalidValueError(
            "GradNorm needs a layer that several tasks share; this model has none "
            f"(blocks and their tasks: {model.block_tasks()})"
        )
    return layer


def gramian(rows: Sequence[Tensor], dtype: torch.dtype = torch.float64) -> Tensor:
    """``(K, K)``: the inner products of ``K`` tasks' gradients, summed over the pieces
    they come in.

    Args:
        rows: Pieces of the ``(K, ...)`` Jacobian: one per parameter (a gradient method),
            or one in all (the shared representation, flattened).
        dtype: The precision of the products: float64 for diagnostics, float32 where a
            method solves with it every step (MGDA-UB).

    Returns:
        The Gramian ``J J^T``, of ``dtype``.

    Raises:
        ValueError: No piece at all.

    Example:
        >>> gramian([torch.tensor([[1.0, 0.0], [1.0, 1.0]])])
        tensor([[1., 1.],
                [1., 2.]], dtype=torch.float64)
    """
    total: Tensor | None = None
    for jac in rows:
        flat = jac.reshape(jac.shape[0], -1).to(dtype)
        part = flat @ flat.T
        total = part if total is None else total + part
    if total is None:
        raise InvalidValueError("Expected at least one piece of the Jacobian, got none")
    return total


@contextlib.contextmanager
def capture_outputs(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, Tensor]]:
    """Within the block, the outputs of ``model``'s submodules ``names`` in the forward
    passes that run, by name (the last pass's, with their graph).

    Args:
        model: The network.
        names: Submodules to watch, e.g. :func:`shared_representation`'s blocks.

    Yields:
        A dict filled as the forward pass runs.

    Example:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
        >>> with capture_outputs(net, ["0"]) as outputs:
        ...     _ = net(torch.zeros(1, 2))
        >>> outputs["0"].shape
        torch.Size([1, 3])
    """
    outputs: dict[str, Tensor] = {}

    def keep(name: str) -> Any:
        def hook(module: nn.Module, args: Any, output: Tensor) -> None:
            outputs[name] = output

        return hook

    handles = [model.get_submodule(name).register_forward_hook(keep(name)) for name in names]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()
