"""Loss weightings that balance how fast the tasks learn: FAMO and GradNorm.

Both watch each task's progress during training and move weight towards the tasks
that fall behind. FAMO judges progress by how much each loss fell over the last step
and needs the losses recomputed after the step (:meth:`FAMOWeighting.update`, which
the Trainer calls); GradNorm compares the tasks' gradient norms on the last shared
layer with their training rates, and needs that layer (:meth:`GradNormWeighting.attach`,
which :class:`~multitask_mnist.training.TrainingTask` calls).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from multitask_mnist import distributed
from multitask_mnist.errors import InvalidValueError
from multitask_mnist.losses.weighting import LossWeighting

if TYPE_CHECKING:
    from multitask_mnist.models import MultiTaskNet

__all__ = ["FAMOWeighting", "GradNormWeighting", "last_shared_layer"]

_EPSILON = 1e-8  # FAMO's, as in its official implementation and TorchJD's
_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults, which FAMO's logits use
_ADAM_EPS = 1e-8


def _mean_over_processes(values: Tensor, present: Tensor) -> tuple[Tensor, Tensor]:
    """``values`` averaged over the processes where ``present``; and where any was."""

    if distributed.world_size() == 1:
        return values, present
    both = torch.cat([torch.where(present, values, 0.0), present.to(values.dtype)])
    distributed.all_reduce_sum(both)
    sums, counts = both.chunk(2)
    return sums / counts.clamp(min=1), counts > 0


class FAMOWeighting(LossWeighting):
    """Fast adaptive multitask optimization, FAMO (Liu et al., NeurIPS 2023).

    The total is ``sum(z_i log(l_i + eps)) / sum(z_i / (l_i + eps))`` with
    ``z = softmax(logits)``: its gradient is a convex combination of the task
    gradients, ``z_i / (l_i c)`` each, which makes every loss fall at about the same
    relative rate. After each optimizer step, :meth:`update` takes the losses
    recomputed on the same batch, measures how much each fell (``log`` before minus
    ``log`` after) and moves the logits by one Adam step towards the tasks that fell
    least. The Trainer does this (one extra forward pass without gradients per step;
    batch-norm statistics are left as the step left them).

    This follows TorchJD's ``scalarization.FAMO`` (and the official code) step for
    step, and is tested against it, with two differences a training library needs:
    a task without labels in a batch (loss exactly zero) is left out of that step's
    total and update instead of dominating both through ``log(eps)``; and the logits
    and their Adam moments are buffers, so checkpoints hold them and a resumed run
    continues exactly. Under torchrun each process's change of the losses is averaged
    over the processes before the update, so the logits stay identical.

    :meth:`weights` reports ``z``: positive, summing to 1. The total's value is FAMO's
    objective, not a weighted sum of the losses (it can be negative); the task losses
    are reported on their own.

    Args:
        num_tasks: The number of tasks ``K``.
        lr: The learning rate of the logits' Adam (the paper's 0.025).
        weight_decay: Their L2 penalty (the paper's Algorithm 2: 1e-3).

    Example:
        >>> famo = FAMOWeighting(2)
        >>> total = famo(torch.tensor([1.0, 4.0]))
        >>> famo.update(torch.tensor([0.5, 3.9]))  # the first task fell faster...
        >>> famo.weights()[1] > famo.weights()[0]  # ...so the second gains weight
        tensor(True)
    """

    name = "famo"
    updates_after_step = True
    logits: Tensor
    exp_avg: Tensor
    exp_avg_sq: Tensor
    adam_steps: Tensor

    def __init__(self, num_tasks: int, lr: float = 0.025, weight_decay: float = 1e-3) -> None:
        super().__init__(num_tasks)
        self.lr = lr
        self.weight_decay = weight_decay
        self.register_buffer("logits", torch.zeros(num_tasks))
        self.register_buffer("exp_avg", torch.zeros(num_tasks))
        self.register_buffer("exp_avg_sq", torch.zeros(num_tasks))
        self.register_buffer("adam_steps", torch.zeros((), dtype=torch.long))
        self._before: Tensor | None = None

    def forward(self, losses: Tensor) -> Tensor:
        present = losses > 0
        shifted = torch.where(present, losses, 1.0) + _EPSILON
        z = torch.where(present, torch.softmax(self.logits, dim=0), 0.0)
        normalizer = (z / shifted).sum().detach().clamp(min=1e-30)
        if self.training:
            self._before = losses.detach().float()
        total = ((z / normalizer) * torch.log(shifted)).sum()
        return torch.where(present.any(), total, losses.sum() * 0.0)

    def update(self, losses: Tensor) -> None:
        """One Adam step on the logits, from the losses before and after the step.

        Args:
            losses: ``(K,)`` the task losses on the same batch after the optimizer step.

        Raises:
            RuntimeError: No training-mode :meth:`forward` came before.
        """
        if self._before is None:
            raise RuntimeError("FAMOWeighting.update() needs a training step's forward first")
        before, self._before = self._before, None
        after = losses.detach().float()
        present = (before > 0) & (after > 0)
        change = torch.log(torch.where(present, before, 1.0) + _EPSILON) - torch.log(
            torch.where(present, after, 1.0) + _EPSILON
        )
        change, present = _mean_over_processes(torch.where(present, change, 0.0), present)
        delta = torch.where(present, change, 0.0)
        z = torch.softmax(self.logits, dim=0)
        grad = z * (delta - (z * delta).sum())  # softmax's Jacobian (symmetric) times delta
        self._adam_step(grad + self.weight_decay * self.logits)

    def _adam_step(self, grad: Tensor) -> None:
        """``torch.optim.Adam``'s update of the logits, on buffers."""
        beta1, beta2 = _BETAS
        self.adam_steps += 1
        step = int(self.adam_steps)
        self.exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denominator = self.exp_avg_sq.sqrt() / (1 - beta2**step) ** 0.5 + _ADAM_EPS
        self.logits.addcdiv_(self.exp_avg, denominator, value=-self.lr / (1 - beta1**step))

    def weights(self) -> Tensor:
        return torch.softmax(self.logits, dim=0)

    def extra_repr(self) -> str:
        return f"lr={self.lr}, weight_decay={self.weight_decay}"


def last_shared_layer(model: MultiTaskNet) -> list[Tensor]:
    """The trainable parameters of the last layer that several tasks depend on.

    The last module, in registration order, with parameters of its own inside the
    last shared block (:meth:`~multitask_mnist.models.MultiTaskNet.block_tasks`):
    ``conv6``, the layer that makes the digit logits, for the documented network.

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
    for name, tasks in model.block_tasks().items():
        if len(tasks) < 2:
            continue
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


class GradNormWeighting(LossWeighting):
    """GradNorm (Chen et al., ICML 2018): weights that equalize the tasks' training rates.

    Task ``i``'s weight is ``w_i = K softmax(theta)_i`` (LibMTL's parametrization: the
    weights stay positive and sum to ``K`` without renormalizing after each step). At
    each training step ``G_i = w_i ||grad_W l_i||`` on the last shared layer ``W``
    (:func:`last_shared_layer`), ``r_i`` is task ``i``'s loss relative to its first
    one, divided by the mean of those ratios, and ``theta`` receives the gradient of
    ``sum |G_i - mean(G) r_i ** alpha|`` (the target held constant), through the
    Trainer's optimizer like any weight. The network receives the gradient of
    ``sum w_i l_i`` with the weights held constant. The total's value is that weighted
    sum; the GradNorm term adds its gradient only.

    A task without labels in a batch (loss exactly zero) is left out of the step's
    balance; its first loss is taken at its first labelled batch. Under torchrun the
    first losses are averaged over the processes, and ``theta``'s gradient is averaged
    as any weight's. The first losses are buffers, ``theta`` a parameter: checkpoints
    hold both and a resumed run continues exactly.

    Args:
        num_tasks: The number of tasks ``K``.
        alpha: How strongly slow tasks are pulled up (the paper's ``alpha``; 1.5 is
            its and LibMTL's choice).

    Example:
        >>> from multitask_mnist import presets
        >>> net = presets.mnist_sum()
        >>> gradnorm = GradNormWeighting(2)
        >>> gradnorm.attach(net)
        >>> gradnorm.weights().tolist()
        [1.0, 1.0]
    """

    name = "gradnorm"
    initial: Tensor
    has_initial: Tensor

    def __init__(self, num_tasks: int, alpha: float = 1.5) -> None:
        super().__init__(num_tasks)
        self.alpha = alpha
        self.theta = nn.Parameter(torch.zeros(num_tasks))
        self.register_buffer("initial", torch.zeros(num_tasks))
        self.register_buffer("has_initial", torch.zeros(num_tasks, dtype=torch.bool))
        self._layer: list[Tensor] = []

    def attach(self, model: MultiTaskNet) -> None:
        self._layer = last_shared_layer(model)

    def forward(self, losses: Tensor) -> Tensor:
        weights = self.num_tasks * torch.softmax(self.theta, dim=0)
        total = (weights.detach() * losses).sum()
        if not (self.training and torch.is_grad_enabled()):
            return total
        if not self._layer:
            raise RuntimeError(
                "GradNormWeighting needs the model's last shared layer: call "
                "attach(model) first (TrainingTask does)"
            )
        present = losses.detach() > 0
        self._take_initial(losses.detach(), present)
        norms = torch.stack([self._gradient_norm(loss) for loss in losses.unbind()])
        balance = self._balance_loss(weights, norms, losses.detach(), present)
        return total + (balance - balance.detach())

    def _take_initial(self, losses: Tensor, present: Tensor) -> None:
        if bool(self.has_initial.all()):
            return
        mean, any_present = _mean_over_processes(losses.float(), present)
        new = any_present & ~self.has_initial
        self.initial.copy_(torch.where(new, mean, self.initial))
        self.has_initial |= new

    def _gradient_norm(self, loss: Tensor) -> Tensor:
        if not loss.requires_grad:
            return loss.new_zeros(())
        grads = torch.autograd.grad(loss, self._layer, retain_graph=True, allow_unused=True)
        squares = [g.float().pow(2).sum() for g in grads if g is not None]
        return torch.stack(squares).sum().sqrt() if squares else loss.new_zeros(())

    def _balance_loss(
        self, weights: Tensor, norms: Tensor, losses: Tensor, present: Tensor
    ) -> Tensor:
        usable = present & self.has_initial & (self.initial > 0)
        count = usable.sum().clamp(min=1)
        scaled = weights * norms.detach()  # G_i
        ratios = torch.where(usable, losses / torch.where(usable, self.initial, 1.0), 0.0)
        relative = ratios / (ratios.sum() / count).clamp(min=1e-30)
        mean_norm = (torch.where(usable, scaled, 0.0).sum() / count).detach()
        target = (mean_norm * relative.pow(self.alpha)).detach()
        return torch.where(usable, (scaled - target).abs(), 0.0).sum()

    def weights(self) -> Tensor:
        return self.num_tasks * torch.softmax(self.theta.detach(), dim=0)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"
