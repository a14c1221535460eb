"""The math of the multi-task loss, as pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "MultiLossOutput",
    "dwa_weights",
    "uncertainty_weighted_loss",
    "weighted_sum",
]

_DWA_MIN_SHARE = 1e-6


class MultiLossOutput(NamedTuple):
    """A weighted total and the unweighted loss of each task.

    Attributes:
        total: ``()`` the weighted sum that is minimized.
        parts: ``{task: ()}`` each task's own loss, in the order of the tasks.

    Example:
        >>> import torch
        >>> parts = {"digit": torch.tensor(1.0), "sum": torch.tensor(0.5)}
        >>> out = MultiLossOutput(torch.tensor(1.5), parts)
        >>> float(out.total)
        1.5
    """

    total: Tensor
    parts: dict[str, Tensor]


def weighted_sum(losses: Sequence[Tensor], weights: Sequence[float | Tensor]) -> Tensor:
    """``sum(w * loss)``, leaving out the terms of weight zero, so a task weighted zero
    contributes nothing, not even a NaN.

    Args:
        losses: ``K`` scalar losses.
        weights: ``K`` weights, numbers or scalar tensors (a tensor is always kept).

    Returns:
        The ``()`` total; zero (with the first loss's graph) when every weight is zero.

    Example:
        >>> weighted_sum([torch.tensor(2.0), torch.tensor(float("nan"))], [1.0, 0.0])
        tensor(2.)
    """
    terms = [
        weight * loss
        for loss, weight in zip(losses, weights, strict=True)
        if isinstance(weight, Tensor) or weight != 0
    ]
    return sum(terms[1:], terms[0]) if terms else losses[0] * 0.0


def uncertainty_weighted_loss(losses: Tensor, log_vars: Tensor) -> tuple[Tensor, Tensor]:
    """Weight task losses by learned uncertainty (Kendall, Gal and Cipolla, 2018).

    With ``s = log(sigma^2)`` learned per task, the total is
    ``sum(0.5 * exp(-s) * L + log(1 + exp(s)))``. Kendall et al. regularize with
    ``log(sigma)``, which lets the total fall without bound as a loss nears zero;
    the ``log(1 + sigma^2)`` form (Liebel and Koerner, 2018) keeps every term, and so
    the total, at or above zero, with the same minimizer for large losses: a task
    whose loss is large (noisy) learns a large ``sigma`` and a small weight.

    Args:
        losses: ``(K,)`` the task losses.
        log_vars: ``(K,)`` the learned ``log(sigma^2)``.

    Returns:
        The total ``()`` and the weights ``(K,)`` ``0.5 * exp(-log_vars)``, all positive.

    Example:
        >>> total, w = uncertainty_weighted_loss(torch.tensor([2.0, 4.0]), torch.zeros(2))
        >>> w.tolist(), round(float(total), 4)
        ([0.5, 0.5], 4.3863)
    """
    weights = 0.5 * torch.exp(-log_vars)
    return (weights * losses + F.softplus(log_vars)).sum(), weights


def dwa_weights(last: Tensor, before: Tensor, temperature: float) -> Tensor:
    """Dynamic weight average (Liu, Johns and Davison, 2019).

    Each task's weight grows with the ratio of its mean loss over the last two
    epochs, ``r = last / before``: ``K * softmax(r / temperature)``. The weights are
    positive and sum to the number of tasks ``K``; a higher temperature evens them out.
    Each task keeps at least a millionth of the total, so that no weight underflows
    to zero when one loss jumps by orders of magnitude; a task whose mean loss was
    zero the epoch before (no sample had its label) counts as a ratio of 1.

    Args:
        last: ``(K,)`` mean task losses of the last epoch.
        before: ``(K,)`` mean task losses of the epoch before it.
        temperature: The softmax temperature, > 0.

    Returns:
        ``(K,)`` weights summing to ``K``.

    Example:
        >>> w = dwa_weights(torch.tensor([1.0, 1.0]), torch.tensor([2.0, 1.0]), 2.0)
        >>> [round(v, 4) for v in w.tolist()], round(float(w.sum()), 4)
        ([0.8756, 1.1244], 2.0)
    """
    # A task whose loss was zero (no labelled sample in an epoch) keeps a ratio of 1.
    ratio = torch.where(before > 0, last / before.clamp(min=torch.finfo(before.dtype).tiny), 1.0)
    weights = torch.softmax(ratio / temperature, dim=0).clamp(min=_DWA_MIN_SHARE)
    return weights.numel() * weights / weights.sum()
