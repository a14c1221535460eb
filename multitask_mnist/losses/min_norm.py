"""MGDA-UB: loss weights from the tasks' gradients on the shared representation.

Sener and Koltun (NeurIPS 2018) weigh the task losses with the minimum-norm point of
the convex hull of the tasks' gradients (MGDA, solved by Frank-Wolfe). Their
"upper bound" variant, MGDA-UB, takes those gradients with respect to the shared
representation ``z`` (the encoder's output, one row per sample) instead of the
shared parameters: one backward pass through the small task heads per task instead
of through the whole encoder, and an upper bound on the parameter objective. The
network then trains on the weighted sum of the losses, heads included, in one
backward pass. TorchJD's ``MGDAWeighting`` (the same Frank-Wolfe solver) finds the
weights; what this module adds is where the gradients come from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from multitask_mnist import distributed
from multitask_mnist.errors import InvalidValueError
from multitask_mnist.losses.weighting import LossWeighting

if TYPE_CHECKING:
    from torch.utils.hooks import RemovableHandle

    from multitask_mnist.models import MultiTaskNet

__all__ = ["MGDAUBWeighting", "min_norm_weights", "shared_representation"]


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
    owners = model.block_tasks()
    shared = {name for name, tasks in owners.items() if len(tasks) > 1}
    frontier = {name for name in shared if model.blocks[name].task is not None}
    for name, block in model.blocks.items():
        if name not in shared:
            frontier |= shared.intersection(block.reads)
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
    return [name for name in owners if name in frontier]


def min_norm_weights(gramian: Tensor, present: Tensor | None = None) -> Tensor:
    """The convex weights of the minimum-norm combination of the tasks' gradients.

    Tasks not ``present`` (no labels in the batch) get weight 0 and the others share
    1; when every gradient is zero the present tasks share it equally.

    Args:
        gramian: ``(K, K)`` inner products of the tasks' gradients.
        present: ``(K,)`` bool, the tasks that take part; all by default.

    Returns:
        ``(K,)`` float32 weights, non-negative, summing to 1 (0 when no task is present).

    Example:
        >>> min_norm_weights(torch.tensor([[4.0, 0.0], [0.0, 1.0]]))  # g1=(2,0), g2=(0,1)
        tensor([0.2000, 0.8000])
    """
    from torchjd.aggregation import MGDAWeighting  # torchjd is imported only when used

    gramian = gramian.float()
    k = gramian.shape[0]
    present = torch.ones(k, dtype=torch.bool, device=gramian.device) if present is None else present
    weights = torch.zeros(k, device=gramian.device)
    index = present.nonzero().flatten()
    if index.numel() == 0:
        return weights
    sub = gramian[index][:, index]
    if index.numel() == 1 or not bool(sub.diagonal().sum() > 0):
        weights[index] = 1.0 / index.numel()
        return weights
    weights[index] = MGDAWeighting()(sub).float()
    return weights


class MGDAUBWeighting(LossWeighting):
    """MGDA-UB (Sener and Koltun, 2018): min-norm weights on the shared representation.

    At each training step, each task's gradient with respect to the shared
    representation ``z`` (:func:`shared_representation`, kept by a forward hook) is
    taken through the heads, flattened over the batch; the weights are the minimum-norm
    point of their convex hull (:func:`min_norm_weights`) and the total is
    ``sum(w_i l_i)`` with the weights held constant. The weights sum to 1, as in the
    authors' code; like theirs, the gradients are not normalized. Under torchrun the
    Gramian is summed over the processes first, so every process uses the same weights
    (those of the global batch). A task without labels in a batch (loss exactly zero)
    gets weight 0 in that step. Outside training the total uses the last step's weights.
    A network whose task heads stop a task's gradient (``"argmax"`` fusion) is refused.

    Args:
        num_tasks: The number of tasks ``K``.

    Example:
        >>> from multitask_mnist import presets
        >>> net = presets.multi_mnist_lenet()
        >>> mgda_ub = MGDAUBWeighting(2)
        >>> mgda_ub.attach(net)
        >>> mgda_ub.weights().tolist()  # before the first step
        [0.5, 0.5]
    """

    name = "mgda_ub"
    last: Tensor

    def __init__(self, num_tasks: int) -> None:
        super().__init__(num_tasks)
        self.register_buffer("last", torch.full((num_tasks,), 1.0 / num_tasks))
        self._outputs: dict[str, Tensor] = {}
        self._hooks: list[RemovableHandle] = []

    def attach(self, model: MultiTaskNet) -> None:
        """Keep the shared representation of each training forward pass of ``model``.

        Raises:
            ValueError: As :func:`shared_representation`.
        """
        names = shared_representation(model)
        self.detach()
        self._hooks = [
            model.get_submodule(name).register_forward_hook(_Keep(self, name)) for name in names
        ]

    def detach(self) -> None:
        """Remove the forward hooks that :meth:`attach` put on the model."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def forward(self, losses: Tensor) -> Tensor:
        if self.training and torch.is_grad_enabled():
            if not self._hooks:
                raise RuntimeError(
                    "MGDAUBWeighting needs the model's shared representation: call "
                    "attach(model) first (TrainingTask does)"
                )
            outputs, self._outputs = list(self._outputs.values()), {}  # no graph kept
            if not outputs:
                raise RuntimeError(
                    "MGDAUBWeighting found no shared representation: run the model's "
                    "forward pass before the loss, in training mode"
                )
            with torch.autocast(losses.device.type, enabled=False):  # a float32 Gramian
                self.last.copy_(self._weights(losses, outputs))
        return (self.last.to(losses.dtype) * losses).sum()

    def _weights(self, losses: Tensor, outputs: list[Tensor]) -> Tensor:

        rows = []
        for loss in losses.unbind():
            grads: tuple[Tensor | None, ...] = (None,) * len(outputs)
            if loss.requires_grad:
                grads = torch.autograd.grad(loss, outputs, retain_graph=True, allow_unused=True)
            rows.append(
                torch.cat(
                    [
                        (g if g is not None else torch.zeros_like(z)).float().flatten()
                        for g, z in zip(grads, outputs, strict=True)
                    ]
                )
            )
        jacobian = torch.stack(rows)
        present = (losses.detach() != 0).float()
        both = torch.cat([(jacobian @ jacobian.T).flatten(), present])
        if distributed.world_size() > 1:
            distributed.all_reduce_sum(both)
        k = self.num_tasks
        return min_norm_weights(both[: k * k].view(k, k), both[k * k :] > 0)

    def weights(self) -> Tensor:
        return self.last.clone()


class _Keep:
    """A forward hook (a class, so a model with it still pickles): keeps the block's
    output for the weighting while both are training with gradients on."""

    def __init__(self, weighting: MGDAUBWeighting, name: str) -> None:
        self.weighting, self.name = weighting, name

    def __call__(self, module: nn.Module, args: Any, output: Tensor) -> None:
        if module.training and self.weighting.training and torch.is_grad_enabled():
            self.weighting._outputs[self.name] = output
