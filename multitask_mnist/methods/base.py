"""The one protocol every multi-task method follows, and what a training step gives it.

A method turns the tasks' losses of one training step into gradients on the
parameters. The loop calls the same four things for every method, whatever its family
(a scalarization, a gradient-based weighting, a Jacobian aggregator):

* ``method(losses)``: the step's total, a ``()`` scalar from the ``(K,)`` task
  losses; in evaluation too, where it is reported;
* ``backward(step)``: leaves each trainable parameter's gradient, synchronized across
  processes where the method needs it (the loop never all-reduces anything);
* ``after_step(step)``: after the optimizer step (FAMO re-measures its losses);
* ``on_train_epoch_end()``: after each training epoch (DWA sets its weights).

A method declares what else a step must give it in ``needs``: the shared
representation (the shared blocks' outputs), or a second forward pass on the same
batch. It is an ``nn.Module``: learned weights are parameters the optimizer trains,
running state is buffers or extra state, and both are in every checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

from multitask_mnist import distributed
from multitask_mnist.errors import InvalidValueError
from multitask_mnist.methods.diagnostics import GradientDiagnostics
from multitask_mnist.models import MultiTaskNet

__all__ = ["Method", "Need", "Scalarization", "StepOutput"]

#: What a method may ask a training step for, beyond the task losses.
Need = Literal["shared_representation", "second_forward"]


@dataclass
class StepOutput:
    """One training step, as the model and the loss saw it: the batch split once, the
    masks computed once, read by the method, the metrics and the callbacks.

    Attributes:
        predictions: By task name, ``(B, C)`` logits or ``(B,)`` values (and a
            teacher-forced block's second output).
        targets: By task name, ``(B,)`` labels.
        masks: By task name, ``(B,)`` bool: which samples have the task's label.
        losses: By task name, ``()`` each task's loss over its labelled samples, with
            its graph.
        total: ``()`` what the method made of them: the scalar it trains on and the run
            reports as ``loss``.
        parameters: Every trainable parameter of the step (model, loss, method).
        shared: The shared representation, when the method needs it: the outputs of
            :func:`~multitask_mnist.methods.shared_representation`'s blocks.
        recompute: When the method needs a second forward pass: the ``(K,)`` task
            losses on the same batch again, without gradients.

    Example:
        >>> step = StepOutput({}, {}, {}, {}, torch.tensor(2.0), [])
        >>> float(step.total)
        2.0
    """

    predictions: dict[str, Tensor]
    targets: dict[str, Tensor]
    masks: dict[str, Tensor]
    losses: dict[str, Tensor]
    total: Tensor
    parameters: Sequence[Tensor]
    shared: Sequence[Tensor] = ()
    recompute: Callable[[], Tensor] | None = field(default=None, repr=False)


class Method(nn.Module):
    """Base class of every multi-task method: how task losses become gradients.

    Subclasses implement :meth:`forward` (the total) and :meth:`weights`, and override
    :meth:`backward` when one backward pass of the total is not the method (a Jacobian
    aggregator). ``name`` is the method's name in the registry
    (:data:`~multitask_mnist.methods.METHODS`) and on the command line.

    The loss's fixed task weights (``WeightedMultiLoss(weights)``, 1 each by default)
    come with :meth:`bind`, in :attr:`fixed`: a method combines ``fixed * losses``
    (the fixed-weight sum itself leaves a task of weight 0 out entirely).

    Shapes:
        ``forward(losses)``: ``(K,)`` float32 task losses -> ``()`` total.

    Example:
        >>> class Halves(Method):
        ...     name = "halves"
        ...     def forward(self, losses):
        ...         return (0.5 * losses).sum()
        ...     def weights(self):
        ...         return torch.full((self.num_tasks,), 0.5)
        >>> from multitask_mnist import presets
        >>> halves = Halves()
        >>> halves.bind(presets.mnist_sum())
        >>> float(halves(torch.tensor([2.0, 4.0]))), halves.task_weights()
        (3.0, {'digit': 0.5, 'sum': 0.5})
    """

    name: ClassVar[str] = "custom"
    #: What a training step must give this method beyond the task losses.
    needs: ClassVar[frozenset[Need]] = frozenset()

    def __init__(self) -> None:
        super().__init__()
        self.num_tasks = 0
        self.task_names: tuple[str, ...] = ()
        #: The loss's fixed weight of each task, in task order (1 unless given).
        self.fixed: list[float] = []
        #: How the tasks' gradients related in recent steps; filled by methods that
        #: compute them anyway, and by a gradient probe when a callback asks.
        self.diagnostics = GradientDiagnostics()

    def bind(self, model: MultiTaskNet, weights: Mapping[str, float] | None = None) -> None:
        """Called once with the model it trains and the loss's fixed task weights, before
        the first step; a method that cannot train this model (no shared block, a head
        that stops a task's gradient) says so here.

        Args:
            model: The network.
            weights: The fixed weight of each task by name; a task left out weighs 1.

        Raises:
            ValueError: The method cannot train ``model`` (it was built for another
                number of tasks, say); the message says why.
        """
        built_for = self.num_tasks
        if built_for and built_for != len(model.tasks):
            raise InvalidValueError(
                f"Method {self.name!r} was built for {built_for} task(s); the model has "
                f"{len(model.tasks)} ({', '.join(map(repr, model.task_names))})"
            )
        self.num_tasks = len(model.tasks)
        self.task_names = model.task_names
        self.fixed = [float((weights or {}).get(name, 1.0)) for name in self.task_names]

    def scaled(self, losses: Tensor) -> Tensor:
        """``(K,)`` the task losses times their fixed weights (as they are, when every
        weight is 1)."""
        if all(weight == 1.0 for weight in self.fixed):
            return losses
        return losses * torch.tensor(self.fixed, dtype=losses.dtype, device=losses.device)

    def forward(self, losses: Tensor, shared: Sequence[Tensor] = ()) -> Tensor:
        """The ``()`` total of the ``(K,)`` weighted task losses (``shared``: the shared
        representation, for a method that needs it)."""
        raise NotImplementedError

    def weights(self) -> Tensor:
        """``(K,)`` the weight each task's loss currently gets, for reports."""
        raise NotImplementedError

    def backward(self, step: StepOutput) -> None:
        """Leave every trainable parameter's gradient for the optimizer.

        By default, one backward pass of ``step.total``, then each gradient averaged
        over the processes (under torchrun), so that every process takes the same step.
        """
        torch.autograd.backward(step.total)
        distributed.average_gradients(step.parameters)

    def after_step(self, step: StepOutput) -> None:
        """After the optimizer step; nothing by default."""

    def on_train_epoch_end(self) -> None:
        """After every training epoch; nothing by default."""

    def task_weights(self) -> dict[str, float]:
        """``{task: weight}``: :meth:`weights` by task name.

        Example:
            >>> from multitask_mnist.methods import create_method
            >>> from multitask_mnist import presets
            >>> method = create_method("none")
            >>> method.bind(presets.mnist_sum())
            >>> method.task_weights()
            {'digit': 1.0, 'sum': 1.0}
        """
        return dict(zip(self.task_names, self.weights().tolist(), strict=True))


class Scalarization(Method):
    """A method that trains on one scalar made of the task losses: a weighted sum
    (fixed, learned or drawn), a geometric mean, FAMO's objective. The default
    :meth:`~multitask_mnist.methods.Method.backward` is its training step. Subclasses
    implement ``forward`` and ``weights``; this is the old ``LossWeighting``.

    Example:
        >>> issubclass(Scalarization, Method)
        True
    """
