"""How the tasks' gradients on the shared parameters relate: cosine, norms, weights.

:class:`GradientDiagnostics` keeps the per-step values and their sums over an epoch;
every method holds one (``method.diagnostics``). A gradient method
(:class:`~multitask_mnist.methods.GradientAggregation`) fills it at every step from the
Jacobian it computes anyway; for any other method, :class:`GradientProbe` measures the
same on the steps a callback asks for, at the price of one extra backward pass per task
through the shared blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from multitask_mnist import distributed
from multitask_mnist.methods.shared import gramian

__all__ = ["GradientDiagnostics", "GradientProbe"]


class GradientDiagnostics:
    """The tasks' gradient Gramian of each step, read as cosines, norms and weights.

    Example:
        >>> d = GradientDiagnostics()
        >>> d.record(torch.tensor([[9.0, 3.0], [3.0, 2.0]]), torch.tensor([1.0, 1.0]))
        >>> {k: round(v, 4) for k, v in d.epoch(["a", "b"]).items()}
        {'grad_cosine': 0.7071, 'grad_norm_ratio': 2.1213, 'effective_weight_a': 1.0, \
'effective_weight_b': 1.0}
    """

    def __init__(self) -> None:
        #: The last step's Gramian of the task gradients ``(K, K)`` and the weight each
        #: task's gradient had in the update (``None`` where there is none to report).
        self.last_gramian: Tensor | None = None
        self.last_weights: Tensor | None = None
        self._sums: Tensor | None = None  # this epoch's values, summed on the device
        self._last_step: Tensor | None = None  # the last step's, in the same layout

    def record(self, gramian: Tensor, weights: Tensor | None) -> None:
        """Add one step: its ``(K, K)`` Gramian and ``(K,)`` task weights (or ``None``)."""
        gramian = gramian.double()
        weights = None if weights is None else weights.detach().double()
        k = gramian.shape[0]
        norms = gramian.diagonal().clamp(min=0).sqrt()
        first, second = torch.triu_indices(k, k, offset=1, device=gramian.device)
        both = (norms[first] > 0) & (norms[second] > 0)
        cosines = gramian[first, second] / (norms[first] * norms[second]).clamp(min=1e-300)
        pairs = both.sum()
        smallest = norms.min()
        ratio_ok = smallest > 0
        zeros = torch.zeros(k, dtype=torch.float64, device=gramian.device)
        values = [
            torch.ones((), dtype=torch.float64, device=gramian.device),
            torch.where(both, cosines, 0.0).sum() / pairs.clamp(min=1),
            (pairs > 0).double(),
            torch.where(ratio_ok, norms.max() / smallest.clamp(min=1e-300), 0.0),
            ratio_ok.double(),
            *(weights if weights is not None else zeros).unbind(),
        ]
        step = torch.stack(values)
        self.last_gramian, self.last_weights = gramian, weights
        self._last_step = step
        self._sums = step if self._sums is None else self._sums + step

    def epoch(self, task_names: Sequence[str]) -> dict[str, float]:
        """The means over the steps recorded since the last call, then a fresh start.

        Returns:
            ``grad_cosine`` (the mean cosine between two tasks' gradients on the shared
            parameters, over the pairs where both are non-zero), ``grad_norm_ratio``
            (the largest task gradient's norm over the smallest's, where none is zero),
            and ``effective_weight_{task}`` (the weight of each task's gradient in the
            update, where known); a value with no step to average is left out.
        """
        if self._sums is None:
            return {}
        sums, self._sums = self._sums, None
        return self._read(sums, task_names)

    def step(self, task_names: Sequence[str]) -> dict[str, float]:
        """The same values for the last recorded step alone, with each task's gradient
        norm ``grad_norm_{task}``; empty before the first. Waits for the step to finish.
        """
        if self._last_step is None or self.last_gramian is None:
            return {}
        norms = self.last_gramian.diagonal().clamp(min=0).sqrt().tolist()
        out = {f"grad_norm_{name}": norm for name, norm in zip(task_names, norms, strict=True)}
        return out | self._read(self._last_step, task_names)

    def _read(self, sums: Tensor, task_names: Sequence[str]) -> dict[str, float]:
        """Means from sums laid out as :meth:`record` lays out one step."""
        values = sums.tolist()
        out: dict[str, float] = {}
        if values[2]:
            out["grad_cosine"] = values[1] / values[2]
        if values[4]:
            out["grad_norm_ratio"] = values[3] / values[4]
        if self.last_weights is not None:
            for name, total in zip(task_names, values[5:], strict=True):
                out[f"effective_weight_{name}"] = total / values[0]
        return out

    def state_dict(self) -> dict[str, Any]:
        """This epoch's sums, to resume an epoch mid-way."""
        return {"sums": None if self._sums is None else self._sums.cpu()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | None = None) -> None:
        """Take back what :meth:`state_dict` returned."""
        sums = state.get("sums")
        self._sums = None if sums is None else sums.to(device)


class GradientProbe:
    """Measures the task gradients on the shared parameters without a gradient method.

    :meth:`measure` takes one step's task losses and their weighted total before the
    backward pass and records, in its ``diagnostics``, the Gramian of the task
    gradients on the shared parameters (one backward pass per task, keeping the graph
    for the training step's own backward) and each task's effective weight, the
    derivative of the total with respect to its loss (its fixed weight for ``"none"``,
    the step's weight for any other method). Under torchrun the per-task gradients are
    averaged over the processes first, so every process records the same values.

    Args:
        shared: The shared parameters.
        diagnostics: Where to record (a method's ``diagnostics``); a new one by default.

    Example:
        >>> w = torch.nn.Parameter(torch.tensor([1.0, 0.0]))
        >>> probe = GradientProbe([w])
        >>> a, b = w[0] ** 2, -w[0]  # gradients (2, 0) and (-1, 0): opposite
        >>> probe.measure([a, b], 2 * a + b)
        >>> probe.diagnostics.step(["a", "b"])["grad_cosine"]
        -1.0
        >>> w.grad is None  # it leaves the gradients to the training step
        True
    """

    def __init__(
        self, shared: Sequence[Tensor], diagnostics: GradientDiagnostics | None = None
    ) -> None:
        self.shared = list(shared)
        self.diagnostics = diagnostics if diagnostics is not None else GradientDiagnostics()

    def measure(self, losses: Sequence[Tensor], total: Tensor) -> None:
        """Record one step; ``losses`` ``K`` scalars with their graph, ``total`` their
        weighted total."""
        losses = list(losses)
        weights = torch.autograd.grad(total, losses, retain_graph=True, allow_unused=True)
        effective = torch.stack(
            [w.float() if w is not None else total.new_zeros(()).float() for w in weights]
        )
        jacobians = [torch.zeros((len(losses), *p.shape), device=p.device) for p in self.shared]
        for i, loss in enumerate(losses):
            if not loss.requires_grad:
                continue
            grads = torch.autograd.grad(loss, self.shared, retain_graph=True, allow_unused=True)
            for jac, grad in zip(jacobians, grads, strict=True):
                if grad is not None:
                    jac[i] = grad.float()
        distributed.all_reduce_mean([*jacobians, effective])  # the same on every process
        self.diagnostics.record(gramian(jacobians), effective)
