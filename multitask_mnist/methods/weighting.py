"""Weightings from gradients or progress: GradNorm, FAMO and MGDA-UB.

Each still trains on one weighted total (a :class:`~multitask_mnist.methods.Scalarization`),
but sets its weights from more than the losses: GradNorm from the tasks' gradient norms
on the last shared layer, FAMO from how much each loss fell over the last step (a
second forward pass after it), MGDA-UB from the tasks' gradients on the shared
representation. Each declares what it needs in ``needs``; where processes must agree
(FAMO's change of the losses, MGDA-UB's Gramian, GradNorm's first losses) the method
all-reduces it itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from multitask_mnist import distributed
from multitask_mnist.errors import InvalidValueError
from multitask_mnist.methods.base import Need, Scalarization, StepOutput
from multitask_mnist.methods.shared import gramian, last_shared_layer, shared_representation
from multitask_mnist.models import MultiTaskNet

__all__ = ["FAMOWeighting", "GradNormWeighting", "MGDAUBWeighting", "min_norm_weights"]

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


class FAMOWeighting(Scalarization):
    """Fast adaptive multitask optimization, FAMO (Liu et al., NeurIPS 2023).

    The total is ``sum(z_i log(l_i + eps)) / sum(z_i / (l_i + eps))`` with
    ``z = softmax(logits)``: its gradient is a convex combination of the task
    gradients, ``z_i / (l_i c)`` each, which makes every loss fall at about the same
    relative rate. After each optimizer step, :meth:`after_step` has the losses
    recomputed on the same batch (a second forward pass without gradients; batch-norm
    statistics are left as the step left them), measures how much each fell (``log``
    before minus ``log`` after) and moves the logits by one Adam step towards the
    tasks that fell least (:meth:`update`).

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
    needs: ClassVar[frozenset[Need]] = frozenset({"second_forward"})
    logits: Tensor
    exp_avg: Tensor
    exp_avg_sq: Tensor
    adam_steps: Tensor

    def __init__(self, num_tasks: int, lr: float = 0.025, weight_decay: float = 1e-3) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        self.lr = lr
        self.weight_decay = weight_decay
        self.register_buffer("logits", torch.zeros(num_tasks))
        self.register_buffer("exp_avg", torch.zeros(num_tasks))
        self.register_buffer("exp_avg_sq", torch.zeros(num_tasks))
        self.register_buffer("adam_steps", torch.zeros((), dtype=torch.long))
        self._before: Tensor | None = None

    def forward(self, losses: Tensor, shared: Sequence[Tensor] = ()) -> Tensor:
        losses = self.scaled(losses)
        present = losses > 0
        shifted = torch.where(present, losses, 1.0) + _EPSILON
        z = torch.where(present, torch.softmax(self.logits, dim=0), 0.0)
        normalizer = (z / shifted).sum().detach().clamp(min=1e-30)
        if self.training:
            self._before = losses.detach().float()
        total = ((z / normalizer) * torch.log(shifted)).sum()
        return torch.where(present.any(), total, losses.sum() * 0.0)

    def after_step(self, step: StepOutput) -> None:
        """Re-measure the losses on the step's batch and update the logits."""
        if step.recompute is None:
            raise RuntimeError("FAMOWeighting needs the step's losses recomputed after it")
        self.update(step.recompute())

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
        after = self.scaled(losses.detach().float())
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


class GradNormWeighting(Scalarization):
    """GradNorm (Chen et al., ICML 2018): weights that equalize the tasks' training rates.

    Task ``i``'s weight is ``w_i = K softmax(theta)_i`` (LibMTL's parametrization: the
    weights stay positive and sum to ``K`` without renormalizing after each step). At
    each training step ``G_i = w_i ||grad_W l_i||`` on the last shared layer ``W``
    (:func:`~multitask_mnist.methods.last_shared_layer`), ``r_i`` is task ``i``'s loss
    relative to its first one, divided by the mean of those ratios, and ``theta``
    receives the gradient of ``sum |G_i - mean(G) r_i ** alpha|`` (the target held
    constant), through the Trainer's optimizer like any weight. The network receives
    the gradient of ``sum w_i l_i`` with the weights held constant. The total's value
    is that weighted sum; the GradNorm term adds its gradient only.

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
        >>> gradnorm = GradNormWeighting(2)
        >>> gradnorm.bind(presets.mnist_sum())
        >>> gradnorm.weights().tolist()
        [1.0, 1.0]
    """

    name = "gradnorm"
    initial: Tensor
    has_initial: Tensor

    def __init__(self, num_tasks: int, alpha: float = 1.5) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        self.alpha = alpha
        self.theta = nn.Parameter(torch.zeros(num_tasks))
        self.register_buffer("initial", torch.zeros(num_tasks))
        self.register_buffer("has_initial", torch.zeros(num_tasks, dtype=torch.bool))
        self._layer: list[Tensor] = []

    def bind(self, model: MultiTaskNet, weights: Any = None) -> None:
        super().bind(model, weights)
        self._layer = last_shared_layer(model)

    def forward(self, losses: Tensor, shared: Sequence[Tensor] = ()) -> Tensor:
        losses = self.scaled(losses)
        weights = self.num_tasks * torch.softmax(self.theta, dim=0)
        total = (weights.detach() * losses).sum()
        if not (self.training and torch.is_grad_enabled()):
            return total
        if not self._layer:
            raise RuntimeError(
                "GradNormWeighting needs the model's last shared layer: call bind(model) "
                "first (the Trainer does)"
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


class MGDAUBWeighting(Scalarization):
    """MGDA-UB (Sener and Koltun, 2018): min-norm weights on the shared representation.

    At each training step, each task's gradient with respect to the shared
    representation ``z`` (:func:`~multitask_mnist.methods.shared_representation`,
    which the step keeps for it: ``needs`` declares it) is taken through the heads,
    flattened over the batch; the weights are the minimum-norm point of their convex
    hull (:func:`min_norm_weights`) and the total is ``sum(w_i l_i)`` with the weights
    held constant. The weights sum to 1, as in the authors' code; like theirs, the
    gradients are not normalized. Under torchrun the Gramian is summed over the
    processes first, so every process uses the same weights (those of the global
    batch). A task without labels in a batch (loss exactly zero) gets weight 0 in that
    step. Outside training the total uses the last step's weights. A network whose
    task heads stop a task's gradient (``"argmax"`` fusion) is refused.

    Args:
        num_tasks: The number of tasks ``K``.

    Example:
        >>> from multitask_mnist import presets
        >>> mgda_ub = MGDAUBWeighting(2)
        >>> mgda_ub.bind(presets.multi_mnist_lenet())
        >>> mgda_ub.weights().tolist()  # before the first step
        [0.5, 0.5]
    """

    name = "mgda_ub"
    needs: ClassVar[frozenset[Need]] = frozenset({"shared_representation"})
    last: Tensor

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        self.num_tasks = num_tasks
        self.register_buffer("last", torch.full((num_tasks,), 1.0 / num_tasks))
        #: The blocks whose outputs are the shared representation, set by :meth:`bind`.
        self.representation: list[str] = []

    def bind(self, model: MultiTaskNet, weights: Any = None) -> None:
        """Find the shared representation of ``model``.

        Raises:
            ValueError: As :func:`~multitask_mnist.methods.shared_representation`.
        """
        super().bind(model, weights)
        self.representation = shared_representation(model)

    def forward(self, losses: Tensor, shared: Sequence[Tensor] = ()) -> Tensor:
        losses = self.scaled(losses)
        if self.training and torch.is_grad_enabled():
            if not shared:
                raise InvalidValueError(
                    "MGDAUBWeighting needs the shared representation of the step: call it "
                    "with the outputs of its `representation` blocks (the Trainer does)"
                )
            with torch.autocast(losses.device.type, enabled=False):  # a float32 Gramian
                self.last.copy_(self._weights(losses, list(shared)))
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
        both = torch.cat([gramian([jacobian], torch.float32).flatten(), present])
        if distributed.world_size() > 1:
            distributed.all_reduce_sum(both)
        k = self.num_tasks
        return min_norm_weights(both[: k * k].view(k, k), both[k * k :] > 0)

    def weights(self) -> Tensor:
        return self.last.clone()
